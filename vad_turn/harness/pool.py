"""Several evaluation runs of one detector pooled into one: the sweep and operating points over all their turns.

The voice-agent operating point is chosen on agent-directed dev data from two sources, real callers
(GetGoing dev) and agent-text turns with simulated holds rendered whole (agent-holds dev): each is
evaluated on its own (`vad-turn evaluate`, the same grid and transcript lag), then

    vad-turn pool-evaluations --runs runs/eval-fused-getgoing-dev runs/eval-fused-agent-holds-utt-dev \
        --out runs/eval-fused-voice-agent-dev

concatenates their predictions (turn ids stay distinct), sweeps the policies over every turn, and writes a
run folder like `evaluate`'s (config.json, commit.txt, model_fingerprint.txt, predictions.parquet, metrics.json,
report.md) whose metrics hold, beside the usual points, `VOICE_AGENT_POINT`: the lowest mean latency with no
more false cut-offs than VAD-only at `vad_stop_s` on the same turns (the product's promise: answer sooner
than a VAD agent without cutting people off more often). `vad-turn ship-operating-points --profile
voice-agent` ships it. The runs must agree on detector, model fingerprint, grid, transcript lag and sweep.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_text

from . import metrics as M
from .evaluate import EvalConfig, compute_metrics
from .operating_points import VOICE_AGENT_VAD_STOP_S, OperatingPointError, evaluated_fingerprint

# the EvalConfig fields pooled runs must share (what makes their predictions comparable)
SHARED_FIELDS = ("detector", "detector_opts", "transcript_lag_s", "grid_s", "min_hold_s", "max_hold_s", "thresholds",
                 "action_delays_s", "timeouts_s", "latency_budgets_s", "false_cutoff_budgets")


@dataclass(frozen=True)
class PoolConfig:
    runs: tuple[Path, ...] = field(default=(), metadata={"help": "finished `vad-turn evaluate` run folders to pool"})
    out: Path | None = field(default=None, metadata={"help": "run folder to write"})
    vad_stop_s: float = field(default=VOICE_AGENT_VAD_STOP_S, metadata={
        "help": "the matched point allows no more false cut-offs than VAD-only at this stop silence"})

    def __post_init__(self) -> None:
        if len(self.runs) < 1:
            raise ValueError("--runs needs at least one evaluation run folder")
        if self.out is None:
            raise ValueError("--out is required (the pooled run folder)")
        if not 0.0 < float(self.vad_stop_s) <= 10.0:
            raise ValueError(f"--vad-stop-s: {self.vad_stop_s!r} is outside (0, 10]")


def _read_run(run: Path) -> tuple[dict, pd.DataFrame, str | None]:
    for name in ("config.json", "metrics.json", "predictions.parquet"):
        if not (run / name).is_file():
            raise OperatingPointError(f"{run}: no {name} (not a finished `vad-turn evaluate` run)")
    cfg = json.loads((run / "config.json").read_text())
    return cfg, pd.read_parquet(run / "predictions.parquet"), evaluated_fingerprint(run)


def vad_matched_point(sweep: pd.DataFrame, sweep_vad: pd.DataFrame, vad_stop_s: float) -> dict:
    """The lowest-mean-latency policy of `sweep` whose false cut-off rate is <= VAD-only's at `vad_stop_s`
    (its row of `sweep_vad`, action delay = `vad_stop_s`), in `metrics.operating_points`' form plus "vad_only"
    (that VAD-only point) and "ratio_to_vad_only" (mean latency ratio)."""
    vad = sweep_vad[(sweep_vad["action_delay_s"] - vad_stop_s).abs() < 1e-9]
    if vad.empty:
        raise ValueError(f"the sweep has no action delay {vad_stop_s} s for VAD-only")
    vad = vad.sort_values("timeout_s").iloc[-1]
    budget = float(vad["false_cutoff_rate"])
    op = M.operating_points(sweep, (), (budget,))[0]
    op.update(name=f"lat@fcr<=vad-{vad_stop_s:g}s", kind="min_latency_at_vad_fcr", budget=budget)
    op["vad_only"] = {"name": op["name"], "kind": op["kind"], "budget": budget, "reachable": True,
                      **{k: (int(vad[k]) if k in ("n_turns", "n_cutoff") else float(vad[k])) for k in M._POLICY_KEYS}}
    op["ratio_to_vad_only"] = (None if not op["reachable"] or not vad["mean_latency_s"]
                               else float(op["mean_latency_s"]) / float(vad["mean_latency_s"]))
    return op


def pool(cfg: PoolConfig) -> dict:
    """Pool `cfg.runs` into `cfg.out` (see the module docstring); returns the pooled metrics."""
    from .report import format_table, write_report

    read = [(Path(r),) + _read_run(Path(r)) for r in cfg.runs]
    first_cfg = read[0][1]
    for run, c, _, _ in read[1:]:
        diff = [k for k in SHARED_FIELDS if c.get(k) != first_cfg.get(k)]
        if diff:
            raise OperatingPointError(f"{run}: differs from {read[0][0]} in {', '.join(diff)}; pooled runs must "
                                      "score the same detector the same way")
    fps = {fp for _, _, _, fp in read}
    if len(fps) > 1:
        raise OperatingPointError(f"the runs evaluated different model files (fingerprints {sorted(map(str, fps))})")
    preds = pd.concat([p for _, _, p, _ in read], ignore_index=True)
    if preds["id"].nunique() != sum(p["id"].nunique() for _, _, p, _ in read):
        raise OperatingPointError("the runs share turn ids: pool evaluations of different turns")
    ecfg = EvalConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in first_cfg.items()
                         if k in SHARED_FIELDS and k not in ("detector",)},
                      dataset=Path(" + ".join(dict.fromkeys(str(c.get("dataset")) for _, c, _, _ in read))), split=None,
                      detector=first_cfg["detector"])
    splits = "+".join(str(c.get("split")) for _, c, _, _ in read)
    metrics, sweep = compute_metrics(preds, ecfg, first_cfg["detector"], splits)
    table = M.build_span_table(preds, ecfg.grid_s)
    sweep_det = sweep[sweep["detector"] == first_cfg["detector"]].drop(columns="detector")
    sweep_vad = sweep[sweep["detector"] == "vad-only"].drop(columns="detector")
    matched = vad_matched_point(sweep_det, sweep_vad, float(cfg.vad_stop_s))
    metrics["operating_points"].insert(0, matched)
    # its slices too (pause_context "filler": the pauses after "um" the point must hold, counted apart), against
    # VAD-only at the stop silence it is matched to
    p = preds["p_eot"].to_numpy(dtype=np.float64)[table.order]
    metrics["slices"] = M.slice_rows(table, p, np.ones_like(p), [matched], [matched["vad_only"]]) + metrics["slices"]
    metrics["pooled_runs"] = [{"run": str(r), "dataset": c.get("dataset"), "split": c.get("split"),
                               "n_turns": int(p["id"].nunique())} for r, c, p, _ in read]
    metrics["counts"]["n_turns"] = table.n_turns
    out = Path(cfg.out)
    rf = RunFolder(out, cfg)
    atomic_write_text(out / "config.json", json.dumps({**first_cfg, "type": "PoolConfig", "out": str(out), "split": splits,
                                                        "runs": [str(r) for r, *_ in read],
                                                        "vad_stop_s": float(cfg.vad_stop_s)}, indent=2) + "\n")
    if next(iter(fps)) is not None:
        atomic_write_text(out / "model_fingerprint.txt", next(iter(fps)) + "\n")
    with atomic_path(rf.file("predictions.parquet")) as tmp:
        preds.to_parquet(tmp, index=False)
    write_report(out, metrics, sweep, ecfg)
    rf.write_metrics(metrics)
    print(format_table(metrics))
    print(f"run folder: {out}")
    return metrics
