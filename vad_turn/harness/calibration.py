"""Calibration of end-of-turn probabilities: temperature scaling, ECE and the reliability diagram.

Temperature scaling (Guo et al. 2017) divides a model's logit by one T > 0 fitted by minimising the
negative log-likelihood on a held-aside selection split; it keeps the ranking (so every operating
point of the harness is unchanged as a set) and makes "p_eot >= 0.7" mean "about 70% of such
moments are ends of turn" on data like the selection split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

_EPS = 1e-12


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0,
        sample_weight: np.ndarray | None = None) -> float:
    """Mean binary negative log-likelihood (nats) of sigmoid(logits / temperature) against labels in {0, 1},
    weighted by `sample_weight` (n,) >= 0 when given."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(labels, dtype=np.float64)
    # log(1 + exp(-z)) for y = 1, log(1 + exp(z)) for y = 0, computed stably
    per = np.logaddexp(0.0, -z) * y + np.logaddexp(0.0, z) * (1 - y)
    if sample_weight is None:
        return float(np.mean(per))
    w = np.asarray(sample_weight, dtype=np.float64)
    return float(np.sum(w * per) / np.sum(w))


def fit_temperature(logits: np.ndarray, labels: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0),
                    sample_weight: np.ndarray | None = None) -> float:
    """The T in `bounds` minimising `nll(logits, labels, T, sample_weight)` (golden-section search on
    log T; NLL is unimodal in 1/T). logits: (n,) float; labels: (n,) in {0, 1}, both classes present;
    sample_weight: (n,) >= 0 or None."""
    z, y = np.asarray(logits, dtype=np.float64).reshape(-1), np.asarray(labels).reshape(-1)
    if z.size == 0 or z.size != y.size:
        raise ValueError(f"need as many labels as logits (> 0), got {z.size} logits and {y.size} labels")
    if not np.isin(y, (0, 1)).all() or y.min() == y.max():
        raise ValueError("labels must be 0/1 with both classes present to fit a temperature")
    lo, hi = np.log(bounds[0]), np.log(bounds[1])
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    w = sample_weight
    fa, fb = nll(z, y, np.exp(a), w), nll(z, y, np.exp(b), w)
    for _ in range(80):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(z, y, np.exp(a), w)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(z, y, np.exp(b), w)
    return float(np.exp((lo + hi) / 2))


def reliability_bins(p: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width bins of p in [0, 1]: per bin count, mean p (confidence) and label frequency
    (accuracy of "end of turn"); empty bins hold nan."""
    p, y = np.asarray(p, dtype=np.float64).reshape(-1), np.asarray(labels, dtype=np.float64).reshape(-1)
    if p.size != y.size:
        raise ValueError(f"{p.size} probabilities vs {y.size} labels")
    idx = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=n_bins) / count
        freq = np.bincount(idx, weights=y, minlength=n_bins) / count
    return {"count": count, "confidence": conf, "frequency": freq, "edges": np.linspace(0, 1, n_bins + 1)}


def expected_calibration_error(p: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE: sum over equal-width bins of (bin share) * |label frequency - mean p|, in [0, 1]."""
    b = reliability_bins(p, labels, n_bins)
    ok = b["count"] > 0
    return float(np.sum(b["count"][ok] / b["count"].sum() * np.abs(b["frequency"][ok] - b["confidence"][ok])))


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, *, n_bins: int = 15,
                        title: str = "Reliability of p_eot") -> dict[str, float]:
    """Write a reliability diagram PNG of each named (p, labels) curve; return {name: ECE}."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is

    from vad_turn.core.runs import atomic_path

    fig = Figure(figsize=(5, 6))
    ax, axh = fig.subplots(2, 1, gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="perfect")
    eces = {}
    for name, (p, y) in curves.items():
        b = reliability_bins(p, y, n_bins)
        eces[name] = expected_calibration_error(p, y, n_bins)
        ok = b["count"] > 0
        ax.plot(b["confidence"][ok], b["frequency"][ok], marker="o", label=f"{name} (ECE {eces[name]:.3f})")
        axh.hist(np.asarray(p), bins=b["edges"], histtype="step", label=name)
    ax.set_ylabel("fraction that are ends of turn")
    ax.set_title(title)
    ax.legend(fontsize=8)
    axh.set_xlabel("predicted p_eot")
    axh.set_ylabel("queries")
    axh.set_yscale("log")
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=80)
    Path(path).chmod(0o644)
    return eces
