"""CPU latency per decision of the lexical model (torch and onnxruntime, 1 thread) and its size: JSON report.

Decisions are the harness's causal queries of real Switchboard val turns, replayed in time order
through one `LexicalModel` per backend (its incremental per-word state cache on, as in streaming):
a decision costs the GRU steps of the words that became visible since the previous one plus the
head. Also reported: the cost of one new word (GRU step over its tokens) and of the head alone.

    python benchmarks/lexical_latency.py [--model vad_turn/models/lexical] [--turns 200] [--out runs/bench.json]
"""
from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from vad_turn.core.config import config_main, default_built_root, default_runs_root  # noqa: E402
from vad_turn.core.runs import atomic_write_json  # noqa: E402
from vad_turn.harness.percentiles import summary  # noqa: E402
from vad_turn.lexical.runtime import DEFAULT_MODEL_DIR, LexicalModel, timing_features  # noqa: E402


def _stats_ms(x: list[float]) -> dict:
    return {**summary(x, (50, 90, 99), scale=1e3, suffix="_ms"), "max_ms": 1e3 * float(max(x))}


def model_size(model_dir: Path) -> dict:
    files = {p.name: p.stat().st_size for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
    onnx = sum(v for k, v in files.items() if k.endswith(".onnx"))
    return {"files_bytes": files, "onnx_bytes": onnx, "onnx_mb": round(onnx / 2**20, 3),
            "total_mb": round(sum(files.values()) / 2**20, 3)}


def bench(model_dir: Path, n_turns: int, seed: int = 0, dataset: Path | None = None) -> dict:
    import torch

    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.examples import build_examples

    torch.set_num_threads(1)
    ex = build_examples(load_turns(dataset or default_built_root() / "switchboard"), "val", max_turns=n_turns,
                        seed=seed, progress=False)
    report = {"model": str(model_dir), "n_turns": len(ex.turn_ids), "n_decisions": len(ex), "threads": 1,
              "machine": {"cpu": platform.processor() or platform.machine(), "n_cpus": os.cpu_count(),
                          "load_avg_1min": os.getloadavg()[0]},
              "size": model_size(model_dir), "backends": {}}
    for backend in ("onnx", "torch"):
        m = LexicalModel(model_dir, backend=backend, threads=1)
        m.p_eot([(ex.queries[0].words, ex.queries[0].messages, 0.0)])  # warm-up
        m._cache.clear()
        dec = []
        for q in ex.queries:
            t = time.perf_counter()
            m.p_eot([(q.words, q.messages, q.silence_s)])
            dec.append(time.perf_counter() - t)
        h = np.zeros((1, 1, m.hidden), np.float32)
        ids = [m.tok.word_ids(w) for w in ("yeah", "basically", "the", "uh-huh", "transportation")]
        step, head = [], []
        feats = timing_features(ex.queries[0].words, 0.3)[None]
        for _ in range(200):
            for i in ids:
                t = time.perf_counter()
                m.step(i, h)
                step.append(time.perf_counter() - t)
            t = time.perf_counter()
            m.head(h.reshape(1, -1), feats)
            head.append(time.perf_counter() - t)
        report["backends"][backend] = {"decision": _stats_ms(dec), "word_step": _stats_ms(step),
                                       "head": _stats_ms(head)}
    return report


@dataclass(frozen=True)
class LexicalLatencyConfig:
    model: Path = field(default=DEFAULT_MODEL_DIR, metadata={"help": "lexical model folder"})
    turns: int = field(default=200, metadata={"help": "seeded sample of Switchboard val turns replayed"})
    seed: int = field(default=0, metadata={"help": "seed of the turn sample"})
    out: Path = field(default_factory=lambda: default_runs_root() / "bench-lexical-latency.json",
                      metadata={"help": "JSON report"})

    def __post_init__(self) -> None:
        if self.turns < 1:
            raise ValueError(f"--turns must be >= 1, got {self.turns}")


def run(cfg: LexicalLatencyConfig) -> dict:
    rep = bench(cfg.model, cfg.turns, cfg.seed)
    atomic_write_json(cfg.out, rep)
    for b, r in rep["backends"].items():
        d = r["decision"]
        print(f"{b:5s} decision P50 {d['p50_ms']:.3f} ms  P99 {d['p99_ms']:.3f} ms  (n={d['n']}); word step P50 "
              f"{r['word_step']['p50_ms']:.3f} ms; head P50 {r['head']['p50_ms']:.3f} ms")
    print(f"size: ONNX {rep['size']['onnx_mb']} MB, folder {rep['size']['total_mb']} MB; load avg "
          f"{rep['machine']['load_avg_1min']:.1f} on {rep['machine']['n_cpus']} CPUs -> {cfg.out}")
    return rep


def main(argv: list[str] | None = None) -> int:
    return config_main(LexicalLatencyConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/lexical_latency.py")


if __name__ == "__main__":
    sys.exit(main())
