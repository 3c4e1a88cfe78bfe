"""benchmarks/voice_agent_point.py: fixed policies against VAD-only on each set, paired intervals by conversation."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

_spec = importlib.util.spec_from_file_location(
    "voice_agent_point", Path(__file__).resolve().parents[1] / "benchmarks" / "voice_agent_point.py")
vap = importlib.util.module_from_spec(_spec)
sys.modules["voice_agent_point"] = vap  # its config dataclass resolves string annotations through sys.modules
_spec.loader.exec_module(vap)

GRID_S = 0.1


def _span(turn, i, label, dur_s, p, tag="none"):
    n = int(round(min(dur_s, 3.0) / GRID_S))
    return [{"id": turn, "span_index": i, "timestamp": 0.0, "silence_dur": round(k * GRID_S, 3), "p_eot": p,
             "label": label, "span_dur": dur_s, "pause_context": tag, "unit_punct": "", "n_words": 5}
            for k in range(n)]


def _run(tmp_path, n_calls=10, name="eval", first_call=0):
    """`n_calls` calls of two turns each: a 1.0 s pause after "um" scored 0.2 then an end scored 0.9, and a
    turn with no pause whose end is scored 0.9."""
    rows = []
    for c in range(first_call, first_call + n_calls):
        rows += _span(f"call{c}-000-caller", 0, 0, 1.0, 0.2, "filler") + _span(f"call{c}-000-caller", 1, 1, 3.0, 0.9)
        rows += _span(f"call{c}-001-caller", 0, 1, 3.0, 0.9)
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"grid_s": GRID_S, "timeouts_s": [0.6, 1.0, 3.0], "dataset": "x",
                                                 "split": "dev", "detector": "fused", "transcript_lag_s": 0.7}))
    pd.DataFrame(rows).to_parquet(run / "predictions.parquet")
    return run


def test_a_policy_that_holds_the_filler_pause_against_vad_only(tmp_path):
    """VAD-only at 0.6 s cuts every filler pause (10 of 20 turns) and answers at 0.6 s; threshold 0.5 after 0.6 s
    with a 1.5 s timeout holds them all at the same latency; threshold 0.1 from 0 s cuts them all at once."""
    run = _run(tmp_path)
    out = vap.run(vap.VoiceAgentPointConfig(runs=(run,), policies=("0.5/0.6/1.5", "0.1/0/1.5"), shipped=False,
                                            n_resamples=300, json=tmp_path / "out.json"))
    r = out["runs"][0]
    assert (r["n_turns"], r["n_conversations"], r["n_hold_turns"]) == (20, 10, 10)
    assert (r["vad_only"]["n_cutoff"], r["vad_only"]["n_filler_cut"]) == (10, 10)
    assert r["vad_only"]["mean_latency_s"] == pytest.approx(0.6)
    hold, eager = r["policies"]["0.5/0.6/1.5"], r["policies"]["0.1/0/1.5"]
    assert (hold["n_cutoff"], hold["n_filler_cut"], hold["fcr_minus_vad_pt"]) == (0, 0, pytest.approx(-50.0))
    assert hold["mean_latency_s"] == pytest.approx(0.6) and hold["latency_minus_vad_s_ci95"] == pytest.approx([0, 0])
    # every call has the same outcome: the interval of a constant difference is that difference
    assert hold["fcr_minus_vad_pt_ci95"] == pytest.approx([-50.0, -50.0])
    assert (eager["n_cutoff"], eager["mean_latency_s"]) == (10, pytest.approx(0.0))
    assert json.loads((tmp_path / "out.json").read_text())["config"]["policies"] == ["0.5/0.6/1.5", "0.1/0/1.5"]


def test_the_interval_resamples_conversations_not_turns():
    """Two conversations, one with a difference of 1 on all its 9 turns, the other 0 on its 1 turn: resampling
    turns would give a narrow interval around 0.9; by conversation the mean is 0.9, 0 or 1."""
    conv = np.array(["a"] * 9 + ["b"])
    diff = np.array([1.0] * 9 + [0.0])
    lo, hi = vap.paired_interval(conv, diff, 2000, 0)
    assert lo == pytest.approx(0.0) and hi == pytest.approx(1.0)


@pytest.mark.parametrize("text", ["0.5/0.6", "a/0/1", "0.5/2/1", "1.5/0/1"])
def test_a_bad_policy_is_one_error_line_before_any_work(text, tmp_path):
    run = _run(tmp_path)
    with pytest.raises(SystemExit) as e:
        vap.main(["--runs", str(run), "--policies", text, "--json", str(tmp_path / "o.json")])
    assert e.value.code == 2 and not (tmp_path / "o.json").exists()


def test_runs_joined_by_plus_are_one_set_of_their_turns(tmp_path):
    """Two folds of 4 and 6 calls joined by '+': one set of 20 turns, as one run of the 10 calls gives; the same
    run twice shares turn ids and is refused."""
    a, b = _run(tmp_path, 4, "fold0"), _run(tmp_path, 6, "fold1", first_call=4)
    whole = _run(tmp_path, 10, "whole")
    cfg = dict(policies=("0.5/0.6/1.5",), shipped=False, n_resamples=200)
    joined = vap.run(vap.VoiceAgentPointConfig(runs=(f"{a}+{b}",), **cfg))["runs"][0]
    one = vap.run(vap.VoiceAgentPointConfig(runs=(str(whole),), **cfg))["runs"][0]
    assert (joined["n_turns"], joined["n_conversations"]) == (20, 10)
    assert joined["policies"] == one["policies"] and joined["vad_only"] == one["vad_only"]
    with pytest.raises(ValueError, match="share turn ids"):
        vap.run(vap.VoiceAgentPointConfig(runs=(f"{a}+{a}",), **cfg))
