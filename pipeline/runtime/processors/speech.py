"""Clause aggregation, TTS and audio output.

ClauseAggregator turns `LLMToken`s into `AgentText` clauses: a clause ends at , ; : . ! ? followed
by a space (or at the end of the reply); the first clause is also cut after `first_max_words`
words so speech starts after a few tokens even when the LLM opens with a long clause, later ones
after `max_words`. Default 2: on the bench's turns (`pipeline llm-bench`) the first chunk then
needs 4 tokens at the median instead of 6 with 4 words (one word: 3), 95-180 ms sooner (P50, two
runs on the shared CPU) with fp32 SmolLM2. The trade-off is prosody: a two-word fragment ("I'm so") is spoken
with its own phrase-final intonation, and a short gap may follow if the next clause is not
synthesized by the time it ends. mode="whole" (the naive cascade) sends the whole reply as one text at its end.

TTSProcessor speaks each AgentText with `vad_turn.engines.tts.synthesize_stream` (espeak in process by
default: punctuation mapped to SSML breaks by `text_to_ssml`; festival/flite synthesize whole) on a
worker thread and pushes 20 ms `TTSAudio` chunks as they come; mode="whole" synthesizes the whole
reply and pushes its chunks at once. A TTS failure is logged and the text still goes on to the
output as `AgentText(spoken=False)`: the text is always delivered.

OutputProcessor plays `TTSAudio` in real time, one `chunk_s` chunk per clock tick, into `played`
(and an optional `sink(audio)` callback, e.g. a sound card). It broadcasts `AgentSpeaking` at the
first chunk of a response and when it stops. At a user onset during agent audio it pauses at
once (the barge-in reaction); `ResumeOutput` carries on, `Interrupt` flushes what was buffered.
"""
from __future__ import annotations

import asyncio
import collections
import re
from typing import Callable

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ

from ..frames import (
    AgentSpeaking,
    AgentText,
    EndOfResponse,
    EndOfStream,
    Interrupt,
    LLMToken,
    ResumeOutput,
    TTSAudio,
    UserStartedSpeaking,
)
from .base import Processor

_CLAUSE_END = re.compile(r"[,;:.!?](?=\s)")


def clause_cut(buf: str, max_words: int) -> int | None:
    """Where the next clause of the streamed text `buf` ends (a character index), or None: wait for more.

    A clause ends after , ; : . ! ? followed by whitespace, or after `max_words` words once the
    next word has begun (a word is only known to be complete when the following one starts).
    """
    m = _CLAUSE_END.search(buf)
    words = buf.split()
    if m is not None and buf[:m.end()].strip():
        return m.end()
    if len(words) > max_words and re.search(r"\s$", buf) is None:
        return len(" ".join(words[:max_words])) + (len(buf) - len(buf.lstrip()))
    return None


def first_chunk_pieces(pieces: list[str], first_max_words: int) -> int:
    """How many streamed pieces (tokens) `ClauseAggregator` needs before it emits the first chunk.

    The whole reply counts (len(pieces)) when no clause ends before the reply does.
    """
    buf = ""
    for i, piece in enumerate(pieces, 1):
        buf += piece
        if clause_cut(buf, first_max_words) is not None:
            return i
    return len(pieces)


class ClauseAggregator(Processor):
    name = "aggregator"

    def __init__(self, *, mode: str = "clause", first_max_words: int = 2, max_words: int = 12):
        super().__init__()
        if mode not in ("clause", "whole"):
            raise ValueError(f"aggregator mode must be 'clause' or 'whole', got {mode!r}")
        self.mode, self.first_max_words, self.max_words = mode, int(first_max_words), int(max_words)
        self._buf: dict[int, str] = {}
        self._n_sent: dict[int, int] = {}

    def on_system(self, frame) -> None:
        if isinstance(frame, Interrupt):
            self._buf.pop(frame.response_id, None)

    async def process(self, frame) -> None:
        if isinstance(frame, LLMToken):
            if frame.response_id in self.conv.cancelled:
                return
            buf = self._buf.get(frame.response_id, "") + frame.text
            self._buf[frame.response_id] = buf
            if self.mode == "clause":
                await self._emit_clauses(frame.response_id)
        elif isinstance(frame, EndOfResponse):
            rest = self._buf.pop(frame.response_id, "").strip()
            if rest and frame.response_id not in self.conv.cancelled:
                await self.push(AgentText(self.now(), frame.response_id, rest))
            await self.push(frame)
        else:
            await self.push(frame)

    async def _emit_clauses(self, rid: int) -> None:
        while True:
            buf = self._buf[rid]
            limit = self.first_max_words if self._n_sent.get(rid, 0) == 0 else self.max_words
            cut = clause_cut(buf, limit)
            if cut is None:
                return
            clause, self._buf[rid] = buf[:cut].strip(), buf[cut:]
            self._n_sent[rid] = self._n_sent.get(rid, 0) + 1
            await self.push(AgentText(self.now(), rid, clause))


class TTSProcessor(Processor):
    name = "tts"

    def __init__(self, voice, *, mode: str = "stream", ssml: bool = True, chunk_ms: int = 20, paths=None):
        super().__init__()
        from vad_turn.engines.tts import DEFAULT_PATHS

        if mode not in ("stream", "whole"):
            raise ValueError(f"TTS mode must be 'stream' or 'whole', got {mode!r}")
        self.voice, self.mode, self.chunk_ms = voice, mode, int(chunk_ms)
        self.ssml = bool(ssml) and voice.engine == "espeak"
        self.paths = paths or DEFAULT_PATHS
        self._whole: dict[int, list[str]] = {}

    async def process(self, frame) -> None:
        if isinstance(frame, AgentText):
            if frame.response_id in self.conv.cancelled:
                return
            if self.mode == "whole" and not frame.bridge:
                self._whole.setdefault(frame.response_id, []).append(frame.text)
                return
            await self._speak(frame)
        elif isinstance(frame, EndOfResponse):
            parts = self._whole.pop(frame.response_id, [])
            if parts and frame.response_id not in self.conv.cancelled:
                await self._speak(AgentText(self.now(), frame.response_id, " ".join(parts)))
            await self.push(frame)
        else:
            await self.push(frame)

    def _synth_iter(self, text: str):
        from vad_turn.engines.tts import synthesize_stream, text_to_ssml

        src = text_to_ssml(text) if self.ssml else text
        return synthesize_stream(src, self.voice, chunk_ms=self.chunk_ms, ssml=self.ssml, paths=self.paths)

    async def _speak(self, frame: AgentText) -> None:
        rid = frame.response_id
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        done = object()

        def work():
            try:
                for chunk in self._synth_iter(frame.text):
                    if rid in self.conv.cancelled:
                        break
                    loop.call_soon_threadsafe(q.put_nowait, chunk)
            except Exception as e:  # reported below; the text is still delivered
                loop.call_soon_threadsafe(q.put_nowait, e)
            loop.call_soon_threadsafe(q.put_nowait, done)

        fut = loop.run_in_executor(self._pool(), work)
        error = None
        chunks = []
        while (item := await q.get()) is not done:
            if isinstance(item, Exception):
                error = item
            elif rid not in self.conv.cancelled:
                if self.mode == "whole" and not frame.bridge:
                    chunks.append(item)
                else:
                    await self.push(TTSAudio(self.now(), rid, item))
        await fut
        for c in chunks:
            if rid not in self.conv.cancelled:
                await self.push(TTSAudio(self.now(), rid, c))
        if error is not None:
            self.conv.note(self.now(), f"response {rid}: TTS failed ({error}); text delivered without audio")
        await self.push(AgentText(self.now(), rid, frame.text, spoken=error is None, bridge=frame.bridge))

    def _pool(self):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(1, thread_name_prefix=self.name)
        return self._executor


class OutputProcessor(Processor):
    name = "output"

    def __init__(self, *, chunk_s: float = 0.02, pause_on_user_speech: bool = True,
                 sink: Callable[[np.ndarray], None] | None = None):
        super().__init__()
        self.chunk_s, self.pause_on_user_speech, self.sink = float(chunk_s), pause_on_user_speech, sink
        self.buffer: collections.deque = collections.deque()  # (response_id, audio)
        self.ended: set[int] = set()
        self.played: list[tuple[float, int, np.ndarray]] = []  # (t_s, response_id, chunk)
        self.delivered: list[AgentText] = []
        self.paused = False
        self.current: int | None = None
        self._started: set[int] = set()
        self._task: asyncio.Task | None = None
        self._stop = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._play_loop(), name="output-play")

    async def stop(self) -> None:
        self._stop = True
        if self._task is not None:
            self._task.cancel()
        await super().stop()

    def on_system(self, frame) -> None:
        if isinstance(frame, UserStartedSpeaking):
            if self.pause_on_user_speech and self.conv.agent_speaking and not self.paused:
                self.paused = True
                self._speaking(False, "paused")
        elif isinstance(frame, ResumeOutput):
            if self.paused:
                self.paused = False
                if self.buffer:
                    self._speaking(True, "resume")
        elif isinstance(frame, Interrupt):
            rid = frame.response_id
            before = len(self.buffer)
            self.buffer = collections.deque(x for x in self.buffer if x[0] != rid)
            self.ended.add(rid)
            if self.current == rid:
                if self.conv.agent_speaking or before:
                    self._speaking(False, "interrupted")
                self.paused = False
                self.current = None

    def _speaking(self, speaking: bool, reason: str) -> None:
        self.conv.agent_speaking = speaking
        rid = self.current if self.current is not None else -1
        self.broadcast(AgentSpeaking(self.now(), rid, speaking, reason))

    async def process(self, frame) -> None:
        if isinstance(frame, TTSAudio):
            if frame.response_id not in self.conv.cancelled:
                self.buffer.append((frame.response_id, frame.audio))
        elif isinstance(frame, AgentText):
            if frame.response_id not in self.conv.cancelled:
                self.delivered.append(frame)
        elif isinstance(frame, EndOfResponse):
            self.ended.add(frame.response_id)
            rid = frame.response_id
            if (rid not in self._started and rid not in self.conv.cancelled
                    and not any(r == rid for r, _ in self.buffer)):
                self.current = frame.response_id  # a response without audio (TTS failed) still ends
                self._speaking(False, "done")
                self.current = None
        elif isinstance(frame, EndOfStream):
            while self.buffer and not self._stop:  # let queued audio finish playing
                await self.clock.sleep_until(self.now() + self.chunk_s)
        await self.push(frame)

    async def _play_loop(self) -> None:
        next_t = self.now()
        n_chunk = int(round(self.chunk_s * SAMPLE_RATE_HZ))
        while not self._stop:
            next_t += self.chunk_s
            await self.clock.sleep_until(next_t)
            if self.clock.now() - next_t > 0.2:  # fell far behind (a stalled loop): resync, do not burst
                next_t = self.clock.now()
            if self.paused or not self.buffer:
                if (not self.paused and self.current is not None and self.current in self.ended
                        and not self.buffer):
                    self._speaking(False, "done")
                    self.current = None
                continue
            rid, audio = self.buffer[0]
            if audio.size > n_chunk:  # play exactly one tick's worth
                self.buffer[0] = (rid, audio[n_chunk:])
                audio = audio[:n_chunk]
            else:
                self.buffer.popleft()
            if self.current != rid:
                self.current = rid
            if rid not in self._started:
                self._started.add(rid)
                self._speaking(True, "start")
            elif not self.conv.agent_speaking:
                self._speaking(True, "resume")
            self.played.append((self.now(), rid, audio))
            if self.sink is not None:
                self.sink(audio)
