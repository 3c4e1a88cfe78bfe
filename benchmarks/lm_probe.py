"""Diagnostic: does a linear probe on frozen SmolLM2-135M-Instruct hidden states separate turn ends from holds
better than the shipped lexical GRU, on the same Switchboard val examples?

Examples are the harness's causal queries (`vad_turn.harness.examples.build_examples`, transcript lag
`--transcript-lag-s`, `--points-per-span` grid points per silence span). Each turn is read once by the
frozen LM (bf16, `vad_turn.engines.llm.local.LocalLLM`): SmolLM2's chat template with the last other-party message
(ASR-normalised, last `--context-words` words) as an assistant message, then the user message made of
the turn's ASR-normalised words, each word tokenised on its own (" " + word) as an incremental
decoder would append it. An example with n visible words takes the last-layer hidden state (576,)
at the last token of its n-th word (at the "user\\n" header token when n = 0). Features: that state,
plus the GRU's timing inputs (`vad_turn.lexical.runtime.timing_features`). A standardised
LogisticRegression is fit on train examples (C chosen on 20% of the train turns held out), and
compared with the shipped GRU's p_eot (`LexicalModel`) on the same val examples: pooled ROC AUC and
same-silence AUC (`vad_turn.harness.metrics.same_silence_auc`), on all turns and turns of 1-10 words,
with hidden-only and timing-only ablations. Also times one decision's LM cost: a KV-cached forward of
one new word's tokens at 1 thread.

    nice -n 10 .venv/bin/python benchmarks/lm_probe.py --train-turns 3000 --val-turns 1500

Hidden states are saved per chunk of turns under `<out>/hidden-<split>-<turns>-<seed>/` so an
interrupted run resumes; the report is `<out>/report.json`.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.config import config_main, config_to_dict, default_built_root, default_runs_root
from vad_turn.core.runs import atomic_path, atomic_write_json, git_commit
from vad_turn.core.schema import normalize_word, row_messages, row_words
from vad_turn.harness.percentiles import summary
from vad_turn.lexical.runtime import DEFAULT_TRANSCRIPT_LAG_S, context_text, timing_features


@dataclass(frozen=True)
class ProbeConfig:
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                          metadata={"help": "turn-span dataset with 'train' and 'dev' (val) splits"})
    train_turns: int = field(default=3000, metadata={"help": "seeded sample of train turns"})
    val_turns: int = field(default=1500, metadata={"help": "seeded sample of val (dev) turns"})
    seed: int = field(default=0, metadata={"help": "train turn sample seed (val uses seed + 1, as train-lexical)"})
    points_per_span: int = field(default=4, metadata={"help": "grid points kept per silence span (seeded)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={"help": "words visible this long after they end"})
    max_words: int = field(default=40, metadata={
        "help": "examples seeing more words are dropped (from every model's scores), bounding the LM's cost per turn"})
    context_words: int = field(default=24, metadata={"help": "last words of the other party's message given as context"})
    threads: int = field(default=2, metadata={"help": "torch threads for the feature forward passes"})
    batch_tokens: int = field(default=2048, metadata={"help": "padded tokens per forward batch"})
    chunk_turns: int = field(default=250, metadata={"help": "turns per saved chunk of hidden states (resume unit)"})
    latency_reps: int = field(default=60, metadata={"help": "timed KV-cached one-word steps"})
    out: Path = field(default_factory=lambda: default_runs_root() / "lm-probe", metadata={"help": "output folder"})


# ----------------------------------------------------------------------------- text -> token positions


def word_token_positions(n_prefix_tokens: int, word_token_counts: Sequence[int]) -> np.ndarray:
    """int64 (n_words + 1,): index of the last token of the first k words, for k = 0..n_words.

    k = 0 is the prefix's last token (n_prefix_tokens >= 1); a word with 0 tokens (normalised away)
    keeps the previous position. Example: prefix 5 tokens, words of 1, 2, 0, 3 tokens -> [4, 5, 7, 7, 10].
    """
    if n_prefix_tokens < 1:
        raise ValueError(f"the prefix needs at least one token, got {n_prefix_tokens}")
    counts = np.asarray(word_token_counts, dtype=np.int64).reshape(-1)
    if (counts < 0).any():
        raise ValueError(f"token counts must be >= 0, got {counts.tolist()}")
    return n_prefix_tokens - 1 + np.concatenate([[0], np.cumsum(counts)])


def chat_prefix(tok, context: str, context_words: int) -> str:
    """SmolLM2's chat template up to the start of the user's words: [default system], the context as an
    assistant message (its last `context_words` words; omitted when empty), then "<|im_start|>user\\n"."""
    chat = [{"role": "assistant", "content": " ".join(context.split()[-context_words:])}] if context.strip() else []
    chat.append({"role": "user", "content": ""})
    text = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    cut = text.rfind("<|im_end|>")
    if cut < 0:
        raise ValueError("SmolLM2's chat template produced no <|im_end|>; is this the right tokenizer?")
    return text[:cut]


def turn_tokens(tok, row: dict, max_words: int, context_words: int) -> tuple[list[int], np.ndarray]:
    """(token ids, positions (max_words + 1,)) of one turn's first `max_words` words after its chat prefix."""
    ids = tok.encode(chat_prefix(tok, context_text(row_messages(row)), context_words), add_special_tokens=False)
    n_prefix, counts, started = len(ids), [], False
    for w in row_words(row)[:max_words]:
        nw = normalize_word(w.word)
        wid = tok.encode(("" if not started else " ") + nw, add_special_tokens=False) if nw else []
        started = started or bool(nw)
        ids.extend(wid)
        counts.append(len(wid))
    return ids, word_token_positions(n_prefix, counts)


# ----------------------------------------------------------------------------- features


def _forward_hidden(model, seqs: list[list[int]]) -> list[np.ndarray]:
    """Last-layer hidden states float32 (T_i, D) of each sequence (right-padded batch; causal, so padding
    after a sequence does not change its states)."""
    import torch

    tmax = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), tmax), dtype=torch.long)
    mask = torch.zeros((len(seqs), tmax), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    with torch.inference_mode():
        h = model.model(input_ids=ids, attention_mask=mask).last_hidden_state.float().numpy()
    return [h[i, : len(s)] for i, s in enumerate(seqs)]


def hidden_features(ex, llm, cfg: ProbeConfig, tag: str) -> np.ndarray:
    """float32 (n_examples, D): the hidden state of each example of `ex` (chunked, resumable on disk)."""
    from tqdm import tqdm

    tok, model = llm._tok, llm._model
    folder = cfg.out / f"hidden-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    groups = {ti: g.index.to_numpy() for ti, g in ex.table.groupby("turn_index", sort=True)}
    n_seen = ex.table["n_seen"].to_numpy()
    out = None
    turn_ids = sorted(groups)
    chunks = [turn_ids[i:i + cfg.chunk_turns] for i in range(0, len(turn_ids), cfg.chunk_turns)]
    bar = tqdm(total=len(turn_ids), desc=f"LM hidden {tag}", unit="turn", mininterval=5.0)
    for k, chunk in enumerate(chunks):
        path = folder / f"chunk-{k:03d}.npy"
        rows_idx = np.concatenate([groups[t] for t in chunk])
        if path.exists():
            h_chunk = np.load(path)
        else:
            toks = {t: turn_tokens(tok, ex.rows[t], int(n_seen[groups[t]].max()), cfg.context_words) for t in chunk}
            order = sorted(chunk, key=lambda t: len(toks[t][0]))
            feats: dict[int, np.ndarray] = {}
            i = 0
            while i < len(order):
                j = i + 1
                while j < len(order) and (j + 1 - i) * len(toks[order[j]][0]) <= cfg.batch_tokens:
                    j += 1
                for t, h in zip(order[i:j], _forward_hidden(model, [toks[t][0] for t in order[i:j]])):
                    feats[t] = h[toks[t][1][n_seen[groups[t]]]]
                i = j
            h_chunk = np.concatenate([feats[t] for t in chunk]).astype(np.float16)
            with atomic_path(path, suffix=".npy") as tmp:
                np.save(tmp, h_chunk)
        if out is None:
            out = np.zeros((len(ex.table), h_chunk.shape[1]), dtype=np.float32)
        out[rows_idx] = h_chunk
        bar.update(len(chunk))
    bar.close()
    return out


def cap_words(ex, max_words: int):
    """`ex` without the examples that see more than `max_words` words (table re-indexed 0..n-1)."""
    from dataclasses import replace

    return replace(ex, table=ex.table[ex.table["n_seen"] <= max_words].reset_index(drop=True))


def timing_matrix(ex) -> np.ndarray:
    """float32 (n_examples, 6): the GRU's timing inputs of each example."""
    n_seen, sil, ti = (ex.table[c].to_numpy() for c in ("n_seen", "silence_s", "turn_index"))
    words = {t: row_words(ex.rows[t]) for t in np.unique(ti)}
    return np.stack([timing_features(words[t][:n], s) for t, n, s in zip(ti, n_seen, sil)]).astype(np.float32)


def gru_p_eot(ex) -> np.ndarray:
    """float64 (n_examples,): the shipped lexical GRU's p_eot (ONNX, 1 thread) on each example."""
    from vad_turn.lexical.runtime import LexicalModel

    lm = LexicalModel()
    n_seen, sil, ti = (ex.table[c].to_numpy() for c in ("n_seen", "silence_s", "turn_index"))
    cache = {t: (tuple(row_words(ex.rows[t])), tuple(row_messages(ex.rows[t]))) for t in np.unique(ti)}
    return lm.p_eot([(cache[t][0][:n], cache[t][1], s) for t, n, s in zip(ti, n_seen, sil)])


# ----------------------------------------------------------------------------- probe and metrics


def fit_probe(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *,
              cs: Sequence[float] = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.1, 1.0), seed: int = 0):
    """A standardised LogisticRegression on x (N, F) -> y (N,) in {0, 1}; C chosen by the log loss on 20% of
    the groups (turns) held out, then refit on all. Returns (fitted pipeline, {C: held-out log loss})."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ug = np.unique(groups)
    held = np.isin(groups, np.random.default_rng(seed).choice(ug, size=max(1, len(ug) // 5), replace=False))

    def make(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))

    losses = {c: float(log_loss(y[held], make(c).fit(x[~held], y[~held]).predict_proba(x[held])[:, 1])) for c in cs}
    best = min(losses, key=losses.get)
    return make(best).fit(x, y), losses


def auc_rows(scores: dict[str, np.ndarray], table) -> dict:
    """{slice: {model: {"auc", "same_silence_auc", "n", "n_end", "n_turns"}}} for all turns and 1-10 word turns."""
    from vad_turn.harness.metrics import roc_auc, same_silence_auc

    y, sil, nw = table["label"].to_numpy(), table["silence_s"].to_numpy(), table["n_words"].to_numpy()
    out = {}
    for name, m in (("all", np.ones(len(y), bool)), ("1-10 words", (nw >= 1) & (nw <= 10))):
        out[name] = {k: {"auc": roc_auc(y[m], p[m]), "same_silence_auc": same_silence_auc(p[m], sil[m], y[m]),
                         "n": int(m.sum()), "n_end": int(y[m].sum()),
                         "n_turns": int(table["turn_index"][m].nunique())} for k, p in scores.items()}
    return out


def paired_bootstrap(p_a: np.ndarray, p_b: np.ndarray, table, *, n_resamples: int = 200, seed: int = 0) -> dict:
    """Turn-level paired bootstrap of (a - b) over the examples of `table`
    (`vad_turn.harness.metrics.paired_auc_bootstrap` grouped by turn_index)."""
    from vad_turn.harness.metrics import paired_auc_bootstrap

    return paired_auc_bootstrap(p_a, p_b, table["label"].to_numpy(), table["silence_s"].to_numpy(),
                                table["turn_index"].to_numpy(), n_resamples=n_resamples, seed=seed)


def kv_step_latency_ms(llm, *, n_past: int = 96, n_new: int = 2, reps: int = 60, threads: int = 1) -> dict:
    """Wall ms of one decision's LM cost: a forward of `n_new` tokens (one new word) on a KV cache of
    `n_past` tokens, last hidden state out, at `threads` torch threads; {"p50_ms", "p90_ms", ...}."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        g = torch.Generator().manual_seed(0)
        past_ids = torch.randint(100, 20000, (1, n_past), generator=g)
        with torch.inference_mode():
            kv = llm._model.model(input_ids=past_ids, use_cache=True).past_key_values
            new = torch.randint(100, 20000, (1, n_new), generator=g)
            times = []
            for r in range(reps + 5):
                t0 = time.perf_counter()
                llm._model.model(input_ids=new, past_key_values=kv, use_cache=True)
                dt = time.perf_counter() - t0
                kv.crop(-n_new)  # drop the new word again: every rep steps from the same n_past cache
                if r >= 5:
                    times.append(dt * 1e3)
    finally:
        torch.set_num_threads(prev)
    return {**summary(times, (50, 90, 99), suffix="_ms"),
            "n_past_tokens": n_past, "n_new_tokens": n_new, "reps": reps, "threads": threads,
            "dtype": str(llm._model.dtype), "load_average": list(os.getloadavg())}


# ----------------------------------------------------------------------------- run


def run(cfg: ProbeConfig) -> dict:
    """Build the examples, extract the LM features, fit the probes, score the GRU and write `<out>/report.json`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from vad_turn.engines.llm.local import LocalLLM
    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.evaluate import EvalConfig
    from vad_turn.harness.examples import build_examples

    t0 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    ds = load_turns(cfg.dataset)
    ecfg = EvalConfig(transcript_lag_s=cfg.transcript_lag_s)
    common = dict(eval_cfg=ecfg, points_per_span=cfg.points_per_span, keep_queries=False)
    tr = build_examples(ds, "train", max_turns=cfg.train_turns, seed=cfg.seed, **common)
    va = build_examples(ds, "dev", max_turns=cfg.val_turns, seed=cfg.seed + 1, **common)
    n_before = {"train": len(tr), "val": len(va)}
    tr, va = cap_words(tr, cfg.max_words), cap_words(va, cfg.max_words)
    llm = LocalLLM(prefix_cache=False, quantize="bf16").load()
    torch.set_num_threads(cfg.threads)
    lag = f"lag{cfg.transcript_lag_s:g}-pps{cfg.points_per_span}-ctx{cfg.context_words}-max{cfg.max_words}"
    t1 = time.perf_counter()
    h_tr = hidden_features(tr, llm, cfg, f"train-{cfg.train_turns}-{cfg.seed}-{lag}")
    h_va = hidden_features(va, llm, cfg, f"dev-{cfg.val_turns}-{cfg.seed + 1}-{lag}")
    feat_s = time.perf_counter() - t1
    tm_tr, tm_va = timing_matrix(tr), timing_matrix(va)
    y_tr, groups = tr.labels, tr.table["turn_index"].to_numpy()
    scores, probes = {}, {}
    for name, (xtr, xva) in {"probe: hidden + timing": (np.hstack([h_tr, tm_tr]), np.hstack([h_va, tm_va])),
                             "probe: hidden only": (h_tr, h_va), "probe: timing only": (tm_tr, tm_va)}.items():
        model, losses = fit_probe(xtr, y_tr, groups, seed=cfg.seed)
        scores[name] = model.predict_proba(xva)[:, 1]
        probes[name] = {"C": float(model[-1].C), "heldout_log_loss_by_C": {str(k): v for k, v in losses.items()}}
    scores["shipped GRU (p_eot)"] = gru_p_eot(va)
    table = auc_rows(scores, va.table)
    nw = va.table["n_words"].to_numpy()
    gru = scores["shipped GRU (p_eot)"]
    boot = {}
    for sl, m in (("all", np.ones(len(nw), bool)), ("1-10 words", (nw >= 1) & (nw <= 10))):
        sub = va.table[m].reset_index(drop=True)
        boot[sl] = {k: paired_bootstrap(p[m], gru[m], sub, seed=cfg.seed) for k, p in scores.items() if p is not gru}
    va.table.assign(**{k: v for k, v in scores.items()}).to_parquet(cfg.out / "val_scores.parquet")
    latency = {"bf16": kv_step_latency_ms(llm, reps=cfg.latency_reps)}
    report = {"config": config_to_dict(cfg), "git_commit": git_commit(), "n_train_examples": len(tr),
              "n_train_turns": int(tr.table["turn_index"].nunique()),
              "n_examples_before_max_words": n_before, "n_val_examples": len(va), "n_val_turns": int(va.table["turn_index"].nunique()),
              "train_end_rate": float(y_tr.mean()), "val_end_rate": float(va.labels.mean()),
              "hidden_dim": int(h_tr.shape[1]), "probes": probes, "auc": table,
              "bootstrap_minus_gru": boot, "lm_step_latency": latency,
              "feature_wall_s": round(feat_s, 1), "total_wall_s": round(time.perf_counter() - t0, 1)}
    atomic_write_json(cfg.out / "report.json", report)
    print_table(report)
    return report


def print_table(report: dict) -> None:
    print(f"val: {report['n_val_examples']} examples of {report['n_val_turns']} turns; "
          f"train: {report['n_train_examples']} examples of {report['n_train_turns']} turns")
    print(f"{'slice':<12} {'model':<26} {'n':>6} {'n_turns':>7} {'AUC':>7} {'same-sil AUC':>13}")
    for sl, models in report["auc"].items():
        for name, r in models.items():
            print(f"{sl:<12} {name:<26} {r['n']:>6} {r['n_turns']:>7} {r['auc']:>7.4f} {r['same_silence_auc']:>13.4f}")
    print("probe - GRU, paired turn bootstrap (mean [95% interval]):")
    for sl, models in report["bootstrap_minus_gru"].items():
        for name, r in models.items():
            a, ss = r["auc_diff"], r["same_silence_auc_diff"]
            print(f"{sl:<12} {name:<26} AUC {a[0]:+.4f} [{a[1]:+.4f}, {a[2]:+.4f}]  "
                  f"same-sil AUC {ss[0]:+.4f} [{ss[1]:+.4f}, {ss[2]:+.4f}]")
    for k, v in report["lm_step_latency"].items():
        print(f"LM step ({k}, one new word = {v['n_new_tokens']} tokens on {v['n_past_tokens']} cached, "
              f"{v['threads']} thread): P50 {v['p50_ms']:.1f} ms, P90 {v['p90_ms']:.1f} ms, load {v['load_average']}")


def main(argv: list[str] | None = None) -> int:
    return config_main(ProbeConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/lm_probe.py")


if __name__ == "__main__":
    raise SystemExit(main())
