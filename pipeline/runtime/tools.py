"""Tools the agent can call, run concurrently with the conversation, with prefetch.

A `Tool` is a plain synchronous function plus a regular expression over the user's normalised
words: when the expression matches, the call and its arguments are known from the words alone
("predictable at call start"), so `ToolRunner.prefetch(text)` starts it as soon as a partial
transcript or a preemptive end-of-turn shows them, before the turn has even ended. Calls run on
a thread pool; `ToolRunner.calls_for(text)` returns the futures (reusing prefetched ones).

Built-ins: `clock_tool()` (the local time), `calculator_tool()` (spoken arithmetic such as "what
is twelve times seven" / "12 times 7"), and `remote_tool(inner, profile)` which puts a tool behind
a remote API's latency (seconds drawn like `llm_wrappers.LatencyProfile`) for budget studies of
the bridging phrase.
"""
from __future__ import annotations

import datetime as _dt
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from vad_turn.core.schema import normalize_text


@dataclass(frozen=True)
class Tool:
    name: str
    pattern: str  # regex searched in the normalised user text
    fn: Callable[[re.Match], str]  # blocking work -> result text for the LLM

    def match(self, text: str) -> re.Match | None:
        return re.search(self.pattern, normalize_text(text.split()))


def clock_tool(now: Callable[[], _dt.datetime] = _dt.datetime.now) -> Tool:
    return Tool("clock", r"\bwhat time\b|\bthe time\b", lambda m: now().strftime("It is %H:%M."))


_NUM = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                   "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_NUM.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
             "hundred": 100})
_OPS = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b,
        "divided by": lambda a, b: a / b if b else float("nan")}
_NUMRE = r"(\d+|" + "|".join(sorted(_NUM, key=len, reverse=True)) + r")"


def _num(s: str) -> float:
    return float(s) if s.isdigit() else float(_NUM[s])


def calculator_tool() -> Tool:
    pat = _NUMRE + r" (plus|minus|times|divided by) " + _NUMRE

    def calc(m: re.Match) -> str:
        a, op, b = _num(m[1]), m[2], _num(m[3])
        r = _OPS[op](a, b)
        return f"{m[1]} {op} {m[3]} = {r:g}"

    return Tool("calculator", pat, calc)


def remote_tool(inner: Tool, latency_s: float | tuple[float, float], *, seed: int = 0) -> Tool:
    """`inner` behind a remote call: waits `latency_s`, or a log-normal draw with (median, p95)."""
    rng = np.random.default_rng(seed)

    def fn(m: re.Match) -> str:
        if isinstance(latency_s, tuple):
            p50, p95 = latency_s
            wait = p50 * float(np.exp(np.log(p95 / p50) / 1.6449 * rng.standard_normal()))
        else:
            wait = float(latency_s)
        time.sleep(wait)
        return inner.fn(m)

    return Tool(f"remote-{inner.name}", inner.pattern, fn)


class ToolRunner:
    """Runs matching tools concurrently; one call per (tool, matched words) however often asked."""

    def __init__(self, tools: Sequence[Tool], *, max_workers: int = 2):
        self.tools = list(tools)
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="tool")
        self._calls: dict[tuple[str, str], Future] = {}
        self.started_s: dict[tuple[str, str], float] = {}

    def prefetch(self, text: str) -> list[Future]:
        return self.calls_for(text)

    def calls_for(self, text: str) -> list[Future]:
        out = []
        for tool in self.tools:
            m = tool.match(text)
            if m is None:
                continue
            key = (tool.name, m[0])
            if key not in self._calls:
                self.started_s[key] = time.monotonic()
                self._calls[key] = self._pool.submit(tool.fn, m)
            out.append(self._calls[key])
        return out

    def results_text(self, text: str) -> str:
        """'name: result' lines for the finished calls matching `text` (errors reported as such)."""
        lines = []
        for tool in self.tools:
            m = tool.match(text)
            f = self._calls.get((tool.name, m[0])) if m else None
            if f is None or not f.done():
                continue
            try:
                lines.append(f"{tool.name}: {f.result()}")
            except Exception as e:  # a failing tool is reported to the LLM, not raised into the pipeline
                lines.append(f"{tool.name}: failed ({e})")
        return "\n".join(lines)

    def forget(self) -> None:
        self._calls.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
