"""Turn-taking: end-of-turn decisions, preemptive starts and barge-in arbitration.

The policy is `vad_turn.harness.policy.TurnPolicy` (the harness sweeps the same three numbers): during a
silence it fires at the first moment with silence >= `action_delay_s` and p_eot >= `threshold`, or at
`timeout_s`. VAD-only is the special case p_eot = 1 with action_delay_s = stop_silence_s.
The detector (any `vad_turn.harness.detectors.Detector`) is queried on a `grid_s` grid of silence in the
processor's executor, so a slow model delays decisions but never the audio. Each query is
`vad_turn.harness.query.detector_query`, the function the evaluation harness builds its queries with:
the turn's audio so far, the words that ended at least `transcript_lag_s` ago (the STT's measured lag,
the lag the policy's operating point was evaluated with), the messages, the silence. Once the turn is
decided nothing more is asked (the decision makes further scores useless), and between the first grid point
and the action delay the detector is asked only while the preemptive start is still to come (a score there
cannot end the turn), so the held reply does not share the CPU with queries whose answer changes nothing.

Barge-in (user speech while agent audio plays). The output pauses by itself at the user's onset
(`UserStartedSpeaking`), so the agent stops within one audio chunk. This processor then decides,
within a bounded time, whether the speech was a backchannel (`is_backchannel`):
- a word from `INTERRUPT_WORDS` ("stop", "wait", "no", ...) in the final transcript; in a partial, a
  command word (`COMMAND_WORDS`), another interrupt word within two or more words, or three or more words
  that are not all backchannel words -> `Interrupt(reason="barge-in")`: buffered audio flushed,
  LLM cancelled, the speech starts a new turn;
- speech still going after `backchannel_max_s` -> Interrupt (too long for "uh-huh", "yeah", "right", "okay");
- the speech stopped and its final transcript is a backchannel -> `ResumeOutput`: the agent carries on
  where it paused and the words are dropped (they are not a turn). A backchannel is all backchannel /
  filler words (`schema.BARGE_IN_BACKCHANNEL_WORDS`), or at most two words in at most
  `backchannel_short_s` of speech: STT is unreliable on such short clips (pocketsphinx hears espeak's
  "uh-huh" as "aha", "oh ha" or "op op", and "okay" as "o que"), so short speech without an
  interrupt word is taken as a backchannel. If no final transcript arrives within `final_wait_s`
  after the stop, the latest partial decides.
The agent is therefore silent for at most about backchannel_max_s + final_wait_s on a backchannel,
and never interrupted by one (LiveKit Agents resumes after "false interruptions" the same way).

User speech while a response is being prepared but not yet heard (a preemptive start or a false
cut-off) cancels it at once (`Interrupt(reason="user-resumed")`); the turn goes on and its new
words are appended.
"""
from __future__ import annotations

import asyncio
import math
import time
import numpy as np

from vad_turn.core.schema import BARGE_IN_BACKCHANNEL_WORDS, Message, Word, normalize_words
from vad_turn.harness.policy import TurnPolicy
from vad_turn.harness.query import QUERY_GRID_S, detector_query

from ..frames import (
    AgentSpeaking,
    AudioIn,
    EndOfStream,
    EndOfTurn,
    Interrupt,
    ResumeOutput,
    Transcript,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from .base import Processor


INTERRUPT_WORDS = frozenset({"stop", "wait", "no", "hold", "hang", "sorry", "excuse", "hey", "but", "actually",
                             "what", "pardon", "listen", "shut", "enough", "cancel"})
# Commands that stop the agent even as the first word of a partial. The other interrupt words open a
# turn ("but", "no", "what", "actually") and are also what PocketSphinx's first partial of a short
# backchannel often is (festival's "okay" starts as "but"), so a partial needs a second word with them.
COMMAND_WORDS = frozenset({"stop", "wait", "hold", "hang", "cancel", "enough", "shut", "pardon", "excuse"})


def turn_relative_words(words, start_s: float, audio_s: float | None) -> tuple[Word, ...]:
    """`words` (stream times) as seconds from the turn audio's first sample, inside [0, audio_s].

    The STT's segment starts with `preroll_s` of audio from before the VAD fired, and its last word can
    end after the audio the turn processor holds (PocketSphinx places word ends on its own frames), so a
    word may fall outside the turn's audio by a few hundred ms; detectors that take audio refuse such
    words (`schema.check_words`), which crashed the turn processor. They are clipped to the audio."""
    hi = math.inf if audio_s is None else max(float(audio_s), 0.0)
    out = []
    for w in words:
        a = min(w.start - start_s, hi)
        out.append(Word(w.word, a, min(max(w.end - start_s, a), hi)))
    return tuple(out)


def backchannel_only(text: str) -> bool:
    """True when every word of `text` is a backchannel or filler word (empty text counts: nothing was said)."""
    return all(w in BARGE_IN_BACKCHANNEL_WORDS for w in normalize_words(text.split()))


def is_backchannel(text: str, speech_s: float, short_s: float = 0.6) -> bool:
    """The barge-in rule for finished speech of `speech_s` seconds (see the module docstring)."""
    words = normalize_words(text.split())
    if any(w in INTERRUPT_WORDS for w in words):
        return False
    return backchannel_only(text) or (speech_s <= short_s and len(words) <= 2)


def clearly_not_backchannel(partial: str) -> bool:
    """A partial transcript that already settles it: a command word ("stop", "wait"), another interrupt word
    with at least one more word after the first ("but i", "no no"), or 3+ words not all backchannels.
    The final transcript is judged by `is_backchannel`, where any interrupt word interrupts."""
    words = normalize_words(partial.split())
    return (any(w in COMMAND_WORDS for w in words) or (len(words) >= 2 and any(w in INTERRUPT_WORDS for w in words))
            or (len(words) >= 3 and not backchannel_only(partial)))


# Queued by a detector answer's callback (never emitted): the processor decides on the answer when it arrives.
_ANSWER = object()


class TurnProcessor(Processor):
    name = "turn"

    def __init__(self, policy: TurnPolicy, detector=None, *, grid_s: float = QUERY_GRID_S, backchannel_max_s: float = 0.8,
                 final_wait_s: float = 0.4, barge_in: bool = True, backchannel_short_s: float = 0.6,
                 transcript_lag_s: float | None = None):
        super().__init__()
        if policy.threshold is None:
            raise ValueError("TurnProcessor needs a resolved policy (TurnPolicy.resolve: the detector's threshold)")
        self.policy, self.detector, self.grid_s = policy, detector, float(grid_s)
        self.transcript_lag_s = float(policy.transcript_lag_s if transcript_lag_s is None else transcript_lag_s)
        self.backchannel_max_s, self.final_wait_s, self.barge_in = float(backchannel_max_s), float(final_wait_s), barge_in
        self.backchannel_short_s = float(backchannel_short_s)
        self.turn_id = 0
        self._p_gen = 0  # increases whenever scores in flight become stale (never reset)
        self._new_turn()
        self.user_speaking = False
        self.now_stream_s = 0.0
        self.barge: dict | None = None
        self._dropped: set[int] = set()  # STT segments that were backchannels
        self.query_s: list[float] = []  # wall time of each detector query (diagnostics)
        self.query_cpu_s: list[float] = []  # CPU time of each detector query on its thread

    def _new_turn(self) -> None:
        self.finals: dict[int, Transcript] = {}
        self.partials: dict[int, str] = {}
        self.speech_end_s: float | None = None
        self.awaiting_final = False
        self.fired = False
        self.tentative_sent = False
        self._decided_t: float | None = None
        self._decided_stream_s: float | None = None
        self.p_eot: float | None = None
        self._p_k: int | None = None  # the grid point p_eot was asked at
        self._p_gen += 1
        self._pending: asyncio.Future | None = None
        self._last_k = -1
        self._audio: list[np.ndarray] = []
        self._audio_start_s: float | None = None
        self._answer_offset_s: float | None = None  # max(answer's arrival - its CPU time - stream time it judged)

    # -- transcript of the current turn
    def text(self) -> str:
        segs = sorted(set(self.finals) | set(self.partials))
        return " ".join((self.finals[s].text if s in self.finals else self.partials[s]) for s in segs).strip()

    def words(self) -> tuple[Word, ...]:
        return tuple(w for s in sorted(self.finals) for w in self.finals[s].words)

    @property
    def has_content(self) -> bool:
        return bool(self.text())

    # -- system frames
    def on_system(self, frame) -> None:
        if isinstance(frame, UserStartedSpeaking):
            self.user_speaking = True
            self._decided_t = self._decided_stream_s = None
            self._p_gen += 1  # any running detector query is stale now
            self.p_eot, self._p_k, self._last_k = None, None, -1
            active = self.conv.active_response
            if self.barge_in and self.conv.agent_speaking and active is not None:
                self.barge = {"onset_s": frame.stream_t_s, "response_id": active, "segment": None}
            elif self.fired or self.tentative_sent:
                self._cancel_unheard("user-resumed")
        elif isinstance(frame, AgentSpeaking) and frame.response_id == self.turn_id and self.fired:
            if frame.speaking or frame.reason == "done":  # the agent answered: the user turn is committed
                self.turn_id += 1
                self._new_turn()

    def _cancel_unheard(self, reason: str) -> None:
        self.broadcast(Interrupt(self.now(), self.turn_id, reason))
        self.turn_id += 1
        self.fired = self.tentative_sent = False

    # -- queued frames
    async def process(self, frame) -> None:
        if isinstance(frame, AudioIn):
            self.now_stream_s = frame.end_stream_s
            # once the turn's audio started, every chunk is kept (the silence before the final transcript too: a
            # gap there would shorten the silence the detector hears and push the words past the audio's end)
            if self.user_speaking or self.has_content or self._audio_start_s is not None:
                if self._audio_start_s is None:
                    self._audio_start_s = frame.stream_t_s
                if getattr(self.detector, "needs_audio", False):
                    self._audio.append(frame.audio)
            if self.barge is not None:
                self._barge_tick()
            else:
                await self._policy_tick_if_waiting()
        elif frame is _ANSWER:  # a detector answer arrived: decide on it now, not at the next audio chunk
            await self._policy_tick_if_waiting()
        elif isinstance(frame, UserStoppedSpeaking):
            self.user_speaking = False
            self.speech_end_s = frame.stream_t_s
            self.awaiting_final = True
            if self.barge is not None:
                self.barge["stopped_s"] = frame.stream_t_s
        elif isinstance(frame, Transcript):
            self._transcript(frame)
            await self.push(frame)  # the LLM processor prefetches predictable tool calls from partials
            await self._policy_tick_if_waiting()  # a final the decision waited for: decide now
        else:
            await self.push(frame)

    def _transcript(self, tr: Transcript) -> None:
        if tr.segment in self._dropped:
            return
        if self.barge is not None and self.barge["segment"] is None:
            self.barge["segment"] = tr.segment
        if tr.final:
            self.finals[tr.segment] = tr
            self.partials.pop(tr.segment, None)
            self.awaiting_final = False
            self.p_eot, self._p_k, self._last_k = None, None, -1
        else:
            self.partials[tr.segment] = tr.text
        if self.barge is not None and tr.segment == self.barge["segment"]:
            if tr.final:
                speech_s = self.barge.get("stopped_s", self.now_stream_s) - self.barge["onset_s"]
                self._barge_decide(interrupt=not is_backchannel(tr.text, speech_s, self.backchannel_short_s),
                                   text=tr.text)
            elif clearly_not_backchannel(tr.text):
                self._barge_decide(interrupt=True, text=tr.text)

    def _barge_tick(self) -> None:
        b = self.barge
        if self.user_speaking and self.now_stream_s - b["onset_s"] > self.backchannel_max_s:
            self._barge_decide(interrupt=True, text="")
        elif not self.user_speaking and "stopped_s" in b and self.now_stream_s - b["stopped_s"] > self.final_wait_s:
            seg = b["segment"]
            text = self.partials.get(seg, "") if seg is not None else ""
            speech_s = b["stopped_s"] - b["onset_s"]
            self._barge_decide(interrupt=not is_backchannel(text, speech_s, self.backchannel_short_s), text=text)

    def _barge_decide(self, *, interrupt: bool, text: str) -> None:
        b, self.barge = self.barge, None
        if interrupt:
            self.broadcast(Interrupt(self.now(), b["response_id"], "barge-in"))
            return
        seg = b["segment"]  # a backchannel is not a turn: forget its words
        if seg is not None:
            self._dropped.add(seg)
            self.finals.pop(seg, None)
            self.partials.pop(seg, None)
        if not self.has_content:
            self.speech_end_s = None
            self.awaiting_final = False
        self.broadcast(ResumeOutput(self.now(), b["response_id"], text))

    async def _policy_tick_if_waiting(self) -> None:
        """`_policy_tick` while a user turn is in its silence and not decided yet (no barge-in being arbitrated)."""
        if (self.barge is None and not self.user_speaking and not self.fired and self.speech_end_s is not None
                and self.has_content):
            await self._policy_tick()

    async def _policy_tick(self) -> None:
        silence_s = self.now_stream_s - self.speech_end_s
        p = self.p_eot
        if self.detector is not None and self.policy.threshold > 0:
            self._maybe_query(silence_s)
            if self._pending is not None and self._pending.done():
                (gen, on_partial, k), val = self._pending.result()
                self._pending = None
                if gen == self._p_gen and not (on_partial and not self.awaiting_final):
                    self.p_eot = p = val  # (a score of partial words is dropped once the final is in)
                    self._p_k = k
        elif self.detector is None:
            p = 1.0
        ready = not self.awaiting_final or silence_s - self.policy.timeout_s > self.final_wait_s
        pre = self.policy.preemptive_threshold
        if pre is not None and not self.tentative_sent and ready and p is not None and p >= pre:
            self.tentative_sent = True
            await self._emit(True, p, silence_s)
        # as in the harness, only a score asked at or after the action delay can end the turn
        acting = p if p is None or self.detector is None or (
            self._p_k is not None and self._p_k * self.grid_s >= self.policy.action_delay_s - 1e-9) else None
        if self.policy.fires(silence_s, acting) and self._decided_t is None:
            self._decided_t, self._decided_stream_s = self.now(), self.now_stream_s
        if ready and self._decided_t is not None:
            self.fired = True
            await self._emit(False, 1.0 if p is None else p, silence_s)

    def _query_words(self) -> tuple[Word, ...]:
        """Final words, plus the pending segment's partial words spread evenly up to the speech end."""
        words = self.words()
        pending = [s for s in sorted(self.partials) if s not in self.finals]
        if pending and self.speech_end_s is not None:
            toks = self.partials[pending[-1]].split()
            t0 = words[-1].end if words else (self._audio_start_s or 0.0)
            step = max(self.speech_end_s - t0, 1e-3) / max(len(toks), 1)
            words += tuple(Word(w, t0 + i * step, t0 + (i + 1) * step) for i, w in enumerate(toks))
        return words

    def _maybe_query(self, silence_s: float) -> None:
        k = int(math.floor(silence_s / self.grid_s + 1e-9))
        if k <= self._last_k or self._pending is not None:
            return
        if self.awaiting_final and not self.partials:
            return
        k_act = int(math.ceil(self.policy.action_delay_s / self.grid_s - 1e-9))
        if 0 < k < k_act and (self.tentative_sent or self.policy.preemptive_fraction is None):
            return  # a score here can neither end the turn nor start the reply: the CPU goes to the held reply
        self._last_k = k
        det = self.detector
        audio = np.concatenate(self._audio) if getattr(det, "needs_audio", False) and self._audio else None
        msgs = tuple(Message(m["role"], m["content"]) for m in self.conv.messages if m["role"] != "system")
        t0 = self._audio_start_s or 0.0  # detectors see times from the start of the turn's audio
        t_s = self.speech_end_s + k * self.grid_s - t0  # the grid point's time (<= now), as the harness asks
        # visibility is judged on the words' own ends (a word ending after t_s is not shown, as in the harness)
        words = turn_relative_words(self._query_words(), t0, None)
        q = detector_query(audio, words, msgs, t_s, k * self.grid_s, transcript_lag_s=self.transcript_lag_s,
                           needs_audio=audio is not None, needs_words=getattr(det, "needs_words", True))
        gen = (self._p_gen, self.awaiting_final, k)

        def query():
            t, c = time.perf_counter(), time.thread_time()
            p = float(det.predict(q.audio, q.words, q.messages, q.silence_s))
            self.query_cpu_s.append(time.thread_time() - c)
            self.query_s.append(time.perf_counter() - t)
            return gen, p

        self._pending = asyncio.ensure_future(self.run_blocking(query))
        self._pending.add_done_callback(lambda _, s=self.now_stream_s: self._answered(s))

    def _answered(self, query_stream_s: float) -> None:
        """A detector answer arrived (on the event loop): note how far behind the audio it judged it came, less the
        detector's own compute time (a slow detector is slow, which its decisions and e2e show; the overload
        verdict is about the machine falling behind: answers waiting for a busy CPU or asked late). The compute is
        the query's CPU time on its thread: a neighbour holding the cores stretches its wall time, not that."""
        off = self.now() - query_stream_s - (self.query_cpu_s[-1] if self.query_cpu_s else 0.0)
        self._answer_offset_s = off if self._answer_offset_s is None else max(self._answer_offset_s, off)
        self.queue.put_nowait(_ANSWER)  # in order with the frames: process() acts on the answer at once

    async def _emit(self, tentative: bool, p: float, silence_s: float) -> None:
        await self.push(EndOfTurn(self.now(), self.turn_id, self.text(), float(p), float(silence_s), self.now_stream_s,
                                  tentative, self.words(), None if tentative else self._decided_t,
                                  None if tentative else self._decided_stream_s, self._answer_offset_s))
