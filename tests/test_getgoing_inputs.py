"""Issue 28 #3: a GetGoing build keys its caches by content, names a recording that decodes short or not at all,
skips an empty call folder by name, and never replaces a build with a smaller one without one line per call
that loses turns and a non-zero exit (unless --allow-shrink).

Reproduction against a scratch data root (real calls linked, one truncated copy): `test_truncated_recording_*`
here, or `python benchmarks/getgoing_shrink_repro.py`."""
from __future__ import annotations

import hashlib
import json

import pytest
from conftest import require_data
from fixtures.corpora.make_root import make_getgoing_root, replace_getgoing_file

from vad_turn.data.corpora import load_recipe

CALL = "2df66a93f3ec5a856e9f3ce0b9dc8b30"  # dev, 81.8 s, 7 USER lines: 6 turns aligned (test_getgoing)


def _user_ogg() -> bytes:
    return (require_data(load_recipe("getgoing")["folder"], CALL) / "user.ogg").read_bytes()


def test_ogg_check_names_a_truncated_recording():
    from vad_turn.data.corpora.getgoing_inputs import ogg_problem

    data = _user_ogg()
    assert ogg_problem(data, 81.81) is None  # whole: its last page ends the stream, 81.81 s stated
    half = data[: len(data) // 2]
    assert ogg_problem(half) == f"ends inside an Ogg page ({len(half)} bytes): the file is truncated"
    assert ogg_problem(half, 41.0).endswith("the file is truncated, it decodes to 41.00 s")
    # cut exactly after a page: complete, but no end-of-stream flag
    cut = data.rfind(b"OggS", 0, len(data) // 2)
    assert ogg_problem(data[:cut]).startswith("has no end-of-stream page: the file is truncated")
    # a whole file that decodes to less than its last page states
    assert ogg_problem(data, 60.0) == "decodes to 60.00 s of the 81.81 s its last Ogg page states"
    assert ogg_problem(b"not audio") == "is not an Ogg stream (no Ogg page)"


def test_lost_calls_one_line_per_call_naming_the_changed_input():
    from vad_turn.data.corpora.getgoing_inputs import lost_calls

    old = {"a": {"inputs": {"user.ogg": "1" * 64, "log.json": "2" * 64, "metadata.json": "3" * 64}, "n_turns": 5},
           "b": {"inputs": {"user.ogg": "4" * 64, "log.json": "5" * 64, "metadata.json": None}, "n_turns": 2},
           "c": {"inputs": {"user.ogg": "6" * 64, "log.json": "7" * 64, "metadata.json": None}, "n_turns": 1}}
    new = {"a": {"inputs": {**old["a"]["inputs"], "user.ogg": "9" * 64}, "n_turns": 3, "problem": None},
           "b": {"inputs": old["b"]["inputs"], "n_turns": 2, "problem": None}}  # b kept, c not selected
    assert lost_calls({u: c["n_turns"] for u, c in old.items()}, old, new) == [
        "call a: 5 -> 3 turns (user.ogg changed: sha256 111111111111 -> 999999999999)",
        "call c: 1 -> 0 turns (not selected in this build)"]
    # a build written before the manifest: counts only
    assert lost_calls({"a": 5}, {}, {"a": {"inputs": {}, "n_turns": 0, "drop_reason": "undecodable",
                                           "problem": "user.ogg does not decode"}}) == [
        "call a: 5 -> 0 turns (user.ogg does not decode)"]


def test_empty_call_folder_is_named_and_skipped(tmp_path, capsys):
    """Today: "in no split of the recipe ... run with --update-recipe", and the same again with it."""
    from vad_turn.data.corpora.getgoing import Recipe, write_recipe_splits
    from vad_turn.data.corpora.getgoing_build import GetGoingConfig, call_jobs

    calls = tmp_path / "getgoing" / "calls"
    for u in ("full", "listed-empty", "half"):
        (calls / u).mkdir(parents=True)
    (calls / "empty").mkdir()
    for name in ("user.ogg", "log.json"):
        (calls / "full" / name).write_bytes(b"x")
    (calls / "half" / "log.json").write_bytes(b"{}")
    recipe = Recipe(folder="getgoing/calls", splits={"dev": ["full", "listed-empty"]}, spam_patterns=())
    assert call_jobs(recipe, GetGoingConfig(data_root=tmp_path, splits=("dev",))) == [(calls / "full", "dev")]
    err = capsys.readouterr().err.splitlines()
    assert sorted(err) == [f"call empty: {calls / 'empty'} has no user.ogg or log.json: skipped",
                           f"call half: {calls / 'half'} has no user.ogg: skipped",
                           f"call listed-empty: {calls / 'listed-empty'} has no user.ogg or log.json: skipped"]
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "getgoing.json").write_text(json.dumps({"folder": "getgoing/calls", "splits": {}}))
    splits = write_recipe_splits(tmp_path, tmp_path / "recipes")  # --update-recipe lists usable calls only
    assert sorted(u for us in splits.values() for u in us) == ["full"]


def test_truncated_recording_is_named_and_refused_unless_allow_shrink(data_root, tmp_path, capsys):
    """Build one real call (6 turns), cut the last fifth of its user.ogg in the scratch root: the rebuild is not
    "up to date", names the call with its turn counts, the changed sha256 and the truncation, exits 2 and keeps
    the good build; --allow-shrink replaces it and records the line. An empty call folder is named, skipped."""
    from vad_turn.cli import main
    from vad_turn.data.dataset import build_info, load_turns

    data, recipes = make_getgoing_root(tmp_path / "root", data_root, {CALL: "dev"})
    argv = ["build-getgoing", "--data-root", str(data), "--recipes-dir", str(recipes), "--out-root",
            str(tmp_path / "built"), "--cache-dir", str(tmp_path / "cache"), "--splits", "dev", "--n-check-turns", "2"]
    out_dir = tmp_path / "built" / "getgoing"
    assert main(argv) == 0
    capsys.readouterr()
    n_good = len(load_turns(out_dir))
    assert n_good == pytest.approx(6, abs=1)
    data_bytes = _user_ogg()
    replace_getgoing_file(data, CALL, "user.ogg", data_bytes[: len(data_bytes) * 4 // 5])  # the last ~16 s cut
    (data / load_recipe("getgoing")["folder"] / "0000-empty").mkdir()
    assert main(argv) == 2  # no --force: a changed input is not "up to date"
    captured = capsys.readouterr()
    assert "up to date" not in captured.out
    lines = captured.err.splitlines()
    assert f"call 0000-empty: {data / load_recipe('getgoing')['folder'] / '0000-empty'} has no user.ogg or log.json: " \
           "skipped" in lines
    lost = [ln for ln in lines if ln.startswith(f"call {CALL}: {n_good} -> ")]
    assert len(lost) == 1, lines
    n_short = int(lost[0].split(" -> ")[1].split()[0])
    assert n_short < n_good
    assert f"user.ogg changed: sha256 {hashlib.sha256(data_bytes).hexdigest()[:12]} -> " in lost[0]
    assert "ends inside an Ogg page" in lost[0] and "the file is truncated" in lost[0]
    assert lines[-1].startswith("vad-turn build-getgoing: error: ") and "--allow-shrink" in lines[-1]
    assert "Traceback" not in captured.err
    assert len(load_turns(out_dir)) == n_good  # the good build is kept
    good = build_info(out_dir)["calls"][CALL]
    assert good["n_turns"] == n_good and good["problem"] is None and good["audio_s"] == pytest.approx(81.8, abs=0.05)

    assert main(argv + ["--allow-shrink"]) == 0
    assert lost[0] in capsys.readouterr().err.splitlines()
    info = build_info(out_dir)
    assert len(load_turns(out_dir)) == n_short and info["notes"]["calls_lost_turns"] == lost
    assert "truncated" in info["notes"]["input_problems"][CALL] and info["calls"][CALL]["audio_s"] < 70.0


def test_read_call_audio_names_a_recording_that_decodes_short_or_not_at_all(tmp_path):
    from vad_turn.data.corpora.getgoing_inputs import read_call_audio

    data = _user_ogg()
    (tmp_path / "log.json").write_text('{"history": []}')
    (tmp_path / "user.ogg").write_bytes(data)
    audio, inputs, problem = read_call_audio(tmp_path)
    assert problem is None and audio.size / 16_000 == pytest.approx(81.81, abs=0.01)
    assert inputs["user.ogg"] == hashlib.sha256(data).hexdigest() and inputs["metadata.json"] is None
    assert inputs["log.json"] == hashlib.sha256(b'{"history": []}').hexdigest()
    (tmp_path / "user.ogg").write_bytes(data[: len(data) // 2])
    audio, _, problem = read_call_audio(tmp_path)
    assert problem.startswith(f"user.ogg ends inside an Ogg page ({len(data) // 2} bytes): the file is truncated, "
                              "it decodes to ") and audio.size / 16_000 < 45.0
    (tmp_path / "user.ogg").write_bytes(b"not audio")
    audio, inputs, problem = read_call_audio(tmp_path)
    assert audio is None and problem.startswith("user.ogg does not decode (9 bytes): ") and "cannot decode" in problem
    assert inputs["user.ogg"] == hashlib.sha256(b"not audio").hexdigest()
