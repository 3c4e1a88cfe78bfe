"""Clocks: the wall clock for real-time runs and a manual clock for frame-sequence tests.

A clock has `now() -> float` (monotonic seconds) and `async sleep_until(t_s)`. The pipeline
stamps every frame with `now()` and paces audio input/output with `sleep_until`, so a test that
drives a `ManualClock` with `advance(dt_s)` replays the same frame sequence every time.
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep_until(self, t_s: float) -> None: ...


class WallClock:
    """time.monotonic() and asyncio.sleep."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, t_s: float) -> None:
        delay = t_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)


class ManualClock:
    """Time moves only when the test calls `await advance(dt_s)`.

    `advance` steps through every pending deadline in order, sets `now()` to it, wakes its
    sleepers and lets the event loop run until it is idle before moving on, so frames happen at
    exactly the scripted times.
    """

    def __init__(self, start_s: float = 0.0):
        self._t = float(start_s)
        self._sleepers: list[tuple[float, int, asyncio.Future]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._t

    async def sleep_until(self, t_s: float) -> None:
        if t_s <= self._t:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (t_s, next(self._seq), fut))
        await fut

    async def settle(self, rounds: int = 20) -> None:
        """Let ready tasks run (queues drained, callbacks done) without moving time."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, dt_s: float) -> None:
        end = self._t + dt_s
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= end + 1e-12:
            t, _, fut = heapq.heappop(self._sleepers)
            self._t = max(self._t, t)
            if not fut.done():
                fut.set_result(None)
            await self.settle()
        self._t = end
        await self.settle()
