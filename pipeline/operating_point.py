"""The semantic turn policy from an evaluation run instead of a hand-picked threshold.

`vad-turn evaluate` sweeps (threshold, action delay, timeout) over a held-out set and writes named
operating points to `metrics.json` ("lat@fcr<=10%": the lowest mean latency with at most 10% false
cut-offs; "fcr@lat<=0.6s": the fewest cut-offs at 0.6 s mean latency; ...), each with its VAD-only
counterpart on the same spans. `EVAL_RUNS` names, per detector, the run the pipeline takes its
policy from (`vad_turn.harness.operating_points`; made by `make reproduce`). runs/ is git-ignored:
on a fresh clone that run is missing, and the policy comes from the same points shipped beside the
detector's model (`operating_points.json`, `vad-turn ship-operating-points`), refused if the model
changed since they were evaluated. The returned provenance says which of the two was used.
"""
from __future__ import annotations

from pathlib import Path

from vad_turn.core.config import SHIPPED_MODELS_DIR, default_runs_root
from vad_turn.harness.operating_points import (  # noqa: F401 - re-exported: the pipeline's names for them
    DEFAULT_OPERATING_POINT,
    EVAL_RUNS,
    SHIPPED_DETECTORS,
    OperatingPointError,
    StaleOperatingPoints,
    evaluated_fingerprint,
    model_fingerprint,
    policy_from_metrics,
    read_metrics,
    shipped_file,
    shipped_policy,
)


def policy_from_eval(detector: str, operating_point: str = DEFAULT_OPERATING_POINT, *,
                     run_dir: Path | None = None, runs_root: Path | None = None,
                     models_dir: Path = SHIPPED_MODELS_DIR) -> dict:
    """The named operating point of `detector`'s evaluation run, as a policy with its provenance.

    Returns {"threshold", "action_delay_s", "timeout_s" (seconds), "source" (run folder or shipped file),
    "policy_from" ("run" or "shipped"), "operating_point", "dataset", "split", "false_cutoff_rate",
    "mean_latency_s" (on that set), "vad_only": {"stop_silence_s", "false_cutoff_rate", "mean_latency_s"}
    (VAD-only's point on the same spans)}; from shipped points also "evaluated_run", "commit", "model_sha256".

    `run_dir` (explicit) is read or fails. Otherwise `EVAL_RUNS[detector]` under `runs_root` (default
    runs/) is used when it has metrics.json of the model as it is now (its recorded fingerprint), else the
    points shipped in `models_dir` (StaleOperatingPoints
    if the model changed since); OperatingPointError naming both paths when neither exists.
    """
    if run_dir is not None:
        return _from_run(detector, operating_point, Path(run_dir))
    if detector not in EVAL_RUNS and detector not in SHIPPED_DETECTORS:
        raise OperatingPointError(f"no evaluation run is known for detector {detector!r} (known: "
                                  f"{', '.join(EVAL_RUNS)}); pass the run folder or a manual policy")
    run = Path(runs_root or default_runs_root()) / EVAL_RUNS.get(detector, f"eval-{detector}")
    if (run / "metrics.json").exists() and _evaluated_this_model(run, detector, models_dir):
        return _from_run(detector, operating_point, run)
    if detector in SHIPPED_DETECTORS and shipped_file(detector, models_dir).is_file():
        return {**shipped_policy(detector, operating_point, models_dir), "policy_from": "shipped"}
    shipped = (str(shipped_file(detector, models_dir)) if detector in SHIPPED_DETECTORS
               else f"none: {detector!r} has no shipped model")
    raise OperatingPointError(
        f"no operating points for {detector}: evaluation run {run / 'metrics.json'} not found, and no shipped "
        f"operating points ({shipped}); run `make reproduce` (or `vad-turn evaluate --detector {detector} --out "
        f"{run}`), or use a manual policy")


def _evaluated_this_model(run: Path, detector: str, models_dir: Path) -> bool:
    """False when the run recorded a model fingerprint and the detector's shipped model has another one now
    (re-shipped since: its points are another model's); True otherwise (older runs record none)."""
    fp = evaluated_fingerprint(run)
    return fp is None or detector not in SHIPPED_DETECTORS or fp == model_fingerprint(detector, models_dir)[0]


def _from_run(detector: str, operating_point: str, run_dir: Path) -> dict:
    pol = policy_from_metrics(read_metrics(run_dir, detector), detector, operating_point, str(run_dir / "metrics.json"))
    return {**pol, "source": str(run_dir), "policy_from": "run"}
