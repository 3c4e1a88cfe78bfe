"""Bootstrap intervals cover known means; paired effects and reference distances recover known shifts."""
from __future__ import annotations

import numpy as np
import pytest

from prosody.stats import bootstrap_mean_ci, paired_effect, reference_distance


def test_bootstrap_ci_of_a_known_distribution_covers_the_true_mean():
    rng = np.random.default_rng(0)
    hits, widths = 0, []
    for i in range(200):
        x = rng.normal(3.0, 2.0, 60)
        e = bootstrap_mean_ci(x, n_boot=1000, seed=i)
        hits += e.lo <= 3.0 <= e.hi
        widths.append(e.hi - e.lo)
        assert e.lo < e.value < e.hi and e.n == 60
    assert 0.88 <= hits / 200 <= 0.99  # nominal 95%
    # width close to the normal-theory 2 * 1.96 * sigma / sqrt(n) = 1.01
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(60), rel=0.08)


def test_bootstrap_is_seeded_and_drops_nans():
    x = np.array([1.0, 2.0, np.nan, 4.0, 5.0])
    a, b = bootstrap_mean_ci(x, seed=3), bootstrap_mean_ci(x, seed=3)
    assert a == b and a.n == 4 and a.value == pytest.approx(3.0)
    assert np.isnan(bootstrap_mean_ci([np.nan]).value)


def test_paired_effect_recovers_a_known_shift_and_dz():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 5, 400)  # large between-request spread that pairing removes
    variant = base + 0.5 + rng.normal(0, 1.0, 400)
    diff, dz = paired_effect(base, variant, n_boot=1000)
    assert diff.value == pytest.approx(0.5, abs=0.12)
    assert diff.lo < 0.5 < diff.hi
    assert dz.value == pytest.approx(0.5, abs=0.12)  # d_z = 0.5 / sd(noise = 1)
    assert dz.lo < 0.5 < dz.hi
    same, dz0 = paired_effect(base, base + rng.normal(0, 1, 400))
    assert same.lo < 0 < same.hi and dz0.lo < 0 < dz0.hi
    with pytest.raises(ValueError, match="aligned"):
        paired_effect([1, 2], [1, 2, 3])


def test_reference_distance_in_reference_sds():
    rng = np.random.default_rng(2)
    d = reference_distance(rng.normal(13.0, 1.0, 300), rng.normal(10.0, 2.0, 300), n_boot=1000)
    assert d.value == pytest.approx(1.5, abs=0.15)  # (13 - 10) / 2
    assert d.lo < 1.5 < d.hi
