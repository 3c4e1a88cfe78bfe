"""CPU and wall time of repeated calls, for the latency benchmarks (one definition, imported by them;
they run as `python benchmarks/<name>.py`, which puts this folder on sys.path)."""
from __future__ import annotations

import time

import numpy as np


def stats_ms(cpu_s: list[float], wall_s: list[float]) -> dict:
    """{n, cpu_p50_ms, cpu_p99_ms, cpu_mean_ms, wall_p50_ms, wall_p99_ms, wall_mean_ms} of per-call seconds."""
    c, w = 1e3 * np.asarray(cpu_s, float), 1e3 * np.asarray(wall_s, float)
    return {"n": int(c.size), "cpu_p50_ms": float(np.percentile(c, 50)), "cpu_p99_ms": float(np.percentile(c, 99)),
            "cpu_mean_ms": float(c.mean()), "wall_p50_ms": float(np.percentile(w, 50)),
            "wall_p99_ms": float(np.percentile(w, 99)), "wall_mean_ms": float(w.mean())}


def time_calls(fn, calls: list[tuple], warmup: int) -> dict:
    """`stats_ms` of fn(*args) for each args in `calls`, after `warmup` untimed calls."""
    for args in calls[:warmup]:
        fn(*args)
    cpu, wall = [], []
    for args in calls:
        c0, w0 = time.process_time(), time.perf_counter()
        fn(*args)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return stats_ms(cpu, wall)
