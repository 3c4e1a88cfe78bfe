"""`vad-turn plot-training` (notebook 02's figure and tables): the curves drawn are each run's metrics.json
history, the validation table is its selected epoch, and a fusion run gives its AUC-by-branch table."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from vad_turn.core.runs import atomic_write_json
from vad_turn.core.train import TrainConfig, fit
from vad_turn.harness.training_plot import fusion_table, markdown_table, plot_training_curves, validation_table


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    return TensorDataset(x, (x[:, 0] - x[:, 1] > 0).float())


def _bce(model, batch):
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A real `fit` run (3 epochs, a validation AUC, selected on it) and a train-fusion metrics.json."""
    from vad_turn.harness.metrics import roc_auc

    root = tmp_path_factory.mktemp("training")
    val = _data(128, 1)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, select_metric="val_auc", select_mode="max", out=root / "toy")
    x, y = val.tensors
    fit(model, _data(256, 0), val, cfg, loss_fn=_bce,
        evaluate_fn=lambda m: {"val_auc": roc_auc(y.numpy(), m(x).detach().squeeze(-1).numpy())})
    (root / "fusion").mkdir()
    atomic_write_json(root / "fusion" / "metrics.json", {
        "select_auc_by_branch": {"lexical": 0.61, "acoustic": 0.72, "fused": 0.81},
        "select_auc_rows_with_both": {"lexical": 0.6, "acoustic": 0.7, "fused": 0.8},
        "calibration": {"measured_on": "switchboard-rendered:dev:clean", "temperature": 1.1}})
    return root


def test_curves_are_the_history_and_the_table_the_selected_epoch(runs):
    import matplotlib.pyplot as plt

    m = json.loads((runs / "toy" / "metrics.json").read_text())
    hist = m["history"]
    fig = plot_training_curves([runs / "toy", runs / "fusion"])  # the fusion has no epochs: no row
    assert len(fig.axes) == 2
    for ax, keys in zip(fig.axes, (("train_loss", "val_loss"), ("val_auc",))):
        lines = {ln.get_label(): ln for ln in ax.lines}
        assert set(lines) == {*keys, "selected epoch"}
        for k in keys:
            np.testing.assert_array_equal(lines[k].get_xdata(), [1, 2, 3])
            np.testing.assert_allclose(lines[k].get_ydata(), [h[k] for h in hist], rtol=0, atol=1e-12)
        assert list(lines["selected epoch"].get_xdata()) == [m["best_epoch"] + 1] * 2
    plt.close(fig)
    assert m["best_epoch"] == int(np.argmax([h["val_auc"] for h in hist]))
    table = validation_table([runs / "toy", runs / "fusion"])
    assert table["run"].tolist() == ["toy"]
    row = table.iloc[0]
    assert (row["type"], row["epochs"], row["best_epoch"], row["selected_by"]) == (
        "TrainConfig", 3, m["best_epoch"], "val_auc (max)")
    for k in ("train_loss", "val_loss", "val_auc"):
        assert row[k] == hist[m["best_epoch"]][k]
    assert np.isnan(row["val_auc_same_silence"])  # not among this run's metrics
    fus = fusion_table(runs / "fusion")
    assert fus.index.name == "switchboard-rendered:dev:clean" and fus.index.tolist() == ["lexical", "acoustic", "fused"]
    assert fus["auc_rows_with_branch"].tolist() == [0.61, 0.72, 0.81]
    assert fus["auc_rows_with_both"].tolist() == [0.6, 0.7, 0.8]
    assert markdown_table(fus, index=True).splitlines()[2] == "| lexical | 0.61 | 0.6 |"


def test_cli_writes_the_figure_and_the_tables(runs, tmp_path, capsys):
    from vad_turn.cli import main

    assert main(["plot-training", "--runs", str(runs / "toy"), str(runs / "fusion"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "training.md").read_text()
    best = json.loads((runs / "toy" / "metrics.json").read_text())["best"]
    assert f"| toy | TrainConfig |  | 3 | {best['epoch']} | val_auc (max) | {best['train_loss']:.4g} | " in md
    assert "## fusion: AUC by branch" in md and "| fused | 0.81 | 0.8 |" in md
    assert main(["plot-training", "--runs", str(tmp_path / "nothing")]) == 2
    assert "not a finished training run folder" in capsys.readouterr().err
