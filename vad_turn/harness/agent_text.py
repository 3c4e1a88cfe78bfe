"""Agent-directed text completeness (issue 11, part 3): is a prefix of a user's request to a machine the
whole turn? Text detectors asked at every word boundary of real user turns of the DSTC2, SLURP,
MultiWOZ and SGD test splits (`../shared/data/agent_text`, read in place).

Each sampled user turn of n words gives n queries: the prefix after word k (label 0 for k < n, 1 for
the whole turn), with the earlier turns of its dialogue (user and system, oldest first) as `messages`.
Two text variants:
- "asr" (the result): user words as the pipeline's STT emits them (`schema.normalize_word`: lower case,
  no punctuation; words that normalise to nothing dropped); earlier user turns the same way; system
  turns as written (the agent's own text, as the pipeline's history holds it).
- "punctuated" (diagnostic): every turn as written (cased, punctuated); the last word of each prefix,
  the whole turn included, loses its trailing punctuation unless `keep_final_punct` (a final "?" or
  "." exists only at the true end and would give it away). Only for `punctuated_detectors`: the LR,
  the GRU and the fused model normalise their input themselves, so their punctuated scores are their
  asr scores.
Fixed timing (the corpus has none): word i spans [i * word_s, (i + 1) * word_s) back to back, and every
query is made at `silence_s` after the last word's end with the words visible `transcript_lag_s` after
they end; `transcript_lag_s <= silence_s`, so every word of the prefix is visible (as it is to the
trained lexical model 0.5 s into a pause under its 0.5 s training lag). `fused` runs in its text mode
(audio None: the lexical + timing fusion). DSTC2's transcription tags (sil, noise, unintelligible,
breath, ...) are not words: they are removed, and turns left empty dropped. Every earlier turn is passed;
each detector keeps what it reads (zero-shot SmolLM2 the last two, the GRU the last system turn).

Metrics per corpus and pooled ("all"): AUC, false-end rate at 95% / 99% recall of true ends, the share of
turns cut early at those thresholds, and the worst prefixes (DEFINITIONS, also in metrics.json). The
zero-shot LM scores all prefixes of a turn in one forward pass (`ZeroShotDetector.p_end_prefixes`, equal to
`p_end` per prefix); it is the cost: the default (300 turns per corpus, both variants) took 650 s wall on
2 shared cores (8.2 min CPU, 1 thread); the other three detectors take seconds.

    vad-turn agent-text                                   # 300 seeded turns per corpus, four detectors
    vad-turn agent-text --max-turns-per-corpus none --detectors lexical-lr lexical
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from vad_turn.core.config import config_to_dict, default_data_root, default_runs_root, require_range
from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_text
from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S, Message, Word, normalize_text

from vad_turn.data.corpora.agent_text import READERS, Dialogue, sample_turns, turn_words

from .detectors import Query, make_detector, predict_many
from .metrics import roc_auc

CORPORA = ("dstc2", "slurp", "multiwoz", "sgd")
SPLIT_NAMES = {"test": {c: "test" for c in CORPORA}, "dev": {"dstc2": "val", "slurp": "devel", "multiwoz": "val",
                                                              "sgd": "dev"}}
VARIANTS = ("asr", "punctuated")
RECALLS = (0.95, 0.99)
DEFINITIONS = """Per corpus, over every scored prefix (label 1: the whole user turn, 0: a shorter prefix).
auc: ROC AUC of p_eot, whole turns vs shorter prefixes (None with one class).
fer@R: false-end rate at recall R of true ends: theta = the ceil(R * n_ends)-th highest p_eot of the whole
turns (so at least R of them have p_eot >= theta); fer = share of shorter prefixes with p_eot >= theta.
cut@R: share of turns of >= 2 words with at least one shorter prefix at p_eot >= theta (cut off early).
worst: the highest-scored shorter prefixes, distinct texts."""


# ----------------------------------------------------------------------------- prefixes


def strip_final_punct(word: str) -> str:
    return word.rstrip(".,!?;:\"'") or word


@dataclass(frozen=True)
class TurnQueries:
    """The n queries of one user turn: `queries[k - 1]` holds its first k words; `labels` (n,) int."""

    turn_id: str
    texts: tuple[str, ...]  # the prefix texts as given to the detector
    queries: tuple[Query, ...]
    labels: np.ndarray
    context: str  # the last assistant message ("" if none)


def turn_queries(dialogue: Dialogue, turn_index: int, variant: str, *, word_s: float = 0.3,
                 silence_s: float = 0.5, keep_final_punct: bool = False) -> TurnQueries:
    """Queries at every word boundary of user turn `turn_index` (see the module docstring); messages are
    `dialogue.turns[:turn_index]` only."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    role, text = dialogue.turns[turn_index]
    if role != "user":
        raise ValueError(f"{dialogue.dialogue_id} turn {turn_index} is an {role} turn, not a user turn")
    asr = variant == "asr"
    messages = tuple(Message(r, normalize_text(t.split()) if asr and r == "user" else t)
                     for r, t in dialogue.turns[:turn_index])
    ws = [n if asr else w for w, n in turn_words(text)]
    queries, texts = [], []
    for k in range(1, len(ws) + 1):
        shown = ws[:k] if asr or keep_final_punct else [*ws[:k - 1], strip_final_punct(ws[k - 1])]
        words = tuple(Word(w, i * word_s, (i + 1) * word_s) for i, w in enumerate(shown))
        queries.append(Query(None, words, messages, float(silence_s)))
        texts.append(" ".join(shown))
    labels = np.zeros(len(ws), dtype=np.int64)
    labels[-1:] = 1
    context = next((m.content for m in reversed(messages) if m.role == "assistant"), "")
    return TurnQueries(f"{dialogue.dialogue_id}#{turn_index}", tuple(texts), tuple(queries), labels, context)


# ----------------------------------------------------------------------------- metrics


def auc(labels: np.ndarray, p: np.ndarray) -> float | None:
    """`metrics.roc_auc`, None where the labels hold one class."""
    return roc_auc(labels, p, one_class=None)


def end_threshold(labels: np.ndarray, p: np.ndarray, recall: float) -> float | None:
    """The ceil(recall * n_ends)-th highest p of the true ends (None without ends)."""
    ends = np.sort(np.asarray(p, dtype=np.float64)[np.asarray(labels) == 1])[::-1]
    if not ends.size:
        return None
    k = max(math.ceil(recall * ends.size - 1e-9), 1)
    return float(ends[k - 1])


def false_end_rate(labels: np.ndarray, p: np.ndarray, recall: float) -> float | None:
    """Share of non-final prefixes at p >= `end_threshold` (None without ends or without prefixes)."""
    labels, p = np.asarray(labels), np.asarray(p, dtype=np.float64)
    theta = end_threshold(labels, p, recall)
    neg = p[labels == 0]
    return None if theta is None or not neg.size else float(np.mean(neg >= theta))


def turn_cut_rate(frame: pd.DataFrame, theta: float | None) -> float | None:
    """Share of turns of >= 2 words with a non-final prefix at p_eot >= theta (columns turn_id, label, p_eot)."""
    neg = frame[frame["label"] == 0]
    if theta is None or neg.empty:
        return None
    return float(neg.groupby("turn_id")["p_eot"].max().ge(theta).mean())


def corpus_metrics(frame: pd.DataFrame, n_worst: int = 5) -> dict:
    """Metrics (DEFINITIONS) of one detector on one corpus: columns turn_id, label, p_eot, prefix_text,
    turn_text, context."""
    y, p = frame["label"].to_numpy(), frame["p_eot"].to_numpy(dtype=np.float64)
    out = {"n_turns": int(frame["turn_id"].nunique()), "n_prefixes": int(len(frame)), "auc": auc(y, p)}
    for r in RECALLS:
        theta = end_threshold(y, p, r)
        tag = f"{round(100 * r)}"
        out[f"threshold@{tag}"] = theta
        out[f"fer@{tag}"] = false_end_rate(y, p, r)
        out[f"cut@{tag}"] = turn_cut_rate(frame, theta)
    worst = frame[frame["label"] == 0].sort_values("p_eot", ascending=False, kind="stable")
    worst = worst.drop_duplicates("prefix_text").head(n_worst)  # distinct prefixes ("thank you good" recurs)
    out["worst"] = [{"turn_id": w.turn_id, "p_eot": float(w.p_eot), "prefix": w.prefix_text, "turn": w.turn_text,
                     "context": w.context} for w in worst.itertuples()]
    return out


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class AgentTextConfig:
    data_root: Path = field(default_factory=lambda: default_data_root() / "agent_text",
                            metadata={"help": "the agent_text folder (dstc2/, slurp/, multiwoz/, sgd/), read in place"})
    corpora: tuple[str, ...] = field(default=CORPORA, metadata={"help": f"corpora to score, of {', '.join(CORPORA)}"})
    split: str = field(default="test", metadata={"help": "test (each corpus's test split) or dev (val / devel / dev)"})
    detectors: tuple[str, ...] = field(default=("lexical-zeroshot", "lexical-lr", "lexical", "fused"),
                                       metadata={"help": "registered text detectors ('fused' runs with audio None)"})
    max_turns_per_corpus: int | None = field(default=300, metadata={
        "help": "seeded sample of user turns per corpus ('none': every turn)"})
    seed: int = field(default=0, metadata={"help": "seed of the turn sample"})
    word_s: float = field(default=0.3, metadata={"help": "synthetic duration of every word (s), back to back"})
    silence_s: float = field(default=0.5, metadata={"help": "silence after the prefix's last word at each query (s)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={
        "help": "words are visible this long after they end (s); at most silence_s, so every word is visible"})
    variants: tuple[str, ...] = field(default=VARIANTS, metadata={
        "help": "asr (lower case, unpunctuated user text) and/or punctuated (as written: diagnostic)"})
    punctuated_detectors: tuple[str, ...] = field(default=("lexical-zeroshot",), metadata={
        "help": "those of --detectors also scored on punctuated text (the others normalise it away)"})
    keep_final_punct: bool = field(default=False, metadata={
        "help": "punctuated variant: keep the last word's trailing punctuation (it marks the true end)"})
    n_worst: int = field(default=5, metadata={"help": "worst (highest-scored) non-final prefixes listed per corpus"})
    batch_turns: int = field(default=8, metadata={"help": "turns per detector batch"})
    threads: int = field(default=1, metadata={"help": "CPU threads of each detector"})
    lexical_model: Path | None = field(default=None, metadata={
        "help": "model folder the `lexical` detector loads (default: the shipped vad_turn/models/lexical)"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/agent-text-<time>); "
                                                             "rerunning with the same config resumes"})

    def __post_init__(self) -> None:
        """Every option is checked here, before any data is read or any folder written."""
        require_range("word_s", self.word_s, 0.0, 5.0, lo_open=True)
        require_range("silence_s", self.silence_s, 0.0, 60.0)
        require_range("transcript_lag_s", self.transcript_lag_s, 0.0, self.silence_s)
        for name, values, allowed in (("corpora", self.corpora, CORPORA), ("variants", self.variants, VARIANTS),
                                      ("split", (self.split,), tuple(SPLIT_NAMES))):
            bad = [v for v in values if v not in allowed]
            if bad or not values:
                raise ValueError(f"--{name.replace('_', '-')}: {bad or 'nothing'} not among {list(allowed)}")
        if not self.detectors:
            raise ValueError("--detectors needs at least one detector")
        from .detectors import check_detector_spec

        for flag, names in (("--detectors", self.detectors), ("--punctuated-detectors", self.punctuated_detectors)):
            for d in names:  # registered names, or 'package.module:Class' of a detector class
                check_detector_spec(d, flag)
        if self.max_turns_per_corpus is not None and self.max_turns_per_corpus < 1:
            raise ValueError(f"--max-turns-per-corpus must be >= 1 (or none), got {self.max_turns_per_corpus}")
        for name in ("batch_turns", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.n_worst < 0:
            raise ValueError(f"--n-worst must be >= 0, got {self.n_worst}")


def build_detector(name: str, variant: str, cfg: AgentTextConfig):
    """The detector `name` for a text variant (zero-shot SmolLM2 reads punctuated text with text_style=raw)."""
    opts: dict = {}
    if name in ("lexical-zeroshot", "lexical", "fused"):
        opts["threads"] = cfg.threads
    if name == "lexical-zeroshot":
        opts.update(batch_size=cfg.batch_turns, text_style="raw" if variant == "punctuated" else "asr")
    if name == "lexical" and cfg.lexical_model is not None:
        opts["model"] = str(cfg.lexical_model)
    det = make_detector(name, **opts)
    check = getattr(det, "check_transcript_lag", None)
    if callable(check):  # the lexical GRU and the fusion were trained with a lag: say if this one differs
        check(cfg.transcript_lag_s)
    return det


def score_prefixes(det, turns: Sequence[TurnQueries], batch_turns: int = 8) -> list[np.ndarray]:
    """p_eot (n_words,) per turn: through the detector's `p_end_prefixes` when it has one (the zero-shot LM:
    one forward pass per turn; it reads words and messages only, as at every query here), else
    `predict_many` on the prefix queries."""
    fast = getattr(det, "p_end_prefixes", None)
    out = []
    for i in range(0, len(turns), batch_turns):
        chunk = turns[i:i + batch_turns]
        if callable(fast):
            out += fast([([q.words for q in t.queries], t.queries[-1].messages) for t in chunk])
        else:
            p = predict_many(det, [q for t in chunk for q in t.queries])
            out += np.split(p, np.cumsum([len(t.queries) for t in chunk])[:-1])
    return out


def score_prefixes_reusing(det, turns: Sequence[TurnQueries], cfg: AgentTextConfig,
                           asr_part: Path | None) -> list[np.ndarray]:
    """`score_prefixes`, except that a turn whose prefix texts and messages are exactly those of its row in
    `asr_part` (the asr scores of the same detector; DSTC2's and SLURP's transcripts are already lower
    case and unpunctuated) reuses them: the same text gives the same p_eot (for the zero-shot LM,
    normalize_text of normalised words is the words joined, so text_style raw and asr read one prompt)."""
    done: dict[str, pd.DataFrame] = {}
    if asr_part is not None and asr_part.exists():
        done = dict(tuple(pd.read_parquet(asr_part, columns=["turn_id", "prefix_text", "messages_sha1", "p_eot"])
                          .groupby("turn_id", sort=False)))
    same = {}
    for t in turns:
        g = done.get(t.turn_id)
        if g is not None and tuple(g["prefix_text"]) == t.texts and g["messages_sha1"].iloc[0] == messages_sha1(t):
            same[t.turn_id] = g["p_eot"].to_numpy()
    scored = iter(score_prefixes(det, [t for t in turns if t.turn_id not in same], cfg.batch_turns))
    return [same[t.turn_id] if t.turn_id in same else next(scored) for t in turns]


def messages_sha1(t: TurnQueries) -> str:
    """A digest of a turn's messages (roles and texts as given to the detector)."""
    return hashlib.sha1(json.dumps([[m.role, m.content] for m in t.queries[0].messages]).encode()).hexdigest()


def _frame(name: str, variant: str, corpus: str, turns: Sequence[TurnQueries], scores, texts: dict) -> pd.DataFrame:
    rows = {c: [] for c in ("turn_id", "k", "n_words", "label", "p_eot", "prefix_text", "turn_text", "context",
                            "n_messages", "messages_sha1")}
    for t, p in zip(turns, scores):
        n = len(t.queries)
        rows["turn_id"] += [t.turn_id] * n
        rows["k"] += list(range(1, n + 1))
        rows["n_words"] += [n] * n
        rows["label"] += t.labels.tolist()
        rows["p_eot"] += np.asarray(p, dtype=np.float64).tolist()
        rows["prefix_text"] += list(t.texts)
        rows["turn_text"] += [texts[t.turn_id]] * n
        rows["context"] += [t.context] * n
        rows["n_messages"] += [len(t.queries[0].messages)] * n
        rows["messages_sha1"] += [messages_sha1(t)] * n
    df = pd.DataFrame(rows)
    df.insert(0, "corpus", corpus)
    df.insert(0, "detector", name)
    df.insert(0, "variant", variant)
    return df


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def _model_fingerprint(name: str, cfg: AgentTextConfig) -> str:
    """Digest of the model files detector `name` reads in this run ('' for one without files of its own)."""
    from .evaluate import detector_fingerprint

    opts = {"model": str(cfg.lexical_model)} if name == "lexical" and cfg.lexical_model is not None else {}
    return detector_fingerprint(name, opts) or ""


def _check_part_model(path: Path, name: str, fingerprint: str) -> None:
    """Refuse to resume from a part scored by other model files than `name` reads now (a re-shipped model
    would otherwise mix its old scores into the new run's metrics)."""
    cols = pq.read_schema(path).names
    got = pd.read_parquet(path, columns=["model_fingerprint"])["model_fingerprint"].iloc[0] if (
        "model_fingerprint" in cols) else None
    if got != fingerprint:
        raise ValueError(f"{path}: scored by {name} model files {got or 'unrecorded'}, but {name} now reads "
                         f"{fingerprint or 'no model files'}; resume with the same model or use another --out")


def run(cfg: AgentTextConfig) -> dict:
    """Score every (variant, detector, corpus) into a run folder: config.json, commit.txt, split_ids.json,
    prefixes.parquet (every scored prefix), metrics.json and report.md. Each finished (variant, detector,
    corpus) is kept in parts/ until the end, so rerunning with the same --out resumes."""
    from .agent_text_report import report

    t0 = time.perf_counter()
    out = Path(cfg.out) if cfg.out is not None else default_runs_root() / f"agent-text-{time.strftime('%Y%m%d-%H%M%S')}"
    old = out / "config.json"
    if (out / "parts").exists() and old.exists() and json.loads(old.read_text()) != {
            "type": type(cfg).__name__, **config_to_dict(cfg)}:
        raise ValueError(f"{out}: holds an interrupted run with a different config; use another --out")
    data = {c: READERS[c](cfg.data_root, SPLIT_NAMES[cfg.split][c]) for c in cfg.corpora}
    sampled = {}
    for c, dialogues in data.items():
        picks = sample_turns(dialogues, cfg.max_turns_per_corpus, cfg.seed)
        if not picks:
            raise ValueError(f"{cfg.data_root}: no user turns in {c} split {SPLIT_NAMES[cfg.split][c]!r}")
        sampled[c] = picks
    rf = RunFolder(out, cfg)
    rf.write_split_ids({c: [f"{data[c][i].dialogue_id}#{j}" for i, j in picks] for c, picks in sampled.items()})
    parts = out / "parts"
    parts.mkdir(exist_ok=True)
    texts = {f"{data[c][i].dialogue_id}#{j}": data[c][i].turns[j][1] for c, picks in sampled.items() for i, j in picks}
    for variant in cfg.variants:
        names = [d for d in cfg.detectors if variant == "asr" or d in cfg.punctuated_detectors]
        for name in names:
            det = None
            fingerprint = _model_fingerprint(name, cfg)
            for c, picks in sampled.items():
                path = parts / f"{variant}--{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}--{c}.parquet"
                if path.exists():
                    _check_part_model(path, name, fingerprint)
                    continue
                if det is None:
                    det = build_detector(name, variant, cfg)
                t1 = time.perf_counter()
                tq = [turn_queries(data[c][i], j, variant, word_s=cfg.word_s, silence_s=cfg.silence_s,
                                   keep_final_punct=cfg.keep_final_punct) for i, j in picks]
                asr_part = None if variant == "asr" else parts / path.name.replace(f"{variant}--", "asr--", 1)
                scores = score_prefixes_reusing(det, tq, cfg, asr_part)
                secs = round(time.perf_counter() - t1, 1)
                _write_parquet(_frame(name, variant, c, tq, scores, texts).assign(
                    score_wall_s=secs, model_fingerprint=fingerprint), path)
                print(f"{variant:10s} {name:18s} {c:9s} {len(tq)} turns in {secs} s", flush=True)
            del det
    frame = pd.concat([pd.read_parquet(p) for p in sorted(parts.glob("*.parquet"))], ignore_index=True)
    first = frame.groupby(["variant", "detector", "corpus"], sort=False)["score_wall_s"].first()
    wall = {"/".join(k): float(v) for k, v in first.items()}
    frame = frame.drop(columns=["score_wall_s", "model_fingerprint"])
    metrics = {"results": [], "definitions": DEFINITIONS, "wall_s_scoring": wall,
               "counts": {c: {"n_dialogues": len(data[c]), "n_user_turns": len(sample_turns(data[c], None, 0)),
                              "n_sampled": len(sampled[c])} for c in data}}
    for (variant, name), g in frame.groupby(["variant", "detector"], sort=False):
        for c in [*cfg.corpora, "all"]:
            sub = g if c == "all" else g[g["corpus"] == c]
            if not sub.empty:
                metrics["results"].append({"variant": variant, "detector": name, "corpus": c,
                                           **corpus_metrics(sub, cfg.n_worst)})
    metrics["wall_s"] = round(time.perf_counter() - t0, 1)
    _write_parquet(frame, rf.file("prefixes.parquet"))
    rf.write_metrics(metrics)
    atomic_write_text(rf.file("report.md"), report(metrics, config_to_dict(cfg)))
    shutil.rmtree(parts)
    print(rf.file("report.md").read_text().split("\n## Worst")[0])
    print(f"run folder: {out}")
    return metrics

