"""The demo's report tabs: the turn model's evaluation runs and the prosody study, read from run folders.

Evaluation runs are folders with `metrics.json` + `report.md` + `pareto.png`, written by
`vad-turn evaluate` (runs/eval-*) and `vad-turn headline` (runs/headline/<set>-<detector>/).
The prosody study's folder is `runs/prosody-<tag>` (`prosody run`; default tag "default").
runs/ is git-ignored: when it has none, the tabs show the committed results (`data/committed-results`,
laid out like runs/, written by `vad-turn publish-results`) and say so, with their commit and date
(`eval_source`, `prosody_source`). Nothing here computes results: it lists and formats what those
commands wrote.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from vad_turn.core.config import default_runs_root, without_server_paths
from vad_turn.harness.operating_points import shown
from vad_turn.harness.results import COMMITTED_RESULTS_DIR, read_provenance

_IMAGE = re.compile(r"^!\[[^\]]*\]\([^)]*\)\s*$", re.M)


def default_eval_run_name() -> str | None:
    """Folder name of the evaluation the default (voice-agent) operating point was chosen on, None if unknown."""
    from vad_turn.harness.results import voice_agent_runs

    try:
        return voice_agent_runs()[0].name
    except (ValueError, OSError):
        return None


def find_eval_runs(runs_root: Path | None = None) -> list[Path]:
    """Evaluation run folders under `runs_root`: the one the default operating point was chosen on first, then
    learned detectors, then VAD-only; newest first within each."""
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    cands = [p.parent for pat in ("eval-*/metrics.json", "headline/*/metrics.json") for p in root.glob(pat)]
    runs = [p for p in cands if (p / "report.md").exists()]
    default = default_eval_run_name()

    def key(p: Path):
        try:
            det = json.loads((p / "metrics.json").read_text()).get("detector", "")
        except (OSError, json.JSONDecodeError):
            det = ""
        return (p.name != default, det == "vad-only", -(p / "metrics.json").stat().st_mtime, str(p))

    return sorted(runs, key=key)


def run_label(folder: Path, runs_root: Path | None = None) -> str:
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    try:
        return str(folder.relative_to(root))
    except ValueError:
        return str(folder)


def operating_points(metrics: dict) -> list[list]:
    """Rows [operating point, FCR %, mean latency s, VAD-only FCR %, VAD-only latency s, ratio, policy]."""
    rows = []
    for op in metrics.get("operating_points", []):
        v = op.get("vad_only") or {}
        pct = lambda x: None if x is None else round(100 * x, 1)  # noqa: E731
        sec = lambda x: None if x is None else round(x, 3)  # noqa: E731
        ratio = op.get("ratio_to_vad_only")
        rows.append([op["name"], pct(op.get("false_cutoff_rate")) if op.get("reachable", True) else None,
                     sec(op.get("mean_latency_s")), pct(v.get("false_cutoff_rate")), sec(v.get("mean_latency_s")),
                     None if ratio is None else round(ratio, 3),
                     f"thr {op.get('threshold')} / delay {op.get('action_delay_s')} s / timeout {op.get('timeout_s')} s"])
    return rows


OP_HEADERS = ["operating point", "FCR %", "mean latency s", "VAD-only FCR %", "VAD-only latency s",
              "ratio to VAD-only", "policy"]


def page_text(text: str) -> str:
    """`text` as a page may show it: the server's own folders out of it (`config.without_server_paths`)."""
    return without_server_paths(text)


def eval_view(folder: Path) -> dict:
    """{"title", "markdown" (report.md without its image lines), "pareto" (path or None), "ops" (rows)}; text
    through `page_text`."""
    folder = Path(folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    md = page_text(_IMAGE.sub("", (folder / "report.md").read_text()))
    pareto = folder / "pareto.png"
    title = page_text(f"{metrics.get('detector')} on {metrics.get('dataset')} ({metrics.get('split')})")
    return {"title": title, "markdown": md, "pareto": str(pareto) if pareto.exists() else None,
            "ops": operating_points(metrics)}


def find_prosody_run(runs_root: Path | None = None) -> Path | None:
    """runs/prosody-default when it has a report, else the newest runs/prosody-*/report.md; None if none."""
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    if (root / "prosody-default" / "report.md").exists():
        return root / "prosody-default"
    found = sorted(root.glob("prosody-*/report.md"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[0].parent if found else None


def prosody_view(folder: Path) -> dict:
    """{"markdown": report.md without image lines (through `page_text`), "plots": [png paths]}."""
    folder = Path(folder)
    return {"markdown": page_text(_IMAGE.sub("", (folder / "report.md").read_text())),
            "plots": [str(p) for p in sorted(folder.glob("*.png"))]}


def committed_note(part: str | tuple[str, ...], results_root: Path | None = None) -> str:
    """Markdown saying the tab shows the committed results of `part` ("headline", "voice_agent" or "prosody", or
    several): where each was copied from, the commit(s) its runs were made at and the date of its newest file."""
    root = Path(results_root) if results_root is not None else COMMITTED_RESULTS_DIR
    prov = read_provenance(root) or {}
    parts = [part] if isinstance(part, str) else [p for p in part if p in prov] or list(part[:1])
    said = []
    for name in parts:
        p = prov.get(name) or {}
        src = p.get("source", "?")
        src = ", ".join(src) if isinstance(src, list) else src
        commits = ", ".join(c[:10] for c in p.get("commits") or []) or "unknown"
        said.append(f"copied from `{src}` (runs made at commit {commits}, {p.get('date', 'date unknown')})")
    return (f"**Committed results**, not a run of yours: `{shown(root)}`, {'; '.join(said)}. runs/ has none yet; "
            "`make reproduce` writes them, and this tab then shows those.")


def eval_source(runs_root: Path | None = None, results_root: Path | None = None) -> tuple[list[Path], Path, str]:
    """(evaluation run folders, the root they are under, note): those under runs/ (note ""), else the
    committed results' (`find_eval_runs` of `results_root`, note from `committed_note`); ([], runs/, "") if none."""
    root = Path(runs_root) if runs_root is not None else default_runs_root()
    runs = find_eval_runs(root)
    if runs:
        return runs, root, ""
    committed = Path(results_root) if results_root is not None else COMMITTED_RESULTS_DIR
    runs = find_eval_runs(committed)
    return (runs, committed, committed_note(("voice_agent", "headline"), committed)) if runs else ([], root, "")


def prosody_source(runs_root: Path | None = None, results_root: Path | None = None) -> tuple[Path | None, str]:
    """(prosody run folder, note): runs/'s (note ""), else the committed one with `committed_note`; (None, "")."""
    found = find_prosody_run(runs_root)
    if found is not None:
        return found, ""
    committed = Path(results_root) if results_root is not None else COMMITTED_RESULTS_DIR
    found = find_prosody_run(committed)
    return (found, committed_note("prosody", committed)) if found is not None else (None, "")
