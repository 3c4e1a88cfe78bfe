"""Notebooks run headless on tiny settings (STYLE rule 12): they must execute top to bottom."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def execute(path: Path, env: dict[str, str], timeout_s: int = 600) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment of this process
    try:
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert not cell.get("outputs"), f"{path.name}: strip outputs before committing"
                assert cell.get("execution_count") is None, f"{path.name}: strip execution counts"


def test_01_explore_turns_runs_on_a_tiny_build(tmp_path, data_root):
    from vad_turn.data.build import BuildConfig, run

    built = tmp_path / "built"
    run(BuildConfig(data_root=data_root, out_root=built, max_conversations=4))
    nb = execute(NOTEBOOKS / "01_explore_turns.ipynb", {"VAD_TURN_BUILT_ROOT": str(built)})
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "the pause-length figure was not drawn"
    summary_html = next(o["data"]["text/plain"] for o in nb.cells[1].outputs if "data" in o)
    for corpus in ("switchboard", "sbcsae", "ami"):
        assert corpus in summary_html
