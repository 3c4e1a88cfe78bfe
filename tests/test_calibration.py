"""Temperature scaling, ECE and the reliability diagram on synthetic scores with known calibration."""
from __future__ import annotations

import numpy as np
import pytest

from vad_turn.harness.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    reliability_diagram,
)


def _data(n=40000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(int)
    return z, y


def test_fit_temperature_recovers_the_overconfidence_factor():
    z, y = _data()
    assert fit_temperature(3.0 * z, y) == pytest.approx(3.0, rel=0.06)
    assert fit_temperature(0.5 * z, y) == pytest.approx(0.5, rel=0.06)
    assert fit_temperature(z, y) == pytest.approx(1.0, rel=0.06)


def test_nll_matches_sklearn_log_loss():
    from sklearn.metrics import log_loss

    z, y = _data(2000, seed=1)
    assert nll(z, y) == pytest.approx(log_loss(y, 1 / (1 + np.exp(-z))), rel=1e-9)
    assert nll(z, y, 2.0) == pytest.approx(log_loss(y, 1 / (1 + np.exp(-z / 2))), rel=1e-9)


def test_ece_small_when_calibrated_large_when_overconfident_and_scaling_repairs_it():
    z, y = _data()
    p = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    assert expected_calibration_error(p(z), y) < 0.015
    bad = expected_calibration_error(p(3 * z), y)
    assert bad > 0.08
    t = fit_temperature(3 * z, y)
    assert expected_calibration_error(p(3 * z / t), y) < 0.015


def test_reliability_bins_by_hand():
    b = reliability_bins(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1]), n_bins=10)
    assert b["count"][0] == 2 and b["count"][9] == 2 and b["count"][1:9].sum() == 0
    assert b["frequency"][0] == pytest.approx(0.5) and b["frequency"][9] == pytest.approx(1.0)
    # ECE = 0.5 * |0.5 - 0.05| + 0.5 * |1 - 0.95|
    assert expected_calibration_error(np.array([0.05, 0.05, 0.95, 0.95]), np.array([0, 1, 1, 1]), 10) == \
        pytest.approx(0.5 * 0.45 + 0.5 * 0.05)


def test_reliability_diagram_writes_a_png_and_returns_ece(tmp_path):
    z, y = _data(5000, seed=2)
    sig = lambda t: 1 / (1 + np.exp(-t))  # noqa: E731
    # by hand (unequal bins, so an unweighted mean over bins would differ): 3/4 of the scores at 0.05 with
    # label frequency 1/3, 1/4 at 0.95 with frequency 1 -> 0.75 * |1/3 - 0.05| + 0.25 * |1 - 0.95| = 0.225
    hand = (np.array([0.05, 0.05, 0.05, 0.95]), np.array([0, 1, 0, 1]))
    eces = reliability_diagram({"hand": hand, "calibrated": (sig(z), y), "overconfident": (sig(3 * z), y)},
                               tmp_path / "r.png")
    png = (tmp_path / "r.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert eces["hand"] == pytest.approx(0.75 * (1 / 3 - 0.05) + 0.25 * 0.05, abs=1e-12)
    assert eces["calibrated"] < 0.03 and eces["overconfident"] > 0.08  # labels drawn from sigmoid(z)


def test_fit_temperature_refuses_one_class_and_mismatched_lengths():
    with pytest.raises(ValueError, match="both classes"):
        fit_temperature(np.array([1.0, 2.0]), np.array([1, 1]))
    with pytest.raises(ValueError, match="as many labels"):
        fit_temperature(np.array([1.0, 2.0]), np.array([1]))
