"""End-of-turn evaluation: causal scoring of a detector on a turn-span dataset, then the policy sweep.

Causal scoring (eot-bench methodology): for every kept silence span of every turn the detector is
queried at t = span.start + k * grid_s, k = 0, 1, ...: in a hold while t < span.end, in the
end-of-turn span while k * grid_s < the largest timeout of the sweep. At time t it sees only
audio[:round(t * SAMPLE_RATE_HZ)] (zero-padded past the row's audio: the user stays silent after the end
of turn) and only the words that ended at least `transcript_lag_s` before t. Holds are kept when
`min_hold_s` <= duration <= `max_hold_s`; the end span is always kept. The grid predictions go
to `predictions.parquet`, and `vad_turn.harness.metrics` turns them into false cut-off rates and latencies.

`vad-turn evaluate --dataset data/built/switchboard --split val --detector vad-only`
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from tqdm import tqdm

from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes, seconds_to_samples
from vad_turn.core.config import config_to_dict, default_built_root, default_runs_root, require_range
from vad_turn.core.model_files import sha256_file
from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_text
from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S, TurnRecord, row_messages, row_spans, row_words
from vad_turn.core.seeds import seeded_sample

from . import metrics as M
from .detectors import Detector, Query, check_detector_spec, make_detector, parse_detector_opts, predict_many
from .query import QUERY_GRID_S, detector_query

PREDICTION_COLUMNS = ("id", "span_index", "timestamp", "silence_dur", "p_eot", "label", "span_dur", "pause_context",
                      "unit_punct", "source", "audio_condition", "backchannel_context", "n_words")
_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.98,)
_DELAYS_S = tuple(round(0.1 * i, 1) for i in range(30))


@dataclass(frozen=True)
class EvalConfig:
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                          metadata={"help": "turn-span dataset folder (written by write_turns / build-data)"})
    split: str | None = field(default="val", metadata={"help": "evaluate rows of this split ('none': all rows)"})
    detector: str = field(default="vad-only", metadata={"help": "registered detector name or 'package.module:Class'"})
    detector_opts: tuple[str, ...] = field(default=(), metadata={"help": "key=value options for the detector factory"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={"help": "words are visible this long after they end"})
    grid_s: float = field(default=QUERY_GRID_S, metadata={"help": "query grid step inside each silence span"})
    min_hold_s: float = field(default=0.2, metadata={"help": "shortest hold (within-turn pause) kept"})
    max_hold_s: float = field(default=5.0, metadata={"help": "longest hold kept"})
    thresholds: tuple[float, ...] = field(default=_THRESHOLDS, metadata={"help": "p_eot thresholds swept"})
    action_delays_s: tuple[float, ...] = field(default=_DELAYS_S, metadata={"help": "minimum silence before acting"})
    timeouts_s: tuple[float, ...] = field(default=(1.0, 1.5, 2.0, 2.5, 3.0),
                                          metadata={"help": "maximum silence before ending the turn anyway"})
    latency_budgets_s: tuple[float, ...] = field(default=M.LATENCY_BUDGETS_S, metadata={
        "help": "mean-latency operating points"})
    false_cutoff_budgets: tuple[float, ...] = field(default=M.FALSE_CUTOFF_BUDGETS, metadata={
        "help": "FCR operating points"})
    max_turns: int | None = field(default=None, metadata={"help": "evaluate a seeded random sample of this many turns"})
    seed: int = field(default=0, metadata={"help": "seed of the max_turns sample"})
    batch_size: int = field(default=256, metadata={"help": "queries per predict_batch call"})
    chunk_turns: int = field(default=500, metadata={"help": "turns per resumable predictions part"})
    checkpoint_s: float = field(default=60.0, metadata={
        "help": "also write a resumable predictions part after this many seconds of scoring"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/eval-<dataset>-<detector>-<time>)"})

    def __post_init__(self) -> None:
        """Every option is checked here, before any data is read or any folder written."""
        require_range("thresholds", self.thresholds, 0.0, 1.0)
        require_range("action_delays_s", self.action_delays_s, 0.0, 60.0)
        require_range("timeouts_s", self.timeouts_s, 0.0, 60.0, lo_open=True)
        require_range("latency_budgets_s", self.latency_budgets_s, 0.0, 60.0, lo_open=True)
        require_range("false_cutoff_budgets", self.false_cutoff_budgets, 0.0, 1.0)
        require_range("grid_s", self.grid_s, 0.0, 10.0, lo_open=True)
        require_range("transcript_lag_s", self.transcript_lag_s, 0.0, 10.0)
        require_range("checkpoint_s", self.checkpoint_s, 0.0, 86400.0, lo_open=True)
        require_range("min_hold_s", self.min_hold_s, 0.0, 60.0)
        require_range("max_hold_s", self.max_hold_s, self.min_hold_s, 60.0)
        if self.batch_size < 1 or self.chunk_turns < 1:
            raise ValueError(f"--batch-size and --chunk-turns must be >= 1, got {self.batch_size}, {self.chunk_turns}")
        if self.max_turns is not None and self.max_turns < 1:
            raise ValueError(f"--max-turns must be >= 1 (or none for all), got {self.max_turns}")
        # A (delay, timeout) pair with delay > timeout is the timeout alone (the grid keeps it); a sweep with no
        # other pair never lets the detector act.
        if min(self.action_delays_s) > max(self.timeouts_s) + 1e-9:
            raise ValueError(f"--action-delays-s {min(self.action_delays_s):g} must be <= the largest --timeouts-s "
                             f"{max(self.timeouts_s):g}: the detector cannot act after the turn has already ended")
        check_detector_spec(self.detector, "--detector")


# ----------------------------------------------------------------------------- spans and queries


def kept_span_indices(spans, cfg: EvalConfig) -> list[int]:
    """Indices of the spans scored: holds with min_hold_s <= duration <= max_hold_s, and the last (end) span."""
    last = len(spans) - 1
    return [i for i, s in enumerate(spans)
            if i == last or cfg.min_hold_s - 1e-6 <= s.end - s.start <= cfg.max_hold_s + 1e-6]


def n_grid_points(duration_s: float, is_end: bool, cfg: EvalConfig) -> int:
    """Number of grid points k * grid_s < limit (the hold's duration, or the largest timeout)."""
    limit = max(cfg.timeouts_s) if is_end else duration_s
    return max(int(np.ceil(limit / cfg.grid_s - 1e-6)), 0)


def hold_counts(rows: Iterable[dict], cfg: EvalConfig) -> dict:
    """How many holds the dataset has, and how many were dropped as too short / too long."""
    n = short = long_ = turns = 0
    for row in rows:
        turns += 1
        for s in row_spans(row)[:-1]:
            d = s.end - s.start
            n += 1
            short += d < cfg.min_hold_s - 1e-6
            long_ += d > cfg.max_hold_s + 1e-6
    return {"n_turns": turns, "n_holds": n, "n_holds_kept": n - short - long_, "n_holds_too_short": short,
            "n_holds_too_long": long_}


def turn_queries(row: dict, detector: Detector, cfg: EvalConfig) -> tuple[list[Query], dict]:
    """The queries of one turn (see the module docstring) and their prediction-row metadata.

    `detector` only needs `needs_audio` / `needs_words`; training examples
    (`vad_turn.harness.examples`) are built through this very function, so they match evaluation.
    """
    if isinstance(row, TurnRecord):
        row = row.to_row()
    spans, words, messages = row_spans(row), row_words(row), tuple(row_messages(row))
    if not spans:
        raise ValueError(f"turn {row['id']}: no silence spans (a turn needs at least its end-of-turn span)")
    keep = kept_span_indices(spans, cfg)
    audio = None
    if detector.needs_audio and row.get("audio") and row["audio"].get("bytes"):
        a = decode_audio_bytes(row["audio"]["bytes"], source=f"turn {row['id']} audio")
        need = seconds_to_samples(spans[-1].start + max(cfg.timeouts_s), SAMPLE_RATE_HZ) + 1
        audio = np.zeros(max(need, a.size), dtype=np.float32)
        audio[: a.size] = a
        audio.flags.writeable = False
    ends = np.array([w.end for w in words], dtype=np.float64)
    # Word ends are in time order in every corpus, so the visible words are a prefix found by bisection
    # (O(log n) per query instead of a scan); out-of-order ends fall back to the scan, same result.
    # What each query shows is `query.detector_query`'s, the function the live pipeline calls too.
    ends_sorted = bool(np.all(np.diff(ends) >= 0))
    queries, meta = [], {c: [] for c in ("span_index", "timestamp", "silence_dur", "label", "span_dur")}
    word_ends = ends if ends_sorted else None
    for i in keep:
        s, is_end = spans[i], i == len(spans) - 1
        sil = np.round(np.arange(n_grid_points(s.end - s.start, is_end, cfg)) * cfg.grid_s, 9)
        for silence_s in sil:
            queries.append(detector_query(audio, words, messages, s.start + float(silence_s), float(silence_s),
                                          transcript_lag_s=cfg.transcript_lag_s, needs_audio=audio is not None,
                                          needs_words=detector.needs_words, word_ends=word_ends))
        meta["span_index"].append(np.full(sil.size, i))
        meta["timestamp"].append(s.start + sil)
        meta["silence_dur"].append(sil)
        meta["label"].append(np.full(sil.size, int(is_end)))
        meta["span_dur"].append(np.full(sil.size, s.end - s.start))
    meta = {k: np.concatenate(v) for k, v in meta.items()}
    n = len(queries)
    pause = list(row.get("pause_context") or ["none"] * len(spans))
    punct = list(row.get("unit_punct") or [""] * len(spans))
    meta["pause_context"] = np.array([pause[i] for i in meta["span_index"]], dtype=object)
    meta["unit_punct"] = np.array([punct[i] for i in meta["span_index"]], dtype=object)
    for col, default in (("source", ""), ("audio_condition", "text"), ("backchannel_context", False)):
        value = row.get(col)
        meta[col] = np.full(n, default if value is None else value, dtype=object)
    meta["n_words"] = np.full(n, len(words))
    meta["id"] = np.full(n, row["id"], dtype=object)
    return queries, meta


_turn_queries = turn_queries  # the former private name


def score_turns(rows: Iterable[dict | TurnRecord], detector: Detector, cfg: EvalConfig, *, total: int | None = None,
                on_chunk: Callable[[pd.DataFrame], None] | None = None) -> pd.DataFrame:
    """Query `detector` causally on every kept span of `rows`; return the grid predictions.

    Returns a frame with PREDICTION_COLUMNS, one row per query (p_eot in [0, 1], label 1 in the
    end-of-turn span). Every `cfg.chunk_turns` turns, or `cfg.checkpoint_s` seconds, the finished
    chunk goes to `on_chunk`.
    """
    chunks, metas, pending, scores = [], [], [], []
    n_in_chunk, chunk_t0 = 0, time.monotonic()

    def flush_queries():
        if pending:
            scores.append(predict_many(detector, pending))
            pending.clear()

    def flush_chunk():
        flush_queries()
        if not metas:
            return
        df = pd.DataFrame({c: np.concatenate([m[c] for m in metas]) for c in PREDICTION_COLUMNS if c != "p_eot"})
        df.insert(4, "p_eot", np.concatenate(scores) if scores else np.zeros(0))
        df["backchannel_context"] = df["backchannel_context"].astype(bool)
        chunks.append(df)
        metas.clear()
        scores.clear()
        if on_chunk is not None:
            on_chunk(df)

    for row in tqdm(rows, total=total, desc=f"scoring {detector.name}", unit="turn", mininterval=2.0):
        q, meta = turn_queries(row, detector, cfg)
        pending.extend(q)
        metas.append(meta)
        if len(pending) >= cfg.batch_size:
            flush_queries()
        n_in_chunk += 1
        if n_in_chunk >= cfg.chunk_turns or time.monotonic() - chunk_t0 >= cfg.checkpoint_s:
            flush_chunk()  # a part every chunk_turns turns or checkpoint_s seconds: an interrupt loses less
            n_in_chunk, chunk_t0 = 0, time.monotonic()
    flush_chunk()
    if not chunks:
        return pd.DataFrame({c: [] for c in PREDICTION_COLUMNS})
    return pd.concat(chunks, ignore_index=True)


# ----------------------------------------------------------------------------- selection and metrics


_SPLIT_ALIASES = {"val": ("dev", "validation"), "dev": ("val", "validation"), "validation": ("val", "dev")}


def resolve_split(split: str | None, available) -> str | None:
    """The split name to use: `split` itself, or its alias when the data names it differently
    ("val" <-> "dev" <-> "validation"; e.g. Switchboard's val.txt list is built as split "dev")."""
    available = {a for a in available if a is not None}
    if split is None or split in available or not available:
        return split
    for alias in _SPLIT_ALIASES.get(split, ()):
        if alias in available:
            return alias
    return split


def _row_splits(ds) -> list:
    if isinstance(ds, (list, tuple)):
        return [r.split if isinstance(r, TurnRecord) else r.get("split") for r in ds]
    return list(ds["split"]) if "split" in ds.column_names else [None] * len(ds)


def select_turns(ds, cfg: EvalConfig, *, needs_audio: bool = True):
    """The rows to evaluate: `cfg.split` (if the data has splits), then a seeded sample of `max_turns`.

    ds: a dataset from `load_turns`, or a list of TurnRecord / row dicts. Returns (rows, ids);
    rows is a dataset (audio column dropped when not needed) or a list of row dicts.
    """
    is_list = isinstance(ds, (list, tuple))
    if is_list:
        ds = [r.to_row() if isinstance(r, TurnRecord) else r for r in ds]
    splits = _row_splits(ds)
    split = resolve_split(cfg.split, set(splits))
    idx = list(range(len(splits)))
    if split is not None and any(s is not None for s in splits):
        idx = [i for i in idx if splits[i] == split]
        if not idx:
            raise ValueError(f"no rows of split {cfg.split!r}; the data has splits {sorted(set(map(str, splits)))}")
    if cfg.max_turns is not None and cfg.max_turns < len(idx):
        idx = [idx[j] for j in seeded_sample(len(idx), cfg.max_turns, cfg.seed)]
    if is_list:
        rows = [ds[i] for i in idx]
        ids = [r["id"] for r in rows]
    else:
        rows = ds.select(idx)
        if not needs_audio and "audio" in rows.column_names:
            rows = rows.remove_columns("audio")
        ids = list(rows["id"])
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"turn ids must be unique, {dup!r} occurs more than once")
    return rows, ids


def policy_sweeps(preds: pd.DataFrame, cfg: EvalConfig) -> tuple[M.SpanTable, np.ndarray, pd.DataFrame, pd.DataFrame]:
    """(span table, p_eot in its order, the detector's sweep, VAD-only's sweep on the same spans) over `cfg`'s
    thresholds, action delays and timeouts."""
    table = M.build_span_table(preds, cfg.grid_s)
    p = preds["p_eot"].to_numpy(dtype=np.float64)[table.order]
    args = (cfg.thresholds, cfg.action_delays_s, cfg.timeouts_s)
    return table, p, M.sweep_policies(table, p, *args), M.sweep_policies(table, np.ones_like(p), *args)


def compute_metrics(preds: pd.DataFrame, cfg: EvalConfig, detector_name: str,
                    split: str | None = None) -> tuple[dict, pd.DataFrame]:
    """Sweep, operating points, Pareto frontiers and slices for the detector and VAD-only on the
    same grid. Returns (metrics dict, sweep frame with a `detector` column). `split`: the split
    name actually evaluated (default cfg.split)."""
    table, p, sweep, sweep_vad = policy_sweeps(preds, cfg)
    p_vad = np.ones_like(p)
    ops = M.operating_points(sweep, cfg.latency_budgets_s, cfg.false_cutoff_budgets)
    vad_ops = M.operating_points(sweep_vad, cfg.latency_budgets_s, cfg.false_cutoff_budgets)
    for op, vop in zip(ops, vad_ops):
        op["vad_only"] = vop
        op["ratio_to_vad_only"] = M.ratio_to_baseline(op, vop)
    metrics = {
        "detector": detector_name, "dataset": str(cfg.dataset), "split": split or cfg.split,
        "counts": {"n_turns": table.n_turns, "n_spans_scored": int(len(table.span_offset)),
                   "n_holds_scored": int((~table.is_end).sum()), "n_points": int(len(p))},
        "operating_points": ops,
        "pareto": {"detector": M.pareto_frontier(sweep).to_dict("records"),
                   "vad_only": M.pareto_frontier(sweep_vad).to_dict("records")},
        "diagnostics": M.diagnostics(table.labels, p),
        "slices": M.slice_rows(table, p, p_vad, ops, vad_ops),
        "definitions": M.__doc__.strip(),
    }
    both = pd.concat([sweep.assign(detector=detector_name), sweep_vad.assign(detector="vad-only")], ignore_index=True)
    return metrics, both


def check_detector_lag(detector: Detector, cfg: EvalConfig) -> None:
    """Tell a detector trained for a transcript lag the harness's (its optional
    `check_transcript_lag(lag_s)`, e.g. the lexical model's: warns or raises on a mismatch)."""
    check = getattr(detector, "check_transcript_lag", None)
    if callable(check):
        check(cfg.transcript_lag_s)


def evaluate_detector(ds, detector: Detector, cfg: EvalConfig) -> dict:
    """Score `detector` on `ds` (a load_turns dataset or a list of TurnRecords) and compute the metrics.

    Returns {"metrics": dict (as in metrics.json), "predictions": DataFrame, "sweep": DataFrame,
    "ids": evaluated turn ids}.
    """
    check_detector_lag(detector, cfg)
    rows, ids = select_turns(ds, cfg, needs_audio=detector.needs_audio)
    preds = score_turns(rows, detector, cfg, total=len(ids))
    metrics, sweep = compute_metrics(preds, cfg, detector.name, resolve_split(cfg.split, set(_row_splits(ds))))
    metrics["counts"].update(hold_counts(_span_rows(rows), cfg))
    return {"metrics": metrics, "predictions": preds, "sweep": sweep, "ids": ids}


def _span_rows(rows):
    return rows.select_columns(["silence_spans"]) if hasattr(rows, "select_columns") else rows


# ----------------------------------------------------------------------------- run folder


def _default_out(cfg: EvalConfig) -> Path:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(cfg.dataset).name}-{cfg.detector}")
    return default_runs_root() / f"eval-{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def eval_model_fingerprint(cfg: EvalConfig) -> str | None:
    """Digest of every model file an evaluation with `cfg` reads (written to the run's model_fingerprint.txt):
    `detector_fingerprint` of its detector and --detector-opts."""
    return detector_fingerprint(cfg.detector, parse_detector_opts(cfg.detector_opts))


def detector_fingerprint(detector: str, opts: dict) -> str | None:
    """Digest of every model file `detector` built with `opts` reads, or None when it reads none of its own
    (vad-only, smart-turn's pinned file): its shipped model's `operating_points.shipped_model_fingerprint` (the
    files its model folders' checksums.json list), and each file or folder named by an option value, combined."""
    from .operating_points import is_shipped, shipped_model_fingerprint

    parts = [shipped_model_fingerprint(detector)[0]] if is_shipped(detector) else []
    for v in opts.values():
        if isinstance(v, str) and Path(v).exists():
            p = Path(v)
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            parts.append(hashlib.sha256("".join(f"{f.name}:{sha256_file(f)};" for f in files).encode()).hexdigest())
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else hashlib.sha256(";".join(parts).encode()).hexdigest()


def _ran_with(out: Path, cfg: EvalConfig) -> bool:
    """Whether the run folder `out` was written with this config (the folder named relative or
    absolute counts as the same) and the same model files (`eval_model_fingerprint`, in model_fingerprint.txt)."""
    path = out / "config.json"
    if not path.exists():
        return False
    from .operating_points import evaluated_fingerprint

    fp = eval_model_fingerprint(cfg)
    if fp is not None and evaluated_fingerprint(out) != fp:
        return False

    def same_place(d: dict) -> dict:
        return {**d, "out": str(Path(d["out"]).resolve()) if d.get("out") else d.get("out")}

    return same_place(json.loads(path.read_text())) == same_place({"type": type(cfg).__name__, **config_to_dict(cfg)})


def _finished_metrics(out: Path, cfg: EvalConfig) -> dict | None:
    """metrics.json of a run that finished in `out` with exactly this config (None otherwise)."""
    if (out / "predictions.parts").exists() or not all((out / n).exists() for n in ("metrics.json", "predictions.parquet")):
        return None
    return json.loads((out / "metrics.json").read_text()) if _ran_with(out, cfg) else None


def _load_parts(out: Path, cfg: EvalConfig) -> list[pd.DataFrame]:
    """Predictions parts of an interrupted run in `out` (only when its config matches)."""
    parts_dir = out / "predictions.parts"
    if not parts_dir.exists():
        return []
    if not _ran_with(out, cfg):
        raise ValueError(f"{out}: holds an interrupted run with a different config; use another --out")
    return [pd.read_parquet(p) for p in sorted(parts_dir.glob("part-*.parquet"))]


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)


def write_scored_run(out: Path, cfg: EvalConfig, preds: pd.DataFrame, detector_name: str, split: str | None, *,
                     span_rows=None, ids: list[str] | None = None, extra_metrics: dict | None = None) -> dict:
    """Write a finished evaluation run folder from scored predictions: config.json, commit.txt,
    split_ids.json, predictions.parquet, sweep.parquet, report.md, pareto.png and metrics.json.

    The one writer behind `run` and every tool that scores turns another way (k-fold, cross-fit, refit,
    mixes of finished runs), so their folders read alike. span_rows: the dataset rows (with
    `silence_spans`) whose hold counts go into metrics["counts"]; ids: the turn ids in evaluation order
    (default: the predictions' ids, sorted); extra_metrics: keys added to metrics.json. Returns the metrics.
    """
    from .report import write_report

    out = Path(out)
    metrics, sweep = compute_metrics(preds, cfg, detector_name, split)
    if span_rows is not None:
        metrics["counts"].update(hold_counts(span_rows, cfg))
    metrics.update(extra_metrics or {})
    rf = RunFolder(out, cfg)
    rf.write_split_ids({split or "all": list(ids) if ids is not None else sorted(preds["id"].unique())})
    _write_parquet(preds, rf.file("predictions.parquet"))
    _write_parquet(sweep, rf.file("sweep.parquet"))
    write_report(out, metrics, sweep, cfg)
    rf.write_metrics(metrics)
    return metrics


def run(cfg: EvalConfig) -> dict:
    """Evaluate `cfg.detector` on `cfg.dataset` into a run folder; print the operating-point table.

    Writes config.json, commit.txt, split_ids.json, predictions.parquet, sweep.parquet,
    metrics.json, report.md and pareto.png. Rerunning with the same --out resumes scoring, and
    returns a finished run's metrics without scoring again when its config is the same.
    """
    from vad_turn.data.dataset import load_turns

    from .report import format_table

    out = Path(cfg.out) if cfg.out is not None else _default_out(cfg)
    finished = _finished_metrics(out, cfg)
    if finished is not None:  # the same evaluation already ran to the end here: nothing to score again
        print(f"{out}: already evaluated with this config (delete the folder to score again)")
        return finished
    parts = _load_parts(out, cfg)
    detector = make_detector(cfg.detector, **parse_detector_opts(cfg.detector_opts))
    check_detector_lag(detector, cfg)
    ds = load_turns(cfg.dataset)
    rows, ids = select_turns(ds, cfg, needs_audio=detector.needs_audio)
    if not ids:  # before the run folder exists: nothing partial is left behind
        raise ValueError(f"no turns to evaluate in {cfg.dataset} (split {cfg.split!r}"
                         + (", turns with audio" if detector.needs_audio else "") + ")")
    split = resolve_split(cfg.split, set(_row_splits(ds)))
    if split != cfg.split:
        print(f"split {cfg.split!r} is named {split!r} in {cfg.dataset}")
    rf = RunFolder(out, cfg)
    rf.write_split_ids({split or "all": ids})
    if (fp := eval_model_fingerprint(cfg)) is not None:
        atomic_write_text(out / "model_fingerprint.txt", fp + "\n")
    parts_dir = out / "predictions.parts"
    parts_dir.mkdir(exist_ok=True)
    done = set().union(*(set(p["id"].unique()) for p in parts)) if parts else set()
    todo = [i for i, x in enumerate(ids) if x not in done]
    todo_rows = [rows[i] for i in todo] if isinstance(rows, list) else rows.select(todo)

    def write_part(df: pd.DataFrame) -> None:
        _write_parquet(df, parts_dir / f"part-{len(parts):05d}.parquet")
        parts.append(df)

    if done:
        print(f"resuming {out}: {len(done)} of {len(ids)} turns already scored")
    score_turns(todo_rows, detector, cfg, total=len(todo), on_chunk=write_part)
    preds = pd.concat(parts, ignore_index=True) if parts else score_turns([], detector, cfg)
    metrics = write_scored_run(out, cfg, preds, detector.name, split, span_rows=_span_rows(rows), ids=ids)
    shutil.rmtree(parts_dir)
    print(format_table(metrics))
    print(f"run folder: {out}")
    return metrics
