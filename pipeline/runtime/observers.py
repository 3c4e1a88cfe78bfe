"""Observers: see every frame with its timestamp and write per-turn latency records (STYLE rule 7).

`FrameLog` keeps (t_s, source, frame) for every frame (tests assert on it). `LatencyObserver`
builds one record per agent response (= per EndOfTurn id) with the clock times of:
user_stopped (VAD's UserStoppedSpeaking before the decision), stt_final (the last final
Transcript before the decision), eot (the confirming EndOfTurn), eot_tentative (a preemptive one),
first_token (LLMToken), first_text (AgentText), first_tts (TTSAudio), first_played
(AgentSpeaking start), decided (when the policy fired; the EndOfTurn waits for the final
transcript, which in the batch cascade comes later), interrupt (its time and reason), stopped (AgentSpeaking stop, reason).
How late the machine was, in the audio's own time (given the pipeline's clock, `bind_clock`): audio_offset_s,
the largest (clock time the VAD handed an `AudioIn` on - the frame's end stream time) from the previous
decision to this one (the audio the decision judged; after it, the wall clock times the reply), and answer_offset_s, the turn processor's largest (clock time a
detector answer arrived - stream time of the audio it judged); less the clock time of stream time 0 each is
a lag (`pipeline.bench.e2e.stream_lags`).
Latencies are differences of these; the scenario player adds the ground truth (when the user
really stopped speaking) to turn them into end-to-end figures.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .frames import (AgentSpeaking, AgentText, AudioIn, EndOfTurn, Frame, Interrupt, LLMToken, ResumeOutput, Transcript,
                     TTSAudio, UserStartedSpeaking, UserStoppedSpeaking)


class FrameLog:
    def __init__(self) -> None:
        self.frames: list[tuple[float, str, Frame]] = []

    def on_frame(self, frame: Frame, source: str) -> None:
        self.frames.append((frame.t_s, source, frame))

    def of(self, *types) -> list[Frame]:
        return [f for _, _, f in self.frames if isinstance(f, types)]


@dataclass
class ResponseRecord:
    response_id: int
    text: str = ""
    user_stopped: float | None = None
    stt_final: float | None = None
    eot: float | None = None
    eot_tentative: float | None = None
    decided: float | None = None  # when the policy fired (eot can be later in the cascade: batch STT)
    decided_stream_s: float | None = None  # input stream (media) time at which the policy fired
    audio_offset_s: float | None = None  # max(clock time the VAD had a frame - its end stream time), see above
    answer_offset_s: float | None = None  # max(clock time a detector answer arrived - stream time it judged)
    eot_silence_s: float | None = None
    p_eot: float | None = None
    first_token: float | None = None
    first_text: float | None = None
    first_tts: float | None = None
    first_played: float | None = None
    interrupt: float | None = None
    interrupt_reason: str = ""
    stopped: float | None = None
    stop_reason: str = ""
    paused: list[float] = field(default_factory=list)
    resumed: list[float] = field(default_factory=list)
    reply: str = ""
    bridged: bool = False  # a bridging phrase was said (slow tool or LLM)

    def as_dict(self) -> dict:
        return asdict(self)


class LatencyObserver:
    def __init__(self) -> None:
        self.records: dict[int, ResponseRecord] = {}
        self.onsets: list[float] = []  # UserStartedSpeaking clock times
        self.interrupts: list[Interrupt] = []
        self.resumes: list[ResumeOutput] = []
        self.agent_events: list[AgentSpeaking] = []
        self._last_stop: float | None = None
        self._last_final: float | None = None
        self._clock = None
        self._audio_offset_s: float | None = None  # since the last decision

    def bind_clock(self, clock) -> None:
        """The pipeline's clock (`Pipeline` calls this): audio lateness is measured on it."""
        self._clock = clock

    def _audio_handled(self, frame: AudioIn) -> None:
        off = self._clock.now() - frame.end_stream_s
        self._audio_offset_s = off if self._audio_offset_s is None else max(self._audio_offset_s, off)

    def rec(self, rid: int) -> ResponseRecord:
        return self.records.setdefault(rid, ResponseRecord(rid))

    def on_frame(self, frame: Frame, source: str) -> None:
        t = frame.t_s
        if isinstance(frame, AudioIn):
            if source == "vad" and self._clock is not None:
                self._audio_handled(frame)
        elif isinstance(frame, UserStartedSpeaking):
            self.onsets.append(t)
        elif isinstance(frame, UserStoppedSpeaking):
            if source == "vad":
                self._last_stop = t
        elif isinstance(frame, Transcript):
            if frame.final and source == "stt":
                self._last_final = t
        elif isinstance(frame, EndOfTurn) and source == "turn":
            r = self.rec(frame.turn_id)
            if frame.tentative:
                r.eot_tentative = r.eot_tentative or t
            elif r.eot is None:
                r.eot, r.text, r.eot_silence_s, r.p_eot = t, frame.text, frame.silence_s, frame.p_eot
                r.decided = frame.decided_t_s if frame.decided_t_s is not None else t
                r.decided_stream_s = frame.decided_stream_t_s if frame.decided_stream_t_s is not None else frame.stream_t_s
                r.user_stopped, r.stt_final = self._last_stop, self._last_final
                r.audio_offset_s, r.answer_offset_s = self._audio_offset_s, frame.answer_offset_s
                self._audio_offset_s = None
        elif isinstance(frame, LLMToken) and source == "llm":
            r = self.rec(frame.response_id)
            r.first_token = r.first_token or t
        elif isinstance(frame, AgentText) and source == "aggregator":
            r = self.rec(frame.response_id)
            r.first_text = r.first_text or t
        elif isinstance(frame, AgentText) and source == "llm" and frame.bridge:
            r = self.rec(frame.response_id)
            r.first_text = r.first_text or t
            r.bridged = True
        elif isinstance(frame, AgentText) and source == "tts":
            r = self.rec(frame.response_id)
            r.reply = (r.reply + " " + frame.text).strip()
        elif isinstance(frame, TTSAudio) and source == "tts":
            r = self.rec(frame.response_id)
            r.first_tts = r.first_tts or t
        elif isinstance(frame, AgentSpeaking):
            self.agent_events.append(frame)
            if frame.response_id < 0:
                return
            r = self.rec(frame.response_id)
            if frame.speaking and frame.reason == "start":
                r.first_played = r.first_played or t
            elif not frame.speaking and frame.reason == "paused":
                r.paused.append(t)
            if not frame.speaking and r.stopped is None and frame.reason in ("paused", "interrupted", "done"):
                if frame.reason != "done" or r.first_played is not None:
                    r.stopped, r.stop_reason = t, frame.reason
            elif frame.speaking and frame.reason == "resume":
                r.resumed.append(t)
                r.stopped, r.stop_reason = None, ""
        elif isinstance(frame, Interrupt):
            self.interrupts.append(frame)
            r = self.rec(frame.response_id)
            r.interrupt, r.interrupt_reason = t, frame.reason
        elif isinstance(frame, ResumeOutput):
            self.resumes.append(frame)

    def table(self) -> list[dict]:
        return [self.records[k].as_dict() for k in sorted(self.records)]
