"""Turn and barge-in logic as frame sequences on a manual clock (STYLE rule 8): script the input
frames, assert which frames come out and when."""
from __future__ import annotations

import asyncio

import numpy as np
import pytest

from pipeline.runtime.clock import ManualClock
from pipeline.runtime.frames import (
    AgentSpeaking,
    AudioIn,
    EndOfResponse,
    EndOfStream,
    EndOfTurn,
    Interrupt,
    ResumeOutput,
    Transcript,
    TTSAudio,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from pipeline.runtime.observers import FrameLog
from pipeline.runtime.processors.base import Conversation, Pipeline
from pipeline.runtime.processors.speech import OutputProcessor
from pipeline.runtime.processors.turn import (
    TurnProcessor,
    backchannel_only,
    clearly_not_backchannel,
    is_backchannel,
)
from vad_turn.core.schema import Word, is_backchannel_text, pause_context_of
from vad_turn.harness.policy import TurnPolicy

CHUNK_S = 0.02


class PauseContextDetector:
    """A real rule-based detector: a turn whose last word is a filler or conjunction is unfinished."""

    name = "pause-context"
    needs_audio = False
    needs_words = True

    def predict(self, audio, words, messages, silence_s: float) -> float:
        if not words:
            return 0.5
        return 0.1 if pause_context_of(words[-1].word) != "none" else 0.9


def words_of(text: str, start_s: float) -> tuple[Word, ...]:
    return tuple(Word(w, start_s + 0.3 * i, start_s + 0.3 * i + 0.25) for i, w in enumerate(text.split()))


class Script:
    """Drives a pipeline on a ManualClock in 20 ms steps; input frames are fed at scripted stream times."""

    def __init__(self, procs, conv: Conversation | None = None):
        self.clock = ManualClock()
        self.log = FrameLog()
        self.p = Pipeline(procs, self.clock, observers=[self.log], conversation=conv)
        self.stream_s = 0.0

    async def start(self):
        await self.p.start()

    async def tick(self, n: int = 1):
        for _ in range(n):
            await self.clock.advance(CHUNK_S)
            self.p.feed(AudioIn(self.clock.now(), np.zeros(320, np.float32), 16000, self.stream_s))
            self.stream_s += CHUNK_S
            await self.clock.settle()
            await asyncio.sleep(0.003)  # detector queries run on a real thread: let them finish
            await self.clock.settle()

    def start_speech(self):
        self.p.broadcast(UserStartedSpeaking(self.clock.now(), self.stream_s), "vad")

    def stop_speech(self, text: str, segment: int):
        self.p.feed(UserStoppedSpeaking(self.clock.now(), self.stream_s))
        # the words inside the speech that just stopped (the last ends 50 ms before the stop)
        self.p.feed(Transcript(self.clock.now(), text, True, segment,
                               words_of(text, self.stream_s - 0.3 * len(text.split()))))

    async def finish(self):
        self.p.feed(EndOfStream(self.clock.now()))
        for _ in range(50):
            await self.clock.advance(CHUNK_S)
            if all(t.done() for t in self.p._tasks):
                break
        await self.p.wait(5.0)


async def hesitation(policy: TurnPolicy, detector) -> list[EndOfTurn]:
    """User: "i went to the store and" 1.0 s, 0.8 s hesitation, "bought some milk" 0.8 s, then silence."""
    s = Script([TurnProcessor(policy, detector, transcript_lag_s=0.0)])  # the script's words are final at once
    await s.start()
    s.start_speech()
    await s.tick(50)
    s.stop_speech("i went to the store and", 0)
    await s.tick(40)  # 0.8 s hesitation
    s.start_speech()
    await s.tick(40)
    s.stop_speech("bought some milk", 1)
    await s.tick(100)
    await s.finish()
    return s.log.of(EndOfTurn)


@pytest.mark.timeout(60)
def test_vad_only_cuts_off_a_hesitation_that_the_semantic_policy_waits_through():
    eots = asyncio.run(hesitation(TurnPolicy(stop_silence_s=0.6, preemptive_fraction=None).vad_only(), None))
    # VAD-only fires 0.6 s into the 0.8 s hesitation: a false cut-off, then again after the real end
    assert [e.text for e in eots] == ["i went to the store and", "i went to the store and bought some milk"]
    assert eots[0].silence_s == pytest.approx(0.6, abs=CHUNK_S + 1e-6)
    assert eots[0].t_s == pytest.approx(1.0 + 0.6, abs=2 * CHUNK_S)
    interrupted = eots[1].turn_id != eots[0].turn_id
    assert interrupted  # the cut-off response got a new id once the user went on

    eots = asyncio.run(hesitation(TurnPolicy(threshold=0.5, action_delay_s=0.2, timeout_s=1.5, preemptive_fraction=None), PauseContextDetector()))
    assert [e.text for e in eots] == ["i went to the store and bought some milk"]
    end_s = 1.0 + 0.8 + 0.8
    assert eots[0].p_eot == pytest.approx(0.9)
    # fires at the first 0.1 s grid point >= the 0.2 s action delay, within one chunk of it
    assert eots[0].t_s - end_s == pytest.approx(0.2, abs=2 * CHUNK_S + 1e-6)


@pytest.mark.timeout(60)
def test_semantic_timeout_ends_a_turn_the_detector_never_accepts():
    async def go():
        s = Script([TurnProcessor(TurnPolicy(0.5, 0.2, 1.0, preemptive_fraction=None), PauseContextDetector(),
                                  transcript_lag_s=0.0)])
        await s.start()
        s.start_speech()
        await s.tick(25)
        s.stop_speech("and then um", 0)
        await s.tick(70)
        await s.finish()
        return s.log.of(EndOfTurn)

    eots = asyncio.run(go())
    assert len(eots) == 1 and eots[0].p_eot == pytest.approx(0.1)
    assert eots[0].silence_s == pytest.approx(1.0, abs=CHUNK_S + 1e-6)


async def agent_speaking_then(user_words: list[tuple[int, str, bool]], *, speak_ticks: int = 20,
                              hold_ticks: int = 60, n_chunks: int = 100):
    """Agent plays response 0 (n_chunks x 20 ms); after 0.4 s the user speaks for `speak_ticks` chunks.

    user_words: (tick after onset, text, final) transcripts of the user's speech.
    """
    conv = Conversation()
    turn = TurnProcessor(TurnPolicy(stop_silence_s=0.6, preemptive_fraction=None).vad_only(), None, backchannel_max_s=0.8, final_wait_s=0.4)
    out = OutputProcessor()
    s = Script([turn, out], conv)
    await s.start()
    conv.active_response = 0
    turn.turn_id, turn.fired = 0, True
    for _ in range(n_chunks):
        s.p.feed(TTSAudio(s.clock.now(), 0, np.full(320, 0.1, np.float32)))
    s.p.feed(EndOfResponse(s.clock.now(), 0))
    await s.tick(20)
    assert conv.agent_speaking
    onset_t = s.clock.now()
    s.start_speech()
    by_tick = {k: (text, final) for k, text, final in user_words}
    for k in range(speak_ticks + hold_ticks):
        if k == speak_ticks:
            s.p.feed(UserStoppedSpeaking(s.clock.now(), s.stream_s))
        if k in by_tick:
            text, final = by_tick[k]
            s.p.feed(Transcript(s.clock.now(), text, final, 1))
        await s.tick()
    await s.finish()
    return s, out, onset_t


def _agent_events(s):
    return [(round(f.t_s, 3), f.speaking, f.reason) for f in s.log.of(AgentSpeaking)]


@pytest.mark.timeout(60)
def test_barge_in_pauses_within_one_chunk_then_interrupts_and_flushes():
    s, out, onset = asyncio.run(agent_speaking_then([(8, "wait", False), (12, "wait i have a question", False)]))
    paused = [f for f in s.log.of(AgentSpeaking) if f.reason == "paused"]
    assert paused and paused[0].t_s - onset <= CHUNK_S + 1e-9  # the agent stops within one audio chunk
    ints = s.log.of(Interrupt)
    assert [(i.response_id, i.reason) for i in ints] == [(0, "barge-in")]
    assert ints[0].t_s == pytest.approx(onset + 9 * CHUNK_S, abs=CHUNK_S + 1e-9)  # at the first non-backchannel word
    played_after = [t for t, rid, _ in out.played if t > paused[0].t_s]
    assert played_after == []  # no agent audio after the pause/interrupt
    assert len(out.played) == 20 and not out.buffer  # 0.4 s played, the remaining 1.6 s flushed
    assert not s.log.of(ResumeOutput)


@pytest.mark.timeout(60)
def test_backchannels_during_agent_speech_do_not_interrupt():
    for word in ("uh-huh", "yeah", "right", "okay"):
        s, out, onset = asyncio.run(agent_speaking_then([(5, word, False), (22, word, True)], speak_ticks=20))
        assert not s.log.of(Interrupt), word
        resumes = s.log.of(ResumeOutput)
        assert len(resumes) == 1 and resumes[0].text == word
        ev = _agent_events(s)
        assert ev[0][1:] == (True, "start") and ev[1][1:] == (False, "paused") and ev[2][1:] == (True, "resume")
        pause_s = ev[2][0] - ev[1][0]
        assert 0.4 <= pause_s <= 0.8 + 0.4 + 2 * CHUNK_S  # bounded by backchannel_max_s + final_wait_s
        assert len(out.played) == 100  # every chunk of the reply was played in the end
        assert not s.log.of(EndOfTurn)  # a backchannel is not a user turn


@pytest.mark.timeout(60)
def test_long_speech_without_words_interrupts_after_the_backchannel_window():
    s, out, onset = asyncio.run(agent_speaking_then([], speak_ticks=60))
    ints = s.log.of(Interrupt)
    assert len(ints) == 1 and ints[0].t_s - onset == pytest.approx(0.8, abs=2 * CHUNK_S + 1e-9)


def test_backchannel_text_check():
    assert backchannel_only("uh-huh") and backchannel_only("Yeah.") and backchannel_only("okay right") \
        and backchannel_only("") and backchannel_only("uh huh")
    assert not backchannel_only("yeah but wait") and not backchannel_only("stop")
    # the one list (schema.BACKCHANNEL_WORDS) plus fillers and the STT's spellings; corpus tagging reads the list alone
    assert backchannel_only("aha um") and backchannel_only("Mhmm.") and not is_backchannel_text(["aha"])
    assert backchannel_only("sure great") and not backchannel_only("sure thing")
    # short misrecognised backchannels (pocketsphinx on espeak "okay" / "uh-huh") pass; interrupt words never do
    assert is_backchannel("o que", 0.43) and is_backchannel("op op", 0.3)
    assert not is_backchannel("stop", 0.3) and not is_backchannel("wait", 0.4)
    assert not is_backchannel("o que", 0.9) and not is_backchannel("we like surprises", 0.5)
    assert clearly_not_backchannel("we like surprises") and not clearly_not_backchannel("o que")
    # a lone opener in a first partial is not enough (PocketSphinx's first partial of festival's "okay" is "but");
    # a command word is, and an opener with another word is
    assert not clearly_not_backchannel("but") and not clearly_not_backchannel("no")
    assert clearly_not_backchannel("stop") and clearly_not_backchannel("wait") and clearly_not_backchannel("but i")
    assert not is_backchannel("but", 0.3)  # the final transcript still interrupts on it


def test_manual_clock_orders_sleepers():
    async def go():
        c = ManualClock()
        seen = []

        async def sleeper(t):
            await c.sleep_until(t)
            seen.append((t, c.now()))

        tasks = [asyncio.create_task(sleeper(t)) for t in (0.3, 0.1, 0.2)]
        await c.advance(0.25)
        assert seen == [(0.1, 0.1), (0.2, 0.2)]
        await c.advance(0.1)
        await asyncio.gather(*tasks)
        return seen

    assert asyncio.run(go())[-1] == (0.3, 0.3)
