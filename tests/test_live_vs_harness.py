"""Live = harness: harness turns replayed through the pipeline's TurnProcessor on a manual clock ask the
detector exactly what `vad-turn evaluate` asks, and decide when the offline policy (`metrics.policy_outcome`)
decides on the same queries (STYLE rule 2: one definition of the detector query)."""
from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest
from conftest import require_built

from pipeline.runtime.clock import ManualClock
from pipeline.runtime.frames import AudioIn, EndOfStream, EndOfTurn, Transcript, UserStartedSpeaking, UserStoppedSpeaking
from pipeline.runtime.observers import FrameLog
from pipeline.runtime.processors.base import Conversation, Pipeline
from pipeline.runtime.processors.turn import TurnProcessor
from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes
from vad_turn.core.schema import row_messages, row_spans, row_words
from vad_turn.harness import metrics as M
from vad_turn.harness.detectors import make_detector, predict_many
from vad_turn.harness.evaluate import PREDICTION_COLUMNS, EvalConfig, turn_queries
from vad_turn.harness.policy import TurnPolicy

CHUNK_S = 0.02


class Recording:
    """The real detector, recording every query it is asked (audio length, words, silence)."""

    def __init__(self, det):
        self.det, self.name = det, det.name
        self.needs_audio, self.needs_words = det.needs_audio, det.needs_words
        self.queries: list[tuple] = []

    def predict(self, audio, words, messages, silence_s):
        self.queries.append((None if audio is None else np.array(audio), tuple(words), round(silence_s, 6)))
        return self.det.predict(audio, words, messages, silence_s)


def snapped(row: dict) -> dict:
    """The row with every span edge on the 20 ms chunk grid (the replay feeds 20 ms chunks)."""
    snap = lambda t: round(round(t / CHUNK_S) * CHUNK_S, 6)  # noqa: E731
    spans = [{**s, "start": snap(s["start"]), "end": snap(s["end"])} for s in row["silence_spans"]]
    return {**row, "silence_spans": spans}


def offline(row: dict, det, cfg: EvalConfig, policy: TurnPolicy):
    """The harness's queries, scores and decision (stream time, grid index) for one turn."""
    queries, meta = turn_queries(row, det, cfg)
    p = predict_many(det, queries)
    df = pd.DataFrame({c: meta[c] for c in PREDICTION_COLUMNS if c != "p_eot"})
    df.insert(4, "p_eot", p)
    table = M.build_span_table(df, cfg.grid_s)
    out = M.policy_outcome(table, p[table.order], policy.threshold, policy.action_delay_s, policy.timeout_s)
    spans = row_spans(row)
    kept = sorted(set(meta["span_index"].tolist()))
    for j, (i, fire) in enumerate(zip(kept, out.fire_s)):
        if i == len(spans) - 1 or fire < spans[i].end - spans[i].start - 1e-9:
            return queries, spans[i].start + float(fire), i
    raise AssertionError("no decision")


async def replay(row: dict, det: Recording, policy: TurnPolicy, lag_s: float):
    """Play the row's audio in 20 ms chunks, speech start / stop at its spans, each segment's words as a final
    transcript at its stop; returns the first EndOfTurn."""
    audio = decode_audio_bytes(row["audio"]["bytes"], source=row["id"])
    spans, words = row_spans(row), row_words(row)
    clock = ClockDriver()
    proc = TurnProcessor(policy, det, transcript_lag_s=lag_s)
    log = FrameLog()
    conv = Conversation(messages=[{"role": m.role, "content": m.content} for m in row_messages(row)])
    p = Pipeline([proc], clock.clock, observers=[log], conversation=conv)  # the turn's history, as the bench seeds it
    await p.start()
    n = int(round(CHUNK_S * SAMPLE_RATE_HZ))
    end_s = spans[-1].start + policy.timeout_s + 0.3
    total = int(round(end_s / CHUNK_S))
    audio = np.concatenate([audio, np.zeros(max(0, total * n - audio.size), np.float32)])
    speaking, seg, prev_stop = False, 0, 0.0
    edges = {round(s.start / CHUNK_S): ("stop", s) for s in spans}
    edges.update({round(s.end / CHUNK_S): ("start", s) for s in spans[:-1]})
    p.broadcast(UserStartedSpeaking(clock.clock.now(), 0.0), "vad")
    speaking = True
    for i in range(total):
        t = i * CHUNK_S
        ev = edges.get(i)
        if ev is not None and ev[0] == "start" and not speaking:
            p.broadcast(UserStartedSpeaking(clock.clock.now(), t), "vad")
            speaking = True
        p.feed(AudioIn(clock.clock.now(), audio[i * n:(i + 1) * n], SAMPLE_RATE_HZ, t))
        if ev is not None and ev[0] == "stop" and speaking:
            speaking = False
            # the segment's words: those begun before its stop (a word may end in the snapped silence, as an STT's
            # last word often does)
            seg_words = tuple(w for w in words if w.start < t - 1e-6 and (seg == 0 or w.start >= prev_stop - 1e-6))
            p.feed(UserStoppedSpeaking(clock.clock.now(), t))
            p.feed(Transcript(clock.clock.now(), " ".join(w.word for w in seg_words), True, seg, seg_words))
            seg, prev_stop = seg + 1, t
        await clock.step(proc)
        if any(not e.tentative for e in log.of(EndOfTurn)):
            break
    p.feed(EndOfStream(clock.clock.now()))
    for _ in range(20):
        await clock.clock.advance(CHUNK_S)
    await p.wait(10.0)
    return [e for e in log.of(EndOfTurn) if not e.tentative][0]


class ClockDriver:
    def __init__(self):
        self.clock = ManualClock()

    async def step(self, proc: TurnProcessor):
        await self.clock.advance(CHUNK_S)
        await self.clock.settle()
        deadline = time.monotonic() + 30.0
        while proc._pending is not None and not proc._pending.done() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)  # the detector runs on a real thread: its answer arrives before the next chunk
        await self.clock.settle()


def _rows(name: str, n: int):
    from vad_turn.data.dataset import load_turns

    ds = load_turns(require_built(name))
    rows = []
    for i in range(len(ds)):
        meta = ds[i]
        spans = meta["silence_spans"]
        if meta.get("split") == "dev" and len(spans) >= 2 and meta.get("audio_condition") in (None, "clean") \
                and all(s["end"] - s["start"] >= 0.2 for s in spans[:-1]):
            rows.append(snapped(meta))
        if len(rows) >= n:
            break
    assert len(rows) == n, f"{name}: fewer than {n} dev rows with holds"
    return rows


@pytest.mark.timeout(600)
@pytest.mark.parametrize("lag_s", [0.0, 0.5])
def test_live_turn_processor_asks_and_decides_as_the_harness(lag_s):
    det = make_detector("fused")
    rows = _rows("switchboard-rendered", 3)
    cfg = EvalConfig(transcript_lag_s=lag_s, min_hold_s=0.0, timeouts_s=(1.5,), action_delays_s=(0.0, 0.2))
    policies = [TurnPolicy(threshold=0.5, action_delay_s=0.2, timeout_s=1.5, preemptive_fraction=None),
                TurnPolicy(threshold=0.9, action_delay_s=0.0, timeout_s=1.5)]
    n_checked_queries = 0
    for row in rows:
        for pol in policies:
            queries, fire_t, span_i = offline(row, det, cfg, pol)
            rec = Recording(det)
            eot = asyncio.run(replay(row, rec, pol, lag_s))
            # the same decision: the same span and time (the processor decides when the answer arrives, on the
            # chunk that reached the grid point, not one chunk later)
            assert eot.decided_stream_t_s == pytest.approx(fire_t, abs=1e-6), (row["id"], pol)
            # every live query equals the harness query of the same span and grid point
            by_key = {}
            spans = row_spans(row)
            for q in queries:
                by_key.setdefault(q.silence_s, []).append(q)
            for audio, words, silence_s in rec.queries:
                cands = by_key.get(silence_s, [])
                match = [q for q in cands if q.audio is not None and q.audio.size == audio.size]
                assert len(match) == 1, (row["id"], silence_s, audio.size)
                q = match[0]
                assert np.array_equal(q.audio, audio)
                assert [(w.word, round(w.end, 4)) for w in q.words] == [(w.word, round(w.end, 4)) for w in words]
                n_checked_queries += 1
            assert span_i <= len(spans) - 1
    assert n_checked_queries >= 20
