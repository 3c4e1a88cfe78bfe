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
