"""Where speakers pause inside a turn, fitted on real holds (issue 14 part 2), to place simulated holds in
agent-directed text turns that have none (`vad_turn.data.corpora.agent_holds`).

A hold is a silence span inside a turn (every span but the last). For each word boundary of a real turn
(after word k of n, k < n) the model counts whether a hold follows, by the class of word k
(`word_class`: filler, conjunction, preposition, determiner, content) and the boundary's position in
the turn (`position_bin`: early / middle / late third). Hold durations are log-normal per class. Fillers
("um", "uh") are counted per turn start and per word boundary, as rates to insert them at (from the prior
alone when the target's transcripts hold none: an ASR that drops fillers observed nothing).

Two kinds of source: a *target* (GetGoing train: real callers talking to a machine, the speech the
model is for, but few holds: 6.6% of its train turns have one) and a *prior* (Switchboard train:
human-to-human, many holds). The prior gives the shape across cells, rescaled to the target's overall
hold rate; the target's own counts override it where they are many (`prior_strength` pseudo-boundaries
per cell, `prior_strength_duration` pseudo-holds per class). The fitted model keeps every count it came
from, so its card can say how much of each cell is real target data.

    vad-turn fit-pause-model                      # GetGoing train + Switchboard train -> the agent-holds recipe
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from vad_turn.core.config import REPO_ROOT, default_built_root
from vad_turn.core.runs import atomic_write_text
from vad_turn.core.schema import FILLERS, normalize_word, pause_context_of, row_spans, row_words, words_before_spans
from vad_turn.core.seeds import seeded_sample

WORD_CLASSES = ("filler", "conjunction", "preposition", "determiner", "content")
POSITIONS = ("early", "middle", "late")
PREPOSITIONS = frozenset({
    "to", "from", "at", "in", "on", "of", "for", "with", "by", "about", "into", "onto", "near", "between", "via",
    "through", "around", "toward", "towards", "over", "under", "across", "along", "past", "without", "within",
    "behind", "beside", "off", "out", "up", "down", "per", "during", "against", "among", "inside", "outside",
})
DETERMINERS = frozenset({
    "the", "a", "an", "this", "these", "those", "my", "your", "his", "her", "its", "our", "their", "some", "any",
    "every", "each", "no", "another", "which", "what",
})
RECIPE_PATH = REPO_ROOT / "data" / "recipes" / "agent-holds.json"


def word_class(word: str) -> str:
    """The pause-model class of a word (after `normalize_word`): filler > conjunction > preposition >
    determiner > content (the first that applies; "that" is a conjunction, "like" too)."""
    tag = pause_context_of(word)  # the schema's slice tag: "filler", "conjunction" or "none"
    if tag != "none":
        return tag
    w = normalize_word(word)
    if w in PREPOSITIONS:
        return "preposition"
    if w in DETERMINERS:
        return "determiner"
    return "content"


def position_bin(k: int, n: int) -> str:
    """The position of the boundary after word k (1-based) of an n-word turn (1 <= k < n): which third of
    the turn's boundaries it is in."""
    if not 1 <= k < n:
        raise ValueError(f"a boundary needs 1 <= k < n, got k={k}, n={n}")
    x = (k - 1) / (n - 1)  # 0 for the first boundary, < 1 for the last
    return POSITIONS[min(2, int(x * 3))]


def _cells() -> dict[str, dict[str, int]]:
    return {c: {p: 0 for p in POSITIONS} for c in WORD_CLASSES}


def hold_after(words, spans) -> list[float | None]:
    """Per word boundary k (after words[k], k < n - 1): the duration (s) of the hold there, else None.

    A hold belongs to the boundary whose gap holds its start (the last word ending at or before it, as the
    schema's pause_context tags it)."""
    out: list[float | None] = [None] * max(0, len(words) - 1)
    holds = spans[:-1]
    for h, k in zip(holds, words_before_spans(words, holds)):
        if k is not None and k < len(words) - 1:
            out[k] = (out[k] or 0.0) + float(h.end - h.start)
    return out


def count_pauses(rows: Iterable[dict]) -> dict:
    """Counts of one source (rows of a built turn dataset with word times): boundaries and holds per
    class x position, hold log-durations per class, fillers at the turn start and inside."""
    boundaries, holds = _cells(), _cells()
    log_durations: dict[str, list[float]] = {c: [] for c in WORD_CLASSES}
    n_turns = n_boundaries = n_initial_fillers = n_medial_fillers = 0
    filler_words: Counter = Counter()
    for row in rows:
        words = [w for w in row_words(row) if normalize_word(w.word)]
        if not words:
            continue
        spans = row_spans(row)
        n_turns += 1
        norm = [normalize_word(w.word) for w in words]
        for i, w in enumerate(norm):
            if w in FILLERS:
                filler_words[w] += 1
                if i == 0:
                    n_initial_fillers += 1
                else:
                    n_medial_fillers += 1
        n = len(words)
        for k, dur in enumerate(hold_after(words, spans)):
            c, p = word_class(norm[k]), position_bin(k + 1, n)
            boundaries[c][p] += 1
            n_boundaries += 1
            if dur is not None:
                holds[c][p] += 1
                log_durations[c].append(math.log(max(dur, 1e-3)))
    return {
        "n_turns": n_turns, "n_boundaries": n_boundaries, "boundaries": boundaries, "holds": holds,
        "n_holds": sum(sum(v.values()) for v in holds.values()),
        "duration_log": {c: {"n": len(v), "mean": float(np.mean(v)) if v else None,
                             "sd": float(np.std(v)) if len(v) > 1 else None} for c, v in log_durations.items()},
        "n_initial_fillers": n_initial_fillers, "n_medial_fillers": n_medial_fillers,
        "filler_words": dict(filler_words.most_common()),
    }


@dataclass(frozen=True)
class PauseModel:
    """P(hold after a word) per class x position, log-normal hold durations per class, filler rates."""

    p_hold: dict[str, dict[str, float]]
    duration_log_mean: dict[str, float]
    duration_log_sd: dict[str, float]
    filler_rate_initial: float  # P(a turn starts with a filler)
    filler_rate_medial: float  # P(a filler is inserted at a word boundary)
    filler_words: dict[str, float]  # spelling -> probability
    min_hold_s: float = 0.1
    max_hold_s: float = 3.0
    fitted: dict = field(default_factory=dict)  # sources, their counts and the fit's parameters

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "PauseModel":
        missing = [k for k in ("p_hold", "duration_log_mean", "duration_log_sd", "filler_rate_initial",
                               "filler_rate_medial", "filler_words") if k not in d]
        if missing:
            raise ValueError(f"pause model: missing {missing} (fit one with `vad-turn fit-pause-model`)")
        for c in WORD_CLASSES:
            if c not in d["p_hold"] or set(d["p_hold"][c]) != set(POSITIONS):
                raise ValueError(f"pause model: p_hold needs every class x position, {c!r} is incomplete")
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def hold_rate(self, classes: Sequence[str], positions: Sequence[str]) -> float:
        """Mean P(hold) over the given boundaries."""
        return float(np.mean([self.p_hold[c][p] for c, p in zip(classes, positions)])) if classes else 0.0

    def sample(self, words: Sequence[str], rng: np.random.Generator, hold_scale: float = 1.0,
               filler_scale: float = 1.0) -> tuple[list[str], list[tuple[int, float]]]:
        """Speak `words` (normalised) with simulated pauses: (words with inserted fillers, [(k, hold_s)]) where
        a hold of hold_s follows word k (0-based, never the last word). `hold_scale` multiplies every
        P(hold) (capped at 0.95), `filler_scale` the filler rates: the placement stays the fitted one."""
        if not words:
            return [], []
        spellings = list(self.filler_words)
        probs = np.array([self.filler_words[s] for s in spellings], dtype=float)
        probs = probs / probs.sum()

        def filler() -> str:
            return spellings[int(rng.choice(len(spellings), p=probs))]

        out: list[str] = []
        if rng.random() < min(0.95, self.filler_rate_initial * filler_scale):
            out.append(filler())
        for i, w in enumerate(words):
            if i > 0 and rng.random() < min(0.95, self.filler_rate_medial * filler_scale):
                out.append(filler())
            out.append(w)
        holds = []
        n = len(out)
        for k in range(n - 1):
            c, p = word_class(out[k]), position_bin(k + 1, n)
            if rng.random() < min(0.95, self.p_hold[c][p] * hold_scale):
                d = float(np.exp(rng.normal(self.duration_log_mean[c], self.duration_log_sd[c])))
                holds.append((k, float(np.clip(d, self.min_hold_s, self.max_hold_s))))
        return out, holds


def fit(target: dict, prior: dict, *, prior_strength: float = 200.0, prior_strength_duration: float = 20.0,
        min_hold_s: float = 0.1, max_hold_s: float = 3.0) -> PauseModel:
    """The pause model from a target source's counts and a prior source's (`count_pauses` outputs).

    P(hold | c, p) = (holds_t + K * q) / (boundaries_t + K), q = the prior's smoothed cell rate x
    (target's overall hold rate / prior's overall hold rate); durations and filler rates likewise."""
    def rate(h, b):
        return h / b if b else 0.0

    r_t = rate(target["n_holds"], target["n_boundaries"])
    r_p = rate(prior["n_holds"], prior["n_boundaries"])
    if r_p <= 0:
        raise ValueError("pause model: the prior source has no holds")
    scale = r_t / r_p
    p_hold = {}
    for c in WORD_CLASSES:
        p_hold[c] = {}
        for p in POSITIONS:
            q = (prior["holds"][c][p] + 1.0 * r_p) / (prior["boundaries"][c][p] + 1.0)  # one pseudo-boundary
            q = min(0.95, q * scale)
            p_hold[c][p] = (target["holds"][c][p] + prior_strength * q) / (target["boundaries"][c][p] + prior_strength)
    mean, sd = {}, {}
    all_prior = [v for v in prior["duration_log"].values() if v["n"]]
    pooled_mean = float(np.average([v["mean"] for v in all_prior], weights=[v["n"] for v in all_prior]))
    pooled_sd = float(np.average([v["sd"] or 0.5 for v in all_prior], weights=[v["n"] for v in all_prior]))
    for c in WORD_CLASSES:
        t, pr = target["duration_log"][c], prior["duration_log"][c]
        pm = pr["mean"] if pr["n"] else pooled_mean
        ps = pr["sd"] if pr["n"] and pr["sd"] else pooled_sd
        k = prior_strength_duration
        mean[c] = ((t["mean"] or 0.0) * t["n"] + k * pm) / (t["n"] + k)
        sd[c] = ((t["sd"] or ps) * t["n"] + k * ps) / (t["n"] + k)

    def filler_rates(src):
        n_words = src["n_boundaries"] + src["n_turns"]
        return rate(src["n_initial_fillers"], src["n_turns"]), rate(src["n_medial_fillers"], max(1, n_words - src["n_turns"]))

    (fi_t, fm_t), (fi_p, fm_p) = filler_rates(target), filler_rates(prior)
    k = prior_strength
    # A target with no filler at all was transcribed by an ASR that drops them (GetGoing's Whisper tiny.en
    # writes no "um" in 2,808 turns): its zero is not an observation, so the prior's rates (human
    # transcripts), scaled like the holds, stand alone.
    fillers_observed = target["n_initial_fillers"] + target["n_medial_fillers"] > 0
    if fillers_observed:
        fi = (target["n_initial_fillers"] + k * fi_p * scale) / (target["n_turns"] + k)
        fm = (target["n_medial_fillers"] + k * fm_p * scale) / (target["n_boundaries"] + k)
    else:
        fi, fm = fi_p * scale, fm_p * scale
    spell = Counter(prior["filler_words"]) + Counter(target["filler_words"])
    spell = Counter({w: n for w, n in spell.items() if w in ("um", "uh")}) or Counter({"um": 1, "uh": 1})
    total = sum(spell.values())
    return PauseModel(
        p_hold=p_hold, duration_log_mean=mean, duration_log_sd=sd, filler_rate_initial=fi, filler_rate_medial=fm,
        filler_words={w: n / total for w, n in sorted(spell.items())}, min_hold_s=min_hold_s, max_hold_s=max_hold_s,
        fitted={"target": target, "prior": prior, "hold_rate_target": r_t, "hold_rate_prior": r_p,
                "filler_rates_raw": {"target": [fi_t, fm_t], "prior": [fi_p, fm_p]},
                "filler_rates_from": "target + prior" if fillers_observed else "prior x scale (no filler in the target)",
                "prior_strength": prior_strength, "prior_strength_duration": prior_strength_duration},
    )


@dataclass(frozen=True)
class FitPauseConfig:
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "folder of the built datasets"})
    target: str = field(default="getgoing:train", metadata={
        "help": "dataset:split of real agent-directed turns whose hold rate the model takes"})
    prior: str = field(default="switchboard:train", metadata={
        "help": "dataset:split of real turns (many holds) giving the shape across word classes and positions"})
    max_prior_turns: int | None = field(default=20000, metadata={"help": "cap on prior turns (seeded); none = all"})
    prior_strength: float = field(default=200.0, metadata={"help": "pseudo-boundaries of the prior per cell"})
    prior_strength_duration: float = field(default=20.0, metadata={"help": "pseudo-holds of the prior per class"})
    seed: int = field(default=0, metadata={"help": "sample of the prior turns"})
    recipe: Path = field(default=RECIPE_PATH, metadata={"help": "the agent-holds recipe whose pause_model is replaced"})
    dry_run: bool = field(default=False, metadata={"help": "print the model, do not write the recipe"})


def _rows(built_root: Path, spec: str, max_turns: int | None, seed: int) -> list[dict]:
    from .build import load_built

    name, _, split = spec.partition(":")
    if not split:
        raise ValueError(f"{spec!r}: expected dataset:split")
    ds = load_built(name, split, built_root)
    ds = ds.select_columns([c for c in ds.column_names if c != "audio"])
    return [ds[i] for i in seeded_sample(len(ds), max_turns, seed)]


def summary(model: PauseModel) -> str:
    lines = ["P(hold after word) by class x position (early / middle / late); hold median s:"]
    for c in WORD_CLASSES:
        ps = " / ".join(f"{model.p_hold[c][p]:.3f}" for p in POSITIONS)
        lines.append(f"  {c:12s} {ps}   median {math.exp(model.duration_log_mean[c]):.2f} s")
    lines.append(f"fillers: turn start {model.filler_rate_initial:.3f}, per boundary {model.filler_rate_medial:.4f}, "
                 f"{model.filler_words}")
    f = model.fitted
    if f:
        lines.append(f"overall hold rate per boundary: target {f['hold_rate_target']:.4f} "
                     f"({f['target']['n_holds']} holds / {f['target']['n_boundaries']} boundaries, "
                     f"{f['target']['n_turns']} turns), prior {f['hold_rate_prior']:.4f} ({f['prior']['n_holds']} holds)")
    return "\n".join(lines)


def run(cfg: FitPauseConfig) -> dict:
    target = count_pauses(_rows(cfg.built_root, cfg.target, None, cfg.seed))
    prior = count_pauses(_rows(cfg.built_root, cfg.prior, cfg.max_prior_turns, cfg.seed))
    if target["n_boundaries"] == 0:
        raise ValueError(f"{cfg.target}: no word boundaries to fit on")
    model = fit(target, prior, prior_strength=cfg.prior_strength, prior_strength_duration=cfg.prior_strength_duration)
    model.fitted.update({"target_set": cfg.target, "prior_set": cfg.prior, "max_prior_turns": cfg.max_prior_turns,
                         "seed": cfg.seed})
    print(summary(model))
    if not cfg.dry_run:
        recipe = json.loads(Path(cfg.recipe).read_text())
        recipe["pause_model"] = model.to_json()
        atomic_write_text(Path(cfg.recipe), json.dumps(recipe, indent=1) + "\n")
        print(f"wrote the pause model into {cfg.recipe}")
    return model.to_json()


def load(recipe_path: Path = RECIPE_PATH) -> PauseModel:
    recipe = json.loads(Path(recipe_path).read_text())
    if "pause_model" not in recipe:
        raise ValueError(f"{recipe_path}: no pause_model (fit one with `vad-turn fit-pause-model`)")
    return PauseModel.from_json(recipe["pause_model"])
