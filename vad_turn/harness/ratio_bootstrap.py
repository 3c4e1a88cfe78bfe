"""Paired bootstrap 95% intervals of a detector's ratio to VAD-only at each operating point.

Method (used by `vad-turn headline`): the unit of resampling is the conversation (AMI meeting,
Switchboard conversation, SBCSAE recording, GetGoing call), since turns of one conversation are not
independent. For every policy of the sweep (threshold, action_delay_s, timeout_s) and every turn,
the harness's definitions (`vad_turn.harness.metrics`) give whether the turn is falsely cut off and its
latency; these per-turn outcomes are computed once, for the detector and for VAD-only on the same
spans. A resample draws as many conversations as the set has, with replacement; turn i then has
weight w_i = how often its conversation was drawn, and every policy's false cut-off rate and mean
latency are weighted means over turns (a matrix product W @ outcomes for all resamples at once). The
operating points are re-optimised in each resample - min FCR at mean latency <= budget, min mean
latency at FCR <= budget - for the detector and VAD-only alike, and the ratio is taken within the
resample (paired: both see the same conversations). The interval is the 2.5 / 97.5 percentile of
the ratios over resamples where it is defined (both sides reachable, VAD-only's value > 0). The
optimised value is a minimum, so it does not depend on the tie-break of `metrics.operating_points`.
With all weights 1 this reproduces `metrics.sweep_policies` exactly (pinned by a test).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from . import metrics as M


def conversation_of(turn_id: str) -> str:
    """A turn id's conversation: its prefix up to the first '-' ('sw4637-0000-B' -> 'sw4637', AMI
    'trn00-0000-X' -> 'trn00', GetGoing '<call uuid>-000-caller' -> the call uuid). Used when the
    dataset's `conversation` column is not at hand. Ids of the form '<corpus>:<dialogue>#<turn>' (agent-text,
    agent-holds, renders of them with a '+8k' suffix) give '<corpus>:<dialogue>'."""
    turn_id = str(turn_id)
    if "#" in turn_id:
        return turn_id.rsplit("#", 1)[0]
    return turn_id.split("-", 1)[0]


def policy_grid(thresholds, action_delays_s, timeouts_s) -> np.ndarray:
    """(n_policies, 3) threshold, action_delay_s, timeout_s in `weighted_sweep`'s order."""
    return np.array([(t, d, o) for t in thresholds for d in action_delays_s for o in timeouts_s], dtype=np.float64)


def weighted_sweep(table: M.SpanTable, p: np.ndarray, weights: np.ndarray, thresholds, action_delays_s,
                   timeouts_s) -> tuple[np.ndarray, np.ndarray]:
    """False cut-off rate and mean latency of every policy under turn weights.

    p: (n_points,) p_eot in `table.order` order. weights: (n_resamples, n_turns) >= 0, each row with
    a positive sum. Returns (fcr, mean_latency_s), each (n_resamples, n_policies) in `policy_grid`
    order; one threshold's (delay x timeout) block of per-turn outcomes is in memory at a time.
    """
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(axis=1, keepdims=True)
    hold = ~table.is_end
    hold_turn, hold_dur = table.span_turn[hold], table.span_dur_s[hold]
    fcr_blocks, lat_blocks, cache = [], [], {}
    for thr in thresholds:
        n_above = int(np.count_nonzero(p >= thr))
        if n_above not in cache:  # nested sets: same size => same set => same outcomes (as in sweep_policies)
            nxt = M._next_at_or_above(p, thr)
            cut, lat = [], []
            for delay in action_delays_s:
                x = M._detector_fire_s(table, nxt, M._delay_index(table, delay))
                hold_fired = np.isfinite(x[hold])
                end_x = x[table.turn_end_span]
                for timeout in timeouts_s:
                    c = hold_fired | (timeout < hold_dur - 1e-9)
                    cut.append(np.bincount(hold_turn[c], minlength=table.n_turns) > 0)
                    lat.append(np.minimum(end_x, timeout))
            cut_m, lat_m = np.asarray(cut, dtype=np.float64), np.asarray(lat, dtype=np.float64)
            cache[n_above] = ((w @ cut_m.T) / total, (w @ lat_m.T) / total)
        fcr_blocks.append(cache[n_above][0])
        lat_blocks.append(cache[n_above][1])
    return np.concatenate(fcr_blocks, axis=1), np.concatenate(lat_blocks, axis=1)


def optimised_values(fcr: np.ndarray, lat: np.ndarray, latency_budgets_s, false_cutoff_budgets) -> np.ndarray:
    """(n_resamples, n_ops) the optimised value of each operating point (as in `metrics.operating_points`:
    latency budgets first, then FCR budgets); NaN where unreachable."""
    cols = []
    for b in latency_budgets_s:
        v = np.where(lat <= b + 1e-9, fcr, np.inf).min(axis=1)
        cols.append(v)
    for b in false_cutoff_budgets:
        cols.append(np.where(fcr <= b + 1e-12, lat, np.inf).min(axis=1))
    out = np.stack(cols, axis=1)
    return np.where(np.isfinite(out), out, np.nan)


def group_weights(groups, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_turns) how often each turn's group is drawn when len(unique groups) groups are drawn
    with replacement. groups: (n_turns,) group key per turn."""
    codes, uniq = pd.factorize(pd.Series(np.asarray(groups, dtype=object)), sort=True)
    rng = np.random.default_rng(seed)
    g = len(uniq)
    counts = np.stack([np.bincount(rng.integers(0, g, g), minlength=g) for _ in range(n_boot)])
    return counts[:, codes].astype(np.float64)


def paired_interval(groups, diff_per_turn: np.ndarray, n_boot: int, seed: int) -> list[float]:
    """95% interval of the mean over turns of `diff_per_turn` (one detector or policy minus another on the same
    turns), the turns' groups (calls, conversations) resampled with replacement (`group_weights`)."""
    w = group_weights(groups, n_boot, seed)
    est = (w @ np.asarray(diff_per_turn, dtype=np.float64)) / w.sum(axis=1)
    return [float(np.percentile(est, 2.5)), float(np.percentile(est, 97.5))]


def _resample_weights(table: M.SpanTable, groups: dict | None, n_boot: int, seed: int) -> tuple[np.ndarray, list]:
    """(1 + n_boot, n_turns) turn weights - row 0 the full set, then `group_weights` over the turns' conversations
    (`groups` or `conversation_of`) - and those conversation keys."""
    ids = table.turns["id"].to_numpy()
    keys = [groups.get(i, conversation_of(i)) if groups else conversation_of(i) for i in ids]
    return np.vstack([np.ones((1, table.n_turns)), group_weights(keys, n_boot, seed)]), keys


def _optimised(table: M.SpanTable, p: np.ndarray, w: np.ndarray, cfg) -> np.ndarray:
    """`optimised_values` of scores `p` under weights `w` with `cfg`'s sweep and budgets."""
    fcr, lat = weighted_sweep(table, p, w, cfg.thresholds, cfg.action_delays_s, cfg.timeouts_s)
    return optimised_values(fcr, lat, cfg.latency_budgets_s, cfg.false_cutoff_budgets)


def _op_names(cfg) -> list[str]:
    return ([M._op_name("min_fcr_at_latency", b) for b in cfg.latency_budgets_s]
            + [M._op_name("min_latency_at_fcr", b) for b in cfg.false_cutoff_budgets])


def ratio_bootstrap(preds: pd.DataFrame, cfg, groups: dict | None = None, *, n_boot: int = 200,
                    seed: int = 0) -> list[dict]:
    """Bootstrap intervals of the ratio to VAD-only at each of `cfg`'s operating points (see the module
    docstring). preds: a predictions frame (evaluate.PREDICTION_COLUMNS); cfg: its EvalConfig (grid,
    sweep and budgets); groups: turn id -> conversation (default `conversation_of`).

    Returns one dict per operating point, in `metrics.operating_points` order: name, ratio (the
    point estimate on all turns), ci_low, ci_high (None when fewer than 90% of the resamples define
    the ratio), n_defined, n_boot, n_groups.
    """
    table = M.build_span_table(preds, cfg.grid_s)
    p = preds["p_eot"].to_numpy(dtype=np.float64)[table.order]
    w, keys = _resample_weights(table, groups, n_boot, seed)
    det, vad = (_optimised(table, q, w, cfg) for q in (p, np.ones_like(p)))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(vad > 0, det / vad, np.nan)
    names = _op_names(cfg)
    out = []
    for j, name in enumerate(names):
        r = ratio[1:, j]
        ok = r[np.isfinite(r)]
        enough = n_boot > 0 and ok.size >= 0.9 * n_boot
        out.append({"name": name, "ratio": None if np.isnan(ratio[0, j]) else float(ratio[0, j]),
                    "ci_low": float(np.percentile(ok, 2.5)) if enough else None,
                    "ci_high": float(np.percentile(ok, 97.5)) if enough else None,
                    "n_defined": int(ok.size), "n_boot": int(n_boot), "n_groups": len(set(keys))})
    return out


def paired_difference_bootstrap(preds: dict[str, pd.DataFrame], cfg, reference: str, groups: dict | None = None, *,
                                n_boot: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of several detectors evaluated on the same spans: each detector's ratio to VAD-only and
    its difference to `reference` at every operating point of `cfg`, all under the same conversation resamples.

    preds: {name: predictions frame} from runs of one dataset, split and grid (the same turns, spans and query
    times, or ValueError naming the first that differs); cfg: their EvalConfig (sweep and budgets). A difference
    (name - reference) below 0 is better for FCR and latency alike; its interval is the 2.5 / 97.5 percentile over
    the resamples where both values are defined (None when fewer than 90% are). Returns {"operating_points":
    names, "n_groups", "n_boot", "detectors": {name: [{"name", "value", "vad_only", "ratio", "ratio_ci",
    "diff_vs_reference", "diff_ci"}, ...]}}.
    """
    if reference not in preds:
        raise ValueError(f"reference {reference!r} is not among the runs ({sorted(preds)})")
    key = ["id", "span_index", "timestamp"]
    ps, first = {}, None
    for name, df in preds.items():
        table = M.build_span_table(df, cfg.grid_s)
        keys = df[key].to_numpy()[table.order]
        if first is None:
            first = (name, table, keys)
        elif table.n_turns != first[1].n_turns or len(keys) != len(first[2]) or not (
                np.array_equal(table.turns["id"].to_numpy(), first[1].turns["id"].to_numpy())
                and np.array_equal(keys.astype(str), first[2].astype(str))):
            raise ValueError(f"runs {first[0]!r} and {name!r} did not score the same spans and query times "
                             f"({first[1].n_turns} vs {table.n_turns} turns, {len(first[2])} vs {len(keys)} "
                             "queries): evaluate both on one dataset, split and grid")
        ps[name] = df["p_eot"].to_numpy(dtype=np.float64)[table.order]
    table = first[1]
    w, gkeys = _resample_weights(table, groups, n_boot, seed)
    vals = {n: _optimised(table, p, w, cfg) for n, p in ps.items()}
    vad = _optimised(table, np.ones_like(ps[reference]), w, cfg)
    names = _op_names(cfg)

    def interval(x: np.ndarray):
        ok = x[np.isfinite(x)]
        if n_boot == 0 or ok.size < 0.9 * n_boot:
            return None
        return [float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))]

    def num(x: float):
        return None if not np.isfinite(x) else float(x)

    out = {}
    for n, v in vals.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(vad > 0, v / vad, np.nan)
        diff = v - vals[reference]
        out[n] = [{"name": op, "value": num(v[0, j]), "vad_only": num(vad[0, j]), "ratio": num(ratio[0, j]),
                   "ratio_ci": interval(ratio[1:, j]), "diff_vs_reference": num(diff[0, j]),
                   "diff_ci": None if n == reference else interval(diff[1:, j])} for j, op in enumerate(names)]
    return {"operating_points": names, "n_groups": len(set(gkeys)), "n_boot": int(n_boot), "reference": reference,
            "detectors": out}
