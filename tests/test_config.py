import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import add_config_args, config_from_args
from vad_turn.core.runs import RunFolder, atomic_write_json


@dataclass(frozen=True)
class Demo:
    window_s: float = field(default=2.0, metadata={"help": "window"})
    use_pitch: bool = True
    voices: tuple[str, ...] = ("a", "b")
    out: Path | None = None
    max_turns: int | None = None


def test_cli_generated_from_dataclass():
    p = argparse.ArgumentParser()
    add_config_args(p, Demo)
    cfg = config_from_args(Demo, p.parse_args(["--window-s", "0.5", "--no-use-pitch", "--voices", "x", "y", "z",
                                                "--max-turns", "7"]))
    assert cfg == Demo(window_s=0.5, use_pitch=False, voices=("x", "y", "z"), out=None, max_turns=7)
    assert config_from_args(Demo, p.parse_args([])) == Demo()


def test_run_folder_writes_config_commit_and_metrics(tmp_path):
    rf = RunFolder(tmp_path / "run", Demo(window_s=1.5))
    rf.write_metrics({"fcr": 0.25})
    rf.write_split_ids({"val": ["b", "a"]})
    assert json.loads((tmp_path / "run/config.json").read_text())["window_s"] == 1.5
    assert json.loads((tmp_path / "run/metrics.json").read_text()) == {"fcr": 0.25}
    assert json.loads((tmp_path / "run/split_ids.json").read_text()) == {"val": ["a", "b"]}
    assert (tmp_path / "run/commit.txt").read_text().strip()
    atomic_write_json(tmp_path / "run/metrics.json", {"fcr": 0.5})
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []


# ----------------------------------------------------------------------------- nested configs (issue 12)

@dataclass(frozen=True)
class Inner:
    size: int = field(default=4, metadata={"help": "size"})
    flag: bool = field(default=True, metadata={"help": "a flag"})


@dataclass(frozen=True)
class Middle:
    inner: Inner = field(default_factory=lambda: Inner(size=8), metadata={"help": "inner settings"})
    rate: float = field(default=0.5, metadata={"help": "rate"})


@dataclass(frozen=True)
class Outer:
    name: str = field(default="x", metadata={"help": "name"})
    middle: Middle = field(default_factory=Middle, metadata={"help": "middle settings"})
    sets: tuple[str, ...] = field(default=("a",), metadata={"help": "sets"})


def test_nested_config_options_are_dotted_and_take_the_parents_defaults():
    from vad_turn.core.config import config_options

    p = argparse.ArgumentParser()
    add_config_args(p, Outer)
    assert config_from_args(Outer, p.parse_args([])) == Outer()
    assert Outer().middle.inner.size == 8  # the default comes from Middle's default_factory, not Inner's
    cfg = config_from_args(Outer, p.parse_args(["--middle.inner.size", "3", "--no-middle.inner.flag",
                                                "--middle.rate", "2", "--sets", "b", "--sets", "c"]))
    assert cfg == Outer(middle=Middle(inner=Inner(size=3, flag=False), rate=2.0), sets=("b", "c"))
    opts = config_options(cfg)
    assert opts == ["--middle.inner.size 3", "--no-middle.inner.flag", "--middle.rate 2.0", "--sets b c"]
    assert config_from_args(Outer, p.parse_args(" ".join(opts).split())) == cfg  # the options rebuild it


def test_nested_config_json_round_trip_and_the_old_flat_form():
    from vad_turn.core.config import config_from_dict, config_to_dict, config_to_flat_dict

    cfg = Outer(name="y", middle=Middle(inner=Inner(size=3), rate=1.5))
    d = json.loads(json.dumps(config_to_dict(cfg)))
    assert d["middle"] == {"inner": {"size": 3, "flag": True}, "rate": 1.5}
    assert config_from_dict(Outer, d) == cfg
    flat = config_to_flat_dict(cfg)
    assert flat == {"name": "y", "size": 3, "flag": True, "rate": 1.5, "sets": ["a"]}
    assert config_from_dict(Outer, flat) == cfg  # the flat form a config had before it was nested
    assert config_from_dict(Outer, {"type": "Outer", "rate": 1.5}) == Outer(middle=Middle(rate=1.5))
    import pytest

    with pytest.raises(ValueError, match="no field 'nope'"):
        config_from_dict(Outer, {"nope": 1})


def test_shipped_acoustic_model_config_reads_and_its_card_command_reproduces():
    """The model folder's flat config.json (written before the model config was nested) still loads, and the
    model card's rebuild command is rendered from its flat train_config unchanged."""
    from vad_turn.acoustic.model import DEFAULT_MODEL_DIR, AcousticModelConfig, load_model_config
    from vad_turn.acoustic.report import rebuild_command
    from vad_turn.acoustic.train import AcousticTrainConfig
    from vad_turn.core.config import config_from_dict, config_to_dict

    assert load_model_config(DEFAULT_MODEL_DIR) == AcousticModelConfig()
    card = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    cmd = rebuild_command(card["train_config"], Path("vad_turn/models/acoustic"))
    assert f"\n{cmd}\n" in (DEFAULT_MODEL_DIR / "README.md").read_text()
    tc = config_from_dict(AcousticTrainConfig, card["train_config"])
    assert tc.model == AcousticModelConfig() and tc.epochs == 8 and tc.teacher == "smart-turn"
    nested = json.loads(json.dumps(config_to_dict(tc)))
    assert nested["model"]["features"]["window_s"] == 4.0 and "window_s" not in nested
    assert rebuild_command(nested, Path("vad_turn/models/acoustic")) == cmd
