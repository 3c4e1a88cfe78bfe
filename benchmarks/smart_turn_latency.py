"""CPU ms per decision at 1 thread: Smart Turn v3.2 ("smart-turn") beside the shipped acoustic and fused models.

One decision = what a streaming system asks at one moment of a user's silence, on one query (batch 1),
at `n` seeded random end times in real clips (jfk.flac, silero_test.wav), the same points for every model:

- smart-turn: its numpy features (`whisper_log_mel` of the 8 s window) and its int8 ONNX graph, timed
  separately, and the whole `predict` (window + features + model);
- acoustic: the shipped vad_turn/models/acoustic/model.onnx through `AcousticDetector` (its front end is
  inside the graph, so features and model are one call), on its 4 s window;
- fused: `vad_turn.fusion.runtime.load_turn_model().p_eot` on (audio, visible words, silence): both branches,
  fusion and calibration (jfk.flac points see its words 0.5 s after they end; silero_test.wav has no
  transcript, so its points run the acoustic + timing mode).

The torch-free models (smart-turn, fused) are timed first, before `AcousticDetector` imports torch: in
some processes that had built it (one run of this script, 2 of 4 trial processes) every `whisper_log_mel`
call cost ~6 ms instead of ~1.6 ms, never with MALLOC_MMAP_THRESHOLD_=100000000 (which points at glibc
handing the ~10 MB of numpy temporaries back to the OS and faulting them in again on each call). The
features are timed again at the end ("smart_turn_features_after_torch") so the report shows it if it happens.
Process CPU time and wall time are both reported, with the load average (a shared machine's wall P99
mostly measures its neighbours). The report also holds smart-turn's "noise_spread": per window, the
largest |P(features + N(0, 1e-6)) - P(features)| over `noise_draws` draws, on windows every
`noise_step_s` of both clips (the number quoted in vad_turn/peers/smart_turn.py's docstring).

    .venv/bin/python benchmarks/smart_turn_latency.py --n 50 --out runs/bench-smart-turn.json
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from timing import stats_ms, time_calls

from vad_turn.core.audio import SAMPLE_RATE_HZ, load_audio
from vad_turn.core.config import config_main, config_to_dict, default_data_root, default_runs_root
from vad_turn.core.runs import atomic_write_json

JFK_TRANSCRIPT = ("and so my fellow americans ask not what your country can do for you "
                  "ask what you can do for your country")


@dataclass(frozen=True)
class SmartTurnLatencyConfig:
    clips: tuple[Path, ...] = field(default_factory=lambda: (default_data_root() / "clips" / "jfk.flac",
                                                             default_data_root() / "clips" / "silero_test.wav"),
                                    metadata={"help": "real speech the decision points are cut from"})
    n: int = field(default=50, metadata={"help": "timed decisions per model (seeded random end times)"})
    warmup: int = field(default=5, metadata={"help": "untimed decisions first"})
    threads: int = field(default=1, metadata={"help": "onnxruntime intra-op threads"})
    seed: int = field(default=0, metadata={"help": "seed of the end times and of the feature noise"})
    noise_sigma: float = field(default=1e-6, metadata={"help": "std of the gaussian noise added to the features"})
    noise_draws: int = field(default=8, metadata={"help": "noise draws per window"})
    noise_step_s: float = field(default=0.5, metadata={"help": "noise windows every this many seconds of each clip"})
    out: Path | None = field(default=None, metadata={"help": "JSON report (default runs/bench-smart-turn-<time>.json)"})


def decision_points(clips: list[np.ndarray], words: list[tuple], n: int, seed: int) -> list[tuple]:
    """n (audio so far float32 (n_samples,) 16 kHz, visible words, silence_s) at seeded random end times."""
    from vad_turn.core.schema import Word

    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        k = int(rng.integers(len(clips)))
        end = int(rng.integers(8000, clips[k].size + 1))
        t_s = end / SAMPLE_RATE_HZ
        seen = tuple(Word(w, a, b) for w, a, b in words[k] if b <= t_s - 0.5)
        points.append((clips[k][:end], seen, float(rng.choice([0.0, 0.2, 0.5, 1.0]))))
    return points


def run(cfg: SmartTurnLatencyConfig) -> dict:
    from vad_turn.acoustic.runtime import AcousticDetector
    from vad_turn.core.audio import last_window
    from vad_turn.core.schema import Message
    from vad_turn.fusion.runtime import load_turn_model
    from vad_turn.peers.smart_turn import SmartTurnDetector, feature_noise_spread, smart_turn_window, whisper_log_mel

    clips = [load_audio(p) for p in cfg.clips]
    toks = JFK_TRANSCRIPT.split()
    words = []  # jfk.flac's words spread evenly over its speech (0.3..10.3 s); none for other clips
    for p, a in zip(cfg.clips, clips):
        words.append([(w, 0.3 + 10.0 * i / len(toks), 0.3 + 10.0 * (i + 1) / len(toks)) for i, w in enumerate(toks)]
                     if Path(p).name == "jfk.flac" else [])
    points = decision_points(clips, words, cfg.n, cfg.seed)
    msgs = (Message("assistant", "what would you like to say"),)

    report = {"config": config_to_dict(cfg), "machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "load_average_before": os.getloadavg()}
    # the torch-free models first (AcousticDetector imports torch, see the module docstring)
    st = SmartTurnDetector(threads=cfg.threads, batch_size=1)
    st_windows = [(smart_turn_window(a)[None],) for a, _, _ in points]
    st_feats = [(whisper_log_mel(w),) for (w,) in st_windows]
    lat = {
        "smart_turn_features": time_calls(whisper_log_mel, st_windows, cfg.warmup),
        "smart_turn_model": time_calls(st.predict_features, st_feats, cfg.warmup),
        "smart_turn_decision": time_calls(lambda a, s: st.predict(a, (), (), s), [(a, s) for a, _, s in points], cfg.warmup),
    }
    fused = load_turn_model(threads=cfg.threads)
    lat["fused_decision"] = time_calls(lambda a, w, s: fused.p_eot([(a, w, msgs, s)]), points, cfg.warmup)
    ac = AcousticDetector(threads=cfg.threads)
    ac_windows = [(last_window(a, ac.features.n_samples)[None], np.array([s], np.float32)) for a, _, s in points]
    lat["acoustic_decision"] = time_calls(ac.predict_windows, ac_windows, cfg.warmup)
    lat["smart_turn_features_after_torch"] = time_calls(whisper_log_mel, st_windows, cfg.warmup)
    report.update(latency=lat, torch_loaded_for="acoustic_decision, smart_turn_features_after_torch",
                  smart_turn_model=str(st.model_path), acoustic_model=str(ac.onnx_path),
                  fused_acoustic_model=str(fused.branches.acoustic_path))

    step = int(round(cfg.noise_step_s * SAMPLE_RATE_HZ))
    noise_windows = np.stack([smart_turn_window(a[:e]) for a in clips for e in range(step, a.size + 1, step)])
    spread = feature_noise_spread(st, noise_windows, sigma=cfg.noise_sigma, n_draws=cfg.noise_draws, seed=cfg.seed)
    p = st.predict_windows(noise_windows)
    report["noise_spread"] = {"n_windows": int(spread.size), "sigma": cfg.noise_sigma, "n_draws": cfg.noise_draws,
                              "max": float(spread.max()), "p90": float(np.percentile(spread, 90)),
                              "median": float(np.median(spread)), "share_over_0.05": float(np.mean(spread > 0.05)),
                              "max_at_p": float(p[int(spread.argmax())])}
    report["load_average_after"] = os.getloadavg()
    out = Path(cfg.out) if cfg.out else default_runs_root() / f"bench-smart-turn-{time.strftime('%Y%m%d-%H%M%S')}.json"
    atomic_write_json(out, report)
    for k, v in lat.items():
        print(f"{k:22s} CPU P50 {v['cpu_p50_ms']:7.2f} ms  P99 {v['cpu_p99_ms']:7.2f} ms  "
              f"(wall P50 {v['wall_p50_ms']:7.2f}, P99 {v['wall_p99_ms']:7.2f})")
    ns = report["noise_spread"]
    print(f"smart-turn noise spread (sigma {ns['sigma']:g}, {ns['n_draws']} draws, {ns['n_windows']} windows): "
          f"max {ns['max']:.3f} (at p {ns['max_at_p']:.2f}), p90 {ns['p90']:.3f}, median {ns['median']:.4f}")
    print(f"load average {report['load_average_before']} -> {report['load_average_after']}; report: {out}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(SmartTurnLatencyConfig, run, argv, __doc__.splitlines()[0],
                       prog="python benchmarks/smart_turn_latency.py")


if __name__ == "__main__":
    raise SystemExit(main())
