"""The committed results: small copies of the headline runs and the prosody study, for a fresh clone.

runs/ is git-ignored, so a fresh clone has no evaluation to show. `vad-turn publish-results` copies the
small artifacts of the headline run (`vad-turn headline --out runs/headline-v3`: headline.md /
headline.json, and per chosen (set, detector) run report.md, metrics.json, pareto.png, config.json,
commit.txt) and of the prosody study (`prosody run`: runs/prosody-default's report.md, metrics.json,
plots, config.json, commit.txt) into `data/committed-results/`, laid out like runs/
(`headline/<set>-<detector>/`, `prosody-default/`) so the demo reads it with the same functions. No
predictions, sweeps or audio: the folder is refused past `max_total_mb`.

It also copies the runs behind the shipped voice-agent operating point (the default of the pipeline, bench and
demo: the pooled evaluation and each pooled run, `voice_agent_runs`) to `<run name>/`, as runs/ holds them.

`provenance.json` says where each part came from: source folder, the commits its runs were made at,
the date of its newest file (UTC), and every file's size and sha256. Nothing in it depends on when the
copy was made, so publishing the same runs again gives the same bytes; the folder is replaced whole
(`atomic_dir`), never left half-written.

    vad-turn publish-results --headline runs/headline-v3 --prosody runs/prosody-default
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

from .operating_points import shipped_file, shown

COMMITTED_RESULTS_DIR = REPO_ROOT / "data" / "committed-results"  # not "results/": .gitignore ignores that name
PROVENANCE_FILE = "provenance.json"
HEADLINE_DIR = "headline"  # as runs/headline/ (vad-turn headline's default), which the demo lists
PROSODY_DIR = "prosody-default"  # as runs/prosody-default (prosody run's default)
# the runs behind the shipped operating points (turn, acoustic on rendered Switchboard dev; lexical on
# Switchboard val) and VAD-only on the same spans: about 1 MB with headline.md
DEFAULT_RUNS = ("switchboard-rendered-dev-fused", "switchboard-rendered-dev-lexical",
                "switchboard-rendered-dev-acoustic", "switchboard-rendered-dev-vad-only",
                "switchboard-val-fused", "switchboard-val-lexical", "switchboard-val-vad-only")
VOICE_AGENT_PART = "voice_agent"
KEEP = "keep"  # --prosody keep: the results folder's own prosody part stays as it is
HEADLINE_FILES = ("headline.md", "headline.json")
RUN_FILES = ("report.md", "metrics.json", "pareto.png", "config.json", "commit.txt")
RUN_REQUIRED = ("report.md", "metrics.json")
PROSODY_PATTERNS = ("report.md", "metrics.json", "*.png", "config.json", "commit.txt")


def voice_agent_runs(runs_root: Path | None = None) -> tuple[Path, ...]:
    """The run folders behind the shipped voice-agent operating point of the fused model: the pooled evaluation it
    was chosen on, then each pooled run (as its file names them), under `runs_root` (default runs/)."""
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    path = shipped_file("fused", profile="voice-agent")
    try:
        rec = json.loads(path.read_text())
        names = [rec["run"], *(r["run"] for r in rec.get("pooled_runs") or [])]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: cannot read the runs behind the shipped voice-agent point ({e!r})") from e
    return tuple(root / Path(n).name for n in dict.fromkeys(names))


@dataclass(frozen=True)
class PublishResultsConfig:
    headline: Path | None = field(default_factory=lambda: default_runs_root() / "headline-v3", metadata={
        "help": "headline run folder (`vad-turn headline --out`); 'none': no headline part"})
    runs: tuple[str, ...] = field(default=DEFAULT_RUNS, metadata={
        "help": "its (set, detector) run folders to copy (report, metrics, Pareto plot)"})
    prosody: Path | None = field(default_factory=lambda: default_runs_root() / "prosody-default", metadata={
        "help": "prosody study run folder (`prosody run`); 'none': no prosody part; 'keep': the results folder's "
                "own prosody part, files and provenance as they are (to refresh the rest without rerunning it)"})
    voice_agent: bool = field(default=True, metadata={
        "help": "also copy the runs behind the shipped voice-agent operating point (--voice-agent-runs)"})
    voice_agent_runs: tuple[Path, ...] = field(default_factory=voice_agent_runs, metadata={
        "help": "those run folders (default: the pooled evaluation and the pooled runs the shipped voice-agent file "
                "names, under runs/)"})
    out: Path = field(default=COMMITTED_RESULTS_DIR, metadata={"help": "the committed results folder (replaced whole)"})
    max_total_mb: float = field(default=2.5, metadata={"help": "refuse a results folder larger than this (MB)"})

    def __post_init__(self) -> None:
        require_range("max_total_mb", self.max_total_mb, 0.0, 100.0, lo_open=True)
        if self.headline is None and self.prosody is None and not self.voice_agent:
            raise ValueError("--headline and --prosody are both 'none' and --no-voice-agent: nothing to publish")
        if self.voice_agent and not self.voice_agent_runs:
            raise ValueError("--voice-agent-runs needs at least one run folder (or --no-voice-agent)")
        if self.headline is not None and not self.runs:
            raise ValueError("--runs needs at least one run folder name")


def _part(files: list[tuple[Path, str]]) -> dict:
    """{"commits": sorted commits of the copied commit.txt files, "date": newest file's mtime (UTC)}."""
    commits = sorted({src.read_text().strip() for src, rel in files if src.name == "commit.txt"})
    newest = max(src.stat().st_mtime for src, _ in files)
    return {"commits": commits, "date": dt.datetime.fromtimestamp(newest, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def _run_files(run: Path, rel: str, hint: str) -> list[tuple[Path, str]]:
    """[(file, rel/<name>)] of one run folder's RUN_FILES; FileNotFoundError naming a missing RUN_REQUIRED file."""
    for name in RUN_REQUIRED:
        if not (run / name).is_file():
            raise FileNotFoundError(f"{run / name}: not found ({hint})")
    return [(run / n, f"{rel}/{n}") for n in RUN_FILES if (run / n).is_file()]


def select_files(cfg: PublishResultsConfig) -> tuple[list[tuple[Path, str]], dict]:
    """([(source file, path inside the results folder)], {part: provenance}); FileNotFoundError names what is missing."""
    files, parts = [], {}
    if cfg.headline is not None:
        head = Path(cfg.headline)
        mine = [(head / n, f"{HEADLINE_DIR}/{n}") for n in HEADLINE_FILES if (head / n).is_file()]
        if not mine:
            raise FileNotFoundError(f"{head}: no headline.md / headline.json (run `vad-turn headline --out {head}`)")
        for run in cfg.runs:
            mine += _run_files(head / run, f"{HEADLINE_DIR}/{run}", "runs there: " + ", ".join(
                sorted(p.parent.name for p in head.glob("*/metrics.json"))))
        files += mine
        parts["headline"] = {"source": shown(head), "runs": list(cfg.runs), **_part(mine)}
    if cfg.voice_agent:
        mine = []
        for run in map(Path, cfg.voice_agent_runs):
            mine += _run_files(run, run.name, "the run behind the shipped voice-agent point; the Makefile's "
                                              "reproduce recipe writes it, or --no-voice-agent")
        files += mine
        parts[VOICE_AGENT_PART] = {"source": [shown(Path(r)) for r in cfg.voice_agent_runs], **_part(mine)}
    if cfg.prosody is not None and str(cfg.prosody) == KEEP:
        old = read_provenance(cfg.out) or {}
        if "prosody" not in old:
            raise FileNotFoundError(f"{cfg.out}: no prosody part to keep (its {PROVENANCE_FILE} has none); run "
                                    "`prosody run` and pass its folder, or --prosody none")
        mine = [(Path(cfg.out) / rel, rel) for rel in old.get("files", {}) if rel.startswith(f"{PROSODY_DIR}/")]
        gone = [str(src) for src, _ in mine if not src.is_file()]
        if not mine or gone:
            raise FileNotFoundError(f"{cfg.out}: the prosody part's files are missing ({', '.join(gone) or 'none listed'})")
        files += mine
        parts["prosody"] = old["prosody"]
    elif cfg.prosody is not None:
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
