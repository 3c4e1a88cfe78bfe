"""Preemptive generation in the LLM processor, with the real local LLM: a tentative end of turn starts the reply
but holds it; the confirmation releases exactly what was held; the user going on, or a different final text,
discards it (nothing of it is heard or enters the history). Run on the wall clock, then as frame sequences on a
manual clock (the `test_manual_clock_*` tests), where the times frames come out at are asserted."""
from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.runtime.clock import ManualClock, WallClock
from pipeline.runtime.frames import EndOfResponse, EndOfStream, EndOfTurn, Interrupt, LLMToken
from pipeline.runtime.observers import FrameLog
from pipeline.runtime.processors.base import Conversation, Pipeline
from pipeline.runtime.processors.llm_proc import LLMProcessor

SYSTEM = {"role": "system", "content": "You are a travel assistant. Reply in one short sentence."}


@pytest.fixture(scope="module")
def llm():
    from vad_turn.engines.llm.local import LocalLLM

    return LocalLLM(n_threads=1).load()


def _eot(text: str, tentative: bool, turn_id: int = 0) -> EndOfTurn:
    return EndOfTurn(time.monotonic(), turn_id, text, 0.9, 0.3, 1.0, tentative)


async def _until(cond, timeout_s: float = 60.0) -> bool:
    end = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < end:
        await asyncio.sleep(0.01)
    return bool(cond())


async def _run(llm, script):
    conv = Conversation(messages=[dict(SYSTEM)])
    proc = LLMProcessor(llm, max_new_tokens=4, prefill=False)
    log = FrameLog()
    p = Pipeline([proc], WallClock(), observers=[log], conversation=conv)
    await p.start()
    out = await script(p, proc, log, conv)
    p.feed(EndOfStream(time.monotonic()))
    await p.wait(60.0)
    return out


def _tokens(log, source="llm"):
    return [f for t, src, f in log.frames if isinstance(f, LLMToken) and src == source]


@pytest.mark.timeout(180)
def test_held_reply_is_released_whole_on_confirmation(llm):
    async def script(p, proc, log, conv):
        p.feed(_eot("book a flight to boston", tentative=True))
        job_done = await _until(lambda: 0 in proc.jobs and proc.jobs[0].task is not None and proc.jobs[0].task.done())
        held = list(proc.jobs[0].held)
        heard_before = len(_tokens(log))
        msgs_before = [m["role"] for m in conv.messages]
        p.feed(_eot("book a flight to boston", tentative=False))
        await _until(lambda: len(_tokens(log)) >= sum(isinstance(f, LLMToken) for f in held))
        return job_done, held, heard_before, msgs_before

    job_done, held, heard_before, msgs_before = asyncio.run(_run(llm, script))
    assert job_done and sum(isinstance(f, LLMToken) for f in held) >= 1  # generated while held
    assert heard_before == 0 and msgs_before == ["system"]  # nothing heard, nothing in the history yet


@pytest.mark.timeout(180)
def test_confirmation_releases_the_held_tokens_and_history(llm):
    async def script(p, proc, log, conv):
        p.feed(_eot("what time is the next bus", tentative=True))
        await _until(lambda: 0 in proc.jobs and proc.jobs[0].task is not None and proc.jobs[0].task.done())
        held_text = "".join(f.text for f in proc.jobs[0].held if isinstance(f, LLMToken))
        p.feed(_eot("what time is the next bus", tentative=False))
        await _until(lambda: len(conv.messages) >= 3)
        return held_text, "".join(f.text for f in _tokens(log)), [dict(m) for m in conv.messages]

    held_text, heard, msgs = asyncio.run(_run(llm, script))
    assert heard == held_text and heard.strip()
    assert [m["role"] for m in msgs] == ["system", "user", "assistant"]
    assert msgs[1]["content"] == "what time is the next bus" and msgs[2]["content"] == heard.strip()


@pytest.mark.timeout(180)
def test_user_going_on_or_other_words_discard_the_held_reply(llm):
    async def resumed(p, proc, log, conv):
        p.feed(_eot("i want to go to", tentative=True))
        await _until(lambda: 0 in proc.jobs and proc.jobs[0].task is not None)
        p.broadcast(Interrupt(time.monotonic(), 0, "user-resumed"), "turn")
        await asyncio.sleep(1.0)
        return proc.jobs[0].cancelled, len(_tokens(log)), [m["role"] for m in conv.messages]

    cancelled, n_heard, roles = asyncio.run(_run(llm, resumed))
    assert cancelled and n_heard == 0 and roles == ["system"]

    async def changed(p, proc, log, conv):
        p.feed(_eot("i want to go to", tentative=True))
        await _until(lambda: 0 in proc.jobs and proc.jobs[0].task is not None and proc.jobs[0].task.done())
        first = proc.jobs[0]
        p.feed(_eot("i want to go to the airport", tentative=False))
        await _until(lambda: len(conv.messages) >= 3)
        return first.cancelled, [dict(m) for m in conv.messages], "".join(f.text for f in _tokens(log))

    first_cancelled, msgs, heard = asyncio.run(_run(llm, changed))
    assert first_cancelled  # the held reply to "i want to go to" is thrown away
    assert msgs[1] == {"role": "user", "content": "i want to go to the airport"}
    assert msgs[2]["content"] == heard.strip() and heard.strip()  # only the new reply is heard


# -- the same hold / release / discard as frame sequences on a manual clock (STYLE rule 8): the real LLM runs on its
# thread while the clock stands still, so every frame's time is the scripted time of the frame that caused it


class Emitted:
    """An observer of (clock time seen, source, frame): when a frame came out, not the time stamped on it."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, str, object]] = []

    def bind_clock(self, clock) -> None:
        self.clock = clock

    def on_frame(self, frame, source: str) -> None:
        self.frames.append((self.clock.now(), source, frame))

    def llm(self) -> list[tuple[float, object]]:
        """(time out, frame) of every frame the LLM processor sent on."""
        return [(t, f) for t, src, f in self.frames if src == "llm"]


def _at(clock, text: str, tentative: bool, turn_id: int = 0) -> EndOfTurn:
    return EndOfTurn(clock.now(), turn_id, text, 0.9, 0.3, clock.now(), tentative)


async def _generated(proc, turn_id: int, timeout_s: float = 60.0) -> None:
    """Wait (real time, the manual clock standing still) until turn `turn_id`'s generation has finished."""
    def done() -> bool:
        job = proc.jobs.get(turn_id)
        return job is not None and job.task is not None and job.task.done()

    assert await _until(done, timeout_s), f"no reply to turn {turn_id} within {timeout_s} s"


async def _manual(llm, script):
    clock = ManualClock()
    conv = Conversation(messages=[dict(SYSTEM)])
    proc = LLMProcessor(llm, max_new_tokens=4, prefill=False)
    out = Emitted()
    p = Pipeline([proc], clock, observers=[out], conversation=conv)
    await p.start()
    res = await script(p, proc, clock, out, conv)
    p.feed(EndOfStream(clock.now()))
    await clock.advance(0.1)
    await p.wait(60.0)
    return res, out, conv


def _reply(llm, user_text: str) -> str:
    """The real LLM's greedy reply to [system, user]: what the processor must generate for that turn."""
    return llm.complete([dict(SYSTEM), {"role": "user", "content": user_text}], max_new_tokens=4)


@pytest.mark.timeout(180)
def test_manual_clock_tentative_holds_and_confirmation_releases_the_held_frames_at_its_time(llm):
    text = "book a flight to boston"

    async def script(p, proc, clock, out, conv):
        await clock.advance(1.0)
        p.feed(_at(clock, text, tentative=True))  # t = 1.0: the preemptive start
        await _generated(proc, 0)  # the whole reply is generated while the clock stands at 1.0
        held = list(proc.jobs[0].held)
        seen_before, msgs_before = list(out.llm()), [dict(m) for m in conv.messages]
        await clock.advance(0.3)
        p.feed(_at(clock, text, tentative=False))  # t = 1.3: the confirmation
        await clock.settle()
        return held, seen_before, msgs_before

    (held, seen_before, msgs_before), out, conv = asyncio.run(_manual(llm, script))
    tokens = [f for f in held if isinstance(f, LLMToken)]
    want = _reply(llm, text)
    # tentative: the reply was generated (at t = 1.0) and held: nothing came out, nothing entered the history
    assert want.strip() and "".join(f.text for f in tokens) == want
    assert len(tokens) >= 2 and all(f.t_s == 1.0 and f.response_id == 0 for f in tokens)
    assert seen_before == [] and msgs_before == [SYSTEM]
    # confirmation: exactly the held frames (the same objects, in order) came out, all at t = 1.3, then the end of
    # the response; the tokens keep the time they were generated at (what preemption hid: 0.3 s of LLM time)
    released = [(t, f) for t, f in out.llm() if not isinstance(f, EndOfStream)]
    assert [f for _, f in released[:len(tokens)]] == tokens
    assert all(a is b for (_, a), b in zip(released, tokens))
    assert [type(f) for _, f in released[len(tokens):]] == [EndOfResponse]
    assert all(t == pytest.approx(1.3) for t, _ in released)
    assert conv.messages == [SYSTEM, {"role": "user", "content": text}, {"role": "assistant", "content": want.strip()}]


@pytest.mark.timeout(180)
def test_manual_clock_user_going_on_discards_the_held_reply_and_the_next_reply_never_sees_it(llm):
    async def script(p, proc, clock, out, conv):
        await clock.advance(1.0)
        p.feed(_at(clock, "i want to go to", tentative=True))
        await _generated(proc, 0)  # generated and held
        n_held = sum(isinstance(f, LLMToken) for f in proc.jobs[0].held)
        await clock.advance(0.2)
        p.broadcast(Interrupt(clock.now(), 0, "user-resumed"), "turn")  # t = 1.2: the user went on
        await clock.advance(0.5)
        seen_after_discard, msgs_after_discard = list(out.llm()), [dict(m) for m in conv.messages]
        p.feed(_at(clock, "i want to go to the airport", tentative=False, turn_id=1))  # t = 1.7: the real end
        await _generated(proc, 1)
        await clock.settle()
        return n_held, seen_after_discard, msgs_after_discard, list(llm.last_messages)

    (n_held, seen_after, msgs_after, prompt), out, conv = asyncio.run(_manual(llm, script))
    assert n_held >= 1  # there was a held reply to throw away
    assert seen_after == [] and msgs_after == [SYSTEM]  # nothing of it heard, nothing of it in the history
    want = _reply(llm, "i want to go to the airport")
    frames = [(t, f) for t, f in out.llm() if not isinstance(f, EndOfStream)]
    assert frames and all(f.response_id == 1 and t == pytest.approx(1.7) for t, f in frames)
    assert "".join(f.text for _, f in frames if isinstance(f, LLMToken)) == want
    # the next reply was prompted without the discarded turn, and only it entered the history
    assert prompt == [SYSTEM, {"role": "user", "content": "i want to go to the airport"}]
    assert conv.messages == [SYSTEM, {"role": "user", "content": "i want to go to the airport"},
                             {"role": "assistant", "content": want.strip()}]


@pytest.mark.timeout(180)
def test_manual_clock_a_different_final_text_discards_the_held_reply_and_answers_the_final_one(llm):
    async def script(p, proc, clock, out, conv):
        await clock.advance(1.0)
        p.feed(_at(clock, "i want to go to", tentative=True))
        await _generated(proc, 0)
        first = proc.jobs[0]
        await clock.advance(0.5)
        p.feed(_at(clock, "i want to go to the airport", tentative=False))  # t = 1.5: same turn, other words
        await _until(lambda: proc.jobs[0] is not first, 5.0)  # replaced as soon as the final is processed
        await _generated(proc, 0)
        await clock.settle()
        return first

    first, out, conv = asyncio.run(_manual(llm, script))
    held = [f for f in first.held if isinstance(f, LLMToken)]
    assert first.cancelled and held  # the held reply to "i want to go to" was thrown away ...
    frames = [(t, f) for t, f in out.llm() if not isinstance(f, EndOfStream)]
    assert not any(f is h for _, f in frames for h in held)  # ... none of its frames came out
    want = _reply(llm, "i want to go to the airport")
    tokens = [f for _, f in frames if isinstance(f, LLMToken)]
    assert "".join(f.text for f in tokens) == want and all(f.t_s == 1.5 for f in tokens)  # generated after 1.5
    assert all(t == pytest.approx(1.5) for t, _ in frames) and isinstance(frames[-1][1], EndOfResponse)
    assert conv.messages == [SYSTEM, {"role": "user", "content": "i want to go to the airport"},
                             {"role": "assistant", "content": want.strip()}]
