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


def _outputs(nb: nbformat.NotebookNode) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _cell_outputs(nb: nbformat.NotebookNode, source_start: str) -> list:
    """The outputs of the code cell whose source starts with `source_start`."""
    return next(c.outputs for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start))


def _text(o) -> str:
    return o.get("text", "") + o.get("data", {}).get("text/plain", "") + o.get("data", {}).get("text/markdown", "")


@pytest.mark.slow  # ~55 s; each training it calls is tested on its own (test_lexical, test_acoustic, test_fusion)
def test_02_train_turn_model_runs_on_tiny_settings(tmp_path):
    """The three trainings on tiny settings (40 lexical turns, 8 acoustic turns per source, 1 epoch each; the
    fusion on 12 + 12 rendered turns), then the curves, the validation table and the fusion's reliability."""
    import json

    from conftest import require_built

    from vad_turn.data.dataset import load_turns

    for name in ("switchboard", "ami"):
        require_built(name)
    rendered = load_turns(require_built("switchboard-rendered"))
    kinds = list(zip(rendered["split"], rendered["audio_condition"]))
    pick = [i for i, k in enumerate(kinds) if k == ("train", "clean")][:12]
    pick += [i for i, k in enumerate(kinds) if k == ("dev", "clean")][:12]
    tiny_set = tmp_path / "built" / "swr-tiny"
    rendered.select(pick).save_to_disk(str(tiny_set / "data"))
    settings = {"lexical": {"max_turns": 40, "val_turns": 20, "epochs": 1},
                "acoustic": {"max_train_turns": 8, "max_val_turns": 8, "real_repeat": 1, "epochs": 1},
                "fusion": {"dataset": str(tiny_set), "extra_datasets": [], "c_grid": [1.0]}}
    run = tmp_path / "run"
    nb = execute(NOTEBOOKS / "02_train_turn_model.ipynb",
                 {"TURN_TRAIN_RUN_DIR": str(run), "TURN_TRAIN_SETTINGS": json.dumps(settings)})
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    commands = [line for o in _cell_outputs(nb, "import json") for line in _text(o).splitlines()]
    assert [c.split()[1] for c in commands] == ["train-lexical", "train-acoustic", "train-fusion"]
    for command, options in zip(commands, (["--max-turns 40", "--epochs 1", f"--out {run / 'lexical'}"],
                                           ["--max-train-turns 8", f"--model-out {run / 'acoustic' / 'model'}"],
                                           ["--c-grid 1.0", f"--lexical-dir {run / 'lexical' / 'model'}"])):
        assert all(opt in command for opt in options), (command, options)
    for part in ("lexical", "acoustic"):
        m = json.loads((run / part / "metrics.json").read_text())
        assert len(m["history"]) == 1 and m["best_epoch"] == 0
    assert json.loads((run / "fusion" / "metrics.json").read_text())["n_select_turns"] == 12
    assert (run / "fusion" / "model" / "fusion.json").exists()
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2, "training curves + reliability diagram"
    table = next(_text(o) for o in _cell_outputs(nb, "validation_table(") if "data" in o)
    assert "lexical" in table and "acoustic" in table and "val_auc" in table


@pytest.mark.slow  # ~35 s; the headline is tested in test_headline / test_smart_turn
def test_03_evaluate_vs_vad_runs_on_a_tiny_headline(tmp_path):
    """A tiny headline (VAD-only and the lexical GRU, 30 Switchboard val turns) shown as the table and frontiers."""
    from conftest import require_built

    from vad_turn.harness.headline import HeadlineConfig, run

    require_built("switchboard")
    out = tmp_path / "headline"
    run(HeadlineConfig(sets=("switchboard:val",), detectors=("vad-only", "lexical"), max_turns=30, n_boot=20,
                       cpu_queries=0, out=out, agent_text_run=tmp_path / "no-agent-text"))
    nb = execute(NOTEBOOKS / "03_evaluate_vs_vad.ipynb",
                 {"HEADLINE_RUN_DIR": str(out), "HEADLINE_PARETO_SET": "switchboard:val"})
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    table = next(_text(o) for o in _cell_outputs(nb, "import os") if "data" in o)
    assert "| switchboard:val | vad-only | 30 |" in table and "| switchboard:val | lexical | 30 |" in table
    notes = "".join(_text(o) for o in _cell_outputs(nb, "points, notes ="))
    assert "smart-turn: no run on switchboard:val" in notes and "fused: no run on switchboard:val" in notes
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2, "the set's frontiers + every set's"
