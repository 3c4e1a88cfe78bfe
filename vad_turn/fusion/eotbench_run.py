"""Score the eot-bench adapter on any dataset in eot-bench's schema, writing eot-bench's artifact layout.

    python -m vad_turn.fusion.eotbench_run --dataset livekit/eot-bench-data --name en --split validation
    python -m vad_turn.fusion.eotbench_run --dataset data/built/getgoing --split test --export-to runs/eot-getgoing

What it writes is what eot-bench's `eot-harness predict` writes for the same adapter, so the harness's own
`compute-metrics` and `compare-models` read it beside the other models' runs:

    <out>/<dataset>__<split>__min_silence_100ms/<language>/span_set.parquet, span_set_manifest.json
    <out>/<dataset>__<split>__min_silence_100ms/<language>/eot_bench_model__<options hash>/predictions.parquet,
                                                                                      manifest.json

(`<dataset>`: the dataset path with "/" as "__"; the options hash: sha256 of the model options the harness records,
adapter import path, adapter_id, display_name, inference interval and transcript lag, its first 10 hex digits.)
Predictions: one row per scored moment (id, language, span_index, timestamp, silence_dur, p_eot, label "hold" /
"eot") on each silence span of at least `min_silence_span`: every `inference_interval` from its start, and its end.
The adapter sees what the harness shows it: the audio up to the moment and the messages, with the words that
ended `transcript_lag` before the moment appended as a user message. Languages the adapter does not support are
skipped.

Datasets: a hub id or a local folder `datasets.load_dataset` reads (eot-bench-data, or an `--export-to` folder),
or a `save_to_disk` folder (the project's built corpora: data/built/getgoing, data/built/switchboard-rendered; their
rows are kept where `split` matches). `--export-to DIR` also writes the rows in eot-bench's columns (id,
language, audio, silence_spans, words, messages) as DIR/<language>/<split>-00000-of-00001.parquet with a dataset
card naming one config per language, so `eot-harness predict --path DIR --name en --split <split>` loads it.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S, MIN_SILENCE_S
from vad_turn.harness.query import QUERY_GRID_S

ADAPTER_REF = "vad_turn.fusion.eotbench:EotBenchModel"
LAYOUT_VERSION = "0.1.0"  # the eot-bench harness version whose artifact layout this follows
EOT_COLUMNS = ("id", "language", "audio", "silence_spans", "words", "messages")
_EPS = 1e-6


@dataclass(frozen=True)
class EotBenchRunConfig:
    dataset: str = field(metadata={"help": "hub id (livekit/eot-bench-data), a load_dataset folder, or a "
                                           "save_to_disk folder such as data/built/getgoing"})
    split: str = field(default="validation", metadata={"help": "split (eot-bench-data: validation; built corpora: "
                                                                "train / dev / test)"})
    name: str = field(default="en", metadata={"help": "dataset config for load_dataset (a language, or all)"})
    out: Path = field(default=Path("output"), metadata={"help": "root of the artifact layout"})
    export_to: Path | None = field(default=None, metadata={"help": "also write the rows in eot-bench's schema here"})
    max_turns: int = field(default=0, metadata={"help": "at most this many rows (0: all)"})
    min_silence_span: float = field(default=MIN_SILENCE_S, metadata={"help": "shortest silence span scored (s)"})
    inference_interval: float = field(default=QUERY_GRID_S, metadata={"help": "grid step inside a span (s)"})
    transcript_lag: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={
        "help": "words are shown this long after they end (s)"})
    batch_size: int = field(default=128, metadata={"help": "items per predict_batch call"})
    int8: bool = field(default=False, metadata={"help": "the adapter's int8 acoustic graph"})
    silence_vad: str = field(default="silero", metadata={"help": "the VAD that measures the silence so far",
                                                         "choices": ("silero", "energy")})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing model run"})

    def __post_init__(self) -> None:
        from vad_turn.core.config import require_range

        require_range("min_silence_span", self.min_silence_span, 0.0, 10.0, lo_open=True)
        require_range("inference_interval", self.inference_interval, 0.0, 5.0, lo_open=True)
        require_range("transcript_lag", self.transcript_lag, 0.0, 10.0)
        if self.batch_size < 1 or self.max_turns < 0:
            raise ValueError("--batch-size must be >= 1 and --max-turns >= 0")


# ----------------------------------------------------------------------------- names of the layout


def options_hash(config: dict, length: int = 10) -> str:
    """sha256 of the config as sorted, compact ASCII JSON, its first `length` hex digits."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def slug(value) -> str:
    """A path part: "/" -> "__", other characters outside [A-Za-z0-9._-] -> "_"."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", str(value).strip().replace("/", "__")).strip("_")
    return text or "unknown"


def adapter_slug(ref: str) -> str:
    """The adapter's class name in snake case: "pkg.mod:EotBenchModel" -> "eot_bench_model"."""
    name = ref.rsplit(":", 1)[-1].rsplit(".", 1)[-1]
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)).lower()
    return slug(name)


def seconds_slug(value_s: float) -> str:
    ms = round(value_s * 1000)
    return f"{ms}ms" if abs(value_s * 1000 - ms) < 1e-6 else f"{value_s:.6f}".rstrip("0").rstrip(".").replace(".", "p") + "s"


def span_set_dir_name(path: str, split: str, min_silence_span: float) -> str:
    return "__".join([slug(path), slug(split), f"min_silence_{seconds_slug(min_silence_span)}"])


# ----------------------------------------------------------------------------- the dataset


def open_rows(cfg: EotBenchRunConfig):
    """The dataset's rows (audio undecoded), its split only, at most max_turns."""
    from datasets import Audio, load_dataset, load_from_disk

    path = Path(cfg.dataset).expanduser()
    target = path / "data" if (path / "data" / "state.json").exists() else path
    if (target / "state.json").exists() or (target / "dataset_dict.json").exists():  # save_to_disk
        ds = load_from_disk(str(target))
        if "split" in ds.column_names:
            ds = ds.filter(lambda s: s == cfg.split, input_columns="split")
    else:
        ds = load_dataset(cfg.dataset, cfg.name, split=cfg.split)
    missing = [c for c in ("id", "language", "audio", "silence_spans") if c not in ds.column_names]
    if missing:
        raise ValueError(f"{cfg.dataset}: not in eot-bench's schema, missing columns {missing} (has {ds.column_names})")
    if len(ds) == 0:
        raise ValueError(f"{cfg.dataset}: no rows in split {cfg.split!r}")
    if cfg.max_turns:
        ds = ds.select(range(min(cfg.max_turns, len(ds))))
    return ds.cast_column("audio", Audio(decode=False))


def export(ds, out: Path, split: str) -> list[Path]:
    """The rows in eot-bench's columns as out/<language>/<split>-00000-of-00001.parquet, and a dataset card (README.md)
    naming one load_dataset config per language."""
    keep = [c for c in EOT_COLUMNS if c in ds.column_names]
    ds = ds.select_columns(keep)
    languages = sorted(set(ds["language"]))
    written = []
    for lang in languages:
        part = ds.filter(lambda x: x == lang, input_columns="language")
        path = Path(out) / lang / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        part.to_parquet(str(path))
        written.append(path)
    configs = "".join(f"- config_name: {lang}\n  data_files:\n  - split: {split}\n    path: {lang}/{split}-*.parquet\n"
                      for lang in languages)
    (Path(out) / "README.md").write_text(f"---\nconfigs:\n{configs}---\nTurns in eot-bench's schema, written by "
                                         "`python -m vad_turn.fusion.eotbench_run --export-to`.\n")
    return written


def grid(start_s: float, end_s: float, step_s: float) -> list[float]:
    """Moments scored in a span: start + i * step while inside it, then its end (6 decimals)."""
    n = max(0, int(math.floor((end_s - start_s) / step_s + _EPS)))
    out = [round(start_s + i * step_s, 6) for i in range(n + 1)]
    if out[-1] < end_s - _EPS:
        out.append(round(end_s, 6))
    return out


def row_items(row: dict, cfg: EotBenchRunConfig):
    """(meta, item) per scored moment of one row (see the module docstring)."""
    from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes

    audio = decode_audio_bytes(row["audio"]["bytes"], source=str(row["id"]))
    language = str(row["language"]).strip().lower()
    spans, words = row["silence_spans"], row.get("words") or []
    history = [dict(m) for m in row.get("messages") or []]
    for i, span in enumerate(spans):
        start, end = float(span["start"]), float(span["end"])
        if end - start < cfg.min_silence_span - _EPS:
            continue
        label = "eot" if i == len(spans) - 1 else "hold"
        for t in grid(start, end, cfg.inference_interval):
            seen = [str(w["word"]).strip() for w in words if float(w["end"]) <= t - cfg.transcript_lag + _EPS]
            seen = [w for w in seen if w]
            msgs = history + ([{"role": "user", "content": " ".join(seen)}] if seen else [])
            n = int(math.floor(t * SAMPLE_RATE_HZ + _EPS))
            yield ({"id": str(row["id"]), "language": language, "span_index": i, "timestamp": t,
                    "silence_dur": round(t - start, 6), "label": label},
                   {"language": language, "audio": {"array": audio[:n], "sampling_rate": SAMPLE_RATE_HZ},
                    "messages": msgs})


# ----------------------------------------------------------------------------- the run


def run(cfg: EotBenchRunConfig) -> list[Path]:
    """Predict with the adapter and write the layout; returns the model run folders written."""
    import pandas as pd

    from vad_turn.core.runs import atomic_write_json

    from .eotbench import EotBenchModel

    ds = open_rows(cfg)
    if cfg.export_to is not None:
        print(f"exported {sum(len(pd.read_parquet(p)) for p in export(ds, cfg.export_to, cfg.split))} rows to {cfg.export_to}")
    adapter = EotBenchModel(int8=cfg.int8, silence_vad=cfg.silence_vad)
    model = {"adapter": ADAPTER_REF, "adapter_id": adapter.adapter_id, "inference_interval": cfg.inference_interval,
             "transcript_lag": cfg.transcript_lag, "display_name": adapter.display_name}
    run_id = f"{adapter_slug(ADAPTER_REF)}__{options_hash(model)}"
    root = Path(cfg.out) / span_set_dir_name(cfg.dataset, cfg.split, cfg.min_silence_span)
    load = {"path": cfg.dataset, "name": cfg.name, "split": cfg.split}
    written = []
    for lang in sorted({str(x).strip().lower() for x in ds["language"]}):
        rows = ds.filter(lambda x: str(x).strip().lower() == lang, input_columns="language")
        span_cfg = {"path": cfg.dataset, "split": cfg.split, "min_silence_span": cfg.min_silence_span, "language": lang}
        spans = [{"id": str(r["id"]), "language": lang, "span_index": i, "label": "eot" if i == len(r["silence_spans"]) - 1
                  else "hold", "start": round(s["start"], 6), "end": round(s["end"], 6),
                  "duration": round(s["end"] - s["start"], 6)}
                 for r in rows.select_columns(["id", "silence_spans"]) for i, s in enumerate(r["silence_spans"])
                 if s["end"] - s["start"] >= cfg.min_silence_span - _EPS]
        lang_dir = root / lang
        lang_dir.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(spans).to_parquet(lang_dir / "span_set.parquet", index=False)
        atomic_write_json(lang_dir / "span_set_manifest.json", {
            "harness_version": LAYOUT_VERSION, "span_set_id": options_hash({"span_set": span_cfg}, 12),
            "dataset": span_cfg, "n_spans": len(spans)})
        if not adapter.supports_language(lang):
            print(f"{lang}: skipped (unsupported language)")
            continue
        out = lang_dir / run_id
        if out.exists() and not cfg.overwrite:
            raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
        preds, meta, items = [], [], []

        def flush():
            for m, p in zip(meta, adapter.predict_batch(items)):
                preds.append({**m, "p_eot": float(p)})
            meta.clear()
            items.clear()

        for row in rows:
            for m, it in row_items(row, cfg):
                meta.append(m)
                items.append(it)
                if len(items) == cfg.batch_size:
                    flush()
        if items:
            flush()
        cols = ["id", "language", "span_index", "timestamp", "silence_dur", "p_eot", "label"]
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(preds, columns=cols).to_parquet(out / "predictions.parquet", index=False)
        atomic_write_json(out / "manifest.json", {
            "harness_version": LAYOUT_VERSION, "written_by": "vad_turn.fusion.eotbench_run",
            "span_set_id": options_hash({"span_set": span_cfg}, 12), "model_run_id": run_id, "dataset": span_cfg,
            "load_dataset": load, "model": model, "runtime": {"batch_size": cfg.batch_size}, "language": lang,
            "adapter": ADAPTER_REF, "adapter_id": adapter.adapter_id, "display_name": adapter.display_name,
            "inference_interval": cfg.inference_interval, "transcript_lag": cfg.transcript_lag,
            "min_silence_span": cfg.min_silence_span, "n_rows": len(preds), "n_spans": len(spans)})
        p = np.array([r["p_eot"] for r in preds])
        eot = np.array([r["label"] == "eot" for r in preds])
        print(f"{lang}: {len(spans)} spans, {len(preds)} moments scored -> {out} (mean p_eot: hold "
              f"{p[~eot].mean() if (~eot).any() else float('nan'):.3f}, eot {p[eot].mean() if eot.any() else float('nan'):.3f})")
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> int:
    import argparse

    from vad_turn.core.config import add_config_args, build_config, run_config

    parser = argparse.ArgumentParser(prog="eotbench_run", description=__doc__.split("\n\n")[0])
    add_config_args(parser, EotBenchRunConfig)
    cfg = build_config("eotbench_run", EotBenchRunConfig, parser.parse_args(argv))
    return run_config("eotbench_run", lambda c: (run(c), 0)[1], cfg)


if __name__ == "__main__":
    raise SystemExit(main())
