"""Required data fails, never skips: conftest's `require_data` / `require_built` pointed at missing folders
raise pytest's Failed (not Skipped) with a message saying where the data must be and how to get it."""
from __future__ import annotations

import re

import pytest
from conftest import require_built, require_data


def test_a_missing_data_root_fails_naming_where_it_must_be(tmp_path, monkeypatch):
    root = tmp_path / "shared" / "data"
    monkeypatch.setenv("VAD_TURN_DATA_ROOT", str(root))
    with pytest.raises(pytest.fail.Exception) as e:
        require_data("clips", "jfk.flac")
    assert not isinstance(e.value, pytest.skip.Exception)
    assert str(e.value) == (f"real data root {root} not found: clone next to ../shared (or set VAD_TURN_DATA_ROOT)"
                            " - the corpora are read in place")
    # the root is there but not the file: the message names the file
    (root / "clips").mkdir(parents=True)
    missing = f"{root / 'clips' / 'jfk.flac'} not found in the real data root {root}"
    with pytest.raises(pytest.fail.Exception, match=re.escape(missing)):
        require_data("clips", "jfk.flac")
    (root / "clips" / "jfk.flac").write_bytes(b"")
    assert require_data("clips", "jfk.flac") == root / "clips" / "jfk.flac" and require_data() == root


def test_an_unbuilt_dataset_fails_naming_make_test_data(tmp_path, monkeypatch):
    monkeypatch.setenv("VAD_TURN_BUILT_ROOT", str(tmp_path / "built"))
    with pytest.raises(pytest.fail.Exception) as e:
        require_built("switchboard")
    assert not isinstance(e.value, pytest.skip.Exception)
    assert str(e.value).startswith(f"{tmp_path / 'built' / 'switchboard'} is not built: run `make test-data`")
    (tmp_path / "built" / "switchboard").mkdir(parents=True)
    assert require_built("switchboard") == tmp_path / "built" / "switchboard"
