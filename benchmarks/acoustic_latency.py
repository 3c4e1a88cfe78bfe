"""CPU latency per decision of the exported acoustic model (fp32 and int8) at 1 thread, its size and parity.

One decision = one onnxruntime call on one 16 kHz window (batch 1), the front end included, as a
streaming agent would make it every grid step of a silence. Windows are real speech (a public clip
from the data root) at varied end times. Wall-clock and process CPU time are both reported, with
the load average, because this machine is shared: wall P99 mostly measures the neighbours. Parity:
max |p_onnx - p_torch| and the share of windows with the same decision at `threshold` as torch.

    .venv/bin/python benchmarks/acoustic_latency.py --model vad_turn/models/acoustic --n 300
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from timing import time_calls

from vad_turn.acoustic.export import torch_probabilities
from vad_turn.acoustic.features import window_audio
from vad_turn.acoustic.model import DEFAULT_MODEL_DIR, load_model, load_model_config
from vad_turn.acoustic.session import make_session, run_session
from vad_turn.core.audio import load_audio
from vad_turn.core.config import config_main, config_to_dict, default_data_root, default_runs_root
from vad_turn.core.runs import atomic_write_json


@dataclass(frozen=True)
class LatencyConfig:
    model: Path = field(default=DEFAULT_MODEL_DIR, metadata={"help": "acoustic model folder (model.onnx, model.int8.onnx)"})
    clip: Path = field(default_factory=lambda: default_data_root() / "clips" / "silero_test.wav",
                       metadata={"help": "real speech the windows are cut from"})
    n: int = field(default=300, metadata={"help": "timed decisions per model"})
    warmup: int = field(default=20, metadata={"help": "untimed decisions first"})
    threads: int = field(default=1, metadata={"help": "onnxruntime intra-op threads"})
    threshold: float = field(default=0.5, metadata={"help": "decision threshold of the parity check"})
    out: Path | None = field(default=None, metadata={"help": "JSON report (default runs/bench-acoustic-<time>.json)"})


def time_session(session, windows: np.ndarray, silence_s: np.ndarray, warmup: int) -> dict:
    """Per-call wall and CPU milliseconds over `windows` (one `run_session` call per window)."""
    calls = [(w[None], s[None]) for w, s in zip(windows, silence_s)]
    return time_calls(lambda w, s: run_session(session, w, s), calls, warmup)


def run(cfg: LatencyConfig) -> dict:
    feats = load_model_config(cfg.model).features
    audio = load_audio(cfg.clip)
    rng = np.random.default_rng(0)
    ends = rng.integers(feats.n_samples // 4, audio.size, size=cfg.n)
    windows = np.stack([window_audio(audio[:e], feats) for e in ends])
    silence_s = rng.uniform(0.0, 3.0, size=cfg.n).astype(np.float32)
    report = {"config": config_to_dict(cfg), "window_s": feats.window_s, "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg(), "models": {}}
    p_torch = torch_probabilities(load_model(cfg.model), windows, silence_s)
    for name in ("model.onnx", "model.int8.onnx"):
        path = Path(cfg.model) / name
        if not path.exists():
            raise FileNotFoundError(f"{path}: missing (train and export with `vad-turn train-acoustic --model-out`)")
        session = make_session(path, threads=cfg.threads)
        p = run_session(session, windows, silence_s)
        parity = {"max_abs_diff_vs_torch": float(np.max(np.abs(p - p_torch))),
                  "decision_agreement": float(np.mean((p >= cfg.threshold) == (p_torch >= cfg.threshold)))}
        stats = time_session(session, windows, silence_s, cfg.warmup)
        report["models"][name] = {"size_bytes": path.stat().st_size, "size_mb": round(path.stat().st_size / 2**20, 3),
                                  **parity, **stats}
    report["load_average_after"] = os.getloadavg()
    out = cfg.out or default_runs_root() / f"bench-acoustic-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(Path(out), report)
    for name, r in report["models"].items():
        print(f"{name:16s} {r['size_mb']:6.2f} MB  wall P50 {r['wall_p50_ms']:6.2f} ms  P99 {r['wall_p99_ms']:6.2f} ms  "
              f"cpu P50 {r['cpu_p50_ms']:6.2f} ms  max|p-p_torch| {r['max_abs_diff_vs_torch']:.1e}  "
              f"same decision {r['decision_agreement']:.3f}")
    print(f"load average {report['load_average_before']} -> {report['load_average_after']}; report: {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(LatencyConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/acoustic_latency.py")


if __name__ == "__main__":
    raise SystemExit(main())
