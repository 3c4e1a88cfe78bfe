"""One DetectorSpec per detector (vad_turn.harness.detectors), read by every table that needs it: the harness's
registry, the headline's audio-only skip, the operating points' shipped folders and evaluation runs, the pipeline's
and the demo's semantic detectors and thresholds, the Pareto plot; and a detector registered with its own spec is
evaluated, planned and given its policy through the same reads."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from test_evaluate import _dataset  # noqa: E402

from vad_turn.harness.detectors import (  # noqa: E402
    DEFAULT_DETECTOR,
    DETECTORS,
    DetectorSpec,
    _resolve,
    audio_only,
    check_detector_spec,
    default_threshold,
    make_detector,
    register_detector,
    semantic_detectors,
    shipped_detectors,
)


def test_each_spec_states_its_class_inputs():
    """needs_audio / needs_words of a spec are the ones its class declares (the harness reads the built detector's;
    the headline plans with the spec's before building anything)."""
    for name, spec in DETECTORS.items():
        cls = _resolve(spec.factory)
        assert (cls.needs_audio, cls.needs_words) == (spec.needs_audio, spec.needs_words), name


def test_the_tables_read_from_the_specs_keep_their_values():
    """What the seven former tables held, now derived from the specs (a changed spec changes these on purpose)."""
    from pipeline.serving.demo.session import DEMO_DETECTOR_CHOICES, DEMO_DETECTORS, default_threshold as demo_threshold
    from pipeline.runtime.runner import SEMANTIC_DETECTORS, PipelineConfig
    from vad_turn.harness import operating_points as op
    from vad_turn.harness.pareto_plot import DETECTORS as PLOTTED

    assert SEMANTIC_DETECTORS == semantic_detectors() == ("fused", "lexical", "acoustic", "lexical-zeroshot")
    assert DEMO_DETECTORS == ("fused", "lexical-zeroshot", "lexical", "acoustic")
    assert DEMO_DETECTOR_CHOICES == DEMO_DETECTORS + ("smart-turn",)
    assert DEFAULT_DETECTOR == SEMANTIC_DETECTORS[0] == DEMO_DETECTORS[0] == "fused"
    assert PipelineConfig().detectors == SEMANTIC_DETECTORS
    assert set(shipped_detectors()) == {"fused", "lexical", "acoustic"}
    assert {d: DETECTORS[d].model_folders for d in shipped_detectors()} == {
        "fused": ("turn", "lexical", "acoustic"), "lexical": ("lexical",), "acoustic": ("acoustic",)}
    assert op.shipped_file("fused").parent.name == "turn"
    assert {d: op.eval_run(d, "conversation") for d in DETECTORS if op.eval_run(d, "conversation")} == {
        "fused": "eval-fused-swbr-dev", "acoustic": "eval-acoustic-swbr-dev",
        "lexical": "eval-lexical-switchboard-val3000", "lexical-zeroshot": "eval-switchboard-val-lexical-zeroshot-150"}
    assert {d: op.eval_run(d, "voice-agent") for d in DETECTORS if op.eval_run(d, "voice-agent")} == {
        "fused": "eval-fused-voice-agent-dev"}
    assert [d for d in DETECTORS if audio_only(d)] == ["smart-turn", "acoustic"]
    assert default_threshold("lexical-zeroshot") == demo_threshold("lexical-zeroshot") == 1e-6
    assert default_threshold("fused") == default_threshold("vad_turn.lexical.runtime:LexicalDetector") == 0.5
    assert PLOTTED == ("vad-only", "smart-turn", "fused", "acoustic", "lexical")
    with pytest.raises(op.OperatingPointError, match="no shipped model folder"):
        op.shipped_file("lexical-zeroshot")


def test_a_spec_refuses_what_no_table_could_use():
    with pytest.raises(ValueError, match="name"):
        DetectorSpec("", "vad_turn.harness.detectors:VADOnlyDetector")
    with pytest.raises(ValueError, match="factory"):
        DetectorSpec("x", "not-a-spec")
    with pytest.raises(ValueError, match="shipped folder 'turn' must be one of"):
        DetectorSpec("x", "vad_turn.harness.detectors:VADOnlyDetector", shipped_folder="turn", model_folders=("lexical",))
    with pytest.raises(ValueError, match="one evaluation run per profile"):
        DetectorSpec("x", "a:B", eval_runs=(("conversation", "a"), ("conversation", "b")))
    with pytest.raises(ValueError, match="default_threshold"):
        DetectorSpec("x", "a:B", default_threshold=0.0)
    with pytest.raises(TypeError, match="no other arguments"):
        register_detector(DetectorSpec("x", "a:B"), "a:B")
    assert "x" not in DETECTORS


class Const:
    """A detector answering one fixed p_eot from nothing (a test double with the Detector protocol)."""

    name = "test-spec"  # what the run records as its detector
    needs_audio = False
    needs_words = False

    def __init__(self, p: str = "0.8"):
        self.p = float(p)

    def predict(self, audio, words, messages, silence_s):
        return self.p


def test_a_detector_registered_with_its_own_spec_is_evaluated_planned_and_given_its_policy(tmp_path):
    from pipeline.runtime.runner import PipelineConfig
    from vad_turn.harness.evaluate import EvalConfig, run
    from vad_turn.harness.headline import evaluation_pairs
    from vad_turn.harness.operating_points import eval_run, is_shipped, policy_from_eval
    from vad_turn.harness.policy import TurnPolicy

    ds = _dataset(tmp_path, n_val=4, n_train=0)
    spec = DetectorSpec("test-spec", Const, "test double", needs_audio=False, needs_words=False, default_threshold=0.3,
                        eval_runs=(("conversation", "eval-test-spec"),))
    register_detector(spec)
    try:
        assert DETECTORS["test-spec"] is spec
        check_detector_spec("test-spec")
        assert make_detector("test-spec", p="0.6").p == 0.6
        # evaluation: scored through the registry, into the run folder its spec names
        out = tmp_path / "runs" / eval_run("test-spec", "conversation")
        metrics = run(EvalConfig(dataset=ds, detector="test-spec", detector_opts=("p=0.8",), thresholds=(0.5, 0.9),
                                 action_delays_s=(0.2, 0.4), timeouts_s=(1.0,), out=out))
        assert metrics["detector"] == "test-spec"
        preds = pd.read_parquet(out / "predictions.parquet")
        assert len(preds) > 0 and np.allclose(preds["p_eot"], 0.8)
        # its policy comes from that run (no shipped model), read through the spec's eval_runs
        assert not is_shipped("test-spec")
        pol = policy_from_eval("test-spec", "fcr@lat<=0.6s", profile="conversation", runs_root=tmp_path / "runs")
        assert pol["policy_from"] == "run" and pol["source"] == str(out)
        assert pol["threshold"] == pytest.approx(0.5)  # p=0.8 clears 0.5, not 0.9 (which waits for the 1 s timeout)
        # the headline plans from the spec alone: one that needs audio and no words is skipped on a set without audio
        register_detector("test-spec-audio", "tests.nothing:Built", needs_audio=True, needs_words=False)
        run_pairs, skipped = evaluation_pairs(["switchboard:val", "ami:none"], ["test-spec", "test-spec-audio"],
                                              lambda corpus: corpus == "ami")
        assert skipped == [("switchboard:val", "test-spec-audio")]
        assert run_pairs == [("switchboard:val", "test-spec"), ("ami:none", "test-spec"), ("ami:none", "test-spec-audio")]
        # the pipeline's policy without a threshold takes the spec's default threshold
        cfg = PipelineConfig(detectors=("test-spec",), policy=TurnPolicy())
        assert cfg.turn_policy("test-spec").threshold == pytest.approx(0.3)
    finally:
        DETECTORS.pop("test-spec")
        DETECTORS.pop("test-spec-audio", None)
    assert default_threshold("test-spec") == 0.5 and not audio_only("test-spec")
