"""The headline table: end-of-turn operating points per corpus, every detector beside VAD-only.

`vad-turn headline` (what `make demo` runs until the Gradio demo exists) builds whatever corpus is
missing, evaluates each detector on each evaluation set through the harness, writes one run
folder per (set, detector) under `runs/headline/` plus `runs/headline/headline.md`, and prints
the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .config import atomic_write_json, atomic_write_text, default_built_root, default_data_root, default_runs_root

# (dataset folder under built_root, split, label)
DEFAULT_SETS = ("switchboard:val", "switchboard-wordrule:val", "sbcsae:none", "ami:none")
# Detectors that score audio alone (they raise AudioError on a text-only row): evaluated only on the sets
# whose rows carry audio (AMI, the rendered corpora), skipped with a note on the others.
AUDIO_ONLY_DETECTORS = ("acoustic", "smart-turn")


@dataclass(frozen=True)
class HeadlineConfig:
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "original corpora"})
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "built datasets"})
    sets: tuple[str, ...] = field(default=DEFAULT_SETS, metadata={"help": "dataset:split pairs ('none' = all rows)"})
    detectors: tuple[str, ...] = field(default=("vad-only",), metadata={"help": "registered detectors to evaluate"})
    max_turns: int | None = field(default=None, metadata={"help": "seeded sample of turns per set (None: all)"})
    out: Path | None = field(default=None, metadata={"help": "folder for the run folders (default runs/headline)"})

    def __post_init__(self) -> None:
        from .detectors import available_detectors

        unknown = [d for d in self.detectors if d not in available_detectors() and ":" not in d]
        if unknown:
            raise ValueError(f"--detectors: unknown {', '.join(map(repr, unknown))}; registered: "
                             f"{', '.join(available_detectors())} (or 'package.module:Factory')")


def set_has_audio(dataset: Path) -> bool:
    """Whether a built turn-span set's rows carry audio (judged by its first row: sets are all or nothing)."""
    from .dataset import load_turns

    ds = load_turns(dataset)
    if "audio" not in ds.column_names or len(ds) == 0:
        return False
    audio = ds[0]["audio"]
    return bool(audio and audio.get("bytes"))


def evaluation_pairs(sets, detectors, has_audio) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """((set, detector) pairs to evaluate, pairs skipped: an AUDIO_ONLY_DETECTORS detector on a set whose
    `has_audio(corpus)` is false). has_audio is only asked when an audio-only detector is requested."""
    run, skipped = [], []
    for spec in sets:
        corpus = spec.partition(":")[0]
        for det in detectors:
            (skipped if det in AUDIO_ONLY_DETECTORS and not has_audio(corpus) else run).append((spec, det))
    return run, skipped


_NA = "n/a"  # a slice the set has no turns in (e.g. word counts for AMI, which has no words)


def _fmt(x, pct=False):
    if x is None:
        return "n/r"
    if x == _NA:
        return _NA
    return f"{100 * x:.1f}%" if pct else f"{x:.2f} s"


def headline_rows(results: list[dict]) -> list[dict]:
    """Flatten evaluation metrics into one row per (set, detector)."""
    rows = []
    for r in results:
        m = r["metrics"]
        ops = {op["name"]: op for op in m["operating_points"]}
        row = {"set": r["set"], "detector": m["detector"], "turns": m["counts"]["n_turns"],
               "holds_kept": m["counts"].get("n_holds_kept")}
        for name, op in ops.items():
            key = "fcr" if op["kind"] == "min_fcr_at_latency" else "latency"
            row[name] = op["false_cutoff_rate"] if key == "fcr" else op["mean_latency_s"]
            if not op.get("reachable", True):
                row[name] = None
            row[name + ":ratio"] = op.get("ratio_to_vad_only")
        short = [s for s in m["slices"] if s["slice"] == "turn_length_bin" and s["value"] == "1-10"
                 and s["operating_point"] == "fcr@lat<=0.6s"]
        row["fcr@lat<=0.6s (1-10 words)"] = short[0]["false_cutoff_rate"] if short else _NA
        rows.append(row)
    return rows


def format_headline(rows: list[dict]) -> str:
    cols = ["fcr@lat<=0.3s", "fcr@lat<=0.6s", "fcr@lat<=0.6s (1-10 words)", "lat@fcr<=5%", "lat@fcr<=10%"]
    head = "| set | detector | turns | holds kept | " + " | ".join(
        ["FCR @ 0.3 s", "FCR @ 0.6 s", "FCR @ 0.6 s (1-10 words)", "latency @ 5% FCR", "latency @ 10% FCR"]) + " |"
    lines = [head, "|" + "---|" * (4 + len(cols))]
    for r in rows:
        cells = []
        for c in cols:
            v = _fmt(r.get(c), pct=c.startswith("fcr"))
            ratio = r.get(c + ":ratio")
            if r["detector"] != "vad-only" and isinstance(ratio, float):
                v += f" ({ratio:.2f}x)"
            cells.append(v)
        lines.append(f"| {r['set']} | {r['detector']} | {r['turns']} | {r['holds_kept']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(cfg: HeadlineConfig) -> list[dict]:
    from .build import BuildConfig
    from .build import run as build_run
    from .evaluate import EvalConfig
    from .evaluate import run as eval_run

    corpora = tuple(dict.fromkeys(s.split(":")[0] for s in cfg.sets))
    missing = tuple(c for c in corpora if not (Path(cfg.built_root) / c).exists())
    from .corpora import CORPORA, VARIANTS

    base = set(CORPORA + VARIANTS)
    if missing:
        unbuildable = [c for c in missing if c not in base]
        if unbuildable:
            raise FileNotFoundError(f"{cfg.built_root}: {unbuildable} not built (see `vad-turn render`)")
        print(f"building {', '.join(missing)} from {cfg.data_root} ...")
        build_run(BuildConfig(data_root=cfg.data_root, out_root=cfg.built_root, corpora=missing))
    out_root = Path(cfg.out) if cfg.out else default_runs_root() / "headline"
    results = []
    audio_of: dict[str, bool] = {}
    pairs, skipped = evaluation_pairs(cfg.sets, cfg.detectors, lambda c: audio_of.setdefault(
        c, set_has_audio(Path(cfg.built_root) / c)))
    for spec, det in skipped:
        print(f"skipping {det} on {spec}: it scores audio alone and this set has no audio")
    for spec, det in pairs:
        corpus, _, split = spec.partition(":")
        ecfg = EvalConfig(dataset=Path(cfg.built_root) / corpus, split=None if split in ("", "none") else split,
                          detector=det, max_turns=cfg.max_turns, out=out_root / f"{corpus}-{split or 'all'}-{det}")
        metrics = eval_run(ecfg)
        results.append({"set": spec, "metrics": metrics})
    rows = headline_rows(results)
    table = format_headline(rows)
    note = "".join(f" {det} is not evaluated on {spec} (no audio)." for spec, det in skipped)
    atomic_write_json(out_root / "headline.json", rows)
    atomic_write_text(out_root / "headline.md", "# End-of-turn headline\n\n" + table + "\n\n"
                      "FCR: share of turns falsely cut off in a hold; latency: mean time from the true end of turn "
                      "to the end-of-turn decision. n/r: operating point not reachable in the sweep. Ratios are "
                      "to VAD-only on the same spans." + note + "\n")
    print("\n" + table)
    print(f"\nrun folders and headline.md under {out_root}")
    return rows
