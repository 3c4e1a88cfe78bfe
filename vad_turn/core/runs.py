"""Run folders and atomic writes: every file a run leaves is written whole or not at all.

`atomic_path` is the one write-then-rename (a temporary path in the same folder, renamed into place
on success, removed on error) that `atomic_write_text` / `atomic_write_json` and every other file
writer use; `atomic_dir` / `atomic_replace_dir` do the same for a folder, `RunFolder` writes `config.json`,
the git commit, split ids and `metrics.json` next to the results, and `read_jsonl` /
`append_jsonl` keep resumable logs (a torn last line from an interrupted write is ignored).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import REPO_ROOT, config_to_dict


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Write a file whole or not at all: yields a fresh temporary path in `path`'s folder (created if
    missing) for the caller to write, renames it to `path` when the block ends, and removes it when
    the block raises.

    The temporary name is `.<name>.<pid>-<random>.tmp<suffix>` and does not exist yet; `suffix` is
    for writers that pick the format from the extension or append one (".npy" for np.save, ".npz"
    for np.savez, ".png" for savefig). The file gets the permissions its writer gives it.

        with atomic_path(out / "predictions.parquet") as tmp:
            df.to_parquet(tmp, index=False)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """Write a folder whole or not at all: yields a fresh temporary folder (mode 755) beside `path`;
    when the block ends it replaces `path` (`atomic_replace_dir`), when it raises it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; what it becomes is for everyone who can read the folder
        yield tmp
        atomic_replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename (`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "x") as fh:
        fh.write(text)



def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")



def _json_default(o: Any):
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o)}")



def atomic_replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written `tmp_dir` into place as `final_dir`, replacing an old one.

    The old folder is renamed aside first and deleted only after the new one is in place,
    so at every moment `final_dir` is either the complete old or the complete new version.
    """
    final_dir = Path(final_dir)
    old = final_dir.with_name(final_dir.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final_dir.exists():
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)



def git_commit() -> str:
    """The current commit of the repository (with '-dirty' when there are changes), or 'unknown'."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"



class RunFolder:
    """A run folder: `config.json`, `commit.txt`, `split_ids.json`, `metrics.json`, artefacts."""

    def __init__(self, path: Path, cfg: Any | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if cfg is not None:
            atomic_write_json(self.path / "config.json", {"type": type(cfg).__name__, **config_to_dict(cfg)})
            atomic_write_text(self.path / "commit.txt", git_commit() + "\n")

    def write_split_ids(self, ids_by_split: dict[str, Iterable[str]]) -> None:
        atomic_write_json(self.path / "split_ids.json", {k: sorted(v) for k, v in ids_by_split.items()})

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.path / "metrics.json", metrics)

    def file(self, name: str) -> Path:
        return self.path / name


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines log; a torn last line (interrupted write) is ignored, others raise."""
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break
            raise ValueError(f"{path}:{i}: malformed JSON line ({e})") from e
    return rows



def append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=float) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
