"""LLM wrappers for the voice pipeline: cancellable threads, hedging, latency profiles, fallback.

All of them are `vad_turn.engines.llm.base.LLM`s (same `stream` / `complete`), so they compose:
`FallbackLLM(HedgedLLM(LatencyProfileLLM(remote, "openai-gpt-5.4"), other), LocalLLM())`.

- `stream_in_thread(llm, messages, ...)`: runs `llm.stream` on a worker thread; returns a
  `ThreadedStream` whose `cancel()` makes the worker close the generator after the current piece
  (LocalLLM then stops generating; the HTTP client closes its response).
- `HedgedLLM(a, b)`: sends both requests at once; the first to produce a non-empty piece wins
  and the other is cancelled. `last_winner` names the winner.
- `LatencyProfileLLM(inner, profile)`: adds a time to first token drawn from a log-normal
  fitted to a provider's published median and P95 TTFT (`PROFILES`, sources cited there).
- `FallbackLLM(primary, fallback, first_token_timeout_s)`: if the primary raises before its
  first piece or gives none within the timeout, it is cancelled and the fallback answers;
  every fallback is recorded in `events` (and logged).
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from vad_turn.engines.llm.base import LLM, LLMError

log = logging.getLogger("vad_turn.engines.llm")
_DONE = object()


class ThreadedStream:
    """`llm.stream(...)` on a daemon thread; pieces (or the error) arrive on `self.q` ending with _DONE."""

    def __init__(self, llm: LLM, messages: list[dict], kwargs: dict, sink: queue.Queue | None = None, tag=None):
        self.q: queue.Queue = sink if sink is not None else queue.Queue()
        self.tag = tag
        self._cancel = threading.Event()
        self.thread = threading.Thread(target=self._work, args=(llm, messages, kwargs), daemon=True,
                                       name=f"llm-{getattr(llm, 'name', 'llm')}")
        self.thread.start()

    def _put(self, item) -> None:
        self.q.put(item if self.tag is None else (self.tag, item))

    def _work(self, llm: LLM, messages: list[dict], kwargs: dict) -> None:
        gen = None
        try:
            gen = llm.stream(messages, **kwargs)
            for piece in gen:
                if self._cancel.is_set():
                    break
                self._put(piece)
        except BaseException as e:  # handed to the consumer
            if not self._cancel.is_set():
                self._put(e if isinstance(e, LLMError) else LLMError(f"{getattr(llm, 'name', llm)}: {e!r}"))
        finally:
            if gen is not None:
                gen.close()
            self._put(_DONE)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def __iter__(self) -> Iterator[str]:
        while (item := self.q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item


def stream_in_thread(llm: LLM, messages: list[dict], **kwargs) -> ThreadedStream:
    return ThreadedStream(llm, messages, kwargs)


class _Joined:
    def complete(self, messages: list[dict], **kw) -> str:
        return "".join(self.stream(messages, **kw))


class HedgedLLM(_Joined):
    """Two concurrent requests; the first non-empty piece wins, the loser is cancelled."""

    def __init__(self, a: LLM, b: LLM):
        self.a, self.b = a, b
        self.name = f"hedge({a.name}|{b.name})"
        self.last_winner: str | None = None

    def stream(self, messages: list[dict], **kw) -> Iterator[str]:
        q: queue.Queue = queue.Queue()
        runs = [ThreadedStream(m, messages, kw, sink=q, tag=i) for i, m in enumerate((self.a, self.b))]
        names = (self.a.name, self.b.name)
        winner, alive, errors = None, {0, 1}, []
        try:
            while alive:
                i, item = q.get()
                if winner is not None and i != winner:
                    continue  # late pieces of the cancelled loser
                if item is _DONE:
                    alive.discard(i)
                    if i == winner:
                        return
                    continue
                if isinstance(item, BaseException):
                    if winner == i:
                        raise item
                    errors.append(item)
                    continue
                if winner is None:
                    if not item:
                        continue
                    winner = i
                    self.last_winner = names[i]
                    runs[1 - i].cancel()
                    alive.discard(1 - i)
                yield item
            raise LLMError(f"{self.name}: both requests failed: {'; '.join(map(str, errors)) or 'no output'}")
        finally:
            for r in runs:
                r.cancel()


@dataclass(frozen=True)
class LatencyProfile:
    """A provider's time to first token: median `p50_s` and 95th percentile `p95_s` (seconds)."""

    name: str
    p50_s: float
    p95_s: float
    source: str

    def sample_s(self, rng: np.random.Generator) -> float:
        """One TTFT from the log-normal with this median and P95 (sigma = ln(p95/p50) / 1.645)."""
        sigma = math.log(self.p95_s / self.p50_s) / 1.6449
        return float(self.p50_s * math.exp(sigma * rng.standard_normal()))


_TOKENMIX = ("TokenMix Research Lab, 'AI API Latency Benchmark 2026' (median and P95 TTFT over 10,000+ requests, "
             "2K-token prompts, April 2026), https://tokenmix.ai/blog/ai-api-latency-benchmark")
_DEPLOYBASE = ("DeployBase, 'LLM API latency comparison: time to first token' (p50/p95, 500-token prompts, US East, "
               "March 2026), https://deploybase.ai/articles/llm-api-latency-comparison-time-to-first-token")
PROFILES: dict[str, LatencyProfile] = {p.name: p for p in (
    LatencyProfile("groq-llama-3.3-70b", 0.120, 0.280, _TOKENMIX),
    LatencyProfile("openai-gpt-5.4", 0.450, 1.200, _TOKENMIX),
    LatencyProfile("anthropic-claude-sonnet-4.6", 0.500, 0.900, _TOKENMIX),
    LatencyProfile("google-gemini-2.5-pro", 0.600, 1.800, _TOKENMIX),
    LatencyProfile("openai-gpt-4o-mini", 0.150, 0.400, _DEPLOYBASE),
    LatencyProfile("google-gemini-2.5-flash", 0.100, 0.300, _DEPLOYBASE),
)}


class LatencyProfileLLM(_Joined):
    """`inner` behind a provider's TTFT: waits a drawn TTFT, then streams `inner` (seeded draws)."""

    def __init__(self, inner: LLM, profile: str | LatencyProfile, *, seed: int = 0):
        self.inner = inner
        self.profile = PROFILES[profile] if isinstance(profile, str) else profile
        self.name = f"{inner.name}~{self.profile.name}"
        self._rng = np.random.default_rng(seed)
        self.last_added_s: float | None = None

    def stream(self, messages: list[dict], **kw) -> Iterator[str]:
        self.last_added_s = self.profile.sample_s(self._rng)
        time.sleep(self.last_added_s)
        yield from self.inner.stream(messages, **kw)


class FallbackLLM(_Joined):
    """Primary, or the fallback when the primary fails or is silent past `first_token_timeout_s`."""

    def __init__(self, primary: LLM, fallback: LLM, *, first_token_timeout_s: float = 1.5):
        self.primary, self.fallback = primary, fallback
        self.first_token_timeout_s = float(first_token_timeout_s)
        self.name = f"{primary.name}->{fallback.name}"
        self.events: list[str] = []

    def stream(self, messages: list[dict], **kw) -> Iterator[str]:
        run = ThreadedStream(self.primary, messages, kw)
        try:
            first = run.q.get(timeout=self.first_token_timeout_s)
        except queue.Empty:
            first = LLMError(f"{self.primary.name}: no first token within {self.first_token_timeout_s} s")
        if first is _DONE:
            first = LLMError(f"{self.primary.name}: empty response")
        if isinstance(first, BaseException):
            run.cancel()
            msg = f"LLM fallback to {self.fallback.name}: {first}"
            self.events.append(msg)
            log.warning(msg)
            yield from self.fallback.stream(messages, **kw)
            return
        try:
            yield first
            yield from run
        finally:
            run.cancel()
