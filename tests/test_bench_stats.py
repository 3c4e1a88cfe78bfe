"""Paired bench comparisons: ratios and cut-off differences with bootstrap intervals resampled by call."""
from __future__ import annotations

import pytest

from pipeline.bench.stats import call_of, comparison_lines, comparisons, paired_bootstrap


def _rows(config, e2e, cut, n_calls=6, per_call=3):
    rows = []
    for c in range(n_calls):
        for t in range(per_call):
            tid = f"call{c:02d}-{t:03d}-caller"
            rows.append({"config": config, "kind": "conversation", "set": "getgoing", "scenario": f"gg-{tid}",
                         "turn": tid, "e2e_s": e2e(c, t), "processing_s": 0.1, "cutoff": cut(c, t)})
    return rows


def test_paired_ratio_and_cutoff_difference_with_intervals_by_call():
    a = _rows("streaming-semantic", lambda c, t: 0.4 + 0.05 * t, lambda c, t: c == 0 and t == 0)
    b = _rows("streaming-vad", lambda c, t: 0.8 + 0.1 * t, lambda c, t: False)
    res = paired_bootstrap(a + b, "streaming-semantic", "streaming-vad", n_boot=500)
    assert res["n_turns"] == 18 and res["n_calls"] == 6
    assert res["ratio_p50"] == pytest.approx(0.45 / 0.9)
    lo, hi = res["ratio_ci95"]
    assert lo <= 0.5 <= hi and hi < 1.0  # every call is faster: the interval excludes 1
    assert res["cutoff_diff"] == pytest.approx(1 / 18)
    dlo, dhi = res["cutoff_diff_ci95"]
    assert dlo <= 0.0 <= dhi + 1e-12  # one cut-off in one call: no claim either way
    assert call_of(a[4]) == "call01"
    # turns only one config played are not paired
    assert paired_bootstrap(a + b[:3], "streaming-semantic", "streaming-vad", n_boot=50)["n_turns"] == 3
    assert paired_bootstrap(a, "streaming-semantic", "streaming-vad") is None
    comps = comparisons(a + b, n_boot=50)
    assert [(c["b"], c["metric"]) for c in comps] == [("streaming-vad", "e2e_s"), ("streaming-vad", "processing_s")]
    assert "streaming-semantic vs streaming-vad | e2e_s | 18 (6) | 0.50" in "\n".join(comparison_lines(comps))
