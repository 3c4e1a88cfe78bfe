"""Recorded audio through a real Pipecat pipeline: where Pipecat ends the user's turns, in the audio's own time.

    from vad_turn.integrations.pipecat import TurnModelAnalyzer
    from vad_turn.integrations.pipecat_replay import replay

    run = replay(audio16k, TurnModelAnalyzer())     # Pipecat's VAD + user turn processor + the analyzer
    run.turn_stops_s                                # stream seconds of each UserStoppedSpeakingFrame

The pipeline is Pipecat's own classes, nothing stubbed: `VADProcessor(SileroVADAnalyzer(params))` ->
`UserTurnProcessor` with `VADUserTurnStartStrategy` and `TurnAnalyzerUserTurnStopStrategy(turn_analyzer=...)`
-> a recorder (the wall-clock safety nets off). The audio goes in as 16-bit PCM `InputAudioRawFrame`s of
`chunk_s` (20 ms, a transport's chunk), queued as fast as the pipeline takes them; every frame is stamped with
the stream time of the audio that passed the recorder before it, so a decision's time is the audio's, not the
machine's. In a live pipeline the same decisions arrive later by the machine's delays (Pipecat's user
aggregator runs its VAD in a task of its own).

Fed faster than real time: Pipecat's VAD, its user turn processor and `TurnModelAnalyzer` count time in audio
samples, so their decisions are those of a real-time run. Smart Turn's analyzer (`BaseSmartTurn`) also cuts its
pre-speech audio by wall-clock time (`pre_speech_ms` before the speech start): fed this fast it keeps the whole
buffer since its last turn (at most its last 8 s are scored), so on a clip with a long lead-in it sees more
audio before the speech than live. Without a transcript the stop strategy runs with
`wait_for_transcript=False` (the analyzer alone ends the turn), as Pipecat does for realtime LLM services.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    EndFrame,
    InputAudioRawFrame,
    MetricsFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.turns.user_start import VADUserTurnStartStrategy
from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
from pipecat.turns.user_turn_processor import UserTurnProcessor
from pipecat.turns.user_turn_strategies import UserTurnStrategies
from pipecat.workers.runner import WorkerRunner

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError

_EVENTS = {VADUserStartedSpeakingFrame: "vad_start", VADUserStoppedSpeakingFrame: "vad_stop",
           UserStartedSpeakingFrame: "turn_start", UserStoppedSpeakingFrame: "turn_stop"}


@dataclass
class PipecatRun:
    """What a replay saw. events: (stream_s, kind) in order, kind one of vad_start / vad_stop / turn_start /
    turn_stop; predictions: (stream_s, p, is_complete) of each `TurnMetricsData` the analyzer reported."""

    events: list[tuple[float, str]] = field(default_factory=list)
    predictions: list[tuple[float, float, bool]] = field(default_factory=list)
    audio_s: float = 0.0

    def times(self, kind: str) -> list[float]:
        return [t for t, k in self.events if k == kind]

    @property
    def turn_stops_s(self) -> list[float]:
        """Stream seconds at which Pipecat ended a user turn (UserStoppedSpeakingFrame)."""
        return self.times("turn_stop")


class _Recorder(FrameProcessor):
    def __init__(self, run: PipecatRun, sample_rate_hz: int):
        super().__init__()
        self.run, self.rate, self.n = run, sample_rate_hz, 0

    async def process_frame(self, frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        t = self.n / self.rate
        if isinstance(frame, InputAudioRawFrame):
            self.n += frame.num_frames
            self.run.audio_s = self.n / self.rate
        elif type(frame) in _EVENTS and direction == FrameDirection.DOWNSTREAM:
            self.run.events.append((t, _EVENTS[type(frame)]))
        elif isinstance(frame, MetricsFrame):
            self.run.predictions += [(t, float(d.probability), bool(d.is_complete)) for d in frame.data
                                     if isinstance(d, TurnMetricsData)]
        await self.push_frame(frame, direction)


def pcm16(audio: np.ndarray) -> bytes:
    """float (n,) in [-1, 1] -> 16-bit PCM bytes (clipped), what a transport delivers."""
    a = np.asarray(audio, dtype=np.float64)
    if a.ndim != 1 or not np.all(np.isfinite(a)):
        raise AudioError(f"replay: audio must be finite mono (n,), got shape {a.shape}")
    return (np.clip(a, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


async def replay_async(audio: np.ndarray, analyzer, *, sample_rate_hz: int = SAMPLE_RATE_HZ, chunk_s: float = 0.02,
                       vad_params: VADParams | None = None, wait_for_transcript: bool = False) -> PipecatRun:
    """`audio` (float32 (n,) mono in [-1, 1] at `sample_rate_hz`) through Pipecat's VAD, user turn processor and
    `analyzer` (any `BaseTurnAnalyzer`); wait_for_transcript as `TurnAnalyzerUserTurnStopStrategy` takes it."""
    if chunk_s <= 0 or sample_rate_hz <= 0:
        raise ValueError(f"replay: chunk_s and sample_rate_hz must be > 0, got {chunk_s}, {sample_rate_hz}")
    data = pcm16(audio)
    run = PipecatRun()
    stop = TurnAnalyzerUserTurnStopStrategy(turn_analyzer=analyzer, wait_for_transcript=wait_for_transcript)
    # the two wall-clock safety nets (no audio for 1 s while speaking; no stop 5 s into a turn) are off: the audio
    # never pauses here, and a busy machine must not end a turn that the audio has not ended
    turns = UserTurnProcessor(user_turn_strategies=UserTurnStrategies(start=[VADUserTurnStartStrategy()], stop=[stop]),
                              user_turn_stop_timeout=3600.0)
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=vad_params or VADParams()), audio_idle_timeout=0)
    pipeline = Pipeline([vad, turns, _Recorder(run, sample_rate_hz)])
    worker = PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=sample_rate_hz),
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(_worker, _frame):
        started.set()

    async def feed():
        await asyncio.wait_for(started.wait(), timeout=30.0)
        step = 2 * max(1, int(round(chunk_s * sample_rate_hz)))
        for i in range(0, len(data), step):
            await worker.queue_frame(InputAudioRawFrame(audio=data[i:i + step], sample_rate=sample_rate_hz,
                                                        num_channels=1))
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), feed())
    return run


def replay(audio: np.ndarray, analyzer, **kw) -> PipecatRun:
    """`replay_async` in a fresh event loop."""
    return asyncio.run(replay_async(audio, analyzer, **kw))
