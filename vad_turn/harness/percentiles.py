"""P50 / P99 summaries of measured values (latencies, CPU times): the one definition that the headline's CPU
column, the pipeline bench, the demo's running table and the latency scripts of benchmarks/ report.

- `percentile(values, q)`: numpy's default percentile (linear between the closest ranks) of the values that are
  there: None and non-finite values (a turn that was never answered, a word never delivered) are left out;
  None when nothing is left.
- `summary(values, qs)`: {"n", "p50", "p99", "mean"} of the same values (`qs` names other percentiles), each
  optionally scaled (seconds -> ms with scale=1e3) and suffixed ("_ms").
"""
from __future__ import annotations

from typing import Iterable

import numpy as np


def _present(values: Iterable[float | None], scale: float = 1.0) -> np.ndarray:
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    return scale * a[np.isfinite(a)]


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-th percentile (q in [0, 100]) of the finite values that are not None; None when there are none."""
    a = _present(values)
    return float(np.percentile(a, q)) if a.size else None


def summary(values: Iterable[float | None], qs: tuple[float, ...] = (50, 99), *, scale: float = 1.0,
            suffix: str = "") -> dict:
    """{"n", "p<q><suffix>" for q in `qs`, "mean<suffix>"} of the finite values that are not None, times `scale`
    (the percentiles and mean are None when there are none)."""
    a = _present(values, scale)
    out: dict = {"n": int(a.size)}
    for q in qs:
        out[f"p{q:g}{suffix}"] = float(np.percentile(a, q)) if a.size else None
    out[f"mean{suffix}"] = float(a.mean()) if a.size else None
    return out
