"""Load LiveKit's eot-bench-data (or any dataset in its schema) as a turn-span dataset.

eot-bench-data rows carry at least `id`, `audio`, `silence_spans` ({start, end}, the last one the
end of turn), `words` ({word, start, end}) and `messages` ({role, content}). The workbench's slice
tags are filled where absent so the harness can evaluate it like a built corpus:
`pause_context` (computed from words and spans with `schema.pause_contexts`), `unit_punct` ("" per
span), `backchannel_context` False, `n_words`, `audio_condition` "real", `voice` "",
`word_timing` "aligned", `language` (the config name, else "en"), `source` "eot-bench",
`split`, `conversation` (= id), `speaker` "". Audio is cast to `Audio(decode=False)` so rows decode
through `vad_turn.core.audio.decode_audio_bytes` (soundfile), like the built corpora.
"""
from __future__ import annotations

from pathlib import Path

from vad_turn.core.schema import features, pause_contexts, row_spans, row_words

HUB_PATH = "livekit/eot-bench-data"
REQUIRED = ("id", "silence_spans", "words", "messages", "audio")


def _open(source: str | Path, split: str | None, name: str | None):
    """(dataset, split name) from a local save_to_disk folder or the hub."""
    from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset, load_from_disk

    path = Path(source).expanduser()
    if path.exists():
        target = path / "data" if (path / "data").exists() else path
        ds = load_from_disk(str(target))
    elif str(source).startswith((".", "/", "~")) or Path(source).suffix:
        raise FileNotFoundError(f"{source}: no such dataset folder")
    else:  # a hub id such as livekit/eot-bench-data
        ds = load_dataset(str(source), name, split=split) if name else load_dataset(str(source), split=split)
    if isinstance(ds, DatasetDict):
        if split is not None:
            if split not in ds:
                raise ValueError(f"{source}: no split {split!r} (have {sorted(ds)})")
            return ds[split], split
        parts = [d if "split" in d.column_names else d.add_column("split", [k] * len(d)) for k, d in ds.items()]
        return concatenate_datasets(parts), None
    assert isinstance(ds, Dataset)
    return ds, split


def load_eot_bench(source: str | Path = HUB_PATH, split: str | None = None, *, name: str | None = "en"):
    """eot-bench-data as a `datasets.Dataset` with every column of `schema.features()`.

    source: a local folder written with `save_to_disk` (loaded with `load_from_disk`; a
      DatasetDict folder is fine) or a hub id (loaded with `datasets.load_dataset(source, name)`).
    split: the split to keep ("validation" on the hub); None keeps all (a `split` column tells them apart).
    name: the hub config (a language such as "en", or "all"); ignored for local folders.
    Raises ValueError naming the missing columns or the first row that breaks the span invariants.
    """
    from datasets import Audio

    ds, split = _open(source, split, name)
    missing = [c for c in REQUIRED if c not in ds.column_names]
    if missing:
        raise ValueError(f"{source}: not an eot-bench turn dataset, missing columns {missing} (have {ds.column_names})")
    light = ds.select_columns(["id", "silence_spans", "words"])
    for row in light:
        spans = row["silence_spans"] or []
        if not spans:
            raise ValueError(f"{source}: row {row['id']} has no silence span (the last one must be the end of turn)")
        unordered = any(b["start"] < a["end"] - 1e-6 for a, b in zip(spans, spans[1:]))
        if unordered or any(s["end"] < s["start"] - 1e-9 for s in spans):
            raise ValueError(f"{source}: row {row['id']} has unordered or overlapping silence spans")
    defaults = {
        "language": (name if name and name != "all" else "en"),
        "source": "eot-bench",
        "split": split or "validation",
        "backchannel_context": False,
        "audio_condition": "real",
        "voice": "",
        "word_timing": "aligned",
        "speaker": "",
    }
    for col, value in defaults.items():
        if col not in ds.column_names:
            ds = ds.add_column(col, [value] * len(ds))
    if "conversation" not in ds.column_names:
        ds = ds.add_column("conversation", list(ds["id"]))
    derived = [c for c in ("pause_context", "unit_punct", "n_words") if c not in ds.column_names]
    if derived:
        ds = ds.map(_derive, fn_kwargs={"columns": derived}, input_columns=["words", "silence_spans"], desc="eot-bench tags")
    feats = features()
    ds = ds.cast_column("audio", feats["audio"])
    for col in feats:
        if col != "audio" and ds.features[col] != feats[col]:
            ds = ds.cast_column(col, feats[col])
    return ds


def _derive(words, silence_spans, columns):
    row = {"words": words, "silence_spans": silence_spans}
    out = {}
    if "pause_context" in columns:
        out["pause_context"] = pause_contexts(row_words(row), row_spans(row))
    if "unit_punct" in columns:
        out["unit_punct"] = [""] * len(silence_spans)
    if "n_words" in columns:
        out["n_words"] = len(words or [])
    return out
