"""The shipped fused model reproduces the metrics recorded in its fusion.json (and MODEL_CARD.md) on
fixed seeded subsets of the selection / val turns (`vad_turn.fusion.train.SUBSETS`, about a minute)."""
from __future__ import annotations

import json

import pytest
from conftest import require_built

from vad_turn.fusion.runtime import DEFAULT_TURN_MODEL_DIR
from vad_turn.fusion.train import SUBSET_SEED, SUBSETS, subset_metrics

META = DEFAULT_TURN_MODEL_DIR / "fusion.json"


def test_shipped_model_reproduces_its_recorded_subset_metrics():
    for name, *_ in SUBSETS.values():
        require_built(name)
    rec = json.loads(META.read_text())["subset_check"]
    assert rec["seed"] == SUBSET_SEED and rec["subsets"] == {k: list(v) for k, v in SUBSETS.items()}
    got = subset_metrics()
    for key, want in rec["metrics"].items():
        g = got[key]
        assert g["n_turns"] == want["n_turns"] and g["n_points"] == want["n_points"]
        assert g["auc"] == pytest.approx(want["auc"], abs=0.005), key
        for op in ("fcr@lat<=0.6s", "lat@fcr<=10%"):
            assert g[op] == pytest.approx(want[op], abs=0.02), (key, op)
            assert g[op + "_vad_only"] == pytest.approx(want[op + "_vad_only"], abs=1e-9), (key, op)
    # what the card states about this subset: not worse than VAD-only at 10% false cut-offs
    assert got["audio"]["lat@fcr<=10%_ratio"] <= 1.0 and got["text"]["lat@fcr<=10%_ratio"] <= 1.0
    card = (DEFAULT_TURN_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert f"{rec['metrics']['audio']['auc']:.3f}" in card and f"{rec['metrics']['text']['auc']:.3f}" in card
