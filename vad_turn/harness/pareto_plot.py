"""Pareto frontiers of several detectors on the same evaluation set, in one figure (notebook 03,
`vad-turn plot-pareto`).

Reads the evaluation run folders under one folder (a `vad-turn headline --out` folder, or any folder
of `vad-turn evaluate` runs): each run's metrics.json holds the Pareto frontier of its detector and of
VAD-only on the same spans (computed by `vad_turn.harness.evaluate.compute_metrics` from the run's
sweep.parquet). Nothing is computed here: the frontier points are read, tabulated and drawn.

    vad-turn plot-pareto --runs-root runs/headline-v3 --sets getgoing:test
    vad-turn plot-pareto --runs-root runs/headline-v3 --sets getgoing:test ami:none --out runs/pareto.png
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vad_turn.core.config import default_runs_root
from vad_turn.core.runs import atomic_path, atomic_write_json

from .detectors import DETECTORS as SPECS
from .detectors import plotted_detectors
from .metrics import FALSE_CUTOFF_BUDGETS, LATENCY_BUDGETS_S

DETECTORS = plotted_detectors()  # drawn by default (DetectorSpec.plotted), in registry order
POINT_COLUMNS = ("set", "detector", "n_turns", "threshold", "action_delay_s", "timeout_s", "false_cutoff_rate",
                 "mean_latency_s", "median_latency_s", "p90_latency_s", "run")


@dataclass(frozen=True)
class ParetoPlotConfig:
    runs_root: Path = field(default_factory=lambda: default_runs_root() / "headline-v2", metadata={
        "help": "folder holding the evaluation run folders (a `vad-turn headline --out` folder)"})
    sets: tuple[str, ...] = field(default=("getgoing:test",), metadata={
        "help": "dataset:split sets, one panel each ('none' = all rows, as in `vad-turn headline --sets`)"})
    detectors: tuple[str, ...] = field(default=DETECTORS, metadata={
        "help": "detectors whose frontiers are drawn (those without a run folder for a set are noted and skipped)"})
    out: Path | None = field(default=None, metadata={
        "help": "PNG to write (default <runs-root>/pareto-detectors.png); the plotted points go beside it as .json"})

    def __post_init__(self) -> None:
        if not self.sets or not self.detectors:
            raise ValueError("--sets and --detectors need at least one value each")
        bad = [s for s in self.sets if s.count(":") != 1 or not all(s.split(":"))]
        if bad:
            raise ValueError(f"--sets: {', '.join(map(repr, bad))} must look like dataset:split "
                             "(split 'none': all rows)")


def set_of_run(run_dir: Path) -> tuple[str, str] | None:
    """(set spec "dataset:split", detector) of an evaluation run folder, or None when `run_dir` holds none.

    The set is named as `vad-turn headline --sets` names it: the dataset folder's name and the split
    the run was asked for (config.json; 'none' when it scored all rows)."""
    cfg_path, m_path = Path(run_dir) / "config.json", Path(run_dir) / "metrics.json"
    if not (cfg_path.exists() and m_path.exists()):
        return None
    cfg = json.loads(cfg_path.read_text())
    if cfg.get("type") != "EvalConfig":
        return None
    metrics = json.loads(m_path.read_text())
    return f"{Path(cfg['dataset']).name}:{cfg.get('split') or 'none'}", metrics["detector"]


def find_runs(runs_root: Path) -> dict[tuple[str, str], Path]:
    """{(set spec, detector): run folder} of the evaluation runs directly under `runs_root`.
    Two runs of the same detector on the same set raise (the figure would have to pick one)."""
    root = Path(runs_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder (run `vad-turn headline --out {root}` first)")
    found: dict[tuple[str, str], Path] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        key = set_of_run(d)
        if key is None:
            continue
        if key in found:
            raise ValueError(f"{root}: two runs of {key[1]} on {key[0]} ({found[key].name}, {d.name}); "
                             "point --runs-root at a folder with one run per detector and set")
        found[key] = d
    return found


def headline_sets(runs_root: Path) -> list[str]:
    """The sets evaluated under `runs_root`, in the order headline.json lists them (else sorted)."""
    sets = list(dict.fromkeys(s for s, _ in find_runs(runs_root)))
    path = Path(runs_root) / "headline.json"
    if path.exists():
        order = list(dict.fromkeys(r["set"] for r in json.loads(path.read_text())))
        return [s for s in order if s in sets] + sorted(s for s in sets if s not in order)
    return sorted(sets)


def load_frontiers(runs_root: Path, sets, detectors=DETECTORS) -> tuple[pd.DataFrame, list[str]]:
    """(frontier points, notes): one row per (set, detector, Pareto-optimal policy) with POINT_COLUMNS,
    by increasing mean latency; notes name each requested detector with no run on a set.

    A detector's frontier is its run's metrics.json "pareto" "detector" list; VAD-only's is the
    vad-only run's, or, without one, the VAD-only frontier stored in the set's first detector run
    (VAD-only scored on the same spans)."""
    runs = find_runs(runs_root)
    frames, notes = [], []
    for spec in sets:
        of_set = {det: d for (s, det), d in runs.items() if s == spec}
        if not of_set:
            raise FileNotFoundError(f"{runs_root}: no evaluation run of {spec} (sets here: "
                                    f"{', '.join(sorted({s for s, _ in runs})) or 'none'})")
        for det in detectors:
            if det in of_set:
                run, key = of_set[det], "detector"
            elif det == "vad-only":
                run, key = of_set[next(iter(of_set))], "vad_only"
            else:
                notes.append(f"{det}: no run on {spec} in {runs_root}")
                continue
            m = json.loads((run / "metrics.json").read_text())
            front = pd.DataFrame(m["pareto"][key])
            frames.append(front.assign(set=spec, detector=det, n_turns=m["counts"]["n_turns"], run=str(run)))
    points = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(POINT_COLUMNS))
    return points[list(POINT_COLUMNS)], notes


def plot_frontiers(points: pd.DataFrame, latency_budgets_s=LATENCY_BUDGETS_S,
                   false_cutoff_budgets=FALSE_CUTOFF_BUDGETS, ncols: int = 3):
    """Figure: one panel per set, each detector's Pareto frontier (false cut-off rate in % of turns vs
    mean latency in s after the true end of turn), the headline's budgets dotted. Each frontier is one
    line labelled with its detector's display name, its points exactly the rows of `points`."""
    import matplotlib.pyplot as plt

    if points.empty:
        raise ValueError("no frontier to draw: none of the detectors has a run on these sets")
    sets = list(dict.fromkeys(points["set"]))
    ncols = max(1, min(ncols, len(sets)))
    nrows = -(-len(sets) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.flat[len(sets):]:
        ax.set_visible(False)
    for ax, spec in zip(axes.flat, sets):
        of_set = points[points["set"] == spec]
        for det, front in of_set.groupby("detector", sort=False):
            known = SPECS.get(det)  # a baseline without inputs (VAD-only) dashed; colour and label from its spec
            ls = "--" if known is not None and not (known.needs_audio or known.needs_words) else "-"
            ax.plot(front["mean_latency_s"].to_numpy(), 100 * front["false_cutoff_rate"].to_numpy(), ls, marker="o",
                    ms=3, color=known.plot_color if known else None, label=known.display_name if known else det)
        xlim, ylim = ax.get_xlim(), ax.get_ylim()  # budgets outside the frontiers' range do not widen the panel
        for b in latency_budgets_s:
            ax.axvline(b, color="k", lw=0.6, ls=":")
        for b in false_cutoff_budgets:
            ax.axhline(100 * b, color="k", lw=0.6, ls=":")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
        ax.set_title(f"{spec} ({of_set['n_turns'].max()} turns)")
        ax.set_xlabel("mean latency after the true end of turn (s)")
        ax.set_ylabel("false cut-off rate (% of turns)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def run(cfg: ParetoPlotConfig) -> Path:
    """Write the figure (cfg.out) and its points (same name, .json); print the notes and the path."""
    import matplotlib

    matplotlib.use("Agg")  # headless CLI; notebooks keep their inline backend
    import matplotlib.pyplot as plt

    points, notes = load_frontiers(cfg.runs_root, cfg.sets, cfg.detectors)
    out = Path(cfg.out) if cfg.out is not None else Path(cfg.runs_root) / "pareto-detectors.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_frontiers(points)
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
    atomic_write_json(out.with_suffix(".json"), {"runs_root": str(cfg.runs_root), "notes": notes,
                                                 "points": points.to_dict("records")})
    for n in notes:
        print(n)
    print(f"figure: {out}")
    return out
