"""`vad-turn build-getgoing`: build data/built/getgoing from the GetGoing calls (see `getgoing`).

    vad-turn build-getgoing --splits dev test --workers 2     # dev + test only
    vad-turn build-getgoing --workers 2                       # all splits
    vad-turn build-getgoing --max-calls 3 --out-root /tmp/b   # a tiny build (the first 3 calls per split)

The VAD probabilities and recognised words of every call are cached under `--cache-dir` (default
data/cache/getgoing) by the sha256 of the call's `user.ogg`, so a rerun (other thresholds, other splits,
an interrupted build) recomputes only what is missing or changed. The dataset (the splits built, a `split`
column) is written atomically with `build_info.json` (recipe, recipe hash, config, counts, label quality,
wall time, and `calls`: per call its split, the sha256 of its input files, seconds decoded, turns built,
why dropped), `label_quality.json` and `turn_tags.jsonl` (one line per row: joined_split, the endpointer
holds' span indices, the log line and the recognised text, their similarity). A build with the same hash
(recipe + options + builder source + the sha256 of every selected call's user.ogg, log.json and
metadata.json) is skipped unless `--force`.

Inputs are checked by content (`getgoing_inputs`): a call folder without user.ogg or log.json is named
and skipped; a user.ogg that decodes short (truncated) or not at all is named. A build that would give
any call of the build it replaces fewer turns is refused (exit status 2, nothing written), one line per
such call saying why ("call <uuid>: 5 -> 3 turns (user.ogg changed: sha256 ... -> ...; user.ogg has no
end-of-stream page: the file is truncated ...)"), unless `--allow-shrink` (the lines are printed and kept
in build_info.json's notes).
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

import vad_turn.core.schema as schema_module
from vad_turn.core.schema import MIN_SILENCE_S
from vad_turn.core.config import config_to_dict, default_built_root, default_data_root, require_range
from vad_turn.core.runs import atomic_write_json, atomic_write_text, git_commit

from . import RECIPES_DIR, CorpusError, load_recipe
from .getgoing import DEFAULT_CACHE, SPLIT_SHARES, CallResult, Recipe, process_call, write_recipe_splits
from .getgoing_inputs import call_digests, lost_calls, missing_inputs
from .getgoing_report import label_quality, quality_table

CORPUS = "getgoing"
_SOURCES = ("getgoing.py", "getgoing_inputs.py", "getgoing_log.py", "getgoing_speech.py", "getgoing_cache.py", "getgoing_report.py",
            "getgoing_build.py", "turns.py")


@dataclass(frozen=True)
class GetGoingConfig:
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "folder of the original corpora"})
    out_root: Path = field(default_factory=default_built_root, metadata={"help": "built datasets go to <out-root>/getgoing"})
    cache_dir: Path = field(default=DEFAULT_CACHE, metadata={"help": "per-call VAD/ASR cache (resumable builds)"})
    recipes_dir: Path = field(default=RECIPES_DIR, metadata={"help": "folder of getgoing.json"})
    splits: tuple[str, ...] = field(default=tuple(s for s, _ in SPLIT_SHARES), metadata={"help": "splits to build"})
    max_calls: int | None = field(default=None, metadata={"help": "at most this many calls per split (recipe order); none = all"})
    workers: int = field(default=1, metadata={"help": "processes running VAD + ASR on uncached calls (1 thread each)"})
    min_silence_s: float = field(default=MIN_SILENCE_S, metadata={"help": "shortest silence counted as a hold"})
    n_check_turns: int = field(default=50, metadata={"help": "random rows listed in the ASR-vs-log check"})
    seed: int = field(default=0, metadata={"help": "seed of the check sample"})
    force: bool = field(default=False, metadata={"help": "rebuild even when the build is up to date"})
    update_recipe: bool = field(default=False, metadata={"help": "first rewrite the recipe's split lists from the calls present"})
    allow_shrink: bool = field(default=False, metadata={
        "help": "replace the existing build even when calls lose turns (each is listed either way)"})

    def __post_init__(self) -> None:
        known = [s for s, _ in SPLIT_SHARES]
        if not self.splits or any(s not in known for s in self.splits):
            raise ValueError(f"--splits: choose from {known}, got {list(self.splits)}")
        if self.max_calls is not None and self.max_calls < 1:
            raise ValueError(f"--max-calls must be >= 1 (or none), got {self.max_calls}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        require_range("min_silence_s", self.min_silence_s, 0.0, 10.0, lo_open=True)
        if self.n_check_turns < 0:
            raise ValueError(f"--n-check-turns must be >= 0, got {self.n_check_turns}")


def build_hash(recipe: dict, cfg: GetGoingConfig, inputs: dict[str, dict] | None = None) -> str:
    """sha256 over the recipe, the options that change the output, the builder's source code and `inputs`
    ({uuid: {file name: sha256}} of the selected calls, `input_digests`)."""
    h = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode())
    opts = {k: v for k, v in config_to_dict(cfg).items() if k in ("splits", "max_calls", "min_silence_s", "n_check_turns", "seed")}
    h.update(json.dumps(opts, sort_keys=True).encode())
    here = Path(__file__).resolve().parent
    for p in [here / s for s in _SOURCES] + [Path(schema_module.__file__)]:
        h.update(p.read_bytes())
    h.update(json.dumps(inputs or {}, sort_keys=True).encode())
    return h.hexdigest()


def input_digests(jobs) -> dict[str, dict]:
    """{uuid: {file name: sha256 hex or None}} of the jobs' calls (`getgoing_inputs.HASHED`)."""
    return {call_dir.name: call_digests(call_dir) for call_dir, _ in jobs}


def call_jobs(recipe: Recipe, cfg: GetGoingConfig) -> list[tuple[Path, str]]:
    """(call folder, split) of the calls to build, checking the recipe against the calls present; a folder
    without user.ogg or log.json is named (stderr) and skipped."""
    calls = Path(cfg.data_root) / recipe.folder
    if not calls.is_dir():
        raise CorpusError(f"{calls}: GetGoing calls folder not found (set --data-root or $VAD_TURN_DATA_ROOT)")
    folders = sorted(p for p in calls.iterdir() if p.is_dir())
    incomplete = {p.name: missing_inputs(p) for p in folders if missing_inputs(p)}
    for u, missing in incomplete.items():  # an empty or half-copied call folder: named, never built
        print(f"call {u}: {calls / u} has no {' or '.join(missing)}: skipped", file=sys.stderr)
    present = {p.name for p in folders if p.name not in incomplete}
    listed = {u for us in recipe.splits.values() for u in us}
    if present - listed:
        raise CorpusError(f"{len(present - listed)} calls in {calls} are in no split of the recipe (e.g. "
                          f"{sorted(present - listed)[0]}): run with --update-recipe")
    jobs = []
    for split in cfg.splits:
        uuids = [u for u in recipe.splits.get(split, []) if u not in incomplete]
        missing = [u for u in uuids if u not in present]
        if missing:
            raise CorpusError(f"{calls}: {len(missing)} calls of split {split} are missing (e.g. {missing[0]})")
        jobs += [(calls / u, split) for u in uuids[: cfg.max_calls]]
    return jobs


_WORKER: dict = {}


def _init_worker(recipe: Recipe, cache_dir: Path, min_silence_s: float) -> None:
    from .getgoing_cache import SpeechCache

    _WORKER.update(recipe=recipe, cache=SpeechCache(cache_dir, recipe.vad, recipe.asr, recipe.refill),
                   min_silence_s=min_silence_s)


def _work(job: tuple[Path, str]) -> CallResult:
    call_dir, split = job
    return process_call(call_dir, split, _WORKER["recipe"], _WORKER["cache"], min_silence_s=_WORKER["min_silence_s"])


def process_calls(jobs, recipe: Recipe, cfg: GetGoingConfig) -> list[CallResult]:
    """Process every call (in `cfg.workers` processes when > 1), results in job order."""
    args = (recipe, Path(cfg.cache_dir), cfg.min_silence_s)
    bar = dict(total=len(jobs), desc="getgoing calls", unit="call", mininterval=5.0)
    if cfg.workers == 1 or len(jobs) <= 1:
        _init_worker(*args)
        return [_work(j) for j in tqdm(jobs, **bar)]
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(cfg.workers, initializer=_init_worker, initargs=args) as pool:
        return list(tqdm(pool.imap(_work, jobs, chunksize=1), **bar))


def run(cfg: GetGoingConfig) -> dict:
    """Build <out_root>/getgoing (or skip it when up to date); returns its build info."""
    from vad_turn.data.dataset import build_info, built_and_current, write_turns

    if cfg.update_recipe:
        counts = {k: len(v) for k, v in write_recipe_splits(cfg.data_root, cfg.recipes_dir).items()}
        print(f"recipe splits rewritten: {counts}")
    raw = load_recipe(CORPUS, cfg.recipes_dir)
    recipe = Recipe.from_dict(raw)
    jobs = call_jobs(recipe, cfg)
    digest = build_hash(raw, cfg, input_digests(jobs))
    out_dir = Path(cfg.out_root) / CORPUS
    done = built_and_current(CORPUS, out_dir, digest, cfg.force)
    if done is not None:
        return done
    t0 = time.perf_counter()
    results = process_calls(jobs, recipe, cfg)
    wall_s = round(time.perf_counter() - t0, 1)
    for r in results:
        if r.problem:
            print(f"call {r.uuid}: {r.problem} (sha256 {r.inputs['user.ogg'][:12]})", file=sys.stderr)
    manifest = call_manifest(results)
    lost = check_shrink(out_dir, manifest, cfg)
    quality = label_quality(results, n_check=cfg.n_check_turns, seed=cfg.seed, tail_s=recipe.turns.tail_s)
    records = [rec for r in results for rec in r.records]
    info = {
        "corpus": CORPUS, "recipe": {k: v for k, v in raw.items() if k != "splits"}, "recipe_hash": digest,
        "data_root": str(cfg.data_root), "config": config_to_dict(cfg), "commit": git_commit(),
        "splits_built": list(cfg.splits),
        "counts": {s: {k: d[k] for k in ("turns", "holds", "ends", "holds_0.2-5s")} for s, d in quality["per_split"].items()},
        "notes": {"calls_dropped": quality["calls"]["dropped"],
                  "other_log_lines_skipped": sum(r.n_other_lines for r in results),
                  "calls_computed_now": sum(not r.cache_hit for r in results),
                  "audio_h": round(sum(r.audio_s for r in results) / 3600, 2),
                  "input_problems": {r.uuid: r.problem for r in results if r.problem},
                  "calls_lost_turns": lost},
        "label_quality": {k: v for k, v in quality.items() if k != "asr_vs_log"} | {
            "asr_vs_log": {k: v for k, v in quality["asr_vs_log"].items() if k not in ("check", "disagreements")}},
        "wall_s": wall_s,
        "calls": manifest,
    }
    write_turns(records, out_dir, info=info)
    atomic_write_json(out_dir / "label_quality.json", quality)
    tags = [json.dumps(i) for r in results for i in r.infos]
    atomic_write_text(out_dir / "turn_tags.jsonl", "\n".join(tags) + "\n")
    summary_path = Path(cfg.out_root) / "build_info.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary[CORPUS] = {k: info[k] for k in ("recipe_hash", "counts", "notes", "wall_s")}
    atomic_write_json(summary_path, summary)
    print(quality_table(quality))
    print(f"built {len(records)} turns from {len(results)} calls in {wall_s:.1f} s -> {out_dir}")
    return build_info(out_dir)


def call_manifest(results: list[CallResult]) -> dict[str, dict]:
    """{uuid: {split, inputs (file -> sha256), audio_s, n_turns, drop_reason, problem}} of a build's calls."""
    return {r.uuid: {"split": r.split, "inputs": r.inputs, "audio_s": round(r.audio_s, 3), "n_turns": len(r.records),
                     "drop_reason": r.drop_reason, "problem": r.problem} for r in results}


def previous_turns(out_dir: Path) -> tuple[dict[str, int], dict[str, dict]]:
    """({uuid: turns} of the build in `out_dir`, its `calls` manifest); ({}, {}) when there is none. A build
    written before the manifest existed is counted from its dataset's `conversation` column."""
    from collections import Counter

    from vad_turn.data.dataset import build_info, load_turns

    if not (Path(out_dir) / "data").exists():
        return {}, {}
    manifest = build_info(out_dir).get("calls")
    if isinstance(manifest, dict):
        return {u: int(c["n_turns"]) for u, c in manifest.items()}, manifest
    return dict(Counter(load_turns(out_dir)["conversation"])), {}


class ShrinkError(CorpusError):
    """A rebuild that would give calls of the existing build fewer turns (without --allow-shrink)."""


def check_shrink(out_dir: Path, manifest: dict[str, dict], cfg: GetGoingConfig) -> list[str]:
    """The lines of the calls that lose turns against the build in `out_dir` (printed to stderr); raises
    ShrinkError when there are any and `cfg.allow_shrink` is off, before anything is written."""
    old_turns, old_manifest = previous_turns(out_dir)
    lost = lost_calls(old_turns, old_manifest, manifest)
    for line in lost:
        print(line, file=sys.stderr)
    if lost and not cfg.allow_shrink:
        before, after = sum(old_turns.values()), sum(c["n_turns"] for c in manifest.values())
        raise ShrinkError(f"{out_dir}: this build would lose turns of {len(lost)} calls ({before} -> {after} turns "
                          "in all; listed above) - nothing written; check those files, or rerun with --allow-shrink "
                          "to replace the build anyway")
    return lost


def load_turn_tags(built_dir: Path) -> dict[str, dict]:
    """{row id: its sidecar tags} of a GetGoing build (`turn_tags.jsonl`)."""
    path = Path(built_dir) / "turn_tags.jsonl"
    return {d["id"]: d for d in (json.loads(ln) for ln in path.read_text().splitlines() if ln.strip())}
