"""`vad-turn build-data` end to end: fixture corpora, skip/force, load_built, and the real data root."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from fixtures.corpora.make_root import make_data_root

from vad_turn.cli import main
from vad_turn.core.audio import decode_audio_bytes
from vad_turn.data.build import BuildConfig, load_built, run
from vad_turn.data.corpora import CorpusError


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory):
    return make_data_root(tmp_path_factory.mktemp("data"))


def test_build_writes_counts_skips_and_forces(fixture_root, tmp_path, capsys):
    # the fixture has no agent_text: agent-holds is built from the real corpora in test_pause_model.py
    cfg = BuildConfig(data_root=fixture_root, out_root=tmp_path / "built",
                      corpora=tuple(c for c in BuildConfig().corpora if c != "agent-holds"))
    infos = run(cfg)
    assert infos["switchboard"]["counts"] == {
        "train": {"turns": 4, "holds": 3, "ends": 4, "holds_0.2-5s": 3},
        "dev": {"turns": 3, "holds": 1, "ends": 3, "holds_0.2-5s": 1},
    }
    assert infos["sbcsae"]["counts"] == {"test": {"turns": 5, "holds": 2, "ends": 5, "holds_0.2-5s": 2}}
    assert infos["ami"]["counts"]["dev"] == {"turns": 2, "holds": 1, "ends": 2, "holds_0.2-5s": 1}
    table = capsys.readouterr().out
    assert re.search(r"^switchboard\s+train\s+4\s+3\s+4\s+3$", table, re.M)
    summary = json.loads((tmp_path / "built" / "build_info.json").read_text())
    assert summary["sbcsae"]["counts"]["test"]["turns"] == 5
    # one dataset per corpus with a split column; load_built filters it
    assert load_built("switchboard", "dev", tmp_path / "built")["id"] == ["sw9902-0000-A", "sw9902-0001-B", "sw9902-0002-A"]
    assert len(load_built("switchboard", built_root=tmp_path / "built")) == 7
    with pytest.raises(ValueError, match="no split 'test'"):
        load_built("switchboard", "test", tmp_path / "built")
    ami_row = load_built("ami", "train", tmp_path / "built")[0]
    assert decode_audio_bytes(ami_row["audio"]["bytes"]).size == 6.5 * 16_000
    # same recipe: skipped; --force: rebuilt
    assert run(cfg)["sbcsae"].get("skipped") is True
    assert "up to date" in capsys.readouterr().out
    assert "skipped" not in run(BuildConfig(data_root=fixture_root, out_root=tmp_path / "built", force=True,
                                            corpora=("sbcsae",)))["sbcsae"]


def test_cli_and_bad_inputs(fixture_root, tmp_path):
    assert main(["build-data", "--data-root", str(fixture_root), "--out-root", str(tmp_path / "b"),
                 "--corpora", "sbcsae", "--min-silence-s", "0.5"]) == 0
    info = json.loads((tmp_path / "b" / "sbcsae" / "build_info.json").read_text())
    assert info["counts"]["test"]["holds"] == 0  # both holds (0.4 s, 0.2 s) are below 0.5 s
    with pytest.raises(CorpusError, match="unknown corpora"):
        run(BuildConfig(data_root=fixture_root, out_root=tmp_path / "b", corpora=("timit",)))
    with pytest.raises(CorpusError, match="data root folder not found"):
        run(BuildConfig(data_root=tmp_path / "missing", out_root=tmp_path / "b", corpora=("ami",)))
    assert not (tmp_path / "b" / "ami").exists()  # nothing half-written


def test_real_corpora_small_build(data_root, tmp_path):
    """A handful of real conversations per split: the numbers must be those of real dialogue."""
    infos = run(BuildConfig(data_root=data_root, out_root=tmp_path / "built", max_conversations=3))
    swb = infos["switchboard"]["counts"]
    assert set(swb) == {"train", "dev"}
    for c in swb.values():
        assert 30 <= c["turns"] <= 300  # three ~5-minute phone calls
        assert 1.0 <= c["holds"] / c["turns"] <= 10.0
        assert 0.6 <= c["holds_0.2-5s"] / c["holds"] <= 0.95
    ds = load_built("switchboard", "train", tmp_path / "built")
    ends = np.array([r[-1]["end"] - r[-1]["start"] for r in ds["silence_spans"]])
    assert 0.05 <= np.median(ends) <= 1.0 and ends.max() < 60.0
    assert set(ds["conversation"]) == {"sw4637", "sw4638", "sw4640"}  # the first ids of splits/train.txt
    sb = load_built("sbcsae", "test", tmp_path / "built")
    assert set(sb["conversation"]) == {"SBC001", "SBC002", "SBC003"}
    marks = [p for ps in sb["unit_punct"] for p in ps]
    assert set(marks) <= {",", ".", "?", "-", ""} and marks.count(".") > 0.2 * len(marks)
    ami = infos["ami"]["counts"]
    assert set(ami) == {"train", "dev", "test"} and all(c["turns"] >= 3 for c in ami.values())
    row = load_built("ami", "dev", tmp_path / "built")[0]
    clip = decode_audio_bytes(row["audio"]["bytes"])
    assert row["silence_spans"][-1]["end"] <= clip.size / 16_000 + 1e-3 and 0.001 < float(np.std(clip)) < 0.5
