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
    (pipeline_main, ["bench", "--timeout-s", "0.1", "--action-delay-s", "0.2"], "--action-delay-s 0.2 must be <= --timeout-s 0.1"),
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


# ----------------------------------------------------------------------------- help on every option (issue 12)

def _tables():
    from prosody.cli import COMMANDS as prosody_commands
    from prosody.cli import main as prosody_main
    from vad_turn.cli import COMMANDS as vad_turn_commands
    from vad_turn.core.setup_check import COMMANDS as setup_commands
    from vad_turn.core.setup_check import main as setup_main

    from pipeline.cli import COMMANDS as pipeline_commands

    return {"vad-turn": (vad_turn_commands, vad_turn_main), "prosody": (prosody_commands, prosody_main),
            "pipeline": (pipeline_commands, pipeline_main), "setup_check": (setup_commands, setup_main)}


# one-command entry points (config_main): module (or benchmarks/ file), config class
SCRIPTS = [("vad_turn.fusion.fit", "FitSourceConfig"), ("benchmarks/tts_ttfa.py", "TtfaConfig"),
           ("pipeline.serving.llm_server", "ServeConfig"), ("vad_turn.acoustic.report", "AcousticReportConfig"),
           ("benchmarks/lexical_slices.py", "SlicesConfig"), ("benchmarks/lexical_latency.py", "LexicalLatencyConfig"),
           ("benchmarks/f0_vs_praat.py", "F0Config"), ("benchmarks/turn_latency.py", "TurnLatencyConfig"),
           ("benchmarks/stt_word_lag.py", "SttLagConfig"), ("benchmarks/fusion_bootstrap.py", "FusionBootstrapConfig"),
           ("benchmarks/acoustic_latency.py", "LatencyConfig"), ("benchmarks/smart_turn_latency.py", "SmartTurnLatencyConfig"),
           ("benchmarks/lm_probe.py", "ProbeConfig"), ("benchmarks/demo_pool_memory.py", "PoolMemoryConfig"),
           ("pipeline.bench.stt_lag", "SttLagBenchConfig"), ("pipeline.bench.stt_lm", "SttLmConfig"),
           ("benchmarks/voice_agent_point.py", "VoiceAgentPointConfig")]


def _module(name: str):
    import importlib
    import importlib.util
    import sys

    from vad_turn.core.config import REPO_ROOT

    if not name.endswith(".py"):
        return importlib.import_module(name)
    path = REPO_ROOT / name
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # benchmarks import their sibling `timing`
    if path.stem not in sys.modules:
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = mod  # dataclasses resolve string annotations through sys.modules
        spec.loader.exec_module(mod)
    return sys.modules[path.stem]


def _fields_without_help(cls, prefix=""):
    import dataclasses
    import typing

    from vad_turn.core.config import is_config_class

    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if not str(f.metadata.get("help", "")).strip():
            yield f"{cls.__name__}.{prefix}{f.name}"
        tp = hints[f.name]
        tp = next((a for a in typing.get_args(tp) if a is not type(None)), tp) if type(None) in typing.get_args(tp) else tp
        if is_config_class(tp):
            yield from _fields_without_help(tp, f"{prefix}{f.name}.")


def test_every_option_of_every_command_has_help():
    classes = [(f"{prog} {cmd}", getattr(_module(mod), cls)) for prog, (table, _) in _tables().items()
               for cmd, (mod, cls, _, _) in table.items()]
    classes += [(mod, getattr(_module(mod), cls)) for mod, cls in SCRIPTS]
    missing = [f"{where}: {name}" for where, cls in classes for name in _fields_without_help(cls)]
    assert not missing, "fields without metadata['help']:\n" + "\n".join(missing)


def _commands():
    return [(prog, cmd) for prog, (table, _) in _tables().items() for cmd in table]


@pytest.mark.parametrize("prog,cmd", _commands(), ids=[" ".join(c) for c in _commands()])
def test_help_of_every_subcommand(prog, cmd, capsys):
    import dataclasses

    table, main = _tables()[prog]
    mod, cls_name, _, _ = table[cmd]
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    fields = [f for f in dataclasses.fields(getattr(_module(mod), cls_name)) if f.init]
    for f in fields:  # every top-level option (or positional) is listed
        assert f.name.replace("_", "-") in out or f.name in out, (cmd, f.name)


@pytest.mark.parametrize("mod,cls", SCRIPTS, ids=[m for m, _ in SCRIPTS])
def test_help_of_every_script(mod, cls, capsys):
    with pytest.raises(SystemExit) as e:
        _module(mod).main(["--help"])
    assert e.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_nested_options_of_train_acoustic(capsys):
    """The acoustic training config holds the model config, which holds the front end's: dotted options."""
    from vad_turn.acoustic.train import AcousticTrainConfig
    from vad_turn.core.cli import build_parser
    from vad_turn.core.config import config_from_args
    from vad_turn.cli import COMMANDS

    args = build_parser(COMMANDS, "vad-turn").parse_args(
        ["train-acoustic", "--epochs", "2", "--model.features.window-s", "2.0", "--model.conv-channels", "32",
         "--no-export"])
    cfg = config_from_args(AcousticTrainConfig, args)
    assert (cfg.epochs, cfg.model.features.window_s, cfg.model.conv_channels, cfg.export) == (2, 2.0, 32, False)
    assert cfg.model.features.n_mels == 40 and cfg.model.lstm_hidden == 64  # the rest keep the defaults
    with pytest.raises(SystemExit) as e:
        vad_turn_main(["train-acoustic", "--model.features.window-s", "0.001"])
    assert e.value.code == 2
    assert "--model.features.*: window_s=0.001" in capsys.readouterr().err.splitlines()[-1]


def test_setup_check_commands_keep_their_command_lines(tmp_path, capsys):
    """`python -m vad_turn.core.setup_check check --only ...` and `write-lock RESOLVED MODELS` (the Makefile's)."""
    import json

    from vad_turn.core import setup_check as sc

    assert sc.main(["check", "--only", "lock"]) in (0, 1)
    assert capsys.readouterr().out.startswith("[")

    def item(name):
        return {"metadata": {"name": name, "version": "1.0"},
                "download_info": {"archive_info": {"hashes": {"sha256": "ab" * 32}}}}

    (tmp_path / "r.json").write_text(json.dumps({"install": [item("numpy")]}))
    (tmp_path / "m.json").write_text(json.dumps({"install": [item(n) for n in sc.MODEL_PACKAGES]}))
    assert sc.main(["write-lock", str(tmp_path / "r.json"), str(tmp_path / "m.json")]) == 0
    lock = capsys.readouterr().out
    assert f"numpy==1.0 --hash=sha256:{'ab' * 32}" in lock and sc.MODELS_MARKER in lock
    assert sc.main(["write-lock", str(tmp_path / "m.json"), str(tmp_path / "r.json")]) == 2  # one error line
    assert "error: the models report holds" in capsys.readouterr().err
