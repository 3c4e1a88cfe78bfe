"""Per-decision CPU latency of the fused turn model at 1 thread, and its size (JSON report).

A decision is what a streaming system asks every 100 ms of a user's silence. Replayed here on a
real clip (the JFK clip, 16 kHz) with its words appearing as they are spoken:

- audio model: the acoustic ONNX graph (front end included) on one 4 s window (fp32 and int8);
- lexical step: the lexical model's decision after one new word (one GRU step over its tokens +
  the head; earlier words come from the incremental cache);
- fused decision: `TurnModel.p_eot` on one item (window + both branches + fusion + calibration),
  from 16 kHz audio; and `predict_eot` from 8 kHz audio (resampling included).

    python benchmarks/turn_latency.py --out runs/bench-turn-latency.json
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from timing import stats_ms, time_calls

from vad_turn.core.audio import SAMPLE_RATE_HZ, last_window, load_audio, resample
from vad_turn.core.config import config_main, config_to_dict, default_data_root
from vad_turn.core.runs import atomic_write_json
from vad_turn.core.schema import Message, Word
from vad_turn.fusion.runtime import DEFAULT_TURN_MODEL_DIR, load_turn_model, predict_eot

TRANSCRIPT = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def _size(path: Path) -> int:
    return Path(path).stat().st_size


@dataclass(frozen=True)
class TurnLatencyConfig:
    model: Path = field(default=DEFAULT_TURN_MODEL_DIR, metadata={"help": "fused turn model folder"})
    clip: Path = field(default_factory=lambda: default_data_root() / "clips" / "jfk.flac",
                       metadata={"help": "speech clip replayed at 16 kHz (its words: TRANSCRIPT, spread over it)"})
    repeats: int = field(default=3, metadata={"help": "passes over the clip's decision points"})
    warmup: int = field(default=20, metadata={"help": "untimed calls before each measurement"})
    out: Path = field(default=Path("runs/bench-turn-latency.json"), metadata={"help": "JSON report"})

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError(f"--repeats must be >= 1 and --warmup >= 0, got {self.repeats}, {self.warmup}")


def run(args: TurnLatencyConfig) -> dict:
    """Measure, write the JSON report to args.out, print one line per measurement; returns the report."""

    model, model8 = load_turn_model(args.model, threads=1), load_turn_model(args.model, threads=1, int8=True)
    clip = load_audio(args.clip)
    dur_s = clip.size / SAMPLE_RATE_HZ
    toks = TRANSCRIPT.split()
    words = [Word(w, 0.3 + dur_s * 0.9 * i / len(toks), 0.3 + dur_s * 0.9 * (i + 1) / len(toks)) for i, w in enumerate(toks)]
    msgs = (Message("assistant", "what would you like to say to the nation"),)
    times = np.arange(0.5, dur_s, 0.1)
    points = [(clip[: int(t * SAMPLE_RATE_HZ)], tuple(w for w in words if w.end <= t), msgs, 0.2) for t in times] * args.repeats
    n_win = model.branches.window_samples
    win = [(last_window(a, n_win)[None], np.array([s], np.float32)) for a, _, _, s in points]

    lex = model.branches.lexical
    res = {"audio_model_fp32": time_calls(model.branches.acoustic_p, win, args.warmup),
           "audio_model_int8": time_calls(model8.branches.acoustic_p, win, args.warmup)}
    # lexical step: a fresh cache per pass so each new word costs one GRU step (+ head)
    lex_calls = [((tuple(words[: i + 1]), msgs, 0.2),) for i in range(len(words))]
    cpu, wall = [], []
    for _ in range(args.repeats * 4):
        lex._cache.clear()
        lex.p_eot(list(lex_calls[0]))  # the context + first word: not a per-word cost
        for (q,) in lex_calls[1:]:
            c0, w0 = time.process_time(), time.perf_counter()
            lex.p_eot([q])
            wall.append(time.perf_counter() - w0)
            cpu.append(time.process_time() - c0)
    res["lexical_step"] = stats_ms(cpu, wall)
    res["fused_decision_16k"] = time_calls(lambda *it: model.p_eot([it]), points, args.warmup)
    points8 = [(resample(a, SAMPLE_RATE_HZ, 8000), w, m, s) for a, w, m, s in points[: len(times)]]
    res["fused_decision_predict_eot_8k"] = time_calls(
        lambda a, w, m, s: predict_eot(a, 8000, w, m, silence_s=s, model=model), points8, args.warmup)

    lex_dir, ac = model.branches.lexical.model_dir, model.branches.acoustic_path
    sizes = {"acoustic_model.onnx": _size(ac), "acoustic_model.int8.onnx": _size(ac.with_name("model.int8.onnx")),
             "lexical_step.onnx": _size(lex_dir / "lexical_step.onnx"), "lexical_head.onnx": _size(lex_dir / "lexical_head.onnx"),
             "tokenizer.json": _size(lex_dir / "tokenizer.json"), "fusion.json": _size(args.model / "fusion.json")}
    sizes["runtime_total_fp32_mb"] = round((sizes["acoustic_model.onnx"] + sizes["lexical_step.onnx"] + sizes["lexical_head.onnx"]
                                            + sizes["tokenizer.json"] + sizes["fusion.json"]) / 2**20, 3)
    report = {"config": {k: str(v) for k, v in config_to_dict(args).items()}, "threads": 1, "n_decision_points": len(points),
              "machine": {"cpu": platform.machine(), "n_cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0]},
              "latency": res, "size_bytes": sizes,
              "targets": {"audio_model_p50_ms_max": 10.0, "lexical_decision_p50_ms_max": 15.0}}
    atomic_write_json(args.out, report)
    for k, v in res.items():
        print(f"{k:32s} CPU P50 {v['cpu_p50_ms']:.3f} ms  P99 {v['cpu_p99_ms']:.3f} ms  (wall P50 {v['wall_p50_ms']:.3f})")
    print(f"runtime files (fp32): {sizes['runtime_total_fp32_mb']} MB; report {args.out}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(TurnLatencyConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/turn_latency.py")


if __name__ == "__main__":
    raise SystemExit(main())
