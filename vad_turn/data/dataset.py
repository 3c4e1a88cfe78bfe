"""Write and read turn-span datasets (Hugging Face `datasets`, saved with `save_to_disk`).

Writes go to a temporary sibling folder and are renamed into place only when complete, so an
interrupted build never leaves a half-written dataset. Audio is stored undecoded ({bytes, path})
and decoded with soundfile (`vad_turn.core.audio.decode_audio_bytes`), so neither torchcodec nor FFmpeg
is needed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator

from vad_turn.core.runs import atomic_dir, atomic_write_json
from vad_turn.core.schema import TurnRecord, features


def write_turns(records: Iterable[TurnRecord], out_dir: Path, *, info: dict | None = None) -> Path:
    """Save `records` as a dataset at `out_dir` (replacing an old one only once complete).

    `info` (counts, recipe, timings) is written to `out_dir/build_info.json`.
    """
    from datasets import Dataset

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    rows = [r.to_row() for r in records]
    if not rows:
        raise ValueError(f"{out_dir}: no turns to write (the builder found none)")
    with atomic_dir(out_dir) as tmp:  # a built dataset is for everyone who can read data/
        # Build with a plain struct for audio, then cast at the Arrow level to Audio(decode=False):
        # encoding through the Audio feature would need torchcodec/FFmpeg.
        feats = features()
        plain = feats.copy()
        from datasets import Value

        plain["audio"] = {"bytes": Value("binary"), "path": Value("string")}
        ds = Dataset.from_list(rows, features=plain)
        ds = ds.cast_column("audio", feats["audio"])
        ds.save_to_disk(str(tmp / "data"))
        atomic_write_json(tmp / "build_info.json", info or {})
    return out_dir


def load_turns(path: Path):
    """Load a dataset written by `write_turns` (or any `save_to_disk` folder in the schema)."""
    from datasets import load_from_disk

    path = Path(path)
    target = path / "data" if (path / "data").exists() else path
    if not target.exists():
        raise FileNotFoundError(f"{path}: no dataset here (build it with `vad-turn build-data`)")
    ds = load_from_disk(str(target))
    missing = set(features()) - set(ds.features) - {"split", "conversation", "speaker", "voice", "word_timing"}
    if {"id", "silence_spans", "words", "messages"} - set(ds.features):
        raise ValueError(f"{path}: not a turn-span dataset, missing columns {sorted(missing)}")
    return ds


def build_info(path: Path) -> dict:
    p = Path(path) / "build_info.json"
    return json.loads(p.read_text()) if p.exists() else {}


def built_and_current(name: str, out_dir: Path, recipe_hash: str, force: bool = False) -> dict | None:
    """The build info of `out_dir` marked {"skipped": True} when it already holds a build with this
    recipe hash (and `force` is off), printing so; None when it must be (re)built."""
    old = build_info(out_dir)
    if force or old.get("recipe_hash") != recipe_hash or not (Path(out_dir) / "data").exists():
        return None
    print(f"{name}: up to date in {out_dir} (use --force to rebuild)")
    return {**old, "skipped": True}


def iter_rows(ds, columns: list[str] | None = None) -> Iterator[dict]:
    """Rows as dicts, optionally only some columns (skipping audio bytes speeds text-only work)."""
    if columns is not None:
        ds = ds.select_columns([c for c in columns if c in ds.column_names])
    for row in ds:
        yield row
