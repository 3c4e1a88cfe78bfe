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
"""
from __future__ import annotations

import asyncio
import threading

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, prepare_audio

from ..frames import AudioIn
from .samples import InputError, check_audio
from .session import PANES, PANES_AT_ONCE, POOL, DemoSettings, ModelPool, PaneResult, finish_pane, run_pane, start_pane

CHUNK_S = 0.02


class LiveSession:
    def __init__(self, settings: DemoSettings, pool: ModelPool = POOL, *, max_s: float = 60.0):
        self.settings, self.max_s = settings, float(max_s)
        self.live_panes = PANES if settings.panes == PANES_AT_ONCE else ("semantic",)
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
        self.heard: list[np.ndarray] = []
        self.closed = False

    def _call(self, coro, timeout_s: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _start(self, sets):
        self.sets = sets
        return [await start_pane(pane, sets[pane], self.settings) for pane in self.live_panes]

    @property
    def stream_s(self) -> float:
        return self.runs[0].src.stream_s

    def feed(self, sample_rate_hz: int, audio: np.ndarray) -> None:
        """One browser chunk ((n,) or (n, ch), int16 or float, any rate) into both panes."""
        if self.closed or np.asarray(audio).size == 0:
            return
        try:
            a = prepare_audio(np.asarray(audio), int(sample_rate_hz), source="microphone chunk", allow_empty=True)
        except AudioError as e:
            raise InputError(str(e)) from e
        if self.stream_s + a.size / SAMPLE_RATE_HZ > self.max_s:
            raise InputError(f"the live comparison stops at {self.max_s:.0f} s; press stop to see the results")
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
        if self.closed:
            raise InputError("this live session already ended")
        self.closed = True
        try:
            heard = np.concatenate(self.heard) if self.heard else np.zeros(0, np.float32)
            check_audio(heard, "microphone", max_input_s=self.max_s + 1.0)
            return dict(zip(PANES, self._call(self._finish(), timeout_s=120.0 + 2 * self.stream_s)))
        finally:
            self.close()

    def close(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            if getattr(self, "runs", None) and not self.loop.is_closed():
                try:
                    self._call(asyncio.gather(*(r.p.close() for r in self.runs)), 10.0)
                except Exception:  # noqa: BLE001 - closing is best effort; the lease is returned below
                    pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            lease.__exit__(None, None, None)
