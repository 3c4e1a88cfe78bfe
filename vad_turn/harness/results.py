"""The committed results: small copies of the headline runs and the prosody study, for a fresh clone.

runs/ is git-ignored, so a fresh clone has no evaluation to show. `vad-turn publish-results` copies the
small artifacts of the headline run (`vad-turn headline --out runs/headline-v2`: headline.md /
headline.json, and per chosen (set, detector) run report.md, metrics.json, pareto.png, config.json,
commit.txt) and of the prosody study (`prosody run`: runs/prosody-default's report.md, metrics.json,
plots, config.json, commit.txt) into `data/committed-results/`, laid out like runs/
(`headline/<set>-<detector>/`, `prosody-default/`) so the demo reads it with the same functions. No
predictions, sweeps or audio: the folder is refused past `max_total_mb`.

`provenance.json` says where each part came from: source folder, the commits its runs were made at,
the date of its newest file (UTC), and every file's size and sha256. Nothing in it depends on when the
copy was made, so publishing the same runs again gives the same bytes; the folder is replaced whole
(`atomic_dir`), never left half-written.

    vad-turn publish-results --headline runs/headline-v2 --prosody runs/prosody-default
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import REPO_ROOT, default_runs_root, require_range
from vad_turn.core.model_files import sha256_file
from vad_turn.core.runs import atomic_dir, atomic_write_json

from .operating_points import shown

COMMITTED_RESULTS_DIR = REPO_ROOT / "data" / "committed-results"  # not "results/": .gitignore ignores that name
PROVENANCE_FILE = "provenance.json"
HEADLINE_DIR = "headline"  # as runs/headline/ (vad-turn headline's default), which the demo lists
PROSODY_DIR = "prosody-default"  # as runs/prosody-default (prosody run's default)
# the runs behind the shipped operating points (turn, acoustic on rendered Switchboard dev; lexical on
# Switchboard val) and VAD-only on the same spans: about 1 MB with headline.md
DEFAULT_RUNS = ("switchboard-rendered-dev-fused", "switchboard-rendered-dev-lexical",
                "switchboard-rendered-dev-acoustic", "switchboard-rendered-dev-vad-only",
                "switchboard-val-fused", "switchboard-val-lexical", "switchboard-val-vad-only")
HEADLINE_FILES = ("headline.md", "headline.json")
RUN_FILES = ("report.md", "metrics.json", "pareto.png", "config.json", "commit.txt")
RUN_REQUIRED = ("report.md", "metrics.json")
PROSODY_PATTERNS = ("report.md", "metrics.json", "*.png", "config.json", "commit.txt")


@dataclass(frozen=True)
class PublishResultsConfig:
    headline: Path | None = field(default_factory=lambda: default_runs_root() / "headline-v2", metadata={
        "help": "headline run folder (`vad-turn headline --out`); 'none': no headline part"})
    runs: tuple[str, ...] = field(default=DEFAULT_RUNS, metadata={
        "help": "its (set, detector) run folders to copy (report, metrics, Pareto plot)"})
    prosody: Path | None = field(default_factory=lambda: default_runs_root() / "prosody-default", metadata={
        "help": "prosody study run folder (`prosody run`); 'none': no prosody part"})
    out: Path = field(default=COMMITTED_RESULTS_DIR, metadata={"help": "the committed results folder (replaced whole)"})
    max_total_mb: float = field(default=1.5, metadata={"help": "refuse a results folder larger than this (MB)"})

    def __post_init__(self) -> None:
        require_range("max_total_mb", self.max_total_mb, 0.0, 100.0, lo_open=True)
        if self.headline is None and self.prosody is None:
            raise ValueError("--headline and --prosody are both 'none': nothing to publish")
        if self.headline is not None and not self.runs:
            raise ValueError("--runs needs at least one run folder name")


def _part(files: list[tuple[Path, str]]) -> dict:
    """{"commits": sorted commits of the copied commit.txt files, "date": newest file's mtime (UTC)}."""
    commits = sorted({src.read_text().strip() for src, rel in files if src.name == "commit.txt"})
    newest = max(src.stat().st_mtime for src, _ in files)
    return {"commits": commits, "date": dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def select_files(cfg: PublishResultsConfig) -> tuple[list[tuple[Path, str]], dict]:
    """([(source file, path inside the results folder)], {part: provenance}); FileNotFoundError names what is missing."""
    files, parts = [], {}
    if cfg.headline is not None:
        head = Path(cfg.headline)
        mine = [(head / n, f"{HEADLINE_DIR}/{n}") for n in HEADLINE_FILES if (head / n).is_file()]
        if not mine:
            raise FileNotFoundError(f"{head}: no headline.md / headline.json (run `vad-turn headline --out {head}`)")
        for run in cfg.runs:
            for name in RUN_REQUIRED:
                if not (head / run / name).is_file():
                    raise FileNotFoundError(f"{head / run / name}: not found (runs there: "
                                            f"{', '.join(sorted(p.parent.name for p in head.glob('*/metrics.json')))})")
            mine += [(head / run / n, f"{HEADLINE_DIR}/{run}/{n}") for n in RUN_FILES if (head / run / n).is_file()]
        files += mine
        parts["headline"] = {"source": shown(head), "runs": list(cfg.runs), **_part(mine)}
    if cfg.prosody is not None:
        pro = Path(cfg.prosody)
        if not (pro / "report.md").is_file():
            raise FileNotFoundError(f"{pro / 'report.md'}: not found (run `prosody run`, or --prosody none)")
        found = sorted({p for pat in PROSODY_PATTERNS for p in pro.glob(pat) if p.is_file()})
        mine = [(p, f"{PROSODY_DIR}/{p.name}") for p in found]
        files += mine
        parts["prosody"] = {"source": shown(pro), **_part(mine)}
    return files, parts


def publish(cfg: PublishResultsConfig) -> int:
    """Replace `cfg.out` with copies of the selected files and provenance.json; print the total size."""
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and not (out / PROVENANCE_FILE).is_file():
        raise ValueError(f"--out {out}: exists and is not a results folder (no {PROVENANCE_FILE}); it would be "
                         "replaced whole, so choose a new or results folder")
    files, parts = select_files(cfg)
    total = sum(src.stat().st_size for src, _ in files)
    if total > cfg.max_total_mb * 1e6:
        big = sorted(files, key=lambda f: -f[0].stat().st_size)[:3]
        raise ValueError(f"the results would be {total / 1e6:.2f} MB, over --max-total-mb {cfg.max_total_mb}: "
                         f"largest {', '.join(f'{rel} ({src.stat().st_size / 1e3:.0f} kB)' for src, rel in big)}; "
                         "choose fewer --runs")
    with atomic_dir(out) as tmp:
        for src, rel in files:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, tmp / rel)
            (tmp / rel).chmod(0o644)
        prov = {"what": "small copies of run folders (runs/ is git-ignored); regenerate with `make reproduce` "
                        "or `vad-turn publish-results`", **parts,
                "files": {rel: {"bytes": (tmp / rel).stat().st_size, "sha256": sha256_file(tmp / rel)}
                          for _, rel in sorted(files, key=lambda f: f[1])}}
        atomic_write_json(tmp / PROVENANCE_FILE, prov)
        (tmp / PROVENANCE_FILE).chmod(0o644)
    print(f"wrote {shown(cfg.out)}: {len(files)} files, {total / 1e6:.2f} MB ({', '.join(parts)})")
    return 0


def read_provenance(folder: str | Path = COMMITTED_RESULTS_DIR) -> dict | None:
    """The committed results' provenance.json as a dict, or None when the folder has none (or it is unreadable)."""
    try:
        return json.loads((Path(folder) / PROVENANCE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
