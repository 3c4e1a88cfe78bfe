"""VAD and STT processors: input audio -> speech start/stop events -> transcripts.

VADProcessor converts every `AudioIn` to 16 kHz mono once (`vad_turn.core.audio.prepare_audio`, a
streaming soxr resampler per input rate), runs a `vad_turn.engines.vad.StreamingVAD` and tracks speech
with hysteresis: speech starts at the first frame with p >= `threshold` (`min_speech_s` of such
frames), and stops after `hangover_s` of frames below `threshold - 0.15`. Start is broadcast as
`UserStartedSpeaking` (a system frame, before the audio that triggered it is forwarded); stop is
a queued `UserStoppedSpeaking` (after the audio), both carrying the stream time of the speech edge.

STTProcessor feeds audio to a `vad_turn.engines.stt.StreamingSTT` from a speech start (with `preroll_s`
of audio before the VAD fired, since the VAD detects onsets a frame or two late) until the
speech stops: streaming engines get every chunk and emit partial `Transcript`s every
`partial_every_s`; at `UserStoppedSpeaking` the segment is finished and a final `Transcript`
follows when it is decoded, without holding up the audio behind it. `batch=True` (the naive cascade) buffers the segment and decodes it whole at the stop.
An `Interrupt` resets the engine; each pipeline starts it on a new stream (`new_stream`: a
reused engine adapts nothing from earlier runs).
"""
from __future__ import annotations

import asyncio
import collections

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, prepare_audio, resample_stream
from vad_turn.core.schema import Word
from vad_turn.engines.stt import StreamingSTT
from vad_turn.engines.vad import FrameVAD, StreamingVAD

from ..frames import AudioIn, EndOfStream, Interrupt, Transcript, UserStartedSpeaking, UserStoppedSpeaking
from .base import Processor


class VADProcessor(Processor):
    name = "vad"

    def __init__(self, vad: FrameVAD, *, threshold: float | None = None, min_speech_s: float = 0.03,
                 hangover_s: float = 0.1):
        super().__init__()
        self.stream = StreamingVAD(vad, SAMPLE_RATE_HZ)
        self.threshold = vad.threshold if threshold is None else float(threshold)
        self.min_speech_s, self.hangover_s = float(min_speech_s), float(hangover_s)
        self._resamplers: dict[int, object] = {}
        self.speaking = False
        self._run_s = 0.0  # speech (or silence, while speaking) accumulated towards a state change
        self._edge_s = 0.0

    def to_16k(self, frame: AudioIn) -> np.ndarray:
        """The chunk as float32 (n,) 16 kHz mono: int16/stereo converted, other rates resampled in stream."""
        rate = int(frame.sample_rate_hz)
        a = prepare_audio(frame.audio, rate, source=f"AudioIn at {frame.stream_t_s:.2f} s", target_rate_hz=rate,
                          allow_empty=True)
        if rate != SAMPLE_RATE_HZ:
            rs = self._resamplers.setdefault(rate, resample_stream(rate))
            a = rs.resample_chunk(a)
        return a

    async def process(self, frame) -> None:
        if not isinstance(frame, AudioIn):
            await self.push(frame)
            return
        audio = self.to_16k(frame)
        if frame.sample_rate_hz != SAMPLE_RATE_HZ or frame.audio.ndim != 1 or frame.audio.dtype != np.float32:
            frame = AudioIn(frame.t_s, audio, SAMPLE_RATE_HZ, frame.stream_t_s)
        times_s, probs = self.stream.push(audio)
        stop_at = None
        dt = self.stream.vad.frame_s
        for t, p in zip(times_s, probs):
            if not self.speaking:
                if p >= self.threshold:
                    self._run_s += dt
                    if self._run_s == dt:
                        self._edge_s = float(t)
                    if self._run_s >= self.min_speech_s - 1e-9:
                        self.speaking, self._run_s = True, 0.0
                        self.broadcast(UserStartedSpeaking(self.now(), self._edge_s))
                else:
                    self._run_s = 0.0
            else:
                if p < self.threshold - 0.15:
                    if self._run_s == 0.0:
                        self._edge_s = float(t)
                    self._run_s += dt
                    if self._run_s >= self.hangover_s - 1e-9:
                        self.speaking, self._run_s = False, 0.0
                        stop_at = self._edge_s
                else:
                    self._run_s = 0.0
        await self.push(frame)
        if stop_at is not None:
            await self.push(UserStoppedSpeaking(self.now(), stop_at))


class STTProcessor(Processor):
    name = "stt"

    def __init__(self, engine: StreamingSTT, *, batch: bool = False, preroll_s: float = 0.3,
                 partial_every_s: float = 0.2):
        super().__init__()
        self.engine, self.batch = engine, bool(batch or not engine.streaming)
        self.preroll_n = int(preroll_s * SAMPLE_RATE_HZ)
        self.partial_every_s = float(partial_every_s)
        self._ring: collections.deque = collections.deque()
        self._ring_n = 0
        self._want_start = False
        self._active = False
        self._seg_start_s = 0.0
        self._buf: list[np.ndarray] = []
        self._last_partial_s = 0.0
        self._last_text = ""
        self.segment = 0
        self._finals: set[asyncio.Task] = set()  # final transcripts still decoding

    async def start(self) -> None:
        await self.run_blocking(self.engine.new_stream)  # a reused engine hears this run as a fresh one

    def on_system(self, frame) -> None:
        if isinstance(frame, UserStartedSpeaking):
            self._want_start = True
        elif isinstance(frame, Interrupt) and frame.reason == "barge-in":
            pass  # the speech that interrupted is the next turn: keep decoding it

    async def process(self, frame) -> None:
        if isinstance(frame, AudioIn):
            await self._audio(frame)
        elif isinstance(frame, UserStoppedSpeaking):
            await self.push(frame)
            await self._finish(frame)
        elif isinstance(frame, EndOfStream):
            if self._active:
                await self._finish(UserStoppedSpeaking(self.now(), frame.t_s))
            await self._flush_finals()
            await self.push(frame)
        else:
            await self.push(frame)

    async def _audio(self, frame: AudioIn) -> None:
        a = frame.audio
        if self._want_start and not self._active:
            self._want_start = False
            pre = np.concatenate(list(self._ring)) if self._ring else np.zeros(0, np.float32)
            pre = pre[-self.preroll_n:] if self.preroll_n else pre[:0]
            self._active, self._buf, self._last_text = True, [], ""
            self._seg_start_s = frame.stream_t_s - pre.size / SAMPLE_RATE_HZ
            self._last_partial_s = frame.stream_t_s
            if not self.batch:
                await self.run_blocking(self.engine.start)
            a = np.concatenate([pre, a])
        else:
            self._ring.append(a)
            self._ring_n += a.size
            while self._ring and self._ring_n - self._ring[0].size >= self.preroll_n:
                self._ring_n -= self._ring.popleft().size
        await self.push(frame)
        if not self._active:
            return
        if self.batch:
            self._buf.append(a)
            return
        await self.run_blocking(self.engine.accept, a)
        if frame.end_stream_s - self._last_partial_s >= self.partial_every_s:
            self._last_partial_s = frame.end_stream_s
            text = await self.run_blocking(self.engine.partial)
            if text and text != self._last_text:
                self._last_text = text
                await self.push(Transcript(self.now(), text, False, self.segment))

    async def _finish(self, stop: UserStoppedSpeaking) -> None:
        """End the segment: its final transcript is decoded in the background (the executor keeps the engine's
        calls in order) and pushed when ready, so the audio after the stop flows on to the turn processor while
        a slow engine decodes (Moonshine: ~230 ms per segment on one AVX2 core) instead of queueing behind it."""
        if not self._active:
            return
        self._active = False
        self._ring.clear()
        self._ring_n = 0
        seg, off = self.segment, self._seg_start_s
        self.segment += 1
        if self.batch:
            audio = np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)
            self._buf = []
            job = self.submit_blocking(self.engine.transcribe, audio)
        else:
            job = self.submit_blocking(self.engine.finish)

        async def final() -> None:
            text, words = await job
            words = tuple(Word(w.word, w.start + off, w.end + off) for w in words)
            await self.push(Transcript(self.now(), text, True, seg, words))

        task = asyncio.ensure_future(final())
        self._finals.add(task)
        task.add_done_callback(self._finals.discard)

    async def _flush_finals(self) -> None:
        """Wait for the finals still decoding (before EndOfStream: nothing may follow it)."""
        while self._finals:
            await asyncio.gather(*list(self._finals))
