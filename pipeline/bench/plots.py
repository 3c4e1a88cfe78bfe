"""Figures and tables of a `pipeline bench` run folder (turns.jsonl + metrics.json).

The one definition of what notebook 05 shows: `pipeline bench` writes these figures into its run folder
when it ends, `pipeline plot-bench --run DIR` (pipeline/cli.py) redraws them and prints the report for an
existing run, and the notebook calls the same functions.

- `latency_boxes.png`: end-to-end latency (end of user speech -> first agent audio) and processing
  (end-of-turn decision -> first agent audio) per configuration, over the conversation turns;
- `endpoint_processing.png`: mean seconds from the end of user speech, split into the endpointing
  wait and processing, per configuration.
"""
from __future__ import annotations

import json
from pathlib import Path

from vad_turn.core.config import default_runs_root
from vad_turn.core.runs import atomic_path, read_jsonl

FIGURES = ("latency_boxes.png", "endpoint_processing.png")
INTERJECTION_COLUMNS = ("config", "scenario", "kind", "interjection", "interrupted", "reaction_s", "pause_s")


def latest_bench_run(root: Path | None = None) -> Path:
    """The newest `pipeline-bench-*` folder under `root` (default: the runs root); raises naming the root."""
    root = Path(root) if root is not None else default_runs_root()
    runs = sorted(root.glob("pipeline-bench-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"{root}: no pipeline-bench-* run folder (run `pipeline bench` first)")
    return runs[-1]


def read_bench_run(run_dir: Path) -> tuple[list[dict], dict]:
    """(rows of turns.jsonl, the "info" of metrics.json ({} while the run is unfinished)) of a bench run folder."""
    run_dir = Path(run_dir)
    turns = run_dir / "turns.jsonl"
    if not turns.exists():
        raise FileNotFoundError(f"{turns}: not a pipeline bench run folder (no turns.jsonl)")
    metrics = run_dir / "metrics.json"
    info = json.loads(metrics.read_text()).get("info", {}) if metrics.exists() else {}
    return read_jsonl(turns), info


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows, columns=sorted({k for r in rows for k in r}) or ["config", "kind"])


def conversation_table(rows: list[dict]):
    """The conversation turns (one row per user turn) as a DataFrame."""
    df = _frame(rows)
    return df[df["kind"] == "conversation"].copy()


def interjection_table(rows: list[dict]):
    """The barge-in and backchannel rows: config, scenario, kind, interjection, interrupted, reaction_s, pause_s."""
    df = _frame(rows)
    df = df[df["kind"] != "conversation"]
    return df[[c for c in INTERJECTION_COLUMNS if c in df.columns]].reset_index(drop=True)


def latency_boxes(rows: list[dict], metrics: tuple[str, ...] = ("e2e_s", "processing_s")):
    """Figure: one horizontal box plot per metric, one box per configuration (conversation turns, seconds)."""
    import matplotlib.pyplot as plt

    conv = conversation_table(rows)
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        data = {c: conv.loc[conv["config"] == c, metric].dropna().to_numpy() if metric in conv else []
                for c in sorted(conv["config"].unique())}
        data = {c: v for c, v in data.items() if len(v)}
        if data:
            ax.boxplot(list(data.values()), tick_labels=list(data), orientation="horizontal")
        ax.set_xlabel(metric.removesuffix("_s").replace("_", " ") + " (s)")
    fig.tight_layout()
    return fig


def endpoint_processing_bars(rows: list[dict]):
    """Figure: mean endpointing wait + processing per configuration, stacked (seconds from the end of speech)."""
    import matplotlib.pyplot as plt

    conv = conversation_table(rows)
    cols = [c for c in ("endpoint_s", "processing_s") if c in conv]
    fig, ax = plt.subplots(figsize=(7, 3))
    if cols and len(conv):
        conv.groupby("config")[cols].mean().plot.barh(stacked=True, ax=ax)
    ax.set_xlabel("mean seconds from the end of user speech (endpointing wait + processing)")
    fig.tight_layout()
    return fig


def write_bench_figures(run_dir: Path, rows: list[dict] | None = None) -> list[Path]:
    """Draw FIGURES from the run folder's turns.jsonl (or `rows`) into the run folder (atomic writes)."""
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_bench_run(run_dir)[0] if rows is None else rows
    paths = []
    for name, draw in zip(FIGURES, (latency_boxes, endpoint_processing_bars)):
        fig = draw(rows)
        with atomic_path(run_dir / name, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        paths.append(run_dir / name)
    return paths
