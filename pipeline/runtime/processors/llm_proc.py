"""LLM processor: end of turn -> streamed tokens, with preemptive starts, tools and bridging.

On `EndOfTurn(tentative=True)` generation starts but its tokens are held; the confirming
`EndOfTurn` with the same turn id and text releases them (what preemption hides is the LLM time
spent before the confirmation); a different text, or an `Interrupt` for that id (the user went on),
discards it. A final EndOfTurn without a preemptive start starts generation at once.

Tools: every Transcript and EndOfTurn text is offered to `ToolRunner.prefetch`, so predictable
calls start before the turn ends. Before generating, the processor waits for the turn's calls;
if they take longer than `bridge_after_s` (or the LLM's first token longer than
`llm_bridge_after_s`, when set: a slow or failing endpoint), it says `bridge_phrase` first (an
`AgentText(bridge=True)`, logged). Tool results reach the LLM as a system message. The prompt is
the system prompt plus at most the last `max_history` messages, a window whose start moves in
blocks of half its size (`_window`), so consecutive prompts share their prefix for the LLM's
prefix KV cache.

Prefill: each final transcript of the user's turn is rendered into the prompt it would make (without
the assistant header) and prefilled into the local LLM's prefix KV cache (`LocalLLM.warm`) in the
silence before the end-of-turn decision, so generation only prefills the few tokens that changed.
It starts `prefill_after_s` after the turn's latest final transcript, and not at all when a reply starts
first (a preemptive start comes one detector answer after the final, 6-17 ms in the bench's trace, well
inside the default 0.05 s): the reply prefills its own prompt, and a prefill already running would hold
the model for one more forward pass before the reply's first token (SmolLM2-135M reads all its weights in
each pass, ~60 ms on a 2-core EPYC). With the prefill started at once, the semantic agent's held reply got
its first token 39 ms after VAD-only's (paired median, 60 GetGoing turns); now 3 ms sooner
(docs/turn-model-v3.md section 15).

Reply opener (`reply_opener`, e.g. "Sure,"; off by default): when the LLM can continue a reply it was given
(`continues_reply`: the local model), the opener is said at once, as the reply's first clause, and the LLM
writes the rest of the reply after it (the prompt ends in the assistant's opener). It is a faster first
chunk (the first audio no longer waits for the LLM's first token) and it steers SmolLM2-135M away from its
refusals ("I'm sorry, but I'm unable to..."); the bench reports it as its own configuration.

The LLM's `stream` runs on a worker thread (`llm_wrappers.ThreadedStream`); an Interrupt cancels
it (LocalLLM stops after the current token). If the LLM fails, the failure is logged in the
conversation and `error_phrase` is said instead, so the turn still gets an answer.
"""
from __future__ import annotations

import asyncio
import queue as _queue

from vad_turn.core.config import require_range
from vad_turn.engines.llm.base import LLMError

from ..frames import AgentText, EndOfResponse, EndOfStream, EndOfTurn, Interrupt, LLMToken, Transcript
from ..llm_wrappers import _DONE, ThreadedStream
from ..tools import ToolRunner
from .base import Processor


class _Job:
    def __init__(self, turn: EndOfTurn, hold: bool):
        self.turn, self.hold = turn, hold
        self.held: list = []  # frames waiting for the confirmation
        self.stream: ThreadedStream | None = None
        self.task: asyncio.Task | None = None
        self.text = ""
        self.cancelled = False
        self.committed = False  # its reply is in the history (an Interrupt after that must not add it again)


class LLMProcessor(Processor):
    name = "llm"

    def __init__(self, llm, *, max_new_tokens: int = 32, temperature: float = 0.0, tools: ToolRunner | None = None,
                 bridge_after_s: float = 1.0, llm_bridge_after_s: float | None = None,
                 bridge_phrase: str = "Let me pull that up.", error_phrase: str = "Sorry, I lost my train of thought.",
                 max_history: int = 6, prefill: bool = True, prefill_after_s: float = 0.05, reply_opener: str = ""):
        super().__init__()
        self.reply_opener = reply_opener.strip() if getattr(llm, "continues_reply", False) else ""
        self.llm, self.max_new_tokens, self.temperature = llm, int(max_new_tokens), float(temperature)
        self.tools, self.bridge_after_s = tools, float(bridge_after_s)
        self.llm_bridge_after_s = None if llm_bridge_after_s is None else float(llm_bridge_after_s)
        self.max_history = int(max_history)
        self.bridge_phrase, self.error_phrase = bridge_phrase, error_phrase
        self.jobs: dict[int, _Job] = {}
        self._hist_start = 0  # index into the non-system history where the prompt window starts
        self.prefill = bool(prefill)
        require_range("prefill_after_s", prefill_after_s, 0.0, 10.0)
        self.prefill_after_s = float(prefill_after_s)
        self._prefill_timer: asyncio.TimerHandle | None = None
        self._finals: dict[int, str] = {}  # final transcripts of the current turn, by segment
        self._warming = False
        self._prefill_again = False  # words arrived while a prefill ran: prefill again when it ends
        self.n_prefills = 0

    def on_system(self, frame) -> None:
        if isinstance(frame, Interrupt):
            self.conv.cancelled.add(frame.response_id)
            job = self.jobs.get(frame.response_id)
            if job is not None:
                job.cancelled = True
                if job.stream is not None:
                    job.stream.cancel()
                if job.task is not None:
                    job.task.cancel()
                if frame.reason in ("barge-in", "stop") and job.text and not job.hold and not job.committed:
                    job.committed = True
                    self.conv.messages.append({"role": "assistant", "content": job.text.strip()})
            if self.conv.active_response == frame.response_id:
                self.conv.active_response = None

    async def process(self, frame) -> None:
        if isinstance(frame, Transcript):
            if self.tools is not None:
                self.tools.prefetch(frame.text)
            if frame.final:
                self._finals[frame.segment] = frame.text
                self._schedule_prefill()
            return
        if isinstance(frame, EndOfTurn):
            self._cancel_prefill()  # a reply starts (or the turn ended): it prefills its own prompt
            await self._end_of_turn(frame)
            return
        if isinstance(frame, EndOfStream):
            self._cancel_prefill()
            for job in list(self.jobs.values()):
                if job.task is not None and not job.hold:
                    try:
                        await asyncio.wait_for(asyncio.shield(job.task), 120)
                    except (asyncio.CancelledError, asyncio.TimeoutError):
                        pass
            await self.push(frame)
            return
        await self.push(frame)

    async def _end_of_turn(self, eot: EndOfTurn) -> None:
        if not eot.tentative:
            self._finals = {}  # the turn is over: the next prefill starts from the next turn's words
        if self.tools is not None:
            self.tools.prefetch(eot.text)
        job = self.jobs.get(eot.turn_id)
        if job is not None and not job.cancelled:
            if job.hold and not eot.tentative:
                if job.turn.text == eot.text:  # confirmed: release what was held
                    job.hold = False
                    self._commit_user(eot)
                    for f in job.held:
                        await self.push(f)
                    job.held = []
                    return
                self._cancel(job)
            else:
                return  # a repeated decision for a running job
        if not eot.text.strip():
            return
        job = _Job(eot, hold=eot.tentative)
        self.jobs[eot.turn_id] = job
        self.conv.active_response = eot.turn_id
        if not eot.tentative:
            self._commit_user(eot)
        job.task = asyncio.create_task(self._generate(job))

    def _window(self, history: list[dict]) -> list[dict]:
        """The last messages of `history` (at most `max_history`), trimmed in blocks, not one by one.

        The window's start only moves when it overflows, and then by half the window, so for
        several turns in a row each prompt extends the previous one and the LLM's prefix KV cache
        reuses all of it (a window sliding by one exchange per turn would leave only the system
        prompt in common).
        """
        if len(history) - self._hist_start > self.max_history or self._hist_start > len(history):
            self._hist_start = max(0, len(history) - max(1, self.max_history // 2))
        return history[self._hist_start:]

    def _schedule_prefill(self) -> None:
        """`_start_prefill` in `prefill_after_s` (the latest final transcript restarts the wait)."""
        if not self.prefill:
            return
        self._cancel_prefill()
        self._prefill_timer = asyncio.get_running_loop().call_later(self.prefill_after_s, self._start_prefill)

    def _cancel_prefill(self) -> None:
        if self._prefill_timer is not None:
            self._prefill_timer.cancel()
            self._prefill_timer = None

    def _start_prefill(self) -> None:
        """Prefill the prompt the turn's words so far would make into the LLM's prefix cache (`llm.warm`).

        Runs in the silence after a speech segment, before the end-of-turn decision, so the decision
        only has to prefill what changed (usually just the assistant header). Skipped when the LLM
        has no `warm` (remote or wrapped) or a response is in flight; while a prefill runs, the
        newest words are prefilled after it.
        """
        self._prefill_timer = None
        warm = getattr(self.llm, "warm", None)
        if not self.prefill or warm is None or self.conv.active_response is not None:
            return
        if self._warming:
            self._prefill_again = True
            return
        text = " ".join(self._finals[s] for s in sorted(self._finals)).strip()
        if not text:
            return
        history = [m for m in self.conv.messages if m["role"] != "system"] + [{"role": "user", "content": text}]
        msgs = [m for m in self.conv.messages if m["role"] == "system"][:1] + self._window(history)
        self._warming = True
        self.n_prefills += 1
        asyncio.get_running_loop().create_task(self._prefill(warm, msgs))

    async def _prefill(self, warm, msgs: list[dict]) -> None:
        try:
            await self.run_blocking(warm, msgs)
        except Exception as e:  # noqa: BLE001 - an optimisation only: the generation prefills what is missing
            self.conv.note(self.now(), f"LLM prefill failed ({e!r}); the reply prefills itself")
        finally:
            self._warming = False
        if self._prefill_again:
            self._prefill_again = False
            self._start_prefill()

    def _commit_user(self, eot: EndOfTurn) -> None:
        self.conv.messages.append({"role": "user", "content": eot.text})

    def _cancel(self, job: _Job) -> None:
        job.cancelled = True
        if job.stream is not None:
            job.stream.cancel()
        if job.task is not None:
            job.task.cancel()

    async def _out(self, job: _Job, frame) -> None:
        if job.cancelled:
            return
        if job.hold:
            job.held.append(frame)
        else:
            await self.push(frame)

    async def _generate(self, job: _Job) -> None:
        rid = job.turn.turn_id
        loop = asyncio.get_running_loop()
        bridged = False
        try:
            extra = []
            if self.tools is not None:
                futs = [asyncio.wrap_future(f) for f in self.tools.calls_for(job.turn.text)]
                if futs:
                    done, pending = await asyncio.wait(futs, timeout=self.bridge_after_s)
                    if pending:
                        bridged = True
                        await self._out(job, AgentText(self.now(), rid, self.bridge_phrase, bridge=True))
                        await asyncio.wait(pending)
                    results = self.tools.results_text(job.turn.text)
                    if results:
                        extra = [{"role": "system", "content": f"Tool results:\n{results}"}]
            msgs = [m for m in self.conv.messages if m["role"] == "system"][:1]
            history = [m for m in self.conv.messages if m["role"] != "system"]
            if job.hold:
                history = history + [{"role": "user", "content": job.turn.text}]
            msgs = msgs + self._window(history) + extra
            if self.reply_opener:
                msgs = msgs + [{"role": "assistant", "content": self.reply_opener}]
                job.text = self.reply_opener
                await self._out(job, AgentText(self.now(), rid, self.reply_opener))
            job.stream = ThreadedStream(self.llm, msgs, dict(max_new_tokens=self.max_new_tokens,
                                                            temperature=self.temperature))
            q = job.stream.q
            first = True
            while True:
                timeout = self.llm_bridge_after_s if (first and not bridged) else None
                try:
                    item = await loop.run_in_executor(None, _get, q, timeout)
                except _queue.Empty:
                    bridged = True
                    self.conv.note(self.now(), f"response {rid}: no LLM token after {self.llm_bridge_after_s} s, bridging")
                    await self._out(job, AgentText(self.now(), rid, self.bridge_phrase, bridge=True))
                    continue
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                first = False
                job.text += item
                await self._out(job, LLMToken(self.now(), rid, item))
        except asyncio.CancelledError:
            if job.stream is not None:
                job.stream.cancel()
            return
        except LLMError as e:
            self.conv.note(self.now(), f"response {rid}: LLM failed ({e}); saying the error phrase")
            job.text = self.error_phrase
            await self._out(job, AgentText(self.now(), rid, self.error_phrase, bridge=True))
        if job.cancelled:
            return
        if job.text.strip():
            entry = {"role": "assistant", "content": job.text.strip()}
            job.committed = True
            if job.hold:
                job.held.append(entry)
            else:
                self.conv.messages.append(entry)
        await self._out(job, EndOfResponse(self.now(), rid))

    async def push(self, frame) -> None:
        if isinstance(frame, dict):  # a held history entry released on confirmation
            self.conv.messages.append(frame)
            return
        await super().push(frame)


def _get(q: _queue.Queue, timeout: float | None):
    return q.get(timeout=timeout)
