"""Memory of the demo's model pool under many setting variants (issue 13 #4), as a JSON report.

The demo loads one model set (per pane: STT, LLM, TTS voice; the semantic detector once) for every
distinct voice / detector / LLM configuration a page asks for. Unbounded, RSS grew from 2.8 to 11.3 GB
after five variants. This loads `n_variants` real configurations (the demo's voices x detectors) one
after the other through `ModelPool(max_keys=...)`, exactly as the page's runs borrow them, and
records the process RSS after each, beside the same sequence with the bound lifted (max_keys =
n_variants), in one run. With `--hedging` (the default) every variant has hedging on: two LLMs per
pane, the largest set a page can ask for, so the peak is the bound's worst case. One set per
configuration, as the server keeps (`ModelPool.max_sets_per_key` = `--max-concurrent-runs`, 1).

    python benchmarks/demo_pool_memory.py --n-variants 5 --out runs/bench-demo-pool-memory.json
"""
from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.config import config_main
from vad_turn.core.runs import atomic_write_json


@dataclass(frozen=True)
class PoolMemoryConfig:
    out: Path = field(default=Path("runs/bench-demo-pool-memory.json"), metadata={"help": "JSON report"})
    n_variants: int = field(default=10, metadata={"help": "distinct model configurations loaded in turn"})
    max_keys: int = field(default=3, metadata={"help": "the pool's bound (DemoConfig.max_model_configs)"})
    hedging: bool = field(default=True, metadata={"help": "hedging on in every variant (two LLMs per pane)"})
    unbounded: bool = field(default=False, metadata={
        "help": "also run the same sequence with the bound lifted (slow: keeps every set; needs ~0.3 GB each)"})

    def __post_init__(self) -> None:
        if self.n_variants < 1 or self.max_keys < 1:
            raise ValueError("--n-variants and --max-keys must be >= 1")


def rss_mb() -> float:
    """This process's resident set size in MB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def variants(n: int, hedging: bool = True) -> list:
    """n distinct DemoSettings: the demo's voices x its detector orders (each a separate pool key)."""
    from pipeline.serving.demo.app import VOICES
    from pipeline.serving.demo.session import DEMO_DETECTORS, DemoSettings

    orders = [DEMO_DETECTORS] + [(d,) + tuple(x for x in DEMO_DETECTORS if x != d) for d in DEMO_DETECTORS[1:]]
    out = [DemoSettings(voice=v, detectors=o, hedging=hedging) for o in orders for v in VOICES]
    if len(out) < n:
        raise ValueError(f"only {len(out)} distinct demo configurations exist, asked for {n}")
    return out[:n]


def run_sequence(max_keys: int, settings: list) -> dict:
    from pipeline.serving.demo.session import ModelPool

    pool = ModelPool(max_sets_per_key=1, max_keys=max_keys)
    gc.collect()
    steps, t0 = [], time.perf_counter()
    base = rss_mb()
    for i, s in enumerate(settings):
        t = time.perf_counter()
        with pool.acquire(s) as sets:
            det = sets["semantic"].detector_name
        gc.collect()
        steps.append({"i": i, "voice": s.voice, "detector": det, "hedging": s.hedging,
                      "load_s": round(time.perf_counter() - t, 2),
                      "rss_mb": round(rss_mb(), 1), "loaded_configs": len(pool.keys())})
        print(steps[-1], flush=True)
    res = {"max_keys": max_keys, "rss_before_mb": round(base, 1), "steps": steps,
           "rss_max_mb": max(x["rss_mb"] for x in steps), "rss_last_mb": steps[-1]["rss_mb"],
           "evictions": pool.evictions, "wall_s": round(time.perf_counter() - t0, 1)}
    del pool
    gc.collect()
    return res


def run(cfg: PoolMemoryConfig) -> dict:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = variants(cfg.n_variants, cfg.hedging)
    report = {"config": {k: str(v) for k, v in cfg.__dict__.items()},
              "bounded": run_sequence(cfg.max_keys, settings)}
    if cfg.unbounded:
        report["unbounded"] = run_sequence(cfg.n_variants, settings)
    atomic_write_json(Path(cfg.out), report)
    b = report["bounded"]
    print(f"bounded (max_keys {cfg.max_keys}): RSS {b['rss_before_mb']:.0f} -> max {b['rss_max_mb']:.0f} MB over "
          f"{cfg.n_variants} variants, {b['evictions']} evictions; report {cfg.out}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(PoolMemoryConfig, run, argv, __doc__.split("\n")[0], prog="python benchmarks/demo_pool_memory.py")


if __name__ == "__main__":
    raise SystemExit(main())
