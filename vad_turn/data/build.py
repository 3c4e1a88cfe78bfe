"""`vad-turn build-data`: build the turn-span datasets from the original corpora.

Each corpus becomes one dataset folder `out_root/<corpus>` (all its splits, told apart by the
`split` column) written atomically by `vad_turn.data.dataset.write_turns`, with its
`build_info.json` (recipe, recipe hash, counts per split, notes, wall time). A summary of all
corpora goes to `out_root/build_info.json`, and a counts table is printed.

A corpus already built with the same recipe hash (recipe file + builder options + builder source
code) is skipped unless `--force`. Load a build with `load_built(corpus, split)`.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import vad_turn.core.schema as schema_module
from vad_turn.core.schema import MIN_SILENCE_S
from vad_turn.core.config import config_to_dict, default_built_root, default_data_root
from vad_turn.core.runs import atomic_write_json, git_commit
from vad_turn.data.corpora.turns import span_counts

from .corpora import CORPORA, RECIPES_DIR, VARIANTS, CorpusError, builder_module, corpus_builder, load_recipe
from .dataset import build_info, built_and_current, load_turns, write_turns

KEEP_RANGE_S = (0.2, 5.0)
_SOURCES = ("__init__.py", "turns.py")


@dataclass(frozen=True)
class BuildConfig:
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "folder of the original corpora"})
    out_root: Path = field(default_factory=default_built_root, metadata={"help": "where built datasets go"})
    corpora: tuple[str, ...] = field(default=CORPORA + VARIANTS, metadata={"help": "corpora (and recipe variants) to build"})
    min_silence_s: float = field(default=MIN_SILENCE_S, metadata={"help": "shortest silence counted as a hold"})
    max_conversations: int | None = field(
        default=None, metadata={"help": "at most this many conversations per split (tiny test builds); none = all"}
    )
    force: bool = field(default=False, metadata={"help": "rebuild corpora already built with the same recipe"})
    recipes_dir: Path = field(default=RECIPES_DIR, metadata={"help": "folder of <corpus>.json recipes"})


def recipe_hash(corpus: str, recipe: dict, cfg: BuildConfig) -> str:
    """sha256 over the recipe, the options that change the output and the builders' source code."""
    h = hashlib.sha256()
    h.update(json.dumps(recipe, sort_keys=True).encode())
    h.update(json.dumps({"min_silence_s": cfg.min_silence_s, "max_conversations": cfg.max_conversations}).encode())
    here = Path(__file__).resolve().parent
    builder = recipe.get("builder", corpus)
    module = builder_module(builder)
    extra = getattr(importlib.import_module(f"vad_turn.data.corpora.{module}"), "EXTRA_SOURCES", ())
    for p in ([here / "corpora" / s for s in _SOURCES] + [here / "corpora" / f"{module}.py", Path(schema_module.__file__)]
              + [here / s for s in extra]):
        h.update(p.read_bytes())
    return h.hexdigest()


def build_corpus(corpus: str, cfg: BuildConfig) -> dict:
    """Build one corpus into cfg.out_root/<corpus> (or skip it when up to date); returns its info."""
    recipe = load_recipe(corpus, cfg.recipes_dir)
    digest = recipe_hash(corpus, recipe, cfg)
    out_dir = Path(cfg.out_root) / corpus
    done = built_and_current(corpus, out_dir, digest, cfg.force)
    if done is not None:
        return done
    t0 = time.perf_counter()
    by_split, notes = corpus_builder(recipe.get("builder", corpus))(
        Path(cfg.data_root), recipe, max_conversations=cfg.max_conversations, min_silence_s=cfg.min_silence_s
    )
    counts = {split: span_counts(recs, KEEP_RANGE_S) for split, recs in by_split.items()}
    info = {
        "corpus": corpus,
        "recipe": recipe,
        "recipe_hash": digest,
        "data_root": str(cfg.data_root),
        "config": config_to_dict(cfg),
        "commit": git_commit(),
        "counts": counts,
        "notes": notes,
    }
    records = [r for recs in by_split.values() for r in recs]
    write_turns(records, out_dir, info={**info, "wall_s": round(time.perf_counter() - t0, 1)})
    return build_info(out_dir)


def counts_table(infos: dict[str, dict]) -> str:
    """The counts per corpus and split as an aligned text table."""
    lo, hi = KEEP_RANGE_S
    header = ("corpus", "split", "turns", "holds", "ends", f"holds {lo:g}-{hi:g}s")
    rows = [header]
    for corpus, info in infos.items():
        for split, c in info["counts"].items():
            rows.append((corpus, split, c["turns"], c["holds"], c["ends"], c[f"holds_{lo:g}-{hi:g}s"]))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(v).rjust(w) if i > 1 else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))) for r in rows)


def run(cfg: BuildConfig) -> dict[str, dict]:
    """Build every corpus of cfg.corpora; writes out_root/build_info.json and prints the counts."""
    unknown = [c for c in cfg.corpora if c not in CORPORA + VARIANTS]
    if unknown:
        raise CorpusError(f"unknown corpora {unknown} (known: {', '.join(CORPORA + VARIANTS)})")
    infos: dict[str, dict] = {}
    t0 = time.perf_counter()
    for corpus in cfg.corpora:
        infos[corpus] = build_corpus(corpus, cfg)
    summary_path = Path(cfg.out_root) / "build_info.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update({c: {k: i[k] for k in ("recipe_hash", "counts", "notes", "wall_s") if k in i} for c, i in infos.items()})
    atomic_write_json(summary_path, summary)
    print(counts_table(infos))
    print(f"built in {time.perf_counter() - t0:.1f} s -> {cfg.out_root}")
    return infos


def load_built(corpus: str, split: str | None = None, built_root: Path | None = None):
    """The built dataset of `corpus` (a `datasets.Dataset`), only `split` rows when given."""
    root = Path(built_root) if built_root is not None else default_built_root()
    ds = load_turns(root / corpus)
    if split is None:
        return ds
    splits = set(ds.unique("split"))
    if split not in splits:
        raise ValueError(f"{root / corpus}: no split {split!r} (have {sorted(splits)})")
    return ds.filter(lambda s: s == split, input_columns=["split"])
