"""The shipped fused turn model as a Pipecat turn analyzer (`pip install 'vad-turn-workbench[pipecat]'`).

    from pipecat.turns.user_stop import TurnAnalyzerUserTurnStopStrategy
    from pipecat.turns.user_turn_strategies import UserTurnStrategies
    from vad_turn.integrations.pipecat import TurnModelAnalyzer

    stop = [TurnAnalyzerUserTurnStopStrategy(turn_analyzer=TurnModelAnalyzer())]
    user_params = LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer(),
                                          user_turn_strategies=UserTurnStrategies(stop=stop))

It stands where Pipecat's `LocalSmartTurnAnalyzerV3` stands (the same `BaseTurnAnalyzer` interface), and
decides as the project's own pipeline does (`pipeline.runtime.processors.turn.TurnProcessor`, the evaluation
harness's rule, `vad_turn.harness.policy.TurnPolicy.fires`):

- silence is counted from the end of the user's speech: Pipecat's VAD reports the stop `vad_stop_secs`
  after it (`VADParams.stop_secs`, 0.2 s by default), so at the stop that much silence has passed;
- the model is asked on a `grid_s` (`QUERY_GRID_S`, 0.1 s) grid of silence, every grid point in order (those already past
  at the VAD's stop in one batch), with the query `vad_turn.harness.query.detector_query` builds: the turn's
  audio from the speech onset up to the grid point, the words that ended at least `transcript_lag_s` before
  it, the messages, the silence;
- the turn ends at the first grid point with silence >= `action_delay_s` and p_eot >= `threshold`, or at
  `timeout_s` of silence; speech before that resumes the same turn.

The decision is made in `append_audio` (as a streaming analyzer's), so `TurnAnalyzerUserTurnStopStrategy`
ends the turn on the audio chunk that reaches the deciding grid point; `analyze_end_of_turn` (called at the
VAD's stop) answers for the grid points already past. The policy defaults to the shipped voice-agent
operating point (`vad_turn.harness.operating_points.default_policy`); any field of `TurnModelParams`
overrides it.

Inputs. Audio only by default: the model's acoustic + timing mode. The transcript is used when given:
`update_transcript(text, final=...)` (what Pipecat's STT frames carry; `TranscriptFeeder` forwards them from
the pipeline; its words get times spread evenly over the turn's speech, as the project's pipeline spreads a
partial transcript) or `add_words(words)` with times in seconds of this analyzer's input stream (from its
first sample). `set_messages` gives the conversation so far. Audio: 16-bit PCM mono at the pipeline's
input rate (any; converted to 16 kHz once, in stream). Bad input raises (`AudioError`, `WordError`,
ValueError), as `vad_turn.fusion.runtime` does.
"""
from __future__ import annotations

import collections
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from pipecat.audio.turn.base_turn_analyzer import BaseTurnAnalyzer, BaseTurnParams, EndOfTurnState
from pipecat.audio.vad.vad_analyzer import VAD_START_SECS, VAD_STOP_SECS
from pipecat.frames.frames import Frame, InterimTranscriptionFrame, TranscriptionFrame
from pipecat.metrics.metrics import MetricsData, TurnMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, resample_stream
from vad_turn.core.config import require_range
from vad_turn.core.schema import Message, Word, check_words
from vad_turn.fusion.runtime import TurnModel, as_messages, as_words, cached_turn_model, load_turn_model
from vad_turn.harness.policy import TurnPolicy
from vad_turn.harness.query import QUERY_GRID_S, detector_query

__all__ = ["TurnModelAnalyzer", "TurnModelParams", "TranscriptFeeder"]

_POLICY_FIELDS = ("threshold", "action_delay_s", "timeout_s", "transcript_lag_s")
_KEEP = 10_000


class TurnModelParams(BaseTurnParams):
    """The analyzer's policy and timing; a field left None takes the shipped voice-agent operating point's value.

    threshold: p_eot in [0, 1]; action_delay_s, timeout_s: seconds of silence (TurnPolicy's meaning);
    transcript_lag_s: a word is shown this long after it ends (the lag the operating point was evaluated with);
    grid_s: the silence grid the model is asked on (s); vad_stop_secs: the VAD's `stop_secs` (the silence
    already past when it reports the stop); max_turn_s: the turn audio kept (older audio is dropped).
    """

    threshold: float | None = None
    action_delay_s: float | None = None
    timeout_s: float | None = None
    transcript_lag_s: float | None = None
    grid_s: float = QUERY_GRID_S
    vad_stop_secs: float = VAD_STOP_SECS
    max_turn_s: float = 60.0

    def policy(self) -> TurnPolicy:
        """The validated `TurnPolicy` (no preemptive start: Pipecat has no held reply) with the defaults filled."""
        from vad_turn.harness.operating_points import default_policy

        given = {k: getattr(self, k) for k in _POLICY_FIELDS if getattr(self, k) is not None}
        base = default_policy() if len(given) < len(_POLICY_FIELDS) else None
        kw = {k: given.get(k, getattr(base, k, None)) for k in _POLICY_FIELDS}
        return TurnPolicy(**kw, preemptive_fraction=None)

    def resolved(self) -> "TurnModelParams":
        """These params with every policy field set (checked by `TurnPolicy` and `check`)."""
        pol = self.policy()
        out = self.model_copy(update={k: getattr(pol, k) for k in _POLICY_FIELDS})
        out.check()
        return out

    def check(self) -> None:
        require_range("grid_s", self.grid_s, 0.0, 5.0, lo_open=True)
        require_range("vad_stop_secs", self.vad_stop_secs, 0.0, 10.0)
        require_range("max_turn_s", self.max_turn_s, 5.0, 3600.0)
        if self.timeout_s is not None and self.vad_stop_secs > self.timeout_s + 1e-9:
            raise ValueError(f"vad_stop_secs {self.vad_stop_secs:g} must be <= timeout_s {self.timeout_s:g}: the "
                             "VAD would report the stop after the turn should have ended")


class TurnModelAnalyzer(BaseTurnAnalyzer):
    """End of turn by the shipped fused model on Pipecat's VAD (see the module docstring).

    params: `TurnModelParams` (default: the shipped voice-agent operating point). model: a loaded `TurnModel`
    or a turn model folder (default: the shipped one, loaded once per process). sample_rate: fixes the input
    rate (default: the pipeline's, from `set_sample_rate`).
    """

    def __init__(self, *, params: TurnModelParams | None = None, model: TurnModel | str | Path | None = None,
                 sample_rate: int | None = None):
        super().__init__(sample_rate=sample_rate)
        if sample_rate is not None:  # usable on its own at once (Pipecat's set_sample_rate keeps this rate)
            self.set_sample_rate(int(sample_rate))
        self._params = (params or TurnModelParams()).resolved()
        self.policy = self._params.policy()
        if isinstance(model, TurnModel):
            self.model = model
        else:
            self.model = cached_turn_model() if model is None else load_turn_model(model)
        self._vad_start_secs = VAD_START_SECS
        self._messages: tuple[Message, ...] = ()
        self._pos = 0  # input samples appended since construction (the stream clock)
        self._resampler = None
        self._resampler_rate = 0
        self._pending_result: tuple[EndOfTurnState, MetricsData | None] | None = None
        # diagnostics, the latest _KEEP of each: one record per ended turn (stream times, p_eot, grid point); every
        # score (stream time of its grid point, silence_s, p_eot); the wall time of each model call (a batch of points)
        self.decisions: collections.deque[dict] = collections.deque(maxlen=_KEEP)
        self.scores: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=_KEEP)
        self.query_s: collections.deque[float] = collections.deque(maxlen=_KEEP)
        self._ring: list[np.ndarray] = []  # 16 kHz audio before the speech onset
        self._reset_turn()

    # -- Pipecat's interface
    @property
    def speech_triggered(self) -> bool:
        return self._triggered

    @property
    def params(self) -> TurnModelParams:
        return self._params

    def update_vad_start_secs(self, vad_start_secs: float):
        """The VAD's start_secs: the onset lies this long before the VAD reports the speech (the turn audio's origin)."""
        require_range("vad_start_secs", vad_start_secs, 0.0, 10.0)
        self._vad_start_secs = float(vad_start_secs)

    def append_audio(self, buffer: bytes, is_speech: bool) -> EndOfTurnState:
        """One chunk of 16-bit PCM mono at `sample_rate`; COMPLETE on the chunk that reaches the deciding grid point."""
        a16, n_in = self._to_16k(buffer)
        start_s = self._pos / self._rate()
        self._pos += n_in
        if is_speech:
            if not self._triggered:
                self._start_turn(start_s)
            self._speech_end_s = None  # speech resumed: the turn goes on, the silence starts over
            self._last_k = -1
            self._append(a16)
            return EndOfTurnState.INCOMPLETE
        if not self._triggered:
            self._keep_pre_speech(a16)
            return EndOfTurnState.INCOMPLETE
        if self._speech_end_s is None:
            self._mark_stop(start_s)
        self._append(a16)
        return self._decide()

    async def analyze_end_of_turn(self) -> tuple[EndOfTurnState, MetricsData | None]:
        """At the VAD's stop: the grid points already past are asked; COMPLETE when one of them ends the turn."""
        if self._pending_result is not None:
            out, self._pending_result = self._pending_result, None
            return out
        if not self._triggered:
            return EndOfTurnState.INCOMPLETE, None
        if self._speech_end_s is None:
            self._mark_stop(self._pos / self._rate())
        state = self._decide()
        if state == EndOfTurnState.COMPLETE:
            out, self._pending_result = self._pending_result, None
            return out
        return state, self._metrics(False)

    def clear(self):
        """Forget the current turn (Pipecat calls it when a turn ends)."""
        self._reset_turn()
        self._pending_result = None

    # -- the transcript and the conversation
    def update_transcript(self, text: str, *, final: bool = True) -> None:
        """The STT's text of the current turn: a final transcript is appended to the turn's finals, an interim one
        replaces the pending part. Its words get times spread evenly from the end of the previous final's words
        (or the turn's onset) to the end of the speech when the model is asked."""
        if not isinstance(text, str):
            raise ValueError(f"update_transcript: text must be a str, got {type(text).__name__}")
        toks = text.split()
        if final:
            self._final_text.extend(toks)
            self._partial_text = []
        else:
            self._partial_text = toks

    def add_words(self, words: Sequence) -> None:
        """Words of the current turn (Word / {word, start, end} / (word, start, end)) with times in seconds of this
        analyzer's input stream, appended after the words already given. Raises WordError for bad words."""
        ws = as_words(words, source="add_words")
        check_words(self._timed_words + ws, source="add_words")
        self._timed_words += ws

    def set_messages(self, messages: Sequence) -> None:
        """The conversation so far (Message or {role, content}), oldest first."""
        self._messages = as_messages(messages)

    # -- internals
    def _rate(self) -> int:
        if not self._sample_rate:
            raise AudioError("TurnModelAnalyzer: no sample rate (Pipecat sets it at start; pass sample_rate= to use "
                             "the analyzer on its own)")
        return self._sample_rate

    def _to_16k(self, buffer: bytes) -> tuple[np.ndarray, int]:
        if len(buffer) % 2:
            raise AudioError(f"TurnModelAnalyzer: {len(buffer)} bytes is not 16-bit PCM (odd length)")
        pcm = np.frombuffer(buffer, dtype=np.int16).astype(np.float32) / 32768.0
        rate = self._rate()
        if rate == SAMPLE_RATE_HZ:
            return pcm, pcm.size
        if self._resampler is None or self._resampler_rate != rate:
            self._resampler, self._resampler_rate = resample_stream(rate), rate
        return self._resampler.resample_chunk(pcm), pcm.size

    def _reset_turn(self) -> None:
        self._triggered = False
        self._chunks: list[np.ndarray] = []
        self._audio: np.ndarray | None = None  # the concatenated turn audio (cache)
        self._origin_s = 0.0  # stream time of the turn audio's first sample
        self._speech_end_s: float | None = None
        self._last_k = -1
        self._last_p: float | None = None
        self._final_text: list[str] = []
        self._partial_text: list[str] = []
        self._timed_words: tuple[Word, ...] = ()

    def _keep_pre_speech(self, a16: np.ndarray) -> None:
        self._ring.append(a16)
        keep = int((self._vad_start_secs + 0.5) * SAMPLE_RATE_HZ)
        while self._ring and sum(c.size for c in self._ring) - self._ring[0].size >= keep:
            self._ring.pop(0)

    def _start_turn(self, start_s: float) -> None:
        """The VAD reports speech `vad_start_secs` after its onset: the turn audio starts there (as far as kept)."""
        pre = np.concatenate(self._ring) if self._ring else np.zeros(0, np.float32)
        pre = pre[max(0, pre.size - int(round(self._vad_start_secs * SAMPLE_RATE_HZ))):]
        self._ring = []
        self._pending_result = None  # a decision nobody collected belongs to the turn before
        self._triggered = True
        self._origin_s = start_s - pre.size / SAMPLE_RATE_HZ
        self._chunks = [pre] if pre.size else []
        self._audio = None

    def _append(self, a16: np.ndarray) -> None:
        self._chunks.append(a16)
        self._audio = None
        held = sum(c.size for c in self._chunks)
        cap = int(self._params.max_turn_s * SAMPLE_RATE_HZ)
        if held > cap:  # drop the oldest audio: the model's acoustic window is its last few seconds
            a = np.concatenate(self._chunks)[held - cap:]
            self._origin_s += (held - cap) / SAMPLE_RATE_HZ
            self._chunks = [a]

    def _turn_audio(self) -> np.ndarray:
        if self._audio is None:
            self._audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.float32)
            self._chunks = [self._audio]
        return self._audio

    def _mark_stop(self, vad_stop_s: float) -> None:
        """The VAD reported the stop at stream time `vad_stop_s`: the speech ended `vad_stop_secs` before."""
        self._speech_end_s = max(vad_stop_s - self._params.vad_stop_secs, self._origin_s)
        self._last_k = -1

    def _words(self) -> tuple[Word, ...]:
        """The turn's words, seconds from its audio's origin: timed words, then the transcript's spread evenly."""
        o = self._origin_s
        words = tuple(Word(w.word, w.start - o, w.end - o) for w in self._timed_words)  # before it: < 0, allowed
        toks = self._final_text + self._partial_text
        if toks and self._speech_end_s is not None:
            t0 = words[-1].end if words else 0.0
            step = max(self._speech_end_s - o - t0, 1e-3) / len(toks)
            words += tuple(Word(w, t0 + i * step, t0 + (i + 1) * step) for i, w in enumerate(toks))
        return words

    def _decide(self) -> EndOfTurnState:
        """Ask every grid point not asked yet up to now; COMPLETE at the first where the policy fires."""
        pol, grid = self.policy, self._params.grid_s
        silence_s = self._pos / self._rate() - self._speech_end_s
        k_now = int(math.floor(silence_s / grid + 1e-9))
        ks = list(range(self._last_k + 1, k_now + 1))
        if not ks:
            return EndOfTurnState.INCOMPLETE
        self._last_k = k_now
        asked = [k for k in ks if k * grid < pol.timeout_s - 1e-9]  # at the timeout the turn ends anyway
        ps = dict(zip(asked, self._p_eot(asked))) if asked else {}
        for k in ks:
            p = ps.get(k)
            if p is not None:
                self._last_p = p
            if pol.fires(k * grid, p):
                self._complete(k, p)
                return EndOfTurnState.COMPLETE
        return EndOfTurnState.INCOMPLETE

    def _p_eot(self, ks: list[int]) -> list[float]:
        audio, words, grid = self._turn_audio(), self._words(), self._params.grid_s
        items = []
        for k in ks:
            t_s = self._speech_end_s - self._origin_s + k * grid
            q = detector_query(audio, words, self._messages, t_s, k * grid,
                               transcript_lag_s=self.policy.transcript_lag_s)
            items.append((q.audio, q.words, q.messages, q.silence_s))
        t = time.perf_counter()
        p = [float(x) for x in self.model.p_eot(items)]
        self.query_s.append(time.perf_counter() - t)
        self.scores.extend((self._speech_end_s + k * grid, k * grid, x) for k, x in zip(ks, p))
        return p

    def _complete(self, k: int, p: float | None) -> None:
        grid = self._params.grid_s
        self.decisions.append({"speech_end_s": self._speech_end_s, "decided_s": self._speech_end_s + k * grid,
                               "emitted_s": self._pos / self._rate(), "silence_s": k * grid, "p_eot": p,
                               "timeout": p is None or p < self.policy.threshold})
        self._pending_result = (EndOfTurnState.COMPLETE, self._metrics(True, p))
        self._reset_turn()

    def _metrics(self, complete: bool, p: float | None = None) -> TurnMetricsData:
        p = self._last_p if p is None else p
        return TurnMetricsData(processor=type(self).__name__, model="vad-turn fused", is_complete=complete,
                               probability=float("nan") if p is None else float(p),
                               e2e_processing_time_ms=1000.0 * (self.query_s[-1] if self.query_s else 0.0))


class TranscriptFeeder(FrameProcessor):
    """Forwards the STT's transcripts to a `TurnModelAnalyzer` (place it after the STT service, before the user
    aggregator): final `TranscriptionFrame`s and `InterimTranscriptionFrame`s go to `update_transcript`.
    Every frame passes on unchanged."""

    def __init__(self, analyzer: TurnModelAnalyzer, **kwargs):
        super().__init__(**kwargs)
        self.analyzer = analyzer

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.analyzer.update_transcript(frame.text, final=True)
        elif isinstance(frame, InterimTranscriptionFrame):
            self.analyzer.update_transcript(frame.text, final=False)
        await self.push_frame(frame, direction)
