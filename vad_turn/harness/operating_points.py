"""Evaluated operating points shipped beside each shipped model, so a fresh clone has a policy.

`vad-turn evaluate` writes named operating points to its run's `metrics.json` ("lat@fcr<=10%": the
lowest mean latency with at most 10% false cut-offs; "fcr@lat<=0.6s": the fewest cut-offs at 0.6 s
mean latency; ...), each a policy (threshold, action_delay_s, timeout_s) with its false cut-off rate
(FCR), mean latency and VAD-only's point on the same spans. Run folders are git-ignored, so

    vad-turn ship-operating-points --detector fused --run runs/eval-fused-swbr-dev

copies those points, whole, into the detector's shipped model folder as `operating_points.json`
(package data: `vad_turn/models/turn/` for "fused", `lexical/`, `acoustic/`), with the run's
dataset, split, config and commit, and the sha256 of every model file the detector loads
(`model_fingerprint`: the files listed in each model folder's checksums.json, hashed as they are
now). `shipped_policy` reads it back and refuses it (`StaleOperatingPoints`, naming both digests)
once any of those files changed: points evaluated for another model are not this model's.

One command per model, idempotent (the same run and model give the same bytes: no timestamps) and
atomic (`atomic_write_json`). It refuses a run that evaluated another detector, a non-default model
(`--detector-opts model=...`), or one older than the model files (re-shipped since: re-evaluate).
`EVAL_RUNS` names the run each detector's policy comes from (the pipeline's default, made by
`make reproduce`); `policy_from_metrics` turns one operating point into a policy dict, the one
definition used for run folders and shipped files alike.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import REPO_ROOT, SHIPPED_MODELS_DIR, default_runs_root
from vad_turn.core.model_files import recorded_checksums, sha256_file
from vad_turn.core.runs import atomic_write_json

# detector -> the run (under runs/) its policy comes from: Switchboard val turns (the shipped val list; "dev"
# in the rendered corpus) in the modality the pipeline feeds it (audio + words for fused and acoustic, words
# for the text models). Made by `make reproduce` (Makefile, `vad-turn evaluate`).
EVAL_RUNS = {
    "fused": "eval-fused-swbr-dev",
    "acoustic": "eval-acoustic-swbr-dev",
    "lexical": "eval-lexical-switchboard-val3000",
    "lexical-zeroshot": "eval-switchboard-val-lexical-zeroshot-150",
}
DEFAULT_OPERATING_POINT = "lat@fcr<=10%"
OPERATING_POINTS_FILE = "operating_points.json"
# detector -> (folder its operating points ship in, folders whose files it loads), under the models dir
SHIPPED_DETECTORS = {"fused": ("turn", ("turn", "lexical", "acoustic")),
                     "lexical": ("lexical", ("lexical",)),
                     "acoustic": ("acoustic", ("acoustic",))}
# detector options that do not change what is evaluated (anything else, e.g. model=..., int8=true, does)
NEUTRAL_DETECTOR_OPTS = ("threads", "batch_size")


class OperatingPointError(ValueError):
    """A policy that cannot be read: run or file missing, malformed, or without the named operating point."""


class StaleOperatingPoints(OperatingPointError):
    """Shipped operating points evaluated for model files that have changed since."""


def shown(path: str | Path) -> str:
    """`path` relative to the repository when inside it (runs/eval-x), else as given."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT.resolve()))
    except ValueError:
        return str(path)


def shipped_file(detector: str, models_dir: Path = SHIPPED_MODELS_DIR) -> Path:
    """Where `detector`'s shipped operating points live; OperatingPointError for a detector without a shipped model."""
    if detector not in SHIPPED_DETECTORS:
        raise OperatingPointError(f"detector {detector!r} has no shipped model folder, so no shipped operating "
                                  f"points (shipped: {', '.join(SHIPPED_DETECTORS)})")
    return Path(models_dir) / SHIPPED_DETECTORS[detector][0] / OPERATING_POINTS_FILE


def model_fingerprint(detector: str, models_dir: Path = SHIPPED_MODELS_DIR) -> tuple[str, dict[str, str]]:
    """(digest, {"<folder>/<file>": sha256 hex}) of the model files `detector` loads, hashed as they are now.

    The files are those listed in each of its folders' checksums.json; digest = sha256 of the lines
    "<folder>/<file> <sha256>" in sorted order. Raises OperatingPointError for a folder without a record."""
    shipped_file(detector, models_dir)
    files = {}
    for sub in SHIPPED_DETECTORS[detector][1]:
        folder = Path(models_dir) / sub
        names = recorded_checksums(folder)
        if not names:
            raise OperatingPointError(f"{folder}: no checksums.json listing the model's files; write it first "
                                      "(vad_turn.core.model_files.write_checksums)")
        for name in sorted(names):
            if not (folder / name).is_file():
                raise OperatingPointError(f"{folder / name}: listed in checksums.json but missing")
            files[f"{sub}/{name}"] = sha256_file(folder / name)
    lines = "".join(f"{k} {v}\n" for k, v in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest(), files


def evaluated_fingerprint(run_dir: str | Path) -> str | None:
    """The model fingerprint `vad-turn evaluate` recorded in `run_dir` (model_fingerprint.txt), None for a run
    made before it recorded one (or of a detector without model files)."""
    path = Path(run_dir) / "model_fingerprint.txt"
    return path.read_text().strip() if path.is_file() else None


def read_metrics(run_dir: str | Path, detector: str) -> dict:
    """An evaluation run's metrics.json with its operating points, checked to evaluate `detector`."""
    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        raise OperatingPointError(f"{path}: evaluation metrics not found; run `make reproduce` (or `vad-turn "
                                  f"evaluate --detector {detector} --out {run_dir}`), or use a manual policy")
    try:
        metrics = json.loads(path.read_text())
        {p["name"]: p for p in metrics["operating_points"]}  # noqa: B018 - checks every point has a name
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise OperatingPointError(f"{path}: malformed evaluation metrics ({e!r})") from e
    if metrics.get("detector") not in (None, detector):
        raise OperatingPointError(f"{path}: evaluates detector {metrics.get('detector')!r}, not {detector!r}")
    return metrics


def policy_from_metrics(metrics: dict, detector: str, operating_point: str, where: str) -> dict:
    """The named operating point of `metrics` (an evaluation's metrics.json, or a shipped operating-points
    file: both hold "operating_points", "dataset", "split") as a policy.

    Returns {"threshold", "action_delay_s", "timeout_s" (seconds), "operating_point", "dataset", "split",
    "false_cutoff_rate", "mean_latency_s" (on that set), "vad_only": {"stop_silence_s",
    "false_cutoff_rate", "mean_latency_s"} (VAD-only's point on the same spans)}; `where` names the
    source in errors."""
    points = {p["name"]: p for p in metrics["operating_points"]}
    if operating_point not in points:
        raise OperatingPointError(f"{where}: no operating point {operating_point!r} (it has {', '.join(points)})")
    p = points[operating_point]
    if not p.get("reachable", True):
        raise OperatingPointError(f"{where}: operating point {operating_point!r} is not reachable for {detector}")
    v = p.get("vad_only") or {}
    return {"threshold": float(p["threshold"]), "action_delay_s": float(p["action_delay_s"]),
            "timeout_s": float(p["timeout_s"]), "operating_point": operating_point,
            "dataset": metrics.get("dataset"), "split": metrics.get("split"),
            "false_cutoff_rate": p.get("false_cutoff_rate"), "mean_latency_s": p.get("mean_latency_s"),
            "vad_only": {"stop_silence_s": v.get("action_delay_s"), "false_cutoff_rate": v.get("false_cutoff_rate"),
                         "mean_latency_s": v.get("mean_latency_s")}}


def load_shipped(detector: str, models_dir: Path = SHIPPED_MODELS_DIR) -> dict:
    """`detector`'s shipped operating-points file, checked against its model files as they are now.

    Raises OperatingPointError when there is none (or it is malformed) and StaleOperatingPoints, naming
    the digest it was evaluated for, the digest now and the changed files, when the model changed since."""
    path = shipped_file(detector, models_dir)
    if not path.is_file():
        raise OperatingPointError(f"{path}: no shipped operating points for {detector}; write them with `vad-turn "
                                  f"ship-operating-points --detector {detector} --run <evaluation run>`")
    try:
        rec = json.loads(path.read_text())
        want, want_files = rec["model_sha256"], rec["model_files"]
        rec["operating_points"][0]["name"]  # noqa: B018 - a file without points is malformed
    except (json.JSONDecodeError, KeyError, TypeError, IndexError) as e:
        raise OperatingPointError(f"{path}: malformed shipped operating points ({e!r})") from e
    if rec.get("detector") != detector:
        raise OperatingPointError(f"{path}: holds the operating points of {rec.get('detector')!r}, not {detector!r}")
    got, got_files = model_fingerprint(detector, models_dir)
    if got != want:
        changed = sorted(k for k in set(want_files) | set(got_files) if want_files.get(k) != got_files.get(k))
        raise StaleOperatingPoints(
            f"{path}: stale: evaluated for model sha256 {want}, but the {detector} model is now sha256 {got} "
            f"(changed: {', '.join(changed)}). Re-evaluate the model and rerun `vad-turn ship-operating-points "
            f"--detector {detector} --run <that run>` (make reproduce does both)")
    return rec


def shipped_policy(detector: str, operating_point: str = DEFAULT_OPERATING_POINT,
                   models_dir: Path = SHIPPED_MODELS_DIR) -> dict:
    """`policy_from_metrics` of the shipped operating points (verified by `load_shipped`), plus "source"
    (the file), "evaluated_run", "commit" and "model_sha256"."""
    rec = load_shipped(detector, models_dir)
    path = shipped_file(detector, models_dir)
    pol = policy_from_metrics(rec, detector, operating_point, str(path))
    return {**pol, "source": shown(path), "evaluated_run": rec.get("run"), "commit": rec.get("commit"),
            "model_sha256": rec["model_sha256"]}


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class ShipOperatingPointsConfig:
    detector: str = field(default="fused", metadata={"help": "shipped detector", "choices": tuple(SHIPPED_DETECTORS)})
    run: Path | None = field(default=None, metadata={
        "help": "its evaluation run folder (`vad-turn evaluate --out`; default runs/ + EVAL_RUNS[detector])"})
    models_dir: Path = field(default=SHIPPED_MODELS_DIR, metadata={"help": "the shipped model folders"})
    allow_older_run: bool = field(default=False, metadata={
        "help": "ship even when a model file is newer than the run's metrics.json (normally: re-shipped since, "
                "so re-evaluate)"})

    def __post_init__(self) -> None:
        if self.detector not in SHIPPED_DETECTORS:
            raise ValueError(f"--detector: {self.detector!r} has no shipped model (of {', '.join(SHIPPED_DETECTORS)})")


def operating_points_record(cfg: ShipOperatingPointsConfig) -> dict:
    """What `ship` writes: {"detector", "dataset", "split", "n_turns", "run", "commit", "config",
    "model_sha256", "model_files", "operating_points" (metrics.json's, whole)}; raises OperatingPointError."""
    run_dir = Path(cfg.run) if cfg.run is not None else default_runs_root() / EVAL_RUNS[cfg.detector]
    metrics = read_metrics(run_dir, cfg.detector)
    if metrics.get("detector") != cfg.detector:
        raise OperatingPointError(f"{run_dir / 'metrics.json'}: names no detector; cannot tell it evaluated {cfg.detector}")
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise OperatingPointError(f"{run_dir / 'config.json'}: the run's config cannot be read ({e})") from e
    opts = [o for o in config.get("detector_opts") or [] if o.split("=")[0] not in NEUTRAL_DETECTOR_OPTS]
    if opts:
        raise OperatingPointError(f"{run_dir}: evaluated {cfg.detector} with --detector-opts {' '.join(opts)}, "
                                  "not the shipped model as the pipeline loads it")
    digest, files = model_fingerprint(cfg.detector, cfg.models_dir)
    evaluated = evaluated_fingerprint(run_dir)
    if evaluated is not None:
        if evaluated != digest:
            raise OperatingPointError(f"{run_dir}: evaluated model sha256 {evaluated}, but the "
                                      f"shipped {cfg.detector} model is now sha256 {digest}: re-evaluate it")
        newer = []
    else:  # an older run: its time against the model files'
        run_mtime = (run_dir / "metrics.json").stat().st_mtime
        newer = sorted(k for k in files if (Path(cfg.models_dir) / k).stat().st_mtime > run_mtime)
    if newer and not cfg.allow_older_run:
        raise OperatingPointError(f"{run_dir}: older than the model files {', '.join(newer)}: the model was "
                                  "re-shipped after this evaluation; re-evaluate it (or --allow-older-run if "
                                  "those files are unchanged)")
    commit = (run_dir / "commit.txt").read_text().strip() if (run_dir / "commit.txt").is_file() else None
    return {"detector": cfg.detector, "dataset": metrics.get("dataset"), "split": metrics.get("split"),
            "n_turns": (metrics.get("counts") or {}).get("n_turns"), "run": shown(run_dir), "commit": commit,
            "config": config, "model_sha256": digest, "model_files": files,
            "operating_points": metrics["operating_points"]}


def ship(cfg: ShipOperatingPointsConfig) -> int:
    """Write `detector`'s operating_points.json (atomically) and print what it holds."""
    rec = operating_points_record(cfg)
    path = shipped_file(cfg.detector, cfg.models_dir)
    atomic_write_json(path, rec)
    path.chmod(0o644)
    pts = {p["name"]: p for p in rec["operating_points"]}
    p = pts.get(DEFAULT_OPERATING_POINT) or rec["operating_points"][0]
    print(f"wrote {shown(path)}: {len(pts)} operating points of {rec['run']} ({rec['dataset']} {rec['split']}, "
          f"{rec['n_turns']} turns), model sha256 {rec['model_sha256'][:16]}...; {p['name']}: threshold "
          f"{p['threshold']}, delay {p['action_delay_s']} s, timeout {p['timeout_s']} s")
    return 0
