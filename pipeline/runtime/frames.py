"""The pipeline's one frame vocabulary (see ../shared/STYLE.md rule 5).

Every frame is a frozen dataclass whose `t_s` is the pipeline clock's monotonic time (seconds)
when the frame was made. Three kinds:

- system frames (`SystemFrame`) are broadcast directly to every processor and observer at once,
  bypassing the queues: `UserStartedSpeaking`, `Interrupt`, `AgentSpeaking`, `ResumeOutput`;
- data frames flow through the queues in order: `AudioIn`, `UserStoppedSpeaking`, `Transcript`,
  `LLMToken`, `AgentText`, `TTSAudio`;
- control frames also flow in order and delimit work: `EndOfTurn`, `EndOfResponse`, `EndOfStream`.

Stream times (`stream_t_s`) are seconds of input audio since the start of the input stream, the
clock the turn policy runs on; `t_s` is wall (or test) clock time, the clock latency is measured on.
`response_id` numbers agent responses; response k answers the user turn that ended with
`EndOfTurn(turn_id=k)`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vad_turn.core.schema import Word


@dataclass(frozen=True)
class Frame:
    t_s: float


@dataclass(frozen=True)
class SystemFrame(Frame):
    """Marker base: broadcast to everyone at once, never queued."""


# ----------------------------------------------------------------------------- system


@dataclass(frozen=True)
class UserStartedSpeaking(SystemFrame):
    """The VAD heard the user start; `stream_t_s` is the estimated onset in the input stream."""

    stream_t_s: float


@dataclass(frozen=True)
class Interrupt(SystemFrame):
    """Cancel response `response_id`: flush its buffered audio, cancel its LLM call, reset STT.

    reason: "barge-in" (user spoke over the agent), "user-resumed" (the user went on before the
    agent was heard; a preemptive or falsely cut-off response), or "stop".
    """

    response_id: int
    reason: str


@dataclass(frozen=True)
class AgentSpeaking(SystemFrame):
    """Agent audio started (`speaking=True`) or stopped playing; reason: "start", "resume",
    "done", "paused" (user onset during agent audio), "interrupted"."""

    response_id: int
    speaking: bool
    reason: str


@dataclass(frozen=True)
class ResumeOutput(SystemFrame):
    """The user's speech over the agent was a backchannel (`text`): resume the paused audio."""

    response_id: int
    text: str


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True, eq=False)
class AudioIn(Frame):
    """audio: float32 (n,) in [-1, 1] at `sample_rate_hz` (int16 and (n, channels) arrays are
    converted by the VAD processor); covers stream time [stream_t_s, stream_t_s + n / rate)."""

    audio: np.ndarray
    sample_rate_hz: int
    stream_t_s: float

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.sample_rate_hz

    @property
    def end_stream_s(self) -> float:
        return self.stream_t_s + self.duration_s


@dataclass(frozen=True)
class UserStoppedSpeaking(Frame):
    """The VAD's hangover passed; `stream_t_s` is the end of the last speech frame."""

    stream_t_s: float


@dataclass(frozen=True)
class Transcript(Frame):
    """STT output for the current speech segment (`segment` counts VAD segments from 0).

    final=False: a partial hypothesis that may still change; final=True: the segment's final text.
    words: (Word,) with times in input-stream seconds (empty when the engine gives none).
    """

    text: str
    final: bool
    segment: int
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class LLMToken(Frame):
    response_id: int
    text: str


@dataclass(frozen=True)
class AgentText(Frame):
    """A piece of the agent's reply (a clause, or the whole reply in the cascade) on its way to
    TTS, then to the output. spoken=False: TTS failed, the text is delivered as text only.
    bridge=True: a bridging phrase ("Let me pull that up.") rather than the LLM's words."""

    response_id: int
    text: str
    spoken: bool = True
    bridge: bool = False


@dataclass(frozen=True, eq=False)
class TTSAudio(Frame):
    """audio: float32 (n,) 16 kHz mono in [-1, 1], normally one 20 ms chunk."""

    response_id: int
    audio: np.ndarray


# ----------------------------------------------------------------------------- control


@dataclass(frozen=True)
class EndOfTurn(Frame):
    """The turn policy decided the user finished turn `turn_id` (tentative=True: p_eot passed only
    the lower preemptive threshold; the LLM may start but nothing is played until confirmed).

    text: the turn's transcript; silence_s: silence at the decision; p_eot: the detector's last
    score (1.0 for VAD-only); stream_t_s: stream time of the decision."""

    turn_id: int
    text: str
    p_eot: float
    silence_s: float
    stream_t_s: float
    tentative: bool = False
    words: tuple[Word, ...] = field(default=(), compare=False)
    decided_t_s: float | None = None  # clock time the policy fired (t_s can be later: waiting for the final transcript)
    decided_stream_t_s: float | None = None  # stream (media) time the policy fired: what verdicts are judged on
    # latest arrival of the detector's answers this turn, as max(clock time an answer arrived - stream time of the
    # audio it judged); less the clock time of stream time 0 it is how late they came (`pipeline.bench.e2e.stream_lags`)
    answer_offset_s: float | None = None


@dataclass(frozen=True)
class EndOfResponse(Frame):
    """No more tokens / text / audio will follow for `response_id` (it may have been cancelled)."""

    response_id: int
    cancelled: bool = False


@dataclass(frozen=True)
class EndOfStream(Frame):
    """The input ended; every processor forwards it after finishing its work and stops."""


SYSTEM_FRAMES = (UserStartedSpeaking, Interrupt, AgentSpeaking, ResumeOutput)
DATA_FRAMES = (AudioIn, UserStoppedSpeaking, Transcript, LLMToken, AgentText, TTSAudio)
CONTROL_FRAMES = (EndOfTurn, EndOfResponse, EndOfStream)
