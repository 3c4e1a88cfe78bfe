"""The semantic turn policy from an evaluation run instead of a hand-picked threshold.

`vad-turn evaluate` sweeps (threshold, action delay, timeout) over a held-out set and writes named
operating points to `metrics.json` ("lat@fcr<=10%": the lowest mean latency with at most 10% false
cut-offs; "fcr@lat<=0.6s": the fewest cut-offs at 0.6 s mean latency; ...), each with its VAD-only
counterpart on the same spans. `EVAL_RUNS` names, per detector, the run the pipeline takes its
policy from: Switchboard val turns (the shipped val list; "dev" in the rendered corpus) in the
modality the pipeline feeds the detector (audio + words for the fused and acoustic models, words
for the text models). The runs are made by `make reproduce` (Makefile, `vad-turn evaluate`).
"""
from __future__ import annotations

import json
from pathlib import Path

from vad_turn.core.config import default_runs_root

EVAL_RUNS = {
    "fused": "eval-fused-swbr-dev",
    "acoustic": "eval-acoustic-swbr-dev",
    "lexical": "eval-lexical-switchboard-val3000",
    "lexical-zeroshot": "eval-switchboard-val-lexical-zeroshot-150",
}
DEFAULT_OPERATING_POINT = "lat@fcr<=10%"


class OperatingPointError(ValueError):
    """A policy that cannot be read: run missing, malformed, or without the named operating point."""


def policy_from_eval(detector: str, operating_point: str = DEFAULT_OPERATING_POINT, *,
                     run_dir: Path | None = None, runs_root: Path | None = None) -> dict:
    """The named operating point of `detector`'s evaluation run, as a policy with its provenance.

    Returns {"threshold", "action_delay_s", "timeout_s" (seconds), "source": run folder,
    "operating_point", "dataset", "split", "false_cutoff_rate", "mean_latency_s" (on that set),
    "vad_only": {"stop_silence_s", "false_cutoff_rate", "mean_latency_s"} (VAD-only's point on the
    same spans)}. `run_dir` overrides `EVAL_RUNS[detector]` under `runs_root` (default runs/).
    """
    if run_dir is None:
        if detector not in EVAL_RUNS:
            raise OperatingPointError(f"no evaluation run is known for detector {detector!r} (known: "
                                      f"{', '.join(EVAL_RUNS)}); pass the run folder or a manual policy")
        run_dir = Path(runs_root or default_runs_root()) / EVAL_RUNS[detector]
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise OperatingPointError(f"{path}: evaluation metrics not found; run `make reproduce` (or `vad-turn "
                                  f"evaluate --detector {detector} --out {run_dir}`), or use a manual policy")
    try:
        metrics = json.loads(path.read_text())
        points = {p["name"]: p for p in metrics["operating_points"]}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise OperatingPointError(f"{path}: malformed evaluation metrics ({e!r})") from e
    if metrics.get("detector") not in (None, detector):
        raise OperatingPointError(f"{path}: evaluates detector {metrics.get('detector')!r}, not {detector!r}")
    if operating_point not in points:
        raise OperatingPointError(f"{path}: no operating point {operating_point!r} (it has {', '.join(points)})")
    p = points[operating_point]
    if not p.get("reachable", True):
        raise OperatingPointError(f"{path}: operating point {operating_point!r} is not reachable for {detector}")
    v = p.get("vad_only") or {}
    return {"threshold": float(p["threshold"]), "action_delay_s": float(p["action_delay_s"]),
            "timeout_s": float(p["timeout_s"]), "source": str(run_dir), "operating_point": operating_point,
            "dataset": metrics.get("dataset"), "split": metrics.get("split"),
            "false_cutoff_rate": p.get("false_cutoff_rate"), "mean_latency_s": p.get("mean_latency_s"),
            "vad_only": {"stop_silence_s": v.get("action_delay_s"), "false_cutoff_rate": v.get("false_cutoff_rate"),
                         "mean_latency_s": v.get("mean_latency_s")}}
