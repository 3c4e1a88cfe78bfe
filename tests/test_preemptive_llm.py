"""Preemptive generation in the LLM processor, with the real local LLM: a tentative end of turn starts the reply
but holds it; the confirmation releases exactly what was held; the user going on, or a different final text,
discards it (nothing of it is heard or enters the history)."""
from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.runtime.clock import WallClock
from pipeline.runtime.frames import EndOfStream, EndOfTurn, Interrupt, LLMToken
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
