"""CPU and wall time of repeated calls, for the latency benchmarks (one definition, imported by them;
they run as `python benchmarks/<name>.py`, which puts this folder on sys.path). The P50 / P99 summary itself is
`vad_turn.harness.percentiles.summary`, as everywhere."""
from __future__ import annotations

import time

from vad_turn.harness.percentiles import summary


def stats_ms(cpu_s: list[float], wall_s: list[float], qs: tuple[float, ...] = (50, 99), scale: float = 1e3) -> dict:
    """{n, cpu_p50_ms, cpu_p99_ms, cpu_mean_ms, wall_p50_ms, wall_p99_ms, wall_mean_ms} of per-call times
    (seconds; `scale`=1 for milliseconds), with the percentiles `qs`."""
    c, w = (summary(x, qs, scale=scale, suffix="_ms") for x in (cpu_s, wall_s))
    return {"n": c["n"], **{f"cpu_{k}": v for k, v in c.items() if k != "n"},
            **{f"wall_{k}": v for k, v in w.items() if k != "n"}}


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
