"""The paired conversation bootstrap of benchmarks/fusion_bootstrap.py on hand-made scores."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location(
    "fusion_bootstrap", Path(__file__).resolve().parents[1] / "benchmarks" / "fusion_bootstrap.py")
fb = importlib.util.module_from_spec(_spec)
sys.modules["fusion_bootstrap"] = fb  # its config dataclass resolves string annotations through sys.modules
_spec.loader.exec_module(fb)


def _table(n_conv=40, per=30, seed=0):
    rng = np.random.default_rng(seed)
    n = n_conv * per
    label = rng.integers(0, 2, n)
    sil = rng.choice([0.1, 0.3, 0.5], n)
    return pd.DataFrame({"label": label, "silence_s": sil, "conversation": np.repeat(np.arange(n_conv), per)}), rng


def test_a_better_fused_score_gets_an_interval_above_zero_and_an_equal_one_straddles_it():
    t, rng = _table()
    y = t["label"].to_numpy().astype(float)
    informative = y + rng.normal(0, 0.8, len(y))
    noise = rng.normal(0, 1, len(y))
    res = fb.bootstrap(t, informative, {"noise": noise, "same": informative.copy()}, n_resamples=60, seed=1)
    mean, lo, hi = res["noise"]["auc_diff"]
    assert lo > 0.15 and mean > 0.2  # AUC ~0.8 vs ~0.5
    assert res["noise"]["same_silence_auc_diff"][1] > 0.1
    assert res["same"]["auc_diff"] == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


def test_mismatched_prediction_lengths_are_refused():
    t, rng = _table(n_conv=5, per=10)
    with pytest.raises(ValueError, match="not the same split"):
        fb.bootstrap(t, rng.normal(size=len(t)), {"lexical": rng.normal(size=len(t) - 1)}, n_resamples=2)
