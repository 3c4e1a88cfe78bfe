"""The one P50 / P99 summary (`vad_turn.harness.percentiles`): what it leaves out and what it returns."""
from __future__ import annotations

import math

import pytest

from vad_turn.harness.percentiles import percentile, summary


def test_missing_values_are_left_out_and_nothing_left_is_none():
    vals = [None, 0.1, 0.2, 0.3, 0.4, math.nan, math.inf]
    assert percentile(vals, 50) == pytest.approx(0.25) and percentile(vals, 100) == 0.4
    assert percentile([None, math.nan], 50) is None and percentile([], 99) is None
    assert summary([]) == {"n": 0, "p50": None, "p99": None, "mean": None}


def test_summary_scales_and_names_its_percentiles():
    s = summary([0.001 * k for k in range(1, 101)], scale=1e3, suffix="_ms")
    assert s["n"] == 100 and s["p50_ms"] == pytest.approx(50.5) and s["p99_ms"] == pytest.approx(99.01)
    assert s["mean_ms"] == pytest.approx(50.5) and list(s) == ["n", "p50_ms", "p99_ms", "mean_ms"]
    assert list(summary([1.0, 2.0], (10, 50, 90))) == ["n", "p10", "p50", "p90", "mean"]
