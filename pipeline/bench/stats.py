"""Paired comparisons of two bench configs on the same turns, with bootstrap intervals by call.

Real agent-directed sets have few holds and few calls, so a ratio of medians or a cut-off difference
needs an interval: `paired_bootstrap(rows, a, b)` keeps the turns both configs played (same scenario,
same turn), resamples *calls* with replacement (a GetGoing turn's call is its row id's prefix,
`vad_turn.harness.ratio_bootstrap.conversation_of`; a festival conversation is its scenario), and reports
  - e2e ratio: P50 of a's e2e / P50 of b's e2e over the resampled turns answered by both;
  - cut-off difference: a's false cut-off rate - b's over the resampled turns,
each with its point value and 95% percentile interval. A win is claimed only where the interval says so.
"""
from __future__ import annotations

import numpy as np

from vad_turn.harness.ratio_bootstrap import conversation_of


def call_of(row: dict) -> str:
    """The call (conversation) a bench row belongs to: GetGoing rows by the caller's call id, others by scenario."""
    if row.get("set") == "getgoing" or str(row.get("scenario", "")).startswith("gg-"):
        return conversation_of(str(row.get("turn") or row["scenario"][3:]))
    return str(row["scenario"])


def paired_bootstrap(rows: list[dict], a: str, b: str, *, n_boot: int = 2000, seed: int = 0,
                     metric: str = "e2e_s") -> dict | None:
    """{"n_turns", "n_calls", "ratio_p50", "ratio_ci95", "cutoff_diff", "cutoff_diff_ci95"} for configs `a` vs `b`
    on their common conversation turns (None when they share none). `metric` is the latency compared (P50 ratio)."""
    def key(r):
        return (r["scenario"], r.get("turn"))

    ra = {key(r): r for r in rows if r.get("config") == a and r.get("kind") == "conversation"}
    rb = {key(r): r for r in rows if r.get("config") == b and r.get("kind") == "conversation"}
    common = sorted(set(ra) & set(rb))
    if not common:
        return None
    calls = sorted({call_of(ra[k]) for k in common})
    idx = {c: i for i, c in enumerate(calls)}
    call = np.array([idx[call_of(ra[k])] for k in common])
    cut_a = np.array([bool(ra[k]["cutoff"]) for k in common], dtype=float)
    cut_b = np.array([bool(rb[k]["cutoff"]) for k in common], dtype=float)
    lat_a = np.array([np.nan if ra[k].get(metric) is None else ra[k][metric] for k in common], dtype=float)
    lat_b = np.array([np.nan if rb[k].get(metric) is None else rb[k][metric] for k in common], dtype=float)
    both = np.isfinite(lat_a) & np.isfinite(lat_b)

    def stats(sel: np.ndarray) -> tuple[float, float]:
        m = sel[both[sel]]
        ratio = float(np.median(lat_a[m]) / np.median(lat_b[m])) if m.size and np.median(lat_b[m]) > 0 else np.nan
        return ratio, float(cut_a[sel].mean() - cut_b[sel].mean())

    members = [np.flatnonzero(call == i) for i in range(len(calls))]
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(calls), len(calls))
        boot.append(stats(np.concatenate([members[i] for i in pick])))
    boot = np.array(boot)
    ratio, diff = stats(np.arange(len(common)))

    def ci(col):
        v = boot[:, col][np.isfinite(boot[:, col])]
        return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if v.size else [None, None]

    return {"a": a, "b": b, "metric": metric, "n_turns": len(common), "n_answered_both": int(both.sum()),
            "n_calls": len(calls), "ratio_p50": None if not np.isfinite(ratio) else ratio, "ratio_ci95": ci(0),
            "cutoff_a": float(cut_a.mean()), "cutoff_b": float(cut_b.mean()), "cutoff_diff": diff,
            "cutoff_diff_ci95": ci(1), "n_boot": n_boot}


# what the bench report compares, semantic default against each baseline
COMPARISONS = (("streaming-semantic", "streaming-vad"), ("streaming-semantic", "streaming-vad-matched"),
               ("streaming-semantic", "streaming-vad-preempt"), ("streaming-semantic", "streaming-smart-turn"))


def comparisons(rows: list[dict], *, n_boot: int = 2000) -> list[dict]:
    """`paired_bootstrap` of every pair in COMPARISONS that both ran, e2e and processing."""
    out = []
    for a, b in COMPARISONS:
        for metric in ("e2e_s", "processing_s"):
            res = paired_bootstrap(rows, a, b, n_boot=n_boot, metric=metric)
            if res is not None:
                out.append(res)
    return out


def comparison_lines(comps: list[dict]) -> list[str]:
    """Markdown table of `comparisons`."""
    if not comps:
        return []
    f = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    lines = ["| a vs b | metric | turns (calls) | P50 ratio [95% CI] | cut-offs a / b | difference [95% CI] |",
             "|---|---|---|---|---|---|"]
    for c in comps:
        lo, hi = c["ratio_ci95"]
        dlo, dhi = c["cutoff_diff_ci95"]
        lines.append(f"| {c['a']} vs {c['b']} | {c['metric']} | {c['n_turns']} ({c['n_calls']}) | {f(c['ratio_p50'])} "
                     f"[{f(lo)}, {f(hi)}] | {100 * c['cutoff_a']:.0f}% / {100 * c['cutoff_b']:.0f}% | "
                     f"{100 * c['cutoff_diff']:+.0f} pt [{f(None if dlo is None else 100 * dlo)}, "
                     f"{f(None if dhi is None else 100 * dhi)}] |")
    return lines
