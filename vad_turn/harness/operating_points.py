"""Evaluated operating points shipped beside each shipped model, so a fresh clone has a policy.

`vad-turn evaluate` writes named operating points to its run's `metrics.json` ("lat@fcr<=10%": the
lowest mean latency with at most 10% false cut-offs; "fcr@lat<=0.6s": the fewest cut-offs at 0.6 s
mean latency; ...), each a policy (threshold, action_delay_s, timeout_s) with its false cut-off rate
(FCR), mean latency and VAD-only's point on the same spans. Run folders are git-ignored, so

    vad-turn ship-operating-points --detector fused --run runs/eval-fused-swbr-dev

copies those points, whole, into the detector's shipped model folder as `operating_points.json`
(package data: `vad_turn/models/turn/` for "fused", `lexical/`, `acoustic/`), with the run's
dataset, split, config and commit, and the sha256 of every model file the detector loads
(`shipped_model_fingerprint`: the files listed in each model folder's checksums.json, hashed as they are
now). `shipped_policy` reads it back and refuses it (`StaleOperatingPoints`, naming both digests)
once any of those files changed: points evaluated for another model are not this model's.

One command per model, idempotent (the same run and model give the same bytes: no timestamps) and
atomic (`atomic_write_json`). It refuses a run that evaluated another detector, a non-default model
(`--detector-opts model=...`), or one older than the model files (re-shipped since: re-evaluate).
Which detectors ship a model, the folders they load and the run each one's policy comes from (the pipeline's
default, made by `make reproduce`) are fields of its `DetectorSpec` (`vad_turn.harness.detectors`: shipped_folder,
model_folders, eval_runs); `policy_from_metrics` turns one operating point into a policy dict, the one
definition used for run folders and shipped files alike.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import REPO_ROOT, SHIPPED_MODELS_DIR, default_runs_root
from vad_turn.core.model_files import recorded_checksums, sha256_file
from vad_turn.core.runs import atomic_write_json

from .detectors import DEFAULT_DETECTOR, DETECTORS, detector_spec, shipped_detectors

# Two profiles of evaluated operating points per shipped detector:
# - "voice-agent" (the default of the pipeline, the bench and the demo): speech addressed to an agent, chosen on
#   agent-directed dev data only (GetGoing dev + the agent-holds whole-turn renders' dev, pooled by
#   `vad-turn pool-evaluations`), with the default STT's measured word lag, at the point VOICE_AGENT_POINT: the
#   fewest false cut-offs with, on each dev set, no more than VAD-only at 0.6 s and a mean latency at most 0.1 s
#   above its (vad_turn/harness/pool.py says why that one);
# - "conversation": human-to-human speech (Switchboard val renders), at "lat@fcr<=10%".
PROFILES = ("voice-agent", "conversation")
DEFAULT_PROFILE = "voice-agent"
VOICE_AGENT_VAD_STOP_S = 0.6
VOICE_AGENT_LATENCY_TOLERANCE_S = 0.1  # one grid step; below the spread of people's own response gaps (200-300 ms)
VOICE_AGENT_POINT = f"fcr@lat<=vad-{VOICE_AGENT_VAD_STOP_S:g}s+{VOICE_AGENT_LATENCY_TOLERANCE_S:g}s"
DEFAULT_POINTS = {"voice-agent": VOICE_AGENT_POINT, "conversation": "lat@fcr<=10%"}
# The run (under runs/) each detector's policy of a profile comes from is its DetectorSpec's eval_run(profile), made
# by `make reproduce` (Makefile). Conversation: Switchboard val turns (the shipped val list; "dev" in the rendered
# corpus) in the modality the pipeline feeds it; voice-agent: the pooled agent-directed dev evaluation.
DEFAULT_OPERATING_POINT = DEFAULT_POINTS["conversation"]
OPERATING_POINTS_FILE = "operating_points.json"
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


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise OperatingPointError(f"unknown operating-point profile {profile!r} (of {', '.join(PROFILES)})")
    return profile


def is_shipped(detector: str) -> bool:
    """Whether `detector` is registered with a shipped model folder (its DetectorSpec's shipped_folder)."""
    return detector in DETECTORS and DETECTORS[detector].shipped_folder is not None


def eval_run(detector: str, profile: str) -> str | None:
    """The run folder (under runs/) `detector`'s `profile` policy comes from (its DetectorSpec's eval_runs), or None."""
    return DETECTORS[detector].eval_run(check_profile(profile)) if detector in DETECTORS else None


def shipped_file(detector: str, models_dir: Path = SHIPPED_MODELS_DIR, profile: str = "conversation") -> Path:
    """Where `detector`'s shipped operating points of `profile` live (conversation: operating_points.json,
    voice-agent: operating_points.voice-agent.json); OperatingPointError for a detector without a shipped model."""
    check_profile(profile)
    if not is_shipped(detector):
        raise OperatingPointError(f"detector {detector!r} has no shipped model folder, so no shipped operating "
                                  f"points (shipped: {', '.join(shipped_detectors())})")
    name = OPERATING_POINTS_FILE if profile == "conversation" else f"operating_points.{profile}.json"
    return Path(models_dir) / detector_spec(detector).shipped_folder / name


def shipped_model_fingerprint(detector: str, models_dir: Path = SHIPPED_MODELS_DIR) -> tuple[str, dict[str, str]]:
    """(digest, {"<folder>/<file>": sha256 hex}) of the shipped model files `detector` loads, hashed as they are now
    (an evaluation's fingerprint, `evaluate.eval_model_fingerprint`, adds the files its --detector-opts name).

    The files are those listed in each of its folders' checksums.json; digest = sha256 of the lines
    "<folder>/<file> <sha256>" in sorted order. Raises OperatingPointError for a folder without a record."""
    shipped_file(detector, models_dir)
    files = {}
    for sub in detector_spec(detector).model_folders:
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


def load_shipped(detector: str, models_dir: Path = SHIPPED_MODELS_DIR, profile: str = "conversation") -> dict:
    """`detector`'s shipped operating-points file, checked against its model files as they are now.

    Raises OperatingPointError when there is none (or it is malformed) and StaleOperatingPoints, naming
    the digest it was evaluated for, the digest now and the changed files, when the model changed since."""
    path = shipped_file(detector, models_dir, profile)
    if not path.is_file():
        raise OperatingPointError(f"{path}: no shipped {profile} operating points for {detector}; write them with "
                                  f"`vad-turn ship-operating-points --detector {detector} --profile {profile} --run "
                                  "<evaluation run>`")
    try:
        rec = json.loads(path.read_text())
        want, want_files = rec["model_sha256"], rec["model_files"]
        rec["operating_points"][0]["name"]  # noqa: B018 - a file without points is malformed
    except (json.JSONDecodeError, KeyError, TypeError, IndexError) as e:
        raise OperatingPointError(f"{path}: malformed shipped operating points ({e!r})") from e
    if rec.get("detector") != detector:
        raise OperatingPointError(f"{path}: holds the operating points of {rec.get('detector')!r}, not {detector!r}")
    got, got_files = shipped_model_fingerprint(detector, models_dir)
    if got != want:
        changed = sorted(k for k in set(want_files) | set(got_files) if want_files.get(k) != got_files.get(k))
        raise StaleOperatingPoints(
            f"{path}: stale: evaluated for model sha256 {want}, but the {detector} model is now sha256 {got} "
            f"(changed: {', '.join(changed)}). Re-evaluate the model and rerun `vad-turn ship-operating-points "
            f"--detector {detector} --run <that run>` (make reproduce does both)")
    return rec


def shipped_policy(detector: str, operating_point: str | None = None, models_dir: Path = SHIPPED_MODELS_DIR,
                   profile: str = "conversation") -> dict:
    """`policy_from_metrics` of the shipped operating points of `profile` (verified by `load_shipped`; the
    profile's default point when `operating_point` is None), plus "source" (the file), "profile",
    "evaluated_run", "commit", "model_sha256" and "transcript_lag_s" (the word lag it was evaluated with)."""
    rec = load_shipped(detector, models_dir, profile)
    path = shipped_file(detector, models_dir, profile)
    pol = policy_from_metrics(rec, detector, operating_point or DEFAULT_POINTS[profile], str(path))
    return {**pol, "source": shown(path), "profile": profile, "evaluated_run": rec.get("run"),
            "commit": rec.get("commit"), "model_sha256": rec["model_sha256"],
            "transcript_lag_s": (rec.get("config") or {}).get("transcript_lag_s")}


def policy_from_eval(detector: str, operating_point: str | None = None, *, profile: str = DEFAULT_PROFILE,
                     run_dir: Path | None = None, runs_root: Path | None = None,
                     models_dir: Path = SHIPPED_MODELS_DIR) -> dict:
    """The named operating point (default: the profile's, `DEFAULT_POINTS`) of `detector`'s evaluation of
    `profile`, as a policy with its provenance.

    Returns {"threshold", "action_delay_s", "timeout_s" (seconds), "source" (run folder or shipped file),
    "policy_from" ("run" or "shipped"), "profile", "operating_point", "dataset", "split", "false_cutoff_rate",
    "mean_latency_s" (on that set), "vad_only": {"stop_silence_s", "false_cutoff_rate", "mean_latency_s"}
    (VAD-only's point on the same spans), "transcript_lag_s"}; from shipped points also "evaluated_run",
    "commit", "model_sha256".

    `run_dir` (explicit) is read or fails. Otherwise `eval_run(detector, profile)` under `runs_root`
    (default runs/) is used when it has metrics.json of the model as it is now (its recorded fingerprint), else
    the points shipped in `models_dir` (StaleOperatingPoints if the model changed since); OperatingPointError
    naming both paths when neither exists.
    """
    check_profile(profile)
    point = operating_point or DEFAULT_POINTS[profile]
    if run_dir is not None:
        return _from_run(detector, point, Path(run_dir), profile)
    known = eval_run(detector, profile)
    if known is None and not is_shipped(detector):
        runs = [d for d in DETECTORS if eval_run(d, profile)]
        raise OperatingPointError(f"no {profile} evaluation run is known for detector {detector!r} (known: "
                                  f"{', '.join(runs)}); pass the run folder or a manual policy")
    run = Path(runs_root or default_runs_root()) / (known or f"eval-{detector}")
    if (run / "metrics.json").exists() and _evaluated_this_model(run, detector, models_dir):
        return _from_run(detector, point, run, profile)
    if is_shipped(detector) and shipped_file(detector, models_dir, profile).is_file():
        return {**shipped_policy(detector, point, models_dir, profile), "policy_from": "shipped"}
    shipped = (str(shipped_file(detector, models_dir, profile)) if is_shipped(detector)
               else f"none: {detector!r} has no shipped model")
    raise OperatingPointError(
        f"no {profile} operating points for {detector}: evaluation run {run / 'metrics.json'} not found, and no "
        f"shipped operating points ({shipped}); run `make reproduce` (or `vad-turn evaluate --detector {detector} "
        f"--out {run}`), or use a manual policy")


def _evaluated_this_model(run: Path, detector: str, models_dir: Path) -> bool:
    """False when the run recorded a model fingerprint and the detector's shipped model has another one now
    (re-shipped since: its points are another model's); True otherwise (older runs record none)."""
    fp = evaluated_fingerprint(run)
    return fp is None or not is_shipped(detector) or fp == shipped_model_fingerprint(detector, models_dir)[0]


def _from_run(detector: str, operating_point: str, run_dir: Path, profile: str) -> dict:
    pol = policy_from_metrics(read_metrics(run_dir, detector), detector, operating_point, str(run_dir / "metrics.json"))
    try:
        lag = json.loads((run_dir / "config.json").read_text()).get("transcript_lag_s")
    except (OSError, json.JSONDecodeError):
        lag = None
    return {**pol, "source": str(run_dir), "policy_from": "run", "profile": profile, "transcript_lag_s": lag}


@functools.lru_cache(maxsize=8)
def default_policy(detector: str = DEFAULT_DETECTOR, profile: str = DEFAULT_PROFILE):
    """The `TurnPolicy` an agent runs by default: `profile`'s default point of `detector`'s shipped operating
    points (threshold, action delay, timeout; the preemptive start and VAD-only stop silence stay TurnPolicy's
    defaults). Raises OperatingPointError when they are missing or stale: the agent's default must be an
    evaluated point, never a guess."""
    from .policy import TurnPolicy

    return TurnPolicy.from_operating_point(shipped_policy(detector, None, SHIPPED_MODELS_DIR, profile))


# ----------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class ShipOperatingPointsConfig:
    detector: str = field(default=DEFAULT_DETECTOR, metadata={"help": "shipped detector", "choices": shipped_detectors()})
    profile: str = field(default="conversation", metadata={
        "help": "voice-agent (agent-directed dev data, pooled by `vad-turn pool-evaluations`) or conversation "
                "(Switchboard val)", "choices": PROFILES})
    run: Path | None = field(default=None, metadata={
        "help": "its evaluation run folder (`vad-turn evaluate --out` or `vad-turn pool-evaluations --out`; "
                "default runs/ + the detector's evaluation run of that profile)"})
    models_dir: Path = field(default=SHIPPED_MODELS_DIR, metadata={"help": "the shipped model folders"})
    allow_older_run: bool = field(default=False, metadata={
        "help": "ship even when a model file is newer than the run's metrics.json (normally: re-shipped since, "
                "so re-evaluate)"})

    def __post_init__(self) -> None:
        if not is_shipped(self.detector):
            raise ValueError(f"--detector: {self.detector!r} has no shipped model (of {', '.join(shipped_detectors())})")
        if self.profile not in PROFILES:
            raise ValueError(f"--profile: {self.profile!r} is not one of {', '.join(PROFILES)}")
        if self.run is None and eval_run(self.detector, self.profile) is None:
            raise ValueError(f"--run: no default {self.profile} evaluation run for {self.detector}; name one")


def operating_points_record(cfg: ShipOperatingPointsConfig) -> dict:
    """What `ship` writes: {"detector", "dataset", "split", "n_turns", "run", "commit", "config",
    "model_sha256", "model_files", "operating_points" (metrics.json's, whole)}; raises OperatingPointError."""
    run_dir = Path(cfg.run) if cfg.run is not None else \
        default_runs_root() / eval_run(cfg.detector, cfg.profile)
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
    digest, files = shipped_model_fingerprint(cfg.detector, cfg.models_dir)
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
    return {"detector": cfg.detector, "profile": cfg.profile, "dataset": metrics.get("dataset"), "split": metrics.get("split"),
            "n_turns": (metrics.get("counts") or {}).get("n_turns"), "run": shown(run_dir), "commit": commit,
            "config": config, "model_sha256": digest, "model_files": files,
            **({"pooled_runs": metrics["pooled_runs"]} if metrics.get("pooled_runs") else {}),
            "operating_points": metrics["operating_points"]}


def ship(cfg: ShipOperatingPointsConfig) -> int:
    """Write `detector`'s operating_points.json (atomically) and print what it holds."""
    rec = operating_points_record(cfg)
    path = shipped_file(cfg.detector, cfg.models_dir, cfg.profile)
    atomic_write_json(path, rec)
    path.chmod(0o644)
    pts = {p["name"]: p for p in rec["operating_points"]}
    p = pts.get(DEFAULT_POINTS[cfg.profile]) or rec["operating_points"][0]
    print(f"wrote {shown(path)}: {len(pts)} operating points of {rec['run']} ({rec['dataset']} {rec['split']}, "
          f"{rec['n_turns']} turns), model sha256 {rec['model_sha256'][:16]}...; {p['name']}: threshold "
          f"{p['threshold']}, delay {p['action_delay_s']} s, timeout {p['timeout_s']} s")
    return 0
