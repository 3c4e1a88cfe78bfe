"""The evaluation report: operating-point table, Pareto plot and per-slice rows (report.md, pareto.png).

Everything here is formatting of `metrics.json` and `sweep.parquet` (written by
`vad_turn.harness.evaluate.run`); no metric is computed here, so a report can be regenerated from a run
folder with `write_report(run_dir, metrics, sweep)`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from vad_turn.core.config import config_to_dict
from vad_turn.core.runs import atomic_write_text


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _sec(x) -> str:
    return "—" if x is None else f"{x:.3f}"


def _ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def _policy(op: dict) -> str:
    if not op["reachable"]:
        return "not reachable"
    return f"{op['threshold']:g} / {op['action_delay_s']:g} / {op['timeout_s']:g}"


def format_table(metrics: dict) -> str:
    """The operating-point table (markdown): detector vs VAD-only on the same grid, and their ratio.

    FCR = false cut-off rate over turns; latencies in seconds after the true end of turn; policy =
    threshold / action delay (s) / timeout (s); "not reachable" where no swept policy meets the budget.
    """
    det = metrics["detector"]
    lines = [
        f"| operating point | {det} FCR | mean lat s | median s | P90 s | policy thr/delay/timeout "
        "| VAD-only FCR | VAD-only mean lat s | VAD-only policy | ratio det/VAD |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for op in metrics["operating_points"]:
        v = op["vad_only"]
        if op["reachable"]:
            cells = [_pct(op["false_cutoff_rate"]), _sec(op["mean_latency_s"]), _sec(op["median_latency_s"]),
                     _sec(op["p90_latency_s"])]
        else:
            cells = ["not reachable", "—", "—", "—"]
        cells += [_policy(op), _pct(v["false_cutoff_rate"]) if v["reachable"] else "not reachable",
                  _sec(v["mean_latency_s"]), _policy(v), _ratio(op["ratio_to_vad_only"])]
        lines.append(f"| {op['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_slices(metrics: dict) -> str:
    """Per-slice rows at each global operating policy: detector and VAD-only FCR and mean latency."""
    rows = pd.DataFrame(metrics["slices"])
    if rows.empty:
        return "(no slices)"
    out = []
    for dim, g in rows.groupby("slice", sort=False):
        out += [f"### {dim}", "",
                "| value | operating point | turns | FCR | VAD-only FCR | turns (latency) | mean lat s | VAD-only mean lat s |",
                "|---|---|---|---|---|---|---|---|"]
        for _, r in g.sort_values("value", kind="mergesort").iterrows():
            out.append(f"| {r['value'] or '(none)'} | {r['operating_point']} | {r['n_turns']} | "
                       f"{_pct(r['false_cutoff_rate'])} | {_pct(r['vad_only_false_cutoff_rate'])} | "
                       f"{r['n_turns_latency']} | {_sec(r['mean_latency_s'])} | {_sec(r['vad_only_mean_latency_s'])} |")
        out.append("")
    return "\n".join(out)


def plot_pareto(sweep: pd.DataFrame, metrics: dict, path: Path) -> Path:
    """Scatter of every swept policy (false cut-off rate vs mean latency) with each detector's
    Pareto frontier and the operating-point budgets; saved as PNG at `path`."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend stays as it is

    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    det = metrics["detector"]
    names = [det] if det == "vad-only" else [det, "vad-only"]
    for name, color, key in zip(names, ("tab:blue", "tab:gray"), ("detector", "vad_only")):
        s = sweep[sweep["detector"] == name]
        ax.scatter(s["mean_latency_s"], 100 * s["false_cutoff_rate"], s=4, alpha=0.15, color=color)
        front = pd.DataFrame(metrics["pareto"][key])
        ax.plot(front["mean_latency_s"], 100 * front["false_cutoff_rate"], "-o", ms=3, color=color,
                label=f"{name} (Pareto frontier)")
    for op in metrics["operating_points"]:
        if op["kind"] == "min_fcr_at_latency":
            ax.axvline(op["budget"], color="k", lw=0.6, ls=":")
        else:
            ax.axhline(100 * op["budget"], color="k", lw=0.6, ls=":")
    ax.set_xlabel("mean latency after the true end of turn (s)")
    ax.set_ylabel("false cut-off rate (% of turns)")
    ax.set_title(f"{det} vs VAD-only: {Path(metrics['dataset']).name} {metrics.get('split') or ''}".strip())
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def write_report(run_dir: Path, metrics: dict, sweep: pd.DataFrame, cfg=None) -> Path:
    """Write run_dir/report.md and run_dir/pareto.png; returns the report path."""
    run_dir = Path(run_dir)
    plot_pareto(sweep, metrics, run_dir / "pareto.png")
    c, d = metrics["counts"], metrics["diagnostics"]
    front = pd.DataFrame(metrics["pareto"]["detector"])
    cols = ["threshold", "action_delay_s", "timeout_s", "false_cutoff_rate", "mean_latency_s", "p90_latency_s"]
    front_md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    front_md += ["| " + " | ".join(f"{r[k]:.4g}" for k in cols) + " |" for _, r in front[cols].iterrows()]
    cmd = ""
    if cfg is not None:
        cmd = (f"`vad-turn evaluate --dataset {cfg.dataset} --split {cfg.split if cfg.split is not None else 'none'} "
               f"--detector {cfg.detector}" + (f" --max-turns {cfg.max_turns}" if cfg.max_turns else "") + "`")
    text = "\n".join([
        f"# End-of-turn evaluation: {metrics['detector']} on {Path(metrics['dataset']).name}"
        f" ({metrics.get('split') or 'all rows'})", "",
        cmd, "",
        f"Turns: {c['n_turns']}; holds kept: {c.get('n_holds_kept', c['n_holds_scored'])} of {c.get('n_holds', '?')} "
        f"(too short: {c.get('n_holds_too_short', '?')}, too long: {c.get('n_holds_too_long', '?')}); "
        f"grid predictions: {c['n_points']}.", "",
        "## Operating points", "",
        format_table(metrics), "",
        "Ratios compare the optimised value (FCR at a latency budget, mean latency at an FCR budget) "
        "with VAD-only at the same operating point; VAD-only is scored on the same grid.", "",
        "![Pareto frontier](pareto.png)", "",
        f"Diagnostics over all grid predictions (not the headline): ROC AUC {d.get('auc')}, AP {d.get('ap')}.", "",
        "## Pareto frontier (detector)", "", *front_md, "",
        "## Slices (at the global policy of each operating point)", "",
        format_slices(metrics),
        "## Definitions", "", metrics.get("definitions", ""), "",
        "## Config", "", "```json",
        json.dumps(config_to_dict(cfg), indent=2) if cfg is not None else "{}", "```", "",
    ])
    atomic_write_text(run_dir / "report.md", text)
    return run_dir / "report.md"
