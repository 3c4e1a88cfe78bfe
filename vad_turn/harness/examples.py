"""Training examples from turn-span datasets, through the evaluation harness's own causal queries.

An example is one harness query (`vad_turn.harness.evaluate.turn_queries`: the same grid, transcript
lag, hold filtering and audio prefix as evaluation) with its label: 1 in the end-of-turn span,
0 in a kept hold. Nothing here re-implements what a detector sees at time t; only which grid
points are kept (a seeded subsample per span) and which turns (a seeded sample, as the harness's
`--max-turns`) are chosen here.

    ex = build_examples(load_built("switchboard"), "train", points_per_span=4, max_turns=2000)
    ex.table            # one row per example: turn_index, turn_id, span_index, silence_s, label, ...
    ex.queries[i]       # the Query a detector would get (audio prefix, visible words, messages)
    ex.rows[ex.table.turn_index[i]]   # the turn's row dict (audio bytes dropped unless needed)
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from tqdm import tqdm

from vad_turn.core.schema import TurnRecord
from vad_turn.core.seeds import turn_seed

from .detectors import Query
from .evaluate import EvalConfig, select_turns, turn_queries

EXAMPLE_COLUMNS = ("turn_index", "turn_id", "span_index", "silence_s", "timestamp", "span_dur", "label", "n_seen",
                   "n_words", "pause_context", "unit_punct", "backchannel_context", "source", "audio_condition")


@dataclass(frozen=True)
class _Needs:
    """What `turn_queries` needs from a detector: whether to decode audio and collect words."""

    needs_audio: bool
    needs_words: bool
    name: str = "examples"


@dataclass
class Examples:
    """Examples of a set of turns.

    table: DataFrame, one row per example with EXAMPLE_COLUMNS (label int8 in {0, 1}; n_seen =
        number of words visible to the detector; silence_s = seconds of silence so far; span_dur =
        the span's true duration in s; turn_index indexes `rows` and `turn_ids`).
    queries: the harness Query of each row of `table` (None when built with keep_queries=False).
    rows: the turn row dicts, in turn_index order. turn_ids: their ids.
    """

    table: pd.DataFrame
    queries: list[Query] | None
    rows: list[dict]
    turn_ids: list[str]

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()


def _span_subsample(span_index: np.ndarray, k: int | None, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask keeping at most k grid points of each span (all when k is None), chosen uniformly."""
    keep = np.ones(span_index.size, dtype=bool)
    if k is None:
        return keep
    for s in np.unique(span_index):
        idx = np.flatnonzero(span_index == s)
        if idx.size > k:
            keep[idx] = False
            keep[rng.choice(idx, size=k, replace=False)] = True
    return keep


def turn_examples(row: dict | TurnRecord, eval_cfg: EvalConfig, *, needs_audio: bool = False,
                  needs_words: bool = True, points_per_span: int | None = None,
                  seed: int = 0) -> tuple[list[Query], dict]:
    """The examples of one turn: (queries, meta arrays) as `turn_queries` makes them, subsampled.

    meta holds per-query arrays: span_index, timestamp, silence_dur (s), label (1 = end span),
    span_dur (s), n_seen (visible words), plus the harness's slice tags. With `points_per_span`,
    at most that many grid points per span are kept (seeded by `seed` and the turn id).
    """
    if points_per_span is not None and points_per_span < 1:
        raise ValueError(f"points_per_span must be >= 1 or None, got {points_per_span}")
    queries, meta = turn_queries(row, _Needs(needs_audio, needs_words), eval_cfg)
    rid = row.id if isinstance(row, TurnRecord) else row["id"]
    keep = _span_subsample(meta["span_index"], points_per_span, np.random.default_rng(turn_seed(seed, rid)))
    meta = {k: v[keep] for k, v in meta.items()}
    queries = [q for q, k in zip(queries, keep) if k]
    meta["n_seen"] = np.array([len(q.words) for q in queries], dtype=np.int32)
    return queries, meta


def build_examples(ds, split: str | None, *, eval_cfg: EvalConfig | None = None, max_turns: int | None = None,
                   seed: int = 0, points_per_span: int | None = None, needs_audio: bool = False,
                   needs_words: bool = True, keep_queries: bool = True, progress: bool = True) -> Examples:
    """Examples of the turns of `split` in `ds` (a `load_turns` dataset or a list of TurnRecords/rows).

    Turns are selected as the harness selects them (`select_turns`: split, then a seeded sample of
    `max_turns` with `seed`); queries use `eval_cfg`'s grid, transcript lag and hold range
    (default: the harness defaults). Audio is decoded only when `needs_audio`.
    """
    base = eval_cfg or EvalConfig()
    cfg = replace(base, split=split, max_turns=max_turns, seed=seed)
    rows, ids = select_turns(ds, cfg, needs_audio=needs_audio)
    rows = _as_dicts(rows, needs_audio)
    metas, queries = [], []
    it: Iterable = tqdm(rows, desc=f"examples {split}", unit="turn", mininterval=2.0, disable=not progress)
    for ti, row in enumerate(it):
        q, m = turn_examples(row, cfg, needs_audio=needs_audio, needs_words=needs_words,
                             points_per_span=points_per_span, seed=seed)
        m["turn_index"] = np.full(len(q), ti, dtype=np.int64)
        metas.append(m)
        if keep_queries:
            queries.extend(q)
    if not metas:
        raise ValueError(f"no turns of split {split!r} to build examples from")
    table = pd.DataFrame({
        "turn_index": np.concatenate([m["turn_index"] for m in metas]),
        "turn_id": np.concatenate([m["id"] for m in metas]),
        "span_index": np.concatenate([m["span_index"] for m in metas]).astype(np.int32),
        "silence_s": np.concatenate([m["silence_dur"] for m in metas]).astype(np.float64),
        "timestamp": np.concatenate([m["timestamp"] for m in metas]).astype(np.float64),
        "span_dur": np.concatenate([m["span_dur"] for m in metas]).astype(np.float64),
        "label": np.concatenate([m["label"] for m in metas]).astype(np.int8),
        "n_seen": np.concatenate([m["n_seen"] for m in metas]),
        **{c: np.concatenate([m[c] for m in metas]) for c in EXAMPLE_COLUMNS[8:]},
    })
    table["backchannel_context"] = table["backchannel_context"].astype(bool)
    return Examples(table=table, queries=queries if keep_queries else None, rows=rows, turn_ids=list(ids))


def _as_dicts(rows, needs_audio: bool) -> list[dict]:
    """Row dicts (a datasets.Dataset read once, audio column dropped when not needed)."""
    if isinstance(rows, list):
        return [r.to_row() if isinstance(r, TurnRecord) else r for r in rows]
    if not needs_audio and "audio" in rows.column_names:
        rows = rows.remove_columns("audio")
    return rows.to_list()


def split_turn_ids(examples: Examples) -> list[str]:
    """The ids of the turns the examples come from (for a run folder's split_ids.json)."""
    return list(examples.turn_ids)


def class_balance(labels: Sequence[int]) -> dict:
    """{"n": examples, "n_end": label-1 examples, "end_rate": fraction} of a label array."""
    y = np.asarray(labels)
    return {"n": int(y.size), "n_end": int((y == 1).sum()), "end_rate": float(y.mean()) if y.size else float("nan")}
