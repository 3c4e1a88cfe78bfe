"""Live microphone input: browser audio chunks streamed into both panes as they arrive.

Gradio's streaming `gr.Audio` delivers (sample_rate_hz, int16 or float array) chunks every
~0.5 s. `LiveSession` runs the live panes' pipelines on an event loop in a background thread; `feed`
converts each chunk to 16 kHz mono and feeds it to them in 20 ms `AudioIn` frames (stream time
advances with the audio, so the turn policies see the microphone's real timing; wall-clock
latencies include the browser's chunking, up to ~0.5 s); `finish` plays silence in real time
until the agents are done and returns the `PaneResult`s. One session per browser tab (gr.State).

Panes one after the other (the default, `session.PANES_SEQUENTIAL`): the semantic pane listens live,
and at `finish` the VAD-only pane replays the recording in real time on its own (as `session.compare`
replays any input), so the two never share the cores; "at once": both listen live.

A live session holds a model set (`session.POOL`) only while audio arrives: `idle_s` without a chunk
(a browser that went away, an API caller that never stops) or `max_s` of audio ends it (`end`) and
returns the set at once; the recording is kept (at most `max_s`), and `finish` then replays it into
both panes on a fresh lease, as an upload is played. `close` (the page's unload / state deletion)
returns it too.
"""
from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from pipeline.runtime.frames import AudioIn
from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, prepare_audio

from .samples import InputError, check_audio
from .session import (PANES, PANES_AT_ONCE, POOL, DemoSettings, ModelPool, PaneResult, compare, finish_pane, run_pane,
                      start_pane)

CHUNK_S = 0.02
IDLE_S = 5.0  # a live session that got no chunk for this long ends and returns its models (the browser sends 0.5 s chunks)
MAX_S = 60.0  # longest live recording; the session ends there


class LiveSession:
    def __init__(self, settings: DemoSettings, pool: ModelPool = POOL, *, max_s: float = MAX_S,
                 idle_s: float = IDLE_S):
        if not (max_s > 0 and idle_s > 0):
            raise ValueError(f"max_s and idle_s must be > 0 s, got {max_s}, {idle_s}")
        self.settings, self.pool, self.max_s, self.idle_s = settings, pool, float(max_s), float(idle_s)
        self.live_panes = PANES if settings.panes == PANES_AT_ONCE else ("semantic",)
        self.heard: list[np.ndarray] = []
        self.closed = False
        self.ended = ""  # why the session ended before `finish` (idle, maximum length, closed); "" while live
        self._finishing = False
        self._lock = threading.RLock()
        self._last_chunk_t = time.monotonic()
        self._lease = pool.acquire(settings)
        sets = self._lease.__enter__()  # raises InputError when every model set is busy
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="demo-live", daemon=True)
        self._thread.start()
        try:
            self.runs = self._call(self._start(sets))
        except BaseException:
            self.close()
            raise
        self._last_chunk_t = time.monotonic()
        threading.Thread(target=self._watch, name="demo-live-idle", daemon=True).start()

    def _watch(self) -> None:
        """End the session once no chunk came for `idle_s` (returns its models to the pool)."""
        while self._lease is not None:
            time.sleep(min(0.25, self.idle_s / 4))
            if time.monotonic() - self._last_chunk_t > self.idle_s:
                self.end(f"no audio for {self.idle_s:g} s")

    @property
    def live(self) -> bool:
        """Listening with a model set (not ended, finished or closed)."""
        return self._lease is not None

    def end(self, why: str) -> None:
        """Stop listening now and return the model set; the recording is kept for `finish` to replay."""
        with self._lock:
            if self._lease is None or self.closed:  # already returned, or `finish` is using it
                return
            self.ended = why
            self.close()

    def _call(self, coro, timeout_s: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _start(self, sets):
        self.sets = sets
        return [await start_pane(pane, sets[pane], self.settings) for pane in self.live_panes]

    @property
    def heard_s(self) -> float:
        """Seconds of audio fed so far (the panes' stream time catches up on their loop)."""
        return sum(a.size for a in self.heard) / SAMPLE_RATE_HZ

    @property
    def stream_s(self) -> float:
        return self.runs[0].src.stream_s

    def feed(self, sample_rate_hz: int, audio: np.ndarray) -> None:
        """One browser chunk ((n,) or (n, ch), int16 or float, any rate) into both panes."""
        with self._lock:
            if self.ended:
                raise InputError(f"the live session ended ({self.ended}) and returned its models; press stop for "
                                 "the results (both panes replay the recording) or record again")
            self._last_chunk_t = time.monotonic()
            if self.closed or np.asarray(audio).size == 0:
                return
            try:
                a = prepare_audio(np.asarray(audio), int(sample_rate_hz), source="microphone chunk", allow_empty=True)
            except AudioError as e:
                raise InputError(str(e)) from e
            if self.heard_s + a.size / SAMPLE_RATE_HZ > self.max_s:
                self.end(f"it reached its maximum of {self.max_s:.0f} s")
                raise InputError(f"the live session ended at its maximum of {self.max_s:.0f} s and returned its "
                                 "models; press stop for the results (both panes replay the recording)")
            self.heard.append(a)
        n = int(round(CHUNK_S * SAMPLE_RATE_HZ))

        def push():
            for run in self.runs:
                for i in range(0, a.size, n):
                    c = a[i:i + n]
                    run.p.feed(AudioIn(run.p.clock.now(), c, SAMPLE_RATE_HZ, run.src.stream_s))
                    run.src.stream_s += c.size / SAMPLE_RATE_HZ

        self.loop.call_soon_threadsafe(push)

    async def _finish(self):
        async def tail(run):
            conv = run.p.conversation
            await run.src.silence(1.0)
            await run.src.silence_until(lambda: conv.active_response is None and not conv.agent_speaking, 15.0)
            return await finish_pane(run, None, [], self.settings)

        live = dict(zip(self.live_panes, await asyncio.gather(*(tail(r) for r in self.runs))))
        heard = np.concatenate(self.heard)
        for pane in PANES:  # the others replay the recording, one after the other, alone on the machine
            if pane not in live:
                live[pane] = await run_pane(pane, self.sets[pane], self.settings, heard)
        return [live[pane] for pane in PANES]

    def finish(self) -> dict[str, PaneResult]:
        """Stop listening; wait for the agents (and replay the recording into the panes that did not listen
        live); {pane: PaneResult}. InputError if nothing usable was heard."""
        with self._lock:
            if self.closed and not self.ended:
                raise InputError("this live session already ended")
            ended, self.closed = self.ended, True
            heard = np.concatenate(self.heard) if self.heard else np.zeros(0, np.float32)
        if ended:  # its models went back to the pool: replay the recording into both panes, as an upload
            self.heard = []
            return compare(check_audio(heard, "microphone", max_input_s=self.max_s + 1.0), self.settings, self.pool)
        self._finishing = True
        try:
            check_audio(heard, "microphone", max_input_s=self.max_s + 1.0)
            return dict(zip(PANES, self._call(self._finish(), timeout_s=120.0 + 2 * self.stream_s)))
        finally:
            self._finishing = False
            self._release()

    async def _stop_pipelines(self) -> None:
        await asyncio.gather(*(r.p.close() for r in self.runs))
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:  # let the cancelled processors finish before the loop stops
            await asyncio.wait(others, timeout=2.0)

    def close(self) -> None:
        """Return the model set (idempotent; the page's unload and its state deletion call it). A running
        `finish` keeps it until it is done and returns it itself."""
        if self._finishing:
            return
        self._release()

    def _release(self) -> None:
        with self._lock:
            if self._lease is None:
                return
            lease, self._lease = self._lease, None
            self.closed = True
            if getattr(self, "runs", None) and not self.loop.is_closed():
                try:
                    self._call(self._stop_pipelines(), 10.0)
                except Exception:  # noqa: BLE001 - closing is best effort; the lease is returned below
                    pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            lease.__exit__(None, None, None)
