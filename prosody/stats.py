"""Bootstrap confidence intervals, paired effect sizes and distances to a reference sample.

All intervals are percentile bootstraps with `n_boot` resamples from a seeded generator, so
the same inputs give the same interval. NaNs are dropped (per pair for paired statistics).

- `bootstrap_mean_ci(x)`: mean of x and its (1 - alpha) interval.
- `paired_effect(baseline, variant)`: over pairs (same request), the mean difference
  d = variant - baseline and Cohen's d_z = mean(d) / sd(d), each with a bootstrap interval
  (pairs resampled together).
- `reference_distance(x, ref)`: standardized distance (mean(x) - mean(ref)) / sd(ref): how many
  real-speech standard deviations a variant's mean lies from the real-speech mean; x and ref are
  resampled independently.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap interval and the number of units it rests on."""

    value: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 2) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        return f"{self.value:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


NAN_ESTIMATE = Estimate(float("nan"), float("nan"), float("nan"), 0)


def _finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def _interval(boot: np.ndarray, alpha: float) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _resample_means(a: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    return a[idx].mean(axis=1)


def bootstrap_mean_ci(x, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """Mean of the finite values of x with a percentile-bootstrap (1 - alpha) interval."""
    a = _finite(x)
    if a.size == 0:
        return NAN_ESTIMATE
    if a.size == 1:
        return Estimate(float(a[0]), float(a[0]), float(a[0]), 1)
    rng = np.random.default_rng(seed)
    return Estimate(float(a.mean()), *_interval(_resample_means(a, n_boot, rng), alpha), a.size)


def paired_effect(baseline, variant, *, n_boot: int = 2000, alpha: float = 0.05,
                  seed: int = 0) -> tuple[Estimate, Estimate]:
    """(mean difference variant - baseline, Cohen's d_z) over the pairs where both are finite.

    baseline, variant: (n_pairs,) aligned by unit (request). d_z is NaN when sd(d) is 0.
    """
    b = np.asarray(baseline, dtype=np.float64).ravel()
    v = np.asarray(variant, dtype=np.float64).ravel()
    if b.shape != v.shape:
        raise ValueError(f"paired_effect needs aligned pairs, got {b.shape} and {v.shape}")
    d = (v - b)[np.isfinite(v) & np.isfinite(b)]
    if d.size < 2:
        return NAN_ESTIMATE, NAN_ESTIMATE
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_boot, d.size))
    boot = d[idx]
    means = boot.mean(axis=1)
    sds = boot.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        dz_boot = np.where(sds > 0, means / sds, np.nan)
    sd = d.std(ddof=1)
    dz = float(d.mean() / sd) if sd > 0 else float("nan")
    return (Estimate(float(d.mean()), *_interval(means, alpha), d.size),
            Estimate(dz, *_interval(dz_boot, alpha), d.size))


def reference_distance(x, ref, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> Estimate:
    """(mean(x) - mean(ref)) / sd(ref) with a bootstrap interval (x and ref resampled independently)."""
    a, r = _finite(x), _finite(ref)
    if a.size == 0 or r.size < 2 or r.std(ddof=1) == 0:
        return NAN_ESTIMATE
    rng = np.random.default_rng(seed)
    xm = _resample_means(a, n_boot, rng)
    ridx = rng.integers(0, r.size, size=(n_boot, r.size))
    rb = r[ridx]
    rsd = rb.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(rsd > 0, (xm - rb.mean(axis=1)) / rsd, np.nan)
    value = float((a.mean() - r.mean()) / r.std(ddof=1))
    return Estimate(value, *_interval(boot, alpha), a.size)
