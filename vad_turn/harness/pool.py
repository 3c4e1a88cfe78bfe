"""Several evaluation runs of one detector pooled into one: the sweep and operating points over all their turns.

The voice-agent operating point is chosen on agent-directed dev data from two sources, real callers
(GetGoing dev) and agent-text turns with simulated holds rendered whole (agent-holds dev): each is
evaluated on its own (`vad-turn evaluate`, the same grid and transcript lag), then

    vad-turn pool-evaluations --runs runs/eval-fused-getgoing-dev runs/eval-fused-agent-holds-utt-dev \
        --out runs/eval-fused-voice-agent-dev

concatenates their predictions (turn ids stay distinct), sweeps the policies over every turn, and writes a
run folder like `evaluate`'s (config.json, commit.txt, model_fingerprint.txt, predictions.parquet, metrics.json,
report.md) whose metrics hold, beside the usual points, two points measured against VAD-only at `vad_stop_s`
on the same turns, each on every pooled run apart as well as on the pool (`--match-each-run`, the default):

- `lat@fcr<=vad-0.6s`: the lowest mean latency with no more false cut-offs than VAD-only (answer sooner);
- `VOICE_AGENT_POINT` (`fcr@lat<=vad-0.6s+0.1s`, the one shipped): the fewest false cut-offs with no more
  than VAD-only and a mean latency at most `latency_tolerance_s` above VAD-only's (cut fewer people off).

Both are safe against VAD-only on every set: neither cuts off more turns on any. On the v3 turn model's
dev sets (docs/turn-model-v3.md section 13) no policy is both sooner and safer than VAD-only by more than
noise on each set: real callers' ends are not sure enough to answer before 0.6 s of silence without cutting
their pauses, the rendered ends are answered late, so the sooner point gains 2% of latency and the safer
one a third of the cut-offs (the hesitations held); that second is the default. Matched on the pool alone,
as before, the rendered holds outweighed real callers' pauses: that point cut 13 of GetGoing dev's turns
with a pause where VAD-only cut 2. `vad-turn ship-operating-points --profile voice-agent` ships the default
point. The runs must agree on detector, model fingerprint, grid, transcript lag and sweep.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_text

from . import metrics as M
from .evaluate import EvalConfig, compute_metrics, policy_sweeps
from .operating_points import (VOICE_AGENT_LATENCY_TOLERANCE_S, VOICE_AGENT_VAD_STOP_S, OperatingPointError,
                               evaluated_fingerprint)

# the EvalConfig fields pooled runs must share (what makes their predictions comparable)
SHARED_FIELDS = ("detector", "detector_opts", "transcript_lag_s", "grid_s", "min_hold_s", "max_hold_s", "thresholds",
                 "action_delays_s", "timeouts_s", "latency_budgets_s", "false_cutoff_budgets")


@dataclass(frozen=True)
class PoolConfig:
    runs: tuple[Path, ...] = field(default=(), metadata={"help": "finished `vad-turn evaluate` run folders to pool"})
    out: Path | None = field(default=None, metadata={"help": "run folder to write"})
    vad_stop_s: float = field(default=VOICE_AGENT_VAD_STOP_S, metadata={
        "help": "the points are measured against VAD-only at this stop silence"})
    latency_tolerance_s: float = field(default=VOICE_AGENT_LATENCY_TOLERANCE_S, metadata={
        "help": "the fewest-cut-offs point may answer this much later than VAD-only on average"})
    match_each_run: bool = field(default=True, metadata={
        "help": "the points must also hold against VAD-only on each run apart (else on the pool only)"})

    def __post_init__(self) -> None:
        if len(self.runs) < 1:
            raise ValueError("--runs needs at least one evaluation run folder")
        if self.out is None:
            raise ValueError("--out is required (the pooled run folder)")
        if not 0.0 < float(self.vad_stop_s) <= 10.0:
            raise ValueError(f"--vad-stop-s: {self.vad_stop_s!r} is outside (0, 10]")
        if not 0.0 <= float(self.latency_tolerance_s) <= 1.0:
            raise ValueError(f"--latency-tolerance-s: {self.latency_tolerance_s!r} is outside [0, 1]")


def _read_run(run: Path) -> tuple[dict, pd.DataFrame, str | None]:
    for name in ("config.json", "metrics.json", "predictions.parquet"):
        if not (run / name).is_file():
            raise OperatingPointError(f"{run}: no {name} (not a finished `vad-turn evaluate` run)")
    cfg = json.loads((run / "config.json").read_text())
    return cfg, pd.read_parquet(run / "predictions.parquet"), evaluated_fingerprint(run)


_POLICY = ["threshold", "action_delay_s", "timeout_s"]
_TIES = ["p90_latency_s", "timeout_s", "action_delay_s", "threshold"]  # metrics.operating_points' tie order


def _vad_stop_row(sweep_vad: pd.DataFrame, vad_stop_s: float) -> pd.Series:
    vad = sweep_vad[(sweep_vad["action_delay_s"] - vad_stop_s).abs() < 1e-9]
    if vad.empty:
        raise ValueError(f"the sweep has no action delay {vad_stop_s} s for VAD-only")
    return vad.sort_values("timeout_s").iloc[-1]


def _safe_mask(sweep: pd.DataFrame, vad: pd.Series, latency_tolerance_s: float | None) -> np.ndarray:
    ok = sweep["n_cutoff"].to_numpy() <= int(vad["n_cutoff"])
    if latency_tolerance_s is not None:
        ok &= sweep["mean_latency_s"].to_numpy() <= float(vad["mean_latency_s"]) + latency_tolerance_s + 1e-9
    return ok


def vad_relative_point(sweep: pd.DataFrame, sweep_vad: pd.DataFrame, vad_stop_s: float,
                       latency_tolerance_s: float | None = None,
                       each_run: dict[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None) -> dict:
    """A policy of `sweep` measured against VAD-only at `vad_stop_s` (its row of `sweep_vad`, action delay =
    `vad_stop_s`), in `metrics.operating_points`' form plus "vad_only" (that VAD-only point) and
    "ratio_to_vad_only" (mean latency ratio):

    - `latency_tolerance_s` None: "lat@fcr<=vad-{stop}s", the lowest mean latency with no more false cut-offs
      than VAD-only;
    - else "fcr@lat<=vad-{stop}s+{tol}s", the fewest false cut-offs with no more than VAD-only and a mean
      latency at most VAD-only's + `latency_tolerance_s`.

    `each_run` ({name: (detector sweep, VAD-only sweep)} of the pooled runs apart, same policies): the policy
    must meet the same bounds on each; the point then lists them under "runs"."""
    vad = _vad_stop_row(sweep_vad, vad_stop_s)
    ok = _safe_mask(sweep, vad, latency_tolerance_s)
    if each_run:
        keys = sweep.set_index(_POLICY).index
        for name, (s_det, s_vad) in each_run.items():
            s_run = s_det.set_index(_POLICY).reindex(keys)
            if s_run["n_cutoff"].isna().any():
                raise ValueError(f"{name}: its sweep lacks policies of the pooled sweep")
            ok &= _safe_mask(s_run, _vad_stop_row(s_vad, vad_stop_s), latency_tolerance_s)
    allowed = sweep[ok]
    if latency_tolerance_s is None:
        name, kind, budget = f"lat@fcr<=vad-{vad_stop_s:g}s", "min_latency_at_vad_fcr", float(vad["false_cutoff_rate"])
        keys = ["mean_latency_s", "false_cutoff_rate"]
    else:
        name, kind = f"fcr@lat<=vad-{vad_stop_s:g}s+{latency_tolerance_s:g}s", "min_fcr_at_vad_latency"
        budget, keys = float(vad["mean_latency_s"]) + latency_tolerance_s, ["false_cutoff_rate", "mean_latency_s"]
    op = {"name": name, "kind": kind, "budget": budget, "reachable": not allowed.empty}
    if allowed.empty:
        op.update({k: None for k in M._POLICY_KEYS})
    else:
        best = allowed.sort_values(keys + _TIES, kind="mergesort").iloc[0]
        op.update({k: (int(best[k]) if k in ("n_turns", "n_cutoff") else float(best[k])) for k in M._POLICY_KEYS})
    op["vad_only"] = {"name": name, "kind": kind, "budget": budget, "reachable": True,
                      **{k: (int(vad[k]) if k in ("n_turns", "n_cutoff") else float(vad[k])) for k in M._POLICY_KEYS}}
    op["ratio_to_vad_only"] = (None if not op["reachable"] or not vad["mean_latency_s"]
                               else float(op["mean_latency_s"]) / float(vad["mean_latency_s"]))
    if each_run:
        op["each_run_matched"] = True
        op["runs"] = []
        for run, (s_det, s_vad) in each_run.items():
            v = _vad_stop_row(s_vad, vad_stop_s)
            row = {"run": run, "vad_only_n_cutoff": int(v["n_cutoff"]), "vad_only_mean_latency_s": float(v["mean_latency_s"])}
            if op["reachable"]:
                r = s_det.set_index(_POLICY).loc[tuple(op[k] for k in _POLICY)]
                row.update(n_turns=int(r["n_turns"]), n_cutoff=int(r["n_cutoff"]), mean_latency_s=float(r["mean_latency_s"]))
            op["runs"].append(row)
    return op


def vad_matched_point(sweep: pd.DataFrame, sweep_vad: pd.DataFrame, vad_stop_s: float,
                      each_run: dict[str, tuple[pd.DataFrame, pd.DataFrame]] | None = None) -> dict:
    """The lowest-mean-latency policy with no more false cut-offs than VAD-only at `vad_stop_s`
    (`vad_relative_point` without a latency tolerance)."""
    return vad_relative_point(sweep, sweep_vad, vad_stop_s, None, each_run)


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
    each_run = None
    if cfg.match_each_run and len(read) > 1:
        each_run = {}
        for run, _, p_run, _ in read:
            each_run[str(run)] = policy_sweeps(p_run, ecfg)[2:]
    points = [vad_relative_point(sweep_det, sweep_vad, float(cfg.vad_stop_s), float(cfg.latency_tolerance_s), each_run),
              vad_matched_point(sweep_det, sweep_vad, float(cfg.vad_stop_s), each_run)]
    metrics["operating_points"][:0] = points
    # their slices too (pause_context "filler": the pauses after "um" the point must hold, counted apart), against
    # VAD-only at the stop silence they are measured against
    p = preds["p_eot"].to_numpy(dtype=np.float64)[table.order]
    metrics["slices"] = M.slice_rows(table, p, np.ones_like(p), points, [o["vad_only"] for o in points]) + metrics["slices"]
    metrics["pooled_runs"] = [{"run": str(r), "dataset": c.get("dataset"), "split": c.get("split"),
                               "n_turns": int(p["id"].nunique())} for r, c, p, _ in read]
    metrics["counts"]["n_turns"] = table.n_turns
    out = Path(cfg.out)
    rf = RunFolder(out, cfg)
    atomic_write_text(out / "config.json", json.dumps({**first_cfg, "type": "PoolConfig", "out": str(out), "split": splits,
                                                        "runs": [str(r) for r, *_ in read],
                                                        "vad_stop_s": float(cfg.vad_stop_s),
                                                        "latency_tolerance_s": float(cfg.latency_tolerance_s),
                                                        "match_each_run": bool(cfg.match_each_run)}, indent=2) + "\n")
    if next(iter(fps)) is not None:
        atomic_write_text(out / "model_fingerprint.txt", next(iter(fps)) + "\n")
    with atomic_path(rf.file("predictions.parquet")) as tmp:
        preds.to_parquet(tmp, index=False)
    write_report(out, metrics, sweep, ecfg)
    rf.write_metrics(metrics)
    print(format_table(metrics))
    print(f"run folder: {out}")
    return metrics
