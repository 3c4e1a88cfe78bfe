"""The set-up self-check: it passes on the installed environment, and it names the package when torch and
torchaudio do not load together, when a version drifts from the lock, or when a model file is missing."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vad_turn.core import setup_check as sc


def test_torch_and_torchaudio_load_together_and_run_an_extension_op():
    r = sc.check_torch()
    assert r.ok, r.detail
    assert "forced_align ran" in r.detail


def test_the_installed_environment_is_exactly_the_lock():
    r = sc.check_lock()
    assert r.ok, r.detail
    pins = sc.read_lock(sc.LOCK_PATH.read_text())
    assert len(pins) >= 150 and pins["torch"] == pins["torchaudio"] == "2.11.0"
    assert set(sc.MODEL_PACKAGES) <= set(pins)


def test_the_other_checks_pass_here():
    for r in sc.run_checks(["pip", "onnxruntime", "models", "debian"]):
        assert r.ok, (r.name, r.detail)


def test_a_torchaudio_that_does_not_load_is_named(tmp_path):
    """A torchaudio whose library fails to load (as 2.11.1 does beside torch 2.11.0) fails the check,
    and the message names torchaudio and the loader's error."""
    fake = tmp_path / "shadow" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('Could not load this library: libtorchaudio.so: undefined symbol: "
        "torch_exception_get_what_without_backtrace')\n")
    env_code = f"import sys; sys.path.insert(0, {str(tmp_path / 'shadow')!r}); " \
               "from vad_turn.core import setup_check as sc; r = sc.check_torch(); print(r.ok); print(r.detail)"
    # check_torch runs its probe in a subprocess of sys.executable: shadow torchaudio there via PYTHONPATH
    import os

    env = dict(os.environ, PYTHONPATH=str(tmp_path / "shadow"))
    out = subprocess.run([sys.executable, "-c", env_code], capture_output=True, text=True, env=env, timeout=300)
    ok, detail = out.stdout.splitlines()[:2]
    assert ok == "False"
    assert "torchaudio" in detail and "undefined symbol" in detail and "make setup" in detail


def test_lock_drift_is_named_with_both_versions():
    pins = {"torch": "2.11.0", "torchaudio": "2.11.0", "onnxruntime": "1.32.0"}
    problems = sc.compare_to_lock(pins, {"torch": "2.11.0", "torchaudio": "2.11.1"})
    assert problems == ["onnxruntime: not installed (lock: 1.32.0)", "torchaudio: installed 2.11.1, lock 2.11.0"]


def test_lock_refuses_ranges_and_reads_hashes():
    assert sc.read_lock("# c\nTorch_Audio==2.11.0 --hash=sha256:ab\n\npip==26.3\n") == {"torch-audio": "2.11.0", "pip": "26.3"}
    with pytest.raises(ValueError, match="line 2 is not an exact pin"):
        sc.read_lock("torch==2.11.0\ntorchaudio>=2.11\n")
    text = sc.LOCK_PATH.read_text()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert " --hash=sha256:" in line and len(line.split("sha256:")[1]) == 64, line
    assert sc.lock_python(text) == f"{sys.version_info.major}.{sys.version_info.minor}"


def test_write_lock_from_pip_reports(tmp_path):
    def item(name, version, sha="0" * 64, local=False):
        info = {"url": "file:///x", "dir_info": {"editable": True}} if local else \
            {"url": "https://example.invalid/x.whl", "archive_info": {"hashes": {"sha256": sha}}}
        return {"metadata": {"name": name, "version": version}, "download_info": info}

    (tmp_path / "r.json").write_text(json.dumps({"install": [item("Torch", "2.11.0", "a" * 64), item("me", "0.1", local=True)]}))
    (tmp_path / "m.json").write_text(json.dumps({"install": [item(p, "1.0") for p in sc.MODEL_PACKAGES]}))
    text = sc.write_lock(tmp_path / "r.json", tmp_path / "m.json", python="3.11")
    pins = sc.read_lock(text)
    assert pins["torch"] == "2.11.0" and "me" not in pins and len(pins) == 1 + len(sc.MODEL_PACKAGES)
    assert text.index(sc.MODELS_MARKER) < text.index("moonshine-cpp==1.0") and sc.lock_python(text) == "3.11"
    (tmp_path / "bad.json").write_text(json.dumps({"install": [{"metadata": {"name": "x", "version": "1"},
                                                                 "download_info": {"url": "u", "archive_info": {}}}]}))
    with pytest.raises(ValueError, match="x 1: the resolution report has no sha256"):
        sc.write_lock(tmp_path / "bad.json", tmp_path / "m.json")


def test_a_missing_model_package_is_named(monkeypatch):
    monkeypatch.setitem(sc.MODEL_FILES, "no-such-model-pkg", ("x/model.bin", None))
    r = sc.check_model_files()
    assert not r.ok and "package no-such-model-pkg is not installed (it carries x/model.bin)" in r.detail


def test_cli_exit_code_and_failure_summary(monkeypatch, capsys):
    monkeypatch.setitem(sc.CHECKS, "models", lambda: sc.Result("model files", False, "pipecat-ai: gone"))
    assert sc.main(["check", "--only", "models"]) == 1
    cap = capsys.readouterr()
    assert "[FAIL] model files: pipecat-ai: gone" in cap.out and "set-up check FAILED (1 of 1): model files" in cap.err


def test_a_new_venv_without_the_disk_it_needs_stops_before_installing(tmp_path):
    """`make setup` on a disk without room for a new .venv stops at once, naming the folder and the space it
    needs, and creates nothing (CI once ran out of disk half-way through pip, after 90 s)."""
    root = sc.LOCK_PATH.parent
    for name in ("Makefile", "pyproject.toml", sc.LOCK_PATH.name):
        (tmp_path / name).write_bytes((root / name).read_bytes())
    r = subprocess.run(["make", "--no-print-directory", "setup", f"PYTHON={sys.executable}",
                        "SETUP_FREE_GB=1000000"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "a new .venv needs 1000000 GB" in r.stderr and str(tmp_path) in r.stderr, r.stderr
    assert not (tmp_path / ".venv").exists()
