"""Processors, the pipeline that links them, and the shared conversation state.

A `Processor` consumes data and control frames from its queue, in order, in `process(frame)`,
and sends frames on with `await self.push(frame)`. System frames (`frames.SystemFrame`) never
queue: `pipeline.broadcast(frame)` calls every processor's `on_system(frame)` synchronously and
shows the frame to every observer, so an Interrupt reaches the output in the same event-loop step
it is raised (no round trip). `on_system` must not block.

Blocking model calls run in a processor's single-thread executor (`await self.run_blocking(f, *a)`)
so the event loop (audio pacing, barge-in) stays responsive.
"""
from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence

from ..clock import Clock
from ..frames import EndOfStream, Frame, SystemFrame

log = logging.getLogger("pipeline")


class Observer(Protocol):
    def on_frame(self, frame: Frame, source: str) -> None: ...


@dataclass
class Conversation:
    """State the processors share: the chat history and who is speaking.

    messages: OpenAI-format history (system prompt first), appended by the LLM processor.
    agent_speaking: the output is playing agent audio now. active_response: the response being
    generated or played (None when idle). log: human-readable events (fallbacks, TTS failures).
    """

    system_prompt: str = ""
    messages: list[dict] = field(default_factory=list)
    agent_speaking: bool = False
    active_response: int | None = None
    cancelled: set[int] = field(default_factory=set)
    log: list[tuple[float, str]] = field(default_factory=list)

    def note(self, t_s: float, text: str) -> None:
        self.log.append((t_s, text))
        log.info(text)


class Processor:
    name = "processor"

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.next: Processor | None = None
        self.queue: asyncio.Queue = asyncio.Queue()
        self._executor: ThreadPoolExecutor | None = None

    # -- wiring
    @property
    def clock(self) -> Clock:
        return self.pipeline.clock

    @property
    def conv(self) -> Conversation:
        return self.pipeline.conversation

    def now(self) -> float:
        return self.pipeline.clock.now()

    async def push(self, frame: Frame) -> None:
        self.pipeline.emit(self, frame)

    def broadcast(self, frame: SystemFrame) -> None:
        self.pipeline.broadcast(frame, self.name)

    def submit_blocking(self, fn: Callable, *args) -> asyncio.Future:
        """Queue `fn(*args)` on the processor's single thread now (calls run in submission order); await it later."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def run_blocking(self, fn: Callable, *args):
        return await self.submit_blocking(fn, *args)

    # -- to override
    async def start(self) -> None:
        """Called once before frames flow (load state, start background tasks)."""

    async def process(self, frame: Frame) -> None:
        """Handle one queued frame; the default forwards it."""
        await self.push(frame)

    def on_system(self, frame: SystemFrame) -> None:
        """React to a broadcast system frame at once (must not block or await)."""

    async def stop(self) -> None:
        """Called after EndOfStream passed (stop background tasks, release threads)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    # -- loop
    async def _run(self) -> None:
        while True:
            frame = await self.queue.get()
            try:
                await self.process(frame)
            except Exception:  # a failing processor must not hang the pipeline silently
                log.exception("%s failed on %s", self.name, type(frame).__name__)
                if isinstance(frame, EndOfStream):
                    await self.push(frame)
                raise
            if isinstance(frame, EndOfStream):
                return


class Pipeline:
    """Processors linked in order; observers see every frame (queued or broadcast) with its source."""

    def __init__(self, processors: Sequence[Processor], clock: Clock, *, observers: Sequence[Observer] = (),
                 conversation: Conversation | None = None):
        if not processors:
            raise ValueError("a pipeline needs at least one processor")
        self.processors = list(processors)
        self.clock = clock
        self.observers = list(observers)
        self.conversation = conversation or Conversation()
        for a, b in zip(self.processors, self.processors[1:]):
            a.next = b
        for p in self.processors:
            p.pipeline = self
        self.outputs: list[Frame] = []  # frames pushed by the last processor
        for o in self.observers:  # observers that measure how late frames are handled read this clock
            if hasattr(o, "bind_clock"):
                o.bind_clock(clock)
        self._tasks: list[asyncio.Task] = []

    def emit(self, src: Processor, frame: Frame) -> None:
        if isinstance(frame, SystemFrame):
            self.broadcast(frame, src.name)
            return
        for o in self.observers:
            o.on_frame(frame, src.name)
        if src.next is not None:
            src.next.queue.put_nowait(frame)
        else:
            self.outputs.append(frame)

    def broadcast(self, frame: SystemFrame, source: str = "pipeline") -> None:
        for o in self.observers:
            o.on_frame(frame, source)
        for p in self.processors:
            p.on_system(frame)

    async def start(self) -> None:
        for p in self.processors:
            await p.start()
        self._tasks = [asyncio.create_task(p._run(), name=p.name) for p in self.processors]

    def feed(self, frame: Frame) -> None:
        """Put an input frame into the first processor (system frames are broadcast instead)."""
        if isinstance(frame, SystemFrame):
            self.broadcast(frame, "input")
            return
        for o in self.observers:
            o.on_frame(frame, "input")
        self.processors[0].queue.put_nowait(frame)

    async def wait(self, timeout_s: float | None = None) -> None:
        """Wait until EndOfStream has passed every processor (raises the first processor error)."""
        try:
            done, pending = await asyncio.wait(self._tasks, timeout=timeout_s, return_when=asyncio.FIRST_EXCEPTION)
            for t in done:
                if t.exception() is not None:
                    raise t.exception()
            if pending:
                raise TimeoutError(f"pipeline did not finish within {timeout_s} s: "
                                   f"{', '.join(t.get_name() for t in pending)} still running")
        finally:
            await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            if not t.done():
                t.cancel()
        for p in self.processors:
            await p.stop()
