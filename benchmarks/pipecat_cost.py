"""What one end-of-turn decision costs inside Pipecat: our analyzer's model call per 0.1 s grid point (audio only,
and with a transcript), beside Pipecat's Smart Turn v3.2 call at a VAD stop, on one CPU thread each: the CPU time
of the calling thread (onnxruntime runs one-thread sessions there), which a busy machine does not stretch, and
the wall time.

Our analyzer asks the model once per grid point of a silence (one item; the points already past at the VAD's stop
in one batch); Smart Turn asks once per VAD stop (the last 8 s of audio). Both run inside the audio path.

    python benchmarks/pipecat_cost.py --repeats 60 --json runs/pipecat-cost.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from timing import stats_ms

WORDS = [("and", 0.3, 0.6), ("so", 0.6, 1.0), ("my", 1.6, 1.8), ("fellow", 1.8, 2.2), ("americans", 2.2, 2.9)]


def ours_ms(audio: np.ndarray, repeats: int, words: bool) -> tuple[list[float], list[float]]:
    """(CPU ms, wall ms) of each `append_audio` of `TurnModelAnalyzer` that reaches one grid point (one model call;
    threshold 1: it never ends the turn)."""
    from vad_turn.core.audio import SAMPLE_RATE_HZ
    from vad_turn.integrations.pipecat import TurnModelAnalyzer, TurnModelParams
    from vad_turn.integrations.pipecat_replay import pcm16

    an = TurnModelAnalyzer(sample_rate=SAMPLE_RATE_HZ, params=TurnModelParams(threshold=1.0, timeout_s=60.0))
    if words:
        an.add_words(WORDS)
    an.append_audio(pcm16(audio), True)
    an.append_audio(pcm16(np.zeros(3200, np.float32)), False)  # the VAD's stop: the points already past, one batch
    cpu, wall = [], []
    for _ in range(repeats):
        c, t = time.thread_time(), time.perf_counter()
        an.append_audio(pcm16(np.zeros(1600, np.float32)), False)  # 0.1 s: one grid point, one model call
        cpu.append(1e3 * (time.thread_time() - c))
        wall.append(1e3 * (time.perf_counter() - t))
    return cpu, wall


def smart_turn_ms(audio: np.ndarray, repeats: int) -> tuple[list[float], list[float]]:
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

    from vad_turn.core.audio import SAMPLE_RATE_HZ

    st = LocalSmartTurnAnalyzerV3()
    st.set_sample_rate(SAMPLE_RATE_HZ)
    seg = np.concatenate([audio, np.zeros(3200, np.float32)])
    cpu, wall = [], []
    for _ in range(repeats):
        c, t = time.thread_time(), time.perf_counter()
        st._predict_endpoint(seg)
        cpu.append(1e3 * (time.thread_time() - c))
        wall.append(1e3 * (time.perf_counter() - t))
    return cpu, wall


def stats(ms: tuple[list[float], list[float]], warm: int = 3) -> dict:
    return stats_ms(ms[0][warm:], ms[1][warm:], qs=(50, 90), scale=1.0)


def main(argv: list[str] | None = None) -> int:
    from loguru import logger

    from vad_turn.core.audio import SAMPLE_RATE_HZ, load_audio
    from vad_turn.core.config import default_data_root

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=60)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.repeats < 5:
        p.error("--repeats must be >= 5")
    logger.remove()
    audio = load_audio(default_data_root() / "clips" / "jfk.flac")[: 3 * SAMPLE_RATE_HZ]  # "and so my fellow americans"
    out = {"ours_audio_only": stats(ours_ms(audio, args.repeats, False)),
           "ours_with_transcript": stats(ours_ms(audio, args.repeats, True)),
           "smart_turn": stats(smart_turn_ms(audio, args.repeats)),
           "cpu": next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                        if ln.startswith("model name")), platform.machine()), "n_cpus": os.cpu_count()}
    print(json.dumps(out, indent=1))
    if args.json is not None:
        from vad_turn.core.runs import atomic_write_json

        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
