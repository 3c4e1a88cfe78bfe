"""Training curves and validation tables of training run folders (notebook 02, `vad-turn plot-training`).

Reads what the trainers wrote: the per-epoch `history` of a `vad_turn.core.train.fit` run's metrics.json
(`vad-turn train-lexical`, `vad-turn train-acoustic`) and a `vad-turn train-fusion` run's metrics.json
(a logistic regression per mode, no epochs: its selection and calibration). Nothing is computed here.

    vad-turn plot-training --runs runs/turn-model/lexical runs/turn-model/acoustic runs/turn-model/fusion
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vad_turn.core.runs import atomic_path, atomic_write_text

LOSS_KEYS = ("train_loss", "val_loss")
SCORE_KEYS = ("val_auc", "val_auc_same_silence")  # drawn when a run's history has them
TABLE_KEYS = LOSS_KEYS + SCORE_KEYS
BRANCHES = ("lexical", "acoustic", "fused")


@dataclass(frozen=True)
class TrainingPlotConfig:
    runs: tuple[Path, ...] = field(metadata={
        "help": "training run folders (train-lexical / train-acoustic / train-fusion --out)"})
    out: Path | None = field(default=None, metadata={
        "help": "folder for training_curves.png and training.md (default: the first run's parent)"})

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("--runs: name at least one training run folder")


def read_run(run_dir: Path) -> dict:
    """{"name", "path", "config" (config.json), "metrics" (metrics.json)} of a training run folder."""
    run_dir = Path(run_dir)
    m_path = run_dir / "metrics.json"
    if not m_path.exists():
        raise FileNotFoundError(f"{m_path}: not a finished training run folder (no metrics.json)")
    cfg_path = run_dir / "config.json"
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    return {"name": run_dir.name, "path": run_dir, "config": cfg, "metrics": json.loads(m_path.read_text())}


def _validation_set(cfg: dict) -> str:
    if cfg.get("val_set"):
        return str(cfg["val_set"])
    return f"{Path(cfg['dataset']).name}:val" if cfg.get("dataset") else ""


def validation_table(run_dirs) -> pd.DataFrame:
    """One row per epoch-trained run (metrics.json with a history): run, type (its config class),
    validation set, epochs, best epoch, the selection rule and the best epoch's TABLE_KEYS values."""
    rows = []
    for r in map(read_run, run_dirs):
        m = r["metrics"]
        if not m.get("history"):
            continue
        best = m["history"][m["best_epoch"]]
        rows.append({"run": r["name"], "type": r["config"].get("type", ""), "validation": _validation_set(r["config"]),
                     "epochs": len(m["history"]), "best_epoch": m["best_epoch"],
                     "selected_by": f"{m['select_metric']} ({m['select_mode']})",
                     **{k: best.get(k, math.nan) for k in TABLE_KEYS}, "train_wall_s": m.get("train_wall_s")})
    return pd.DataFrame(rows)


def fusion_table(run_dir: Path) -> pd.DataFrame:
    """A `train-fusion` run: ROC AUC of each branch and of the calibrated fusion on its selection set,
    on every row a branch can score and on the rows both can (index: lexical, acoustic, fused)."""
    m = read_run(run_dir)["metrics"]
    if "select_auc_by_branch" not in m:
        raise ValueError(f"{run_dir}: not a train-fusion run folder (no select_auc_by_branch in metrics.json)")
    return pd.DataFrame({"auc_rows_with_branch": [m["select_auc_by_branch"][b] for b in BRANCHES],
                         "auc_rows_with_both": [m["select_auc_rows_with_both"][b] for b in BRANCHES]},
                        index=pd.Index(BRANCHES, name=m["calibration"]["measured_on"]))


def plot_training_curves(run_dirs):
    """Figure: a row per epoch-trained run; left the train and validation loss per epoch, right its
    validation AUCs (SCORE_KEYS present); the selected epoch dotted. Lines are labelled by their key."""
    import matplotlib.pyplot as plt

    runs = [r for r in map(read_run, run_dirs) if r["metrics"].get("history")]
    if not runs:
        raise ValueError(f"none of {[str(d) for d in run_dirs]} has a per-epoch history in metrics.json")
    fig, axes = plt.subplots(len(runs), 2, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for (ax_loss, ax_auc), r in zip(axes, runs):
        hist = pd.DataFrame(r["metrics"]["history"])
        epochs = hist["epoch"].to_numpy() + 1
        for ax, keys in ((ax_loss, LOSS_KEYS), (ax_auc, SCORE_KEYS)):
            for k in keys:
                if k in hist:
                    ax.plot(epochs, hist[k].to_numpy(dtype=float), "-o", ms=3, label=k)
            ax.axvline(r["metrics"]["best_epoch"] + 1, color="k", lw=0.8, ls=":", label="selected epoch")
            ax.set_xlabel("epoch")
            ax.set_xticks(epochs)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax_loss.set_ylabel("BCE loss")
        ax_auc.set_ylabel("ROC AUC")
        ax_loss.set_title(f"{r['name']} ({r['config'].get('type', '?')})", fontsize=10)
        ax_auc.set_title(f"{r['name']}: validation on {_validation_set(r['config'])}", fontsize=10)
    fig.tight_layout()
    return fig


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A DataFrame as a markdown table (floats to 4 significant digits, NaN as "-")."""
    d = df.reset_index() if index else df
    fmt = lambda v: ("-" if math.isnan(v) else f"{v:.4g}") if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(map(str, d.columns)) + " |", "|" + "---|" * len(d.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join(lines)


def run(cfg: TrainingPlotConfig) -> Path:
    """Write training_curves.png and training.md (the validation table, and each fusion run's AUC table)."""
    import matplotlib

    matplotlib.use("Agg")  # headless CLI; notebooks keep their inline backend
    import matplotlib.pyplot as plt

    out = Path(cfg.out) if cfg.out is not None else Path(cfg.runs[0]).parent
    fig = plot_training_curves(cfg.runs)
    with atomic_path(out / "training_curves.png", suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    parts = ["# Training runs", "", markdown_table(validation_table(cfg.runs)), ""]
    for d in cfg.runs:
        if "select_auc_by_branch" in read_run(d)["metrics"]:
            parts += [f"## {Path(d).name}: AUC by branch", "", markdown_table(fusion_table(d), index=True), ""]
    atomic_write_text(out / "training.md", "\n".join(parts))
    print("\n".join(parts))
    print(f"figure: {out / 'training_curves.png'}")
    return out
