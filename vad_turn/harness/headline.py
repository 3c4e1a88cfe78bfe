"""The headline table: end-of-turn operating points per corpus, every detector beside VAD-only.

`vad-turn headline` (what `make demo` runs until the Gradio demo exists) builds whatever corpus is
missing, evaluates each detector on each evaluation set through the harness, writes one run
folder per (set, detector) under `runs/headline/` plus `runs/headline/headline.md`, and prints
the table: FCR at 0.3 / 0.6 s mean latency and mean latency at 2 / 5 / 10 % false cut-offs, each
with its ratio to VAD-only on the same spans and a paired bootstrap 95% interval by conversation
(`vad_turn.harness.ratio_bootstrap`), and each detector's CPU ms per decision (P50 / P99, one query at a
time, torch on 1 thread, `time.process_time`) on one fixed set of real queries. Sets whose corpus
is not built and cannot be built from the original corpora (GetGoing, the rendered sets) are
skipped with a note; an agent-text run folder (`vad-turn agent-text`) adds its completeness table.

`vad-turn headline --detectors vad-only smart-turn lexical-zeroshot lexical acoustic fused`
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.config import default_built_root, default_data_root, default_runs_root
from vad_turn.core.runs import atomic_write_json, atomic_write_text

from .detectors import audio_only
from .metrics import FALSE_CUTOFF_BUDGETS, LATENCY_BUDGETS_S, _op_name
from .percentiles import summary

# dataset folder under built_root : split ('none' = all rows)
DEFAULT_SETS = ("getgoing:dev", "getgoing:test", "ami:none", "switchboard:val", "switchboard-wordrule:val",
                "sbcsae:none", "switchboard-rendered:dev", "sbcsae-rendered:test")
# Corpora not built from the original corpus files (`vad-turn build-getgoing`, `vad-turn render`): a set
# of one of these that is not built is skipped with a note, never an error.
OPTIONAL_CORPORA = ("getgoing", "switchboard-rendered", "sbcsae-rendered")
# (operating point name, column title): one column per budget of `metrics.LATENCY_BUDGETS_S` and `FALSE_CUTOFF_BUDGETS`
OP_COLUMNS = (tuple((_op_name("min_fcr_at_latency", b), f"FCR @ {b:g} s") for b in LATENCY_BUDGETS_S)
              + tuple((_op_name("min_latency_at_fcr", b), f"latency @ {100 * b:g}% FCR") for b in FALSE_CUTOFF_BUDGETS))


@dataclass(frozen=True)
class HeadlineConfig:
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "original corpora"})
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "built datasets"})
    sets: tuple[str, ...] = field(default=DEFAULT_SETS, metadata={"help": "dataset:split pairs ('none' = all rows)"})
    detectors: tuple[str, ...] = field(default=("vad-only",), metadata={"help": "registered detectors to evaluate"})
    max_turns: int | None = field(default=None, metadata={"help": "seeded sample of turns per set (None: all)"})
    out: Path | None = field(default=None, metadata={"help": "folder for the run folders (default runs/headline)"})
    n_boot: int = field(default=200, metadata={"help": "bootstrap resamples per (set, detector) (0: no intervals)"})
    seed: int = field(default=0, metadata={"help": "seed of the bootstrap"})
    cpu_queries: int = field(default=50, metadata={"help": "real queries timed per detector (0: no CPU column)"})
    agent_text_run: Path | None = field(default=None, metadata={
        "help": "agent-text run folder for the completeness section (default runs/agent-text-default)"})

    def __post_init__(self) -> None:
        from .detectors import check_detector_spec

        for d in self.detectors:  # registered names, or 'package.module:Class' of a detector class
            check_detector_spec(d, "--detectors")
        if self.n_boot < 0 or self.cpu_queries < 0:
            raise ValueError(f"--n-boot and --cpu-queries must be >= 0, got {self.n_boot}, {self.cpu_queries}")


def available_sets(sets, built_root: Path) -> tuple[list[str], list[str]]:
    """(sets to evaluate, notes on the skipped ones): a set of an OPTIONAL_CORPORA corpus that is not
    built under built_root is skipped with a note; every other set is kept (built later if missing)."""
    keep, notes = [], []
    for spec in sets:
        corpus = spec.partition(":")[0]
        if corpus in OPTIONAL_CORPORA and not (Path(built_root) / corpus).exists():
            notes.append(f"{spec} is skipped: {Path(built_root) / corpus} is not built.")
        else:
            keep.append(spec)
    return keep, notes


def set_has_audio(dataset: Path) -> bool:
    """Whether a built turn-span set's rows carry audio (judged by its first row: sets are all or nothing)."""
    from vad_turn.data.dataset import load_turns

    ds = load_turns(dataset)
    if "audio" not in ds.column_names or len(ds) == 0:
        return False
    audio = ds[0]["audio"]
    return bool(audio and audio.get("bytes"))


def evaluation_pairs(sets, detectors, has_audio) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """((set, detector) pairs to evaluate, pairs skipped: an audio-only detector (`detectors.audio_only`: its
    DetectorSpec needs audio and no words; it raises AudioError on a text-only row) on a set whose
    `has_audio(corpus)` is false). has_audio is only asked when an audio-only detector is requested."""
    run, skipped = [], []
    for spec in sets:
        corpus = spec.partition(":")[0]
        for det in detectors:
            (skipped if audio_only(det) and not has_audio(corpus) else run).append((spec, det))
    return run, skipped


_NA = "n/a"  # a slice the set has no turns in (e.g. word counts for AMI, which has no words)


def _fmt(x, pct=False):
    if x is None:
        return "n/r"
    if x == _NA:
        return _NA
    return f"{100 * x:.1f}%" if pct else f"{x:.2f} s"


def headline_rows(results: list[dict]) -> list[dict]:
    """Flatten evaluation metrics into one row per (set, detector).

    results: {"set", "metrics"} and optionally "bootstrap" (`ratio_bootstrap` output) and "cpu_ms"
    ({"n", "p50", "p99", "mean"}). A row holds each operating point's value (None: unreachable), its
    ":ratio" to VAD-only and ":ci" [low, high] (None when not bootstrapped or undefined).
    """
    rows = []
    for r in results:
        m = r["metrics"]
        ops = {op["name"]: op for op in m["operating_points"]}
        boot = {b["name"]: b for b in r.get("bootstrap") or ()}
        row = {"set": r["set"], "detector": m["detector"], "turns": m["counts"]["n_turns"],
               "holds_kept": m["counts"].get("n_holds_kept")}
        for name, op in ops.items():
            key = "fcr" if op["kind"] == "min_fcr_at_latency" else "latency"
            row[name] = op["false_cutoff_rate"] if key == "fcr" else op["mean_latency_s"]
            if not op.get("reachable", True):
                row[name] = None
            row[name + ":ratio"] = op.get("ratio_to_vad_only")
            b = boot.get(name)
            row[name + ":ci"] = [b["ci_low"], b["ci_high"]] if b and b["ci_low"] is not None else None
        short = [s for s in m["slices"] if s["slice"] == "turn_length_bin" and s["value"] == "1-10"
                 and s["operating_point"] == "fcr@lat<=0.6s"]
        row["fcr@lat<=0.6s (1-10 words)"] = short[0]["false_cutoff_rate"] if short else _NA
        row["cpu_ms"] = r.get("cpu_ms")
        rows.append(row)
    return rows


def _cell(row: dict, col: str) -> str:
    v = _fmt(row.get(col), pct=col.startswith("fcr"))
    ratio, ci = row.get(col + ":ratio"), row.get(col + ":ci")
    if row["detector"] != "vad-only" and isinstance(ratio, float):
        v += f" ({ratio:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "") + ")"
    return v


def format_headline(rows: list[dict]) -> str:
    """The one table: a row per (set, detector); each operating point as value (ratio to VAD-only
    [95% interval]); CPU ms per decision as P50 / P99."""
    head = "| set | detector | turns | holds kept | " + " | ".join(t for _, t in OP_COLUMNS) + " | CPU ms P50 / P99 |"
    lines = [head, "|" + "---|" * (5 + len(OP_COLUMNS))]
    for r in rows:
        cpu = r.get("cpu_ms")
        cpu_cell = f"{cpu['p50']:.2f} / {cpu['p99']:.2f}" if cpu else "-"
        lines.append(f"| {r['set']} | {r['detector']} | {r['turns']} | {r['holds_kept']} | "
                     + " | ".join(_cell(r, c) for c, _ in OP_COLUMNS) + f" | {cpu_cell} |")
    return "\n".join(lines)


def timing_queries(dataset: Path, split: str | None, n_queries: int, seed: int = 0) -> list:
    """`n_queries` real causal queries (audio and words) of a seeded sample of turns of one set, evenly
    spaced over their grid: the fixed workload every detector's CPU time is measured on."""
    from types import SimpleNamespace

    from vad_turn.data.dataset import load_turns

    from .evaluate import EvalConfig, select_turns, turn_queries

    ecfg = EvalConfig(dataset=dataset, split=split, max_turns=max(1, n_queries // 5), seed=seed)
    rows, _ = select_turns(load_turns(dataset), ecfg)
    probe = SimpleNamespace(needs_audio=True, needs_words=True)
    queries = [q for row in rows for q in turn_queries(row, probe, ecfg)[0]]
    if len(queries) <= n_queries:
        return queries
    return [queries[i] for i in np.linspace(0, len(queries) - 1, n_queries).round().astype(int)]


def cpu_ms_per_decision(detector, queries, n_warmup: int = 2) -> dict:
    """CPU milliseconds of one `detector.predict` call (one decision): {"n", "p50", "p99", "mean"}. CPU time is
    `time.process_time` (all threads of the process); torch, if loaded, is held to 1 thread."""
    import sys
    import time

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    for q in queries[:n_warmup]:
        detector.predict(q.audio, q.words, q.messages, q.silence_s)
    ms = []
    for q in queries:
        t0 = time.process_time()
        detector.predict(q.audio, q.words, q.messages, q.silence_s)
        ms.append(1000.0 * (time.process_time() - t0))
    return summary(ms)


def agent_text_section(run_dir: Path) -> str:
    """A markdown table of an agent-text run's metrics.json (`vad-turn agent-text`), or '' if absent."""
    import json

    path = Path(run_dir) / "metrics.json"
    if not path.exists():
        return ""
    res = json.loads(path.read_text()).get("results", [])

    def f(x):
        return "n/r" if x is None else f"{x:.3f}"

    lines = [f"## Agent-text completeness ({run_dir})", "",
             "| variant | detector | corpus | turns | prefixes | AUC | FER @ 95% | cut @ 95% | FER @ 99% | cut @ 99% |",
             "|" + "---|" * 10]
    for r in res:
        lines.append(f"| {r['variant']} | {r['detector']} | {r['corpus']} | {r['n_turns']} | {r['n_prefixes']} | "
                     + " | ".join(f(r.get(k)) for k in ("auc", "fer@95", "cut@95", "fer@99", "cut@99")) + " |")
    return "\n".join(lines) + "\n\nFER @ R: share of shorter prefixes called complete at the threshold that " \
        "keeps R of whole turns complete; cut @ R: share of turns (>= 2 words) cut off early there (definitions " \
        "in the run's metrics.json).\n"


def _conversations(dataset: Path) -> dict:
    from vad_turn.data.dataset import load_turns

    ds = load_turns(dataset)
    if "conversation" not in ds.column_names:
        return {}
    sub = ds.select_columns(["id", "conversation"])
    return {i: c for i, c in zip(sub["id"], sub["conversation"]) if c}


def cached_ratio_bootstrap(ecfg, groups: dict, *, n_boot: int, seed: int) -> list[dict]:
    """`ratio_bootstrap` of the run folder `ecfg.out`, kept in its ratio_bootstrap.json and read back
    while the predictions (by sha256), the resample count and the seed are the same."""
    import json

    import pandas as pd

    from vad_turn.core.model_files import sha256_file

    from .ratio_bootstrap import ratio_bootstrap

    preds_path, path = ecfg.out / "predictions.parquet", ecfg.out / "ratio_bootstrap.json"
    key = {"n_boot": n_boot, "seed": seed, "predictions_sha256": sha256_file(preds_path)}
    cached = json.loads(path.read_text()) if path.exists() else None
    if isinstance(cached, dict) and cached.get("key") == key:
        return cached["ratios"]
    boot = ratio_bootstrap(pd.read_parquet(preds_path), ecfg, groups, n_boot=n_boot, seed=seed)
    atomic_write_json(path, {"key": key, "ratios": boot})
    return boot


def run(cfg: HeadlineConfig) -> list[dict]:

    from vad_turn.data.build import BuildConfig
    from vad_turn.data.build import run as build_run

    from .detectors import make_detector
    from .evaluate import EvalConfig
    from .evaluate import run as eval_run

    sets, notes = available_sets(cfg.sets, cfg.built_root)
    for n in notes:
        print(n)
    corpora = tuple(dict.fromkeys(s.split(":")[0] for s in sets))
    missing = tuple(c for c in corpora if not (Path(cfg.built_root) / c).exists())
    from vad_turn.data.corpora import CORPORA, VARIANTS

    base = set(CORPORA + VARIANTS)
    if missing:
        unbuildable = [c for c in missing if c not in base]
        if unbuildable:
            raise FileNotFoundError(f"{cfg.built_root}: {unbuildable} not built (see `vad-turn render`)")
        print(f"building {', '.join(missing)} from {cfg.data_root} ...")
        build_run(BuildConfig(data_root=cfg.data_root, out_root=cfg.built_root, corpora=missing))
    out_root = Path(cfg.out) if cfg.out else default_runs_root() / "headline"
    audio_of: dict[str, bool] = {}

    def has_audio(c):
        return audio_of.setdefault(c, set_has_audio(Path(cfg.built_root) / c))

    pairs, skipped = evaluation_pairs(sets, cfg.detectors, has_audio)
    for spec, det in skipped:
        print(f"skipping {det} on {spec}: it scores audio alone and this set has no audio")
    cpu: dict[str, dict] = {}
    if cfg.cpu_queries and sets:
        spec = next((s for s in sets if has_audio(s.partition(":")[0])), sets[0])
        corpus, _, split = spec.partition(":")
        queries = timing_queries(Path(cfg.built_root) / corpus, None if split in ("", "none") else split,
                                 cfg.cpu_queries)
        for det in cfg.detectors:
            if audio_only(det) and not has_audio(corpus):
                continue
            cpu[det] = cpu_ms_per_decision(make_detector(det), queries)
        notes.append(f"CPU ms per decision: {len(queries)} queries of {spec}, one at a time, time.process_time.")
    results, groups = [], {}
    for spec, det in pairs:
        corpus, _, split = spec.partition(":")
        ecfg = EvalConfig(dataset=Path(cfg.built_root) / corpus, split=None if split in ("", "none") else split,
                          detector=det, max_turns=cfg.max_turns, latency_budgets_s=LATENCY_BUDGETS_S,
                          false_cutoff_budgets=FALSE_CUTOFF_BUDGETS, out=out_root / f"{corpus}-{split or 'all'}-{det}")
        metrics = eval_run(ecfg)
        boot = None
        if cfg.n_boot and det != "vad-only":
            if corpus not in groups:
                groups[corpus] = _conversations(ecfg.dataset)
            boot = cached_ratio_bootstrap(ecfg, groups[corpus], n_boot=cfg.n_boot, seed=cfg.seed)
        results.append({"set": spec, "metrics": metrics, "bootstrap": boot, "cpu_ms": cpu.get(det)})
    rows = headline_rows(results)
    table = format_headline(rows)
    notes += [f"{det} is not evaluated on {spec} (no audio)." for spec, det in skipped]
    agent_dir = Path(cfg.agent_text_run) if cfg.agent_text_run else default_runs_root() / "agent-text-default"
    agent = agent_text_section(agent_dir)
    if not agent:
        notes.append(f"No agent-text completeness section: {agent_dir / 'metrics.json'} is absent "
                     "(run `vad-turn agent-text`).")
    atomic_write_json(out_root / "headline.json", rows)
    atomic_write_text(out_root / "headline.md", "# End-of-turn headline\n\n" + table + "\n\n"
                      "FCR: share of turns falsely cut off in a hold; latency: mean time from the true end of turn "
                      "to the end-of-turn decision. n/r: operating point not reachable in the sweep. Ratios are "
                      f"to VAD-only on the same spans, with a paired bootstrap 95% interval ({cfg.n_boot} resamples "
                      "of conversations / calls, operating points re-optimised in each). "
                      + " ".join(notes) + "\n" + ("\n" + agent if agent else ""))
    print("\n" + table)
    if agent:
        print("\n" + agent)
    print(f"\nrun folders and headline.md under {out_root}")
    return rows
