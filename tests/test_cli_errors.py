"""Issue 28 #4: every CLI value check lives in the one config validation and ends as ONE error line naming the
flag, exit status 2, no traceback (an action delay above the timeout, a port out of range, a detector spec that
is not a detector class); nested configs can keep flat flags (`"flatten": True`); `predict_eot` takes real
numbers only for silence_s."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
import pytest

from pipeline.cli import main as pipeline_main
from vad_turn.cli import main as vad_turn_main
from vad_turn.core.config import add_config_args, config_from_args, config_from_dict, config_main, config_options, \
    config_to_dict


def _one_error_line(capsys, prog: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1, err  # no usage text, no traceback: one line
    assert err[0].startswith(f"{prog}: error: "), err[0]
    return err[0]


# ----------------------------------------------------------------------------- flattened nested configs


@dataclass(frozen=True)
class Policy:
    threshold: float | None = field(default=None, metadata={"help": "p_eot threshold"})
    action_delay_s: float = field(default=0.2, metadata={"help": "minimum silence before acting"})
    timeout_s: float = field(default=1.5, metadata={"help": "end the turn after this silence anyway"})
    preempt: bool = field(default=True, metadata={"help": "start the reply early"})

    def __post_init__(self) -> None:
        if self.action_delay_s > self.timeout_s:
            raise ValueError(f"--action-delay-s {self.action_delay_s:g} must be <= --timeout-s {self.timeout_s:g}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


@dataclass(frozen=True)
class Agent:
    mode: str = field(default="streaming", metadata={"help": "streaming or cascade"})
    policy: Policy = field(default_factory=lambda: Policy(timeout_s=2.0), metadata={"help": "turn policy",
                                                                                     "flatten": True})
    port: int = field(default=7860, metadata={"help": "port"})

    def __post_init__(self) -> None:
        if self.mode not in ("streaming", "cascade"):
            raise ValueError(f"mode must be streaming or cascade, got {self.mode!r}")


@dataclass(frozen=True)
class Lab:
    agent: Agent = field(default_factory=Agent, metadata={"help": "the agent (dotted options)"})
    seed: int = field(default=0, metadata={"help": "seed"})


def test_flattened_nested_config_keeps_flat_flags():
    p = argparse.ArgumentParser()
    add_config_args(p, Agent)
    assert config_from_args(Agent, p.parse_args([])) == Agent()
    assert Agent().policy.timeout_s == 2.0  # the parent's default instance, not Policy's own default
    cfg = config_from_args(Agent, p.parse_args(["--threshold", "0.4", "--action-delay-s", "0.3", "--no-preempt"]))
    assert cfg == Agent(policy=Policy(threshold=0.4, action_delay_s=0.3, timeout_s=2.0, preempt=False))
    opts = config_options(cfg)
    assert opts == ["--threshold 0.4", "--action-delay-s 0.3", "--no-preempt"]  # no "--policy." prefix
    assert config_from_args(Agent, p.parse_args(" ".join(opts).split())) == cfg
    with pytest.raises(SystemExit):  # the dotted form does not exist for a flattened config
        p.parse_args(["--policy.threshold", "0.4"])
    d = config_to_dict(cfg)
    assert d["policy"] == {"threshold": 0.4, "action_delay_s": 0.3, "timeout_s": 2.0, "preempt": False}
    assert config_from_dict(Agent, d) == cfg
    # inside a dotted nested config, a flattened one takes its parent's prefix
    p2 = argparse.ArgumentParser()
    add_config_args(p2, Lab)
    lab = config_from_args(Lab, p2.parse_args(["--agent.timeout-s", "3", "--agent.port", "8000"]))
    assert lab.agent.policy.timeout_s == 3.0 and lab.agent.port == 8000
    assert config_options(lab) == ["--agent.timeout-s 3.0", "--agent.port 8000"]


def test_flattened_flags_that_collide_are_refused():
    @dataclass(frozen=True)
    class Clash:
        timeout_s: float = field(default=1.0, metadata={"help": "a field of the parent"})
        policy: Policy = field(default_factory=Policy, metadata={"help": "policy", "flatten": True})

    with pytest.raises(TypeError, match=r"Clash.policy: the flattened Policy's options collide.*--timeout-s"):
        add_config_args(argparse.ArgumentParser(), Clash)


@pytest.mark.parametrize("argv,line", [
    (["--action-delay-s", "3", "--timeout-s", "2"], "prog: error: --action-delay-s 3 must be <= --timeout-s 2"),
    (["--threshold", "2"], "prog: error: --threshold must be in [0, 1], got 2.0"),  # the flag named for it
    (["--mode", "batch"], "prog: error: --mode must be streaming or cascade, got 'batch'"),
    (["--port", "99999"], "prog: error: --port 99999 is not a port: it must be an integer in 0..65535"),
    (["--port", "-1"], "prog: error: --port -1 is not a port: it must be an integer in 0..65535"),
])
def test_config_errors_are_one_line_naming_the_flag(argv, line, capsys):
    ran = []
    with pytest.raises(SystemExit) as e:
        config_main(Agent, ran.append, argv, prog="prog")
    assert e.value.code == 2 and not ran
    assert _one_error_line(capsys, "prog") == line


def test_nested_dotted_config_error_names_the_flag(capsys):
    with pytest.raises(SystemExit) as e:
        config_main(Lab, print, ["--agent.action-delay-s", "3", "--agent.timeout-s", "2"], prog="prog")
    assert e.value.code == 2
    # the dotted section of the options, then the flattened config's own message
    assert _one_error_line(capsys, "prog") == "prog: error: --agent.*: --action-delay-s 3 must be <= --timeout-s 2"
    with pytest.raises(SystemExit):
        config_main(Lab, print, ["--agent.mode", "x"], prog="prog")
    assert _one_error_line(capsys, "prog") == "prog: error: --agent.*: mode must be streaming or cascade, got 'x'"


# ----------------------------------------------------------------------------- the real command lines


def _tiny_dataset(tmp_path, capsys):
    from vad_turn.core.schema import TurnRecord, Word, silence_spans_from_words
    from vad_turn.data.dataset import write_turns

    words = [Word("yes", 0.0, 0.4)]
    rec = TurnRecord(id="sw1-A-0001", source="switchboard", split="val", words=words,
                     silence_spans=silence_spans_from_words(words, 3.5), messages=[], conversation="sw1", speaker="A")
    out = write_turns([rec], tmp_path / "ds")
    capsys.readouterr()  # its progress bars
    return out


def test_evaluate_refuses_action_delays_past_every_timeout(tmp_path, capsys):
    """Today: exit 0 and a run folder written for a sweep in which the detector can never act. (A sweep grid may
    hold pairs with delay > timeout - the timeout alone, as the default delays up to 2.9 s with --timeouts-s 1 -
    as long as some delay comes before some timeout.)"""
    data = _tiny_dataset(tmp_path, capsys)
    with pytest.raises(SystemExit) as e:
        vad_turn_main(["evaluate", "--dataset", str(data), "--action-delays-s", "3.0", "2.5", "--timeouts-s", "1.0",
                       "2.0", "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    assert _one_error_line(capsys, "vad-turn evaluate") == (
        "vad-turn evaluate: error: --action-delays-s 2.5 must be <= the largest --timeouts-s 2: the detector cannot "
        "act after the turn has already ended")
    assert not (tmp_path / "out").exists()
    from vad_turn.harness.evaluate import EvalConfig

    assert max(EvalConfig(timeouts_s=(1.0,)).action_delays_s) == 2.9  # the default grid with a short timeout: fine


@pytest.mark.parametrize("spec,why", [
    ("os:system", "os.system is a builtin_function_or_method, not a detector class"),
    ("subprocess:call", "subprocess.call is a function, not a detector class"),
    ("vad_turn.harness.detectors:predict_many", "predict_many is a function, not a detector class"),
    ("vad_turn.no_such_module:X", "cannot import vad_turn.no_such_module"),
    ("nope", "unknown detector 'nope'"),
])
def test_detector_spec_that_is_not_a_detector_class_is_one_line(spec, why, tmp_path, capsys):
    """Today `--detector os:system` ends in a traceback after calling os.system(); with --detector-opts it would
    run a shell command."""
    data = _tiny_dataset(tmp_path, capsys)
    with pytest.raises(SystemExit) as e:
        vad_turn_main(["evaluate", "--dataset", str(data), "--detector", spec,
                       "--detector-opts", "command=true", "--out", str(tmp_path / "out")])
    assert e.value.code == 2
    line = _one_error_line(capsys, "vad-turn evaluate")
    assert line.startswith(f"vad-turn evaluate: error: --detector: ") and why in line, line
    assert not (tmp_path / "out").exists()


def test_detector_spec_rule():
    from vad_turn.harness.detectors import VADOnlyDetector, check_detector_spec, make_detector

    check_detector_spec("vad-only")
    check_detector_spec("vad_turn.harness.detectors:VADOnlyDetector")  # a detector class: accepted
    assert isinstance(make_detector("vad_turn.harness.detectors:VADOnlyDetector"), VADOnlyDetector)
    with pytest.raises(ValueError, match="os.system is a builtin_function_or_method, not a detector class"):
        make_detector("os:system", command="true")  # refused before anything is called
    with pytest.raises(ValueError, match="--detectors: detector spec 'json:JSONDecodeError'.*class without predict"):
        check_detector_spec("json:JSONDecodeError", "--detectors")
    with pytest.raises(ValueError, match="must look like 'package.module:Class'"):
        check_detector_spec("os;rm:x")


def test_detector_options_it_does_not_take_are_one_line(tmp_path, capsys):
    """Today: a TypeError traceback from inside the detector's constructor."""
    data = _tiny_dataset(tmp_path, capsys)
    assert vad_turn_main(["evaluate", "--dataset", str(data), "--detector", "vad-only", "--detector-opts", "foo=1",
                          "--out", str(tmp_path / "out")]) == 2
    assert _one_error_line(capsys, "vad-turn evaluate") == (
        "vad-turn evaluate: error: detector 'vad-only': options foo do not fit VADOnlyDetector(): got an unexpected "
        "keyword argument 'foo'")
    assert not (tmp_path / "out").exists()


def test_headline_detectors_are_checked_too(capsys):
    with pytest.raises(SystemExit) as e:
        vad_turn_main(["headline", "--detectors", "vad-only", "os:system"])
    assert e.value.code == 2
    assert "--detectors: detector spec 'os:system'" in _one_error_line(capsys, "vad-turn headline")


def test_demo_port_out_of_range_is_one_line(capsys):
    """Today: a traceback from the server's bind (after the models load)."""
    with pytest.raises(SystemExit) as e:
        pipeline_main(["demo", "--port", "99999", "--no-preload"])
    assert e.value.code == 2
    assert _one_error_line(capsys, "pipeline demo") == (
        "pipeline demo: error: --port 99999 is not a port: it must be an integer in 0..65535")


def test_pipeline_delay_above_timeout_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for cmd in (["run", "--input", str(tmp_path / "x.wav")], ["bench", "--out", str(tmp_path / "out")]):
        with pytest.raises(SystemExit) as e:
            pipeline_main(cmd + ["--action-delay-s", "3", "--timeout-s", "2"])
        assert e.value.code == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert err[-1].startswith(f"pipeline {cmd[0]}: error: ") and "--timeout-s" in err[-1], err
        assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


# ----------------------------------------------------------------------------- predict_eot


class _Model:
    """Stands in for a loaded TurnModel: predict_eot must refuse the input before the model is asked."""

    def _p_eot(self, items):
        return np.array([0.5])


@pytest.mark.parametrize("silence", [True, False, "0.3", np.bool_(True), None, np.array(0.3), 0.3 + 0j])
def test_predict_eot_silence_must_be_a_real_number(silence):
    from vad_turn import predict_eot

    with pytest.raises(ValueError, match=r"^predict_eot: silence_s must be a real number of seconds \(int or float\)"):
        predict_eot(None, 16_000, [("yes", 0.0, 0.3)], silence_s=silence, model=_Model())


@pytest.mark.parametrize("silence", [0, 0.3, np.float32(0.3), np.int64(1), np.float64(2.5)])
def test_predict_eot_takes_ints_floats_and_numpy_reals(silence):
    from vad_turn import predict_eot

    assert predict_eot(None, 16_000, [("yes", 0.0, 0.3)], silence_s=silence, model=_Model()) == 0.5
