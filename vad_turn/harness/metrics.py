"""End-of-turn metrics from grid predictions: policy sweep, operating points, Pareto frontier, slices.

Definitions (eot-bench methodology; pinned by tests/test_metrics.py):

- Every kept silence span of a turn has detector scores p_eot on a grid t_k = k * grid_s
  (k = 0, 1, ...) of silence so far. Holds (label 0) are scored while t_k < the hold's duration,
  the end-of-turn span (label 1) up to the largest timeout.
- A policy (threshold, action_delay_s, timeout_s) fires in a span at the first grid time
  t_k >= action_delay_s with p_eot >= threshold, or at timeout_s, whichever comes first.
- A turn is falsely cut off when the policy fires in any of its kept holds (fire time < hold
  duration; a hold longer than the timeout is therefore always cut off). Its latency is the
  fire time in the end-of-turn span (timeout_s if the detector never fires), counted for every
  turn, cut off or not.
- False cut-off rate = turns cut off / turns; latency: mean, median and P90 over turns.

Slices: turn-level tags (turn_length_bin, backchannel_context, audio_condition, source) restrict
the turns. Span-level tags (pause_context, unit_punct) describe the word before a pause: for tag
v, the false cut-off rate is (turns where the policy fires in a hold tagged v) / (turns with at
least one kept hold tagged v), and the latency is averaged over turns whose end-of-turn span is
tagged v. Slice rows use the policy chosen on the whole set at each operating point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vad_turn.core.schema import turn_length_bin

TURN_SLICES = ("turn_length_bin", "backchannel_context", "audio_condition", "source")
SPAN_SLICES = ("pause_context", "unit_punct")
_EPS = 1e-6


@dataclass
class SpanTable:
    """Grid predictions grouped by span and turn (arrays aligned with `order`).

    order: (n_points,) row order of the predictions frame that sorts it by turn, span, time.
    silence_s: (n_points,) grid time within the span. span_offset / span_len: (n_spans,) where
    each span's points start and how many there are. span_turn: (n_spans,) turn index.
    span_dur_s: (n_spans,) true silence length. is_end: (n_spans,) end-of-turn span.
    turn_end_span: (n_turns,) index of each turn's end span. turns: per-turn slice tags.
    """

    order: np.ndarray
    silence_s: np.ndarray
    labels: np.ndarray
    span_offset: np.ndarray
    span_len: np.ndarray
    span_turn: np.ndarray
    span_dur_s: np.ndarray
    is_end: np.ndarray
    span_tags: pd.DataFrame
    turn_end_span: np.ndarray
    turns: pd.DataFrame
    grid_s: float

    @property
    def n_turns(self) -> int:
        return len(self.turn_end_span)


def build_span_table(preds: pd.DataFrame, grid_s: float) -> SpanTable:
    """Group a predictions frame (columns of `vad_turn.harness.evaluate.PREDICTION_COLUMNS`) into spans and turns.

    Raises ValueError when a turn lacks exactly one end-of-turn span (label 1, its last span) or
    the silence times are not on the regular grid k * grid_s.
    """
    if preds.empty:
        raise ValueError("no predictions to score (no turns were evaluated)")
    codes, _ = pd.factorize(preds["id"], sort=False)
    order = np.lexsort((preds["silence_dur"].to_numpy(), preds["span_index"].to_numpy(), codes))
    codes = codes[order]
    span_idx = preds["span_index"].to_numpy()[order]
    silence = preds["silence_dur"].to_numpy(dtype=np.float64)[order]
    labels = preds["label"].to_numpy(dtype=np.int64)[order]
    n = len(order)
    new_span = np.ones(n, dtype=bool)
    new_span[1:] = (codes[1:] != codes[:-1]) | (span_idx[1:] != span_idx[:-1])
    offset = np.flatnonzero(new_span)
    length = np.diff(np.append(offset, n))
    k = np.arange(n) - np.repeat(offset, length)
    if np.abs(silence - k * grid_s).max() > _EPS:
        bad = int(np.argmax(np.abs(silence - k * grid_s)))
        raise ValueError(f"predictions for {preds['id'].to_numpy()[order][bad]!r} are not on the {grid_s} s grid "
                         f"(silence {silence[bad]} s at grid index {k[bad]})")
    span_turn = codes[offset]
    is_end = labels[offset] == 1
    n_turns = int(codes.max()) + 1
    n_end = np.bincount(span_turn[is_end], minlength=n_turns)
    last_span = np.full(n_turns, -1)
    np.maximum.at(last_span, span_turn, np.arange(len(offset)))
    if (n_end != 1).any() or not is_end[last_span].all():
        bad = int(np.flatnonzero((n_end != 1) | ~is_end[last_span])[0])
        raise ValueError(f"turn {preds['id'].to_numpy()[order][offset[last_span[bad]]]!r} needs exactly one "
                         "end-of-turn span (label 1), its last span")
    first = preds.iloc[order[offset]].reset_index(drop=True)
    tag_cols = [c for c in SPAN_SLICES if c in first.columns]
    turn_first = first.iloc[np.flatnonzero(np.r_[True, span_turn[1:] != span_turn[:-1]])].reset_index(drop=True)
    turns = pd.DataFrame({"id": turn_first["id"].to_numpy()})
    n_words = turn_first["n_words"].to_numpy() if "n_words" in turn_first else np.zeros(n_turns, dtype=int)
    turns["n_words"] = n_words
    turns["turn_length_bin"] = [turn_length_bin(int(w)) for w in n_words]
    for c in TURN_SLICES[1:]:
        if c in turn_first:
            turns[c] = turn_first[c].astype(str).to_numpy()
    return SpanTable(
        order=order, silence_s=silence, labels=labels, span_offset=offset, span_len=length, span_turn=span_turn,
        span_dur_s=first["span_dur"].to_numpy(dtype=np.float64), is_end=is_end,
        span_tags=first[tag_cols].astype(str), turn_end_span=last_span, turns=turns, grid_s=float(grid_s),
    )


# ----------------------------------------------------------------------------- one policy


def _next_at_or_above(p: np.ndarray, threshold: float) -> np.ndarray:
    """(n_points + 1,) index of the first point at or after i with p >= threshold (n_points if none)."""
    n = len(p)
    idx = np.where(p >= threshold, np.arange(n), n)
    nxt = np.minimum.accumulate(idx[::-1])[::-1]
    return np.append(nxt, n)


def _delay_index(table: SpanTable, action_delay_s: float) -> int:
    """Grid index of the first grid time >= action_delay_s."""
    return int(np.ceil(action_delay_s / table.grid_s - _EPS))


def _detector_fire_s(table: SpanTable, nxt: np.ndarray, k0: int) -> np.ndarray:
    """(n_spans,) silence time at which the detector fires (at or after grid index k0); inf if never."""
    n = len(table.silence_s)
    valid = k0 < table.span_len
    j = np.where(valid, nxt[np.minimum(table.span_offset + k0, n)], n)
    fired = valid & (j < table.span_offset + table.span_len)
    return np.where(fired, table.silence_s[np.minimum(j, n - 1)], np.inf)


@dataclass
class PolicyOutcome:
    """Per-span and per-turn results of one policy. fire_s: (n_spans,) fire time (<= timeout);
    hold_cut: (n_spans,) the policy fired inside this hold; turn_cut / latency_s: (n_turns,)."""

    fire_s: np.ndarray
    hold_cut: np.ndarray
    turn_cut: np.ndarray
    latency_s: np.ndarray


def policy_outcome(table: SpanTable, p: np.ndarray, threshold: float, action_delay_s: float,
                   timeout_s: float) -> PolicyOutcome:
    """Apply one policy to every span. p: (n_points,) p_eot in `table.order` order."""
    x = _detector_fire_s(table, _next_at_or_above(p, threshold), _delay_index(table, action_delay_s))
    fire = np.minimum(x, timeout_s)
    hold_cut = ~table.is_end & (fire < table.span_dur_s - 1e-9)
    turn_cut = np.bincount(table.span_turn[hold_cut], minlength=table.n_turns) > 0
    return PolicyOutcome(fire, hold_cut, turn_cut, fire[table.turn_end_span])


# ----------------------------------------------------------------------------- sweep


def _sorted_quantile(y: np.ndarray, q: float) -> float:
    """Linear-interpolated quantile of an already sorted array (numpy's default method)."""
    pos = q * (len(y) - 1)
    lo = int(np.floor(pos))
    hi = min(lo + 1, len(y) - 1)
    return float(y[lo] + (pos - lo) * (y[hi] - y[lo]))


def sweep_policies(table: SpanTable, p: np.ndarray, thresholds, action_delays_s, timeouts_s) -> pd.DataFrame:
    """Metrics of every (threshold, action_delay_s, timeout_s) policy.

    Returns one row per policy: threshold, action_delay_s, timeout_s, n_turns, n_cutoff,
    false_cutoff_rate in [0, 1], mean/median/p90_latency_s (seconds after the true end of turn).
    """
    if not len(thresholds) or not len(action_delays_s) or not len(timeouts_s):
        raise ValueError("the sweep needs at least one threshold, action delay and timeout")
    hold = ~table.is_end
    hold_turn, hold_dur = table.span_turn[hold], table.span_dur_s[hold]
    rows, cache = [], {}
    for thr in thresholds:
        n_above = int(np.count_nonzero(p >= thr))
        if n_above in cache:  # the set {p >= thr} is nested in thr: same size => same set, same results
            rows += [(float(thr), *r[1:]) for r in cache[n_above]]
            continue
        nxt = _next_at_or_above(p, thr)
        first = len(rows)
        for delay in action_delays_s:
            x = _detector_fire_s(table, nxt, _delay_index(table, delay))
            hold_fired = np.isfinite(x[hold])
            end_sorted = np.sort(x[table.turn_end_span])
            for timeout in timeouts_s:
                cut = hold_fired | (timeout < hold_dur - 1e-9)
                n_cut = int(np.count_nonzero(np.bincount(hold_turn[cut], minlength=table.n_turns)))
                lat = np.minimum(end_sorted, timeout)
                rows.append((float(thr), float(delay), float(timeout), table.n_turns, n_cut, n_cut / table.n_turns,
                             float(lat.mean()), _sorted_quantile(lat, 0.5), _sorted_quantile(lat, 0.9)))
        cache[n_above] = rows[first:]
    return pd.DataFrame(rows, columns=["threshold", "action_delay_s", "timeout_s", "n_turns", "n_cutoff",
                                       "false_cutoff_rate", "mean_latency_s", "median_latency_s", "p90_latency_s"])


# ----------------------------------------------------------------------------- operating points


# The operating points every evaluation reports by default (the headline table's columns): the lowest false cut-off
# rate within each mean-latency budget ("fcr@lat<=0.3s") and the lowest mean latency within each false cut-off
# budget ("lat@fcr<=2%").
LATENCY_BUDGETS_S = (0.3, 0.6)
FALSE_CUTOFF_BUDGETS = (0.02, 0.05, 0.10)

_POLICY_KEYS = ("threshold", "action_delay_s", "timeout_s", "n_turns", "n_cutoff", "false_cutoff_rate",
                "mean_latency_s", "median_latency_s", "p90_latency_s")


def _op_name(kind: str, budget: float) -> str:
    return f"fcr@lat<={budget:g}s" if kind == "min_fcr_at_latency" else f"lat@fcr<={100 * budget:g}%"


def operating_points(sweep: pd.DataFrame, latency_budgets_s=LATENCY_BUDGETS_S,
                     false_cutoff_budgets=FALSE_CUTOFF_BUDGETS) -> list[dict]:
    """Best false cut-off rate at mean latency <= each budget, best mean latency at FCR <= each budget.

    Ties break towards the other metric, then P90 latency, timeout, delay and threshold (all
    ascending). An unreachable budget gives reachable=False and None for every policy field.
    """
    out = []
    for kind, budgets in (("min_fcr_at_latency", latency_budgets_s), ("min_latency_at_fcr", false_cutoff_budgets)):
        for b in budgets:
            if kind == "min_fcr_at_latency":
                ok = sweep[sweep["mean_latency_s"] <= b + 1e-9]
                keys = ["false_cutoff_rate", "mean_latency_s"]
            else:
                ok = sweep[sweep["false_cutoff_rate"] <= b + 1e-12]
                keys = ["mean_latency_s", "false_cutoff_rate"]
            op = {"name": _op_name(kind, b), "kind": kind, "budget": float(b), "reachable": not ok.empty}
            if ok.empty:
                op.update({k: None for k in _POLICY_KEYS})
            else:
                best = ok.sort_values(keys + ["p90_latency_s", "timeout_s", "action_delay_s", "threshold"],
                                      kind="mergesort").iloc[0]
                op.update({k: (int(best[k]) if k in ("n_turns", "n_cutoff") else float(best[k])) for k in _POLICY_KEYS})
            out.append(op)
    return out


def pareto_frontier(sweep: pd.DataFrame) -> pd.DataFrame:
    """Policies not dominated in (false_cutoff_rate, mean_latency_s), by increasing latency.

    A policy is kept when no other policy has both a lower-or-equal FCR and a lower-or-equal
    latency with one of them strictly lower; of identical points the first in tie order is kept.
    """
    s = sweep.sort_values(["mean_latency_s", "false_cutoff_rate", "timeout_s", "action_delay_s", "threshold"],
                          kind="mergesort")
    keep, best = [], np.inf
    for i, fcr in zip(s.index, s["false_cutoff_rate"].to_numpy()):
        if fcr < best - 1e-12:
            keep.append(i)
            best = fcr
    return s.loc[keep].reset_index(drop=True)


def ratio_to_baseline(op: dict, base: dict) -> float | None:
    """The optimised value of `op` divided by the baseline's at the same operating point.

    None when either side is unreachable or the baseline value is 0 (the ratio is undefined).
    """
    key = "false_cutoff_rate" if op["kind"] == "min_fcr_at_latency" else "mean_latency_s"
    a, b = op.get(key), base.get(key)
    if a is None or b is None or b == 0:
        return None
    return float(a) / float(b)


# ----------------------------------------------------------------------------- slices


def _slice_stats(table: SpanTable, out: PolicyOutcome | None, dim: str, value: str) -> dict:
    if dim in SPAN_SLICES:
        tags = table.span_tags[dim].to_numpy()
        hold_v = ~table.is_end & (tags == value)
        turns_v = np.unique(table.span_turn[hold_v])
        end_v = tags[table.turn_end_span] == value
        n_cut = None if out is None else int(np.unique(table.span_turn[hold_v & out.hold_cut]).size)
        n, lat_mask = int(turns_v.size), end_v
    else:
        mask = table.turns[dim].to_numpy() == value
        n = int(mask.sum())
        n_cut = None if out is None else int(np.count_nonzero(out.turn_cut & mask))
        lat_mask = mask
    n_lat = int(lat_mask.sum())
    return {
        "n_turns": n, "n_cutoff": n_cut,
        "false_cutoff_rate": None if (n_cut is None or n == 0) else n_cut / n,
        "n_turns_latency": n_lat,
        "mean_latency_s": None if (out is None or n_lat == 0) else float(out.latency_s[lat_mask].mean()),
    }


def slice_dimensions(table: SpanTable) -> list[str]:
    """The slice columns present: turn_length_bin always, unit_punct only where a corpus has marks."""
    dims = [d for d in TURN_SLICES if d in table.turns.columns]
    dims += [d for d in SPAN_SLICES if d in table.span_tags.columns]
    if "unit_punct" in dims and not (table.span_tags["unit_punct"] != "").any():
        dims.remove("unit_punct")
    return dims


def slice_rows(table: SpanTable, p: np.ndarray, p_base: np.ndarray, ops: list[dict], base_ops: list[dict]) -> list[dict]:
    """One row per (slice, value, operating point): the detector at its global policy and the
    baseline (VAD-only) at its own global policy for the same operating point, on the same turns."""
    rows = []
    for op, bop in zip(ops, base_ops):
        outs = []
        for o, pp in ((op, p), (bop, p_base)):
            outs.append(policy_outcome(table, pp, o["threshold"], o["action_delay_s"], o["timeout_s"])
                        if o["reachable"] else None)
        for dim in slice_dimensions(table):
            col = table.span_tags[dim] if dim in SPAN_SLICES else table.turns[dim]
            for value in sorted(col.unique()):
                det, base = _slice_stats(table, outs[0], dim, value), _slice_stats(table, outs[1], dim, value)
                rows.append({"slice": dim, "value": value, "operating_point": op["name"], **det,
                             "vad_only_n_cutoff": base["n_cutoff"],
                             "vad_only_false_cutoff_rate": base["false_cutoff_rate"],
                             "vad_only_mean_latency_s": base["mean_latency_s"]})
    return rows


def roc_auc(labels: np.ndarray, p: np.ndarray, one_class: float | None = float("nan")) -> float | None:
    """ROC AUC of scores p (n,) against 0/1 labels (n,): the one AUC of the workbench (sklearn's
    roc_auc_score). `one_class` (nan unless given, e.g. None) where the labels hold a single class."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    return one_class if len(np.unique(labels)) < 2 else float(roc_auc_score(labels, np.asarray(p)))


def diagnostics(labels: np.ndarray, p: np.ndarray) -> dict:
    """ROC AUC and average precision over all grid predictions (diagnostic only; None if one class)."""
    from sklearn.metrics import average_precision_score

    if len(np.unique(labels)) < 2:
        return {"auc": None, "ap": None, "n_points": int(len(labels))}
    return {"auc": roc_auc(labels, p), "ap": float(average_precision_score(labels, p)),
            "n_points": int(len(labels)), "positive_rate": float(np.mean(labels))}


def same_silence_auc(p_eot: np.ndarray, silence_s: np.ndarray, label: np.ndarray, max_silence_s: float = 1.0) -> float:
    """Mean over grid times t <= max_silence_s of the AUC of end-of-turn vs hold queries at silence t
    (weighted by the smaller class count at t).

    The policy compares p_eot at the same silence time, so this is the separation it can use
    (the pooled AUC also rewards merely learning that long silences end turns)."""
    aucs, weights = [], []
    t, y, p = np.round(np.asarray(silence_s, float), 6), np.asarray(label), np.asarray(p_eot)
    for v in np.unique(t[t <= max_silence_s + 1e-9]):
        m = t == v
        if 0 < y[m].sum() < m.sum():
            aucs.append(roc_auc(y[m], p[m]))
            weights.append(min(y[m].sum(), m.sum() - y[m].sum()))
    return float(np.average(aucs, weights=weights)) if aucs else float("nan")



def paired_auc_bootstrap(p_a: np.ndarray, p_b: np.ndarray, label: np.ndarray, silence_s: np.ndarray,
                         groups: np.ndarray, *, n_resamples: int = 200, seed: int = 0) -> dict:
    """Paired bootstrap of (a - b) in pooled ROC AUC and in `same_silence_auc`, resampling whole groups
    (turns or conversations) with replacement: {"auc_diff": [mean, lo, hi], "same_silence_auc_diff":
    [mean, lo, hi]} with the 95% percentile interval. Both scores see the same resamples."""
    from sklearn.metrics import roc_auc_score

    y, sil, groups = np.asarray(label), np.asarray(silence_s, float), np.asarray(groups)
    p_a, p_b = np.asarray(p_a), np.asarray(p_b)
    if not len(p_a) == len(p_b) == len(y) == len(sil) == len(groups):
        raise ValueError(f"paired bootstrap: {len(p_a)} / {len(p_b)} scores for {len(y)} queries (not the same split?)")
    keys = np.unique(groups)
    idx = {g: np.flatnonzero(groups == g) for g in keys}
    rng, d_auc, d_ss = np.random.default_rng(seed), [], []
    for _ in range(n_resamples):
        r = np.concatenate([idx[keys[k]] for k in rng.integers(0, len(keys), len(keys))])
        d_auc.append(roc_auc_score(y[r], p_a[r]) - roc_auc_score(y[r], p_b[r]))
        d_ss.append(same_silence_auc(p_a[r], sil[r], y[r]) - same_silence_auc(p_b[r], sil[r], y[r]))
    # a resample that draws no hold at all has no same-silence AUC (nan): the interval is over the others
    return {k: [float(np.nanmean(v)), float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]
            for k, v in (("auc_diff", d_auc), ("same_silence_auc_diff", d_ss))}
