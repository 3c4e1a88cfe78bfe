"""benchmarks/same_silence.py: the same-silence AUC table and the paired conversation bootstrap between roots."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location(
    "same_silence", Path(__file__).resolve().parents[1] / "benchmarks" / "same_silence.py")
ss = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ss)


def _predictions(p_of_label, seed: int) -> pd.DataFrame:
    """40 conversations x 3 turns; each turn: a hold span (label 0) and an end span (label 1), 4 grid points each."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(40):
        for t in range(3):
            for span, label in ((0, 0), (1, 1)):
                for k, sil in enumerate((0.1, 0.2, 0.3, 0.4)):
                    rows.append({"id": f"conv{c}-{t:04d}-A", "span_index": span, "timestamp": 10.0 * span + sil,
                                 "silence_dur": sil, "label": label, "p_eot": float(p_of_label(label, rng))})
    return pd.DataFrame(rows)


def _write(root: Path, df: pd.DataFrame) -> None:
    d = root / "getgoing-test-acoustic"
    d.mkdir(parents=True)
    df.to_parquet(d / "predictions.parquet")


def test_paired_difference_is_zero_for_equal_runs_and_positive_for_a_better_one(tmp_path, capsys):
    noise = _predictions(lambda y, rng: rng.random(), seed=0)
    good = noise.copy()
    good["p_eot"] = np.clip(noise["p_eot"] + 0.5 * noise["label"], 0, 1.5)  # ends pushed up: separates them
    _write(tmp_path / "base", noise)
    _write(tmp_path / "same", noise)
    _write(tmp_path / "good", good)
    out = tmp_path / "r.json"
    assert ss.main(["--roots", str(tmp_path / "base"), str(tmp_path / "same"), str(tmp_path / "good"),
                    "--paired-vs", str(tmp_path / "base"), "--boot", "100", "--json", str(out)]) == 0
    rows = {Path(r["root"]).name: r for r in json.loads(out.read_text())}
    assert rows["base"]["same_silence_auc"] == pytest.approx(0.5, abs=0.1)
    assert "paired_vs" not in rows["base"]
    assert rows["same"]["paired_vs"]["same_silence_auc_diff"] == [0.0, 0.0, 0.0]
    mean, lo, hi = rows["good"]["paired_vs"]["same_silence_auc_diff"]
    assert mean == pytest.approx(rows["good"]["same_silence_auc"] - rows["base"]["same_silence_auc"], abs=0.03)
    assert 0.2 < lo < mean < hi  # grouped by the 40 conversations, an interval clear of 0
    assert rows["good"]["paired_vs"]["n_conversations"] == 40
    assert "+0." in capsys.readouterr().out


def test_paired_difference_refuses_runs_with_different_labels(tmp_path):
    a = _predictions(lambda y, rng: rng.random(), seed=0)
    b = a.copy()
    b["label"] = 1 - b["label"]
    _write(tmp_path / "a", a)
    _write(tmp_path / "b", b)
    with pytest.raises(ValueError, match="different labels"):
        ss.paired_diff(tmp_path / "a" / "getgoing-test-acoustic", tmp_path / "b" / "getgoing-test-acoustic", 10)
