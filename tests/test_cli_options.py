"""Issue 13 #6: every CLI option is checked before any work, errors are one line naming the option, and an
interrupted evaluation keeps what it scored (parts by turn count and by time)."""
from __future__ import annotations

import pytest

from pipeline.cli import main as pipeline_main
from vad_turn.cli import main as vad_turn_main

BAD = [
    (vad_turn_main, ["evaluate", "--max-turns", "0"], "--max-turns must be >= 1"),
    (vad_turn_main, ["evaluate", "--thresholds"], "--thresholds needs at least one value"),
    (vad_turn_main, ["evaluate", "--thresholds", "0.5", "1.5"], "--thresholds: 1.5 is outside [0.0, 1.0]"),
    (vad_turn_main, ["evaluate", "--thresholds", "nan"], "--thresholds: nan is outside"),
    (vad_turn_main, ["evaluate", "--action-delays-s", "-0.1"], "--action-delays-s: -0.1 is outside"),
    (vad_turn_main, ["evaluate", "--timeouts-s", "0"], "--timeouts-s: 0.0 is outside (0.0, 60.0]"),
    (vad_turn_main, ["evaluate", "--false-cutoff-budgets", "1.5"], "--false-cutoff-budgets: 1.5 is outside"),
    (vad_turn_main, ["evaluate", "--checkpoint-s", "0"], "--checkpoint-s: 0.0 is outside"),
    (vad_turn_main, ["evaluate", "--min-hold-s", "1", "--max-hold-s", "0.5"], "--max-hold-s: 0.5 is outside [1.0"),
    (pipeline_main, ["bench", "--threshold", "2"], "--threshold: 2.0 is outside [0.0, 1.0]"),
    (pipeline_main, ["bench", "--action-delay-s", "-1"], "--action-delay-s: -1.0 is outside"),
    (pipeline_main, ["bench", "--timeout-s", "0.1", "--action-delay-s", "0.2"], "--timeout-s: 0.1 is outside [0.2"),
    (pipeline_main, ["bench", "--configs"], "--configs needs at least one configuration"),
    (pipeline_main, ["bench", "--configs", "nope"], "--configs: unknown ['nope']"),
    (pipeline_main, ["run", "--stop-silence-s", "nan"], "--stop-silence-s: nan is outside"),
]


@pytest.mark.parametrize("main,argv,message", BAD, ids=[" ".join(a) for _, a, _ in BAD])
def test_bad_option_is_one_line_naming_it(main, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any run folder would appear here
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "out")] if argv[0] in ("evaluate", "bench") else argv)
    assert e.value.code == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert "error:" in err[-1] and message in err[-1], err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


def test_bad_input_at_run_time_is_one_line_and_writes_no_run_folder(tmp_path, capsys):
    from vad_turn.core.schema import TurnRecord, Word, silence_spans_from_words
    from vad_turn.data.dataset import write_turns

    words = [Word("yes", 0.0, 0.4)]
    rec = TurnRecord(id="sw1-A-0001", source="switchboard", split="train", words=words,
                     silence_spans=silence_spans_from_words(words, 1.0), messages=[], conversation="sw1", speaker="A")
    data = write_turns([rec], tmp_path / "ds")
    assert vad_turn_main(["evaluate", "--dataset", str(data), "--split", "nosuch", "--out", str(tmp_path / "o")]) == 2
    assert vad_turn_main(["evaluate", "--dataset", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("vad-turn evaluate: error: no rows of split 'nosuch'")
    assert err[-1].startswith("vad-turn evaluate: error: ") and "missing" in err[-1]
    assert not (tmp_path / "o").exists()


def test_scoring_checkpoints_by_time_as_well_as_by_turn_count():
    from vad_turn.core.schema import TurnRecord, Word, silence_spans_from_words
    from vad_turn.harness.detectors import make_detector
    from vad_turn.harness.evaluate import EvalConfig, score_turns

    def rec(i):
        words = [Word("well", 0.0, 0.3), Word("yes", 0.9, 1.2)]
        return TurnRecord(id=f"sw{i}-A-0001", source="switchboard", split="val", words=words,
                          silence_spans=silence_spans_from_words(words, 1.8), messages=[], conversation=f"sw{i}",
                          speaker="A")

    rows = [rec(i) for i in range(7)]
    det = make_detector("vad-only")
    parts = []
    score_turns(rows, det, EvalConfig(chunk_turns=500, checkpoint_s=1e-9, timeouts_s=(1.0,)), on_chunk=parts.append)
    assert len(parts) == 7  # every turn past the (tiny) time budget closes a part
    parts.clear()
    score_turns(rows, det, EvalConfig(chunk_turns=3, checkpoint_s=3600, timeouts_s=(1.0,)), on_chunk=parts.append)
    assert [p["id"].nunique() for p in parts] == [3, 3, 1]
