"""Builders from the original published corpus formats to the turn-span schema.

Each corpus module (`switchboard`, `sbcsae`, `ami`) reads its files in place from the data root
and exposes `build(data_root, recipe, *, max_conversations=None, min_silence_s=MIN_SILENCE_S)` returning
{split: [TurnRecord, ...]}. The turn construction they share is `vad_turn.data.corpora.turns`.
`eotbench.load_eot_bench` loads LiveKit's eot-bench-data in the same schema. `getgoing` (real calls
to a dialogue system, turns found by VAD + ASR + alignment to the call log) has its own command,
`vad-turn build-getgoing` (`getgoing_build`), with a per-call cache and split selection.

This module holds what the builders share for reading files: the recipe files
(`data/recipes/<corpus>.json`), id lists, and tar archives, with errors that name the file and line.
"""
from __future__ import annotations

import json
import re
import tarfile
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

from vad_turn.core.config import REPO_ROOT

RECIPES_DIR = REPO_ROOT / "data" / "recipes"
CORPORA = ("switchboard", "sbcsae", "ami", "agent-holds")  # the builder modules ("-" -> "_" in the module name)
# Recipe variants: a recipe `<name>.json` with `"builder": "<corpus>"` builds `<name>` with that
# corpus's builder and its own parameters (e.g. switchboard-wordrule: one backchannel rule everywhere).
VARIANTS = ("switchboard-wordrule",)


class CorpusError(ValueError):
    """Corpus input that cannot be used (missing, truncated, malformed), naming the file and line."""


def load_recipe(corpus: str, recipes_dir: Path = RECIPES_DIR) -> dict:
    """The recipe of `corpus` (files relative to the data root, splits, builder parameters)."""
    path = Path(recipes_dir) / f"{corpus}.json"
    if not path.exists():
        raise CorpusError(f"{path}: no recipe for corpus {corpus!r} (known: {', '.join(CORPORA + VARIANTS)})")
    return json.loads(path.read_text())


def builder_module(corpus: str) -> str:
    """The module name of a corpus's builder (agent-holds -> agent_holds)."""
    return corpus.replace("-", "_")


def corpus_builder(corpus: str) -> Callable:
    """The `build` function of a corpus module (imported on demand)."""
    import importlib

    if corpus not in CORPORA:
        raise CorpusError(f"unknown corpus {corpus!r} (known: {', '.join(CORPORA)})")
    return importlib.import_module(f"{__name__}.{builder_module(corpus)}").build


def require_file(data_root: Path, rel: str) -> Path:
    """data_root/rel, or a CorpusError saying which file is missing."""
    path = Path(data_root) / rel
    if not Path(data_root).is_dir():
        raise CorpusError(f"{data_root}: data root folder not found (set --data-root or $VAD_TURN_DATA_ROOT)")
    if not path.exists():
        raise CorpusError(f"{path}: file not found (the corpus recipe needs it)")
    return path


def read_id_list(path: Path, pattern: str = r"\S+") -> list[str]:
    """One id a line matching `pattern` (blank lines, '#' comments skipped), in file order; no duplicates."""

    ids, seen = [], set()
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        if not re.fullmatch(pattern, s):
            raise CorpusError(f"{path}:{lineno}: expected one id a line matching {pattern!r}, got {line!r}")
        if s in seen:
            raise CorpusError(f"{path}:{lineno}: id {s!r} listed twice")
        seen.add(s)
        ids.append(s)
    if not ids:
        raise CorpusError(f"{path}: empty id list")
    return ids


def iter_tar_texts(path: Path, want: Callable[[str], bool]) -> Iterator[tuple[str, str]]:
    """(member name, text) of the regular files in a .tar.gz that `want(name)` accepts, streamed.

    A truncated or corrupt archive raises CorpusError naming the archive and the last member read.
    """
    last = "(start of archive)"
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for member in tar:
                last = member.name
                if not member.isfile() or not want(member.name):
                    continue
                fh = tar.extractfile(member)
                yield member.name, fh.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise CorpusError(f"{path}: truncated or corrupt archive after member {last} ({type(e).__name__}: {e})") from e


def parse_float(value: str, where: str, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise CorpusError(f"{where}: {what} {value!r} is not a number") from None


def read_uem(path: Path) -> dict[str, list[tuple[float, float]]]:
    """{conversation: [(start_s, end_s)] sorted} from a UEM file."""
    out: dict[str, list] = defaultdict(list)
    for lineno, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{path}:{lineno}"
        if len(parts) != 4:
            raise CorpusError(f"{where}: expected 'uri channel start end', got {line!r}")
        a, b = parse_float(parts[2], where, "start"), parse_float(parts[3], where, "end")
        if b < a:
            raise CorpusError(f"{where}: region ends before it starts")
        out[parts[0]].append((a, b))
    return {k: sorted(v) for k, v in out.items()}
