"""Pipeline components on real engines: STT word error rates, clause aggregation, tools, LLM hedging /
fallback / cancellation against the real local SmolLM2 and server, TTS failure, input conversion."""
from __future__ import annotations

import asyncio
import os
import socket
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import require_data  # noqa: E402

from pipeline.runtime.clock import ManualClock  # noqa: E402
from pipeline.runtime.frames import (  # noqa: E402
    AgentText,
    AudioIn,
    EndOfResponse,
    EndOfStream,
    LLMToken,
    TTSAudio,
    UserStartedSpeaking,
    UserStoppedSpeaking,
)
from pipeline.runtime.observers import FrameLog  # noqa: E402
from pipeline.runtime.processors.base import Conversation, Pipeline  # noqa: E402
from pipeline.runtime.processors.speech import ClauseAggregator, OutputProcessor, TTSProcessor  # noqa: E402
from pipeline.runtime.processors.vad_stt import VADProcessor  # noqa: E402
from pipeline.runtime.tools import ToolRunner, calculator_tool, clock_tool, remote_tool  # noqa: E402
from vad_turn.core.audio import load_audio  # noqa: E402
from vad_turn.engines.stt import PocketsphinxSTT, WhisperSTT, word_error_rate  # noqa: E402

JFK_TEXT = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def test_word_error_rate_counts_edits():
    r = word_error_rate(["the cat sat on the mat", "hello world"], ["the cat sat on mat", "Hello, world!"])
    assert r["n_errors"] == 1 and r["n_ref_words"] == 8 and r["wer"] == pytest.approx(1 / 8)
    assert word_error_rate(["a b c"], ["x b c d"])["n_errors"] == 2
    with pytest.raises(ValueError):
        word_error_rate(["a"], [])


def test_stt_engines_on_real_speech():
    audio = load_audio(require_data("clips", "jfk.flac"))
    whisper = WhisperSTT()
    text, words = whisper.transcribe(audio)
    assert word_error_rate([JFK_TEXT], [text])["wer"] <= 0.05
    assert len(words) >= 20 and 0.0 <= words[0].start < words[-1].end <= audio.size / 16000 + 0.5
    ps = PocketsphinxSTT()
    ps.start()
    partials = set()
    for i in range(0, 16000 * 4, 320):  # 4 s streamed in 20 ms chunks
        ps.accept(audio[i:i + 320])
        if i % 8000 == 0:
            partials.add(ps.partial())
    text_ps, words_ps = ps.finish()
    assert len(partials - {""}) >= 3  # the hypothesis grows while audio streams
    assert len(words_ps) >= 5 and all(a.end <= b.start + 1e-6 for a, b in zip(words_ps, words_ps[1:]))
    assert words_ps[-1].end <= 4.05
    # pocketsphinx's generic LM does badly on this 1961 recording; it is the fast streaming engine, not the accurate one
    assert word_error_rate([JFK_TEXT], [ps.transcribe(audio)[0]])["wer"] > word_error_rate([JFK_TEXT], [text])["wer"]


def test_pocketsphinx_new_stream_forgets_the_adapted_cepstral_mean():
    """A reused decoder (the demo's model pool, the bench's loaded models) hears a run as a fresh one would:
    after the JFK clip the decoder's CMN has moved; `new_stream` puts it back, and the transcript matches."""
    jfk = load_audio(require_data("clips", "jfk.flac"))
    other = load_audio(require_data("clips", "silero_test.wav"))[: 16000 * 4]
    fresh = PocketsphinxSTT()
    cmn0, want = fresh._dec.get_cmn(False), fresh.transcribe(other)[0]
    reused = PocketsphinxSTT()
    reused.transcribe(jfk)
    assert reused._dec.get_cmn(False) != cmn0  # adapted to the 1961 recording
    reused.new_stream()
    assert reused._dec.get_cmn(False) == cmn0 and reused.transcribe(other)[0] == want


async def _run(procs, frames, conv=None, ticks=50):
    clock = ManualClock()
    log = FrameLog()
    p = Pipeline(procs, clock, observers=[log], conversation=conv or Conversation())
    await p.start()
    for f in frames:
        p.feed(f)
    p.feed(EndOfStream(0.0))
    for _ in range(ticks):
        await clock.advance(0.02)
        await asyncio.sleep(0.01)
        if all(t.done() for t in p._tasks):
            break
    await p.wait(30.0)
    return p, log


def test_clause_aggregator_cuts_at_punctuation_and_early_first_clause():
    toks = ["Sure", ",", " I can", " help with", " that", ".", " It is", " sunny", " today"]
    p, log = asyncio.run(_run([ClauseAggregator()], [LLMToken(0.0, 3, t) for t in toks] + [EndOfResponse(0.0, 3)]))
    assert [f.text for f in log.of(AgentText)] == ["Sure,", "I can help with that.", "It is sunny today"]
    toks = ["I", " think", " that", " the", " weather", " will", " be", " nice", "."]
    p, log = asyncio.run(_run([ClauseAggregator(first_max_words=4)], [LLMToken(0.0, 1, t) for t in toks]
                              + [EndOfResponse(0.0, 1)]))
    assert [f.text for f in log.of(AgentText)] == ["I think that the", "weather will be nice."]
    p, log = asyncio.run(_run([ClauseAggregator(mode="whole")], [LLMToken(0.0, 1, t) for t in toks]
                              + [EndOfResponse(0.0, 1)]))
    assert [f.text for f in log.of(AgentText)] == ["I think that the weather will be nice."]


def test_tools_match_from_words_and_prefetch_once():
    calc = calculator_tool()
    runner = ToolRunner([calc, clock_tool()])
    f1 = runner.prefetch("um what is twelve times seven")
    f2 = runner.calls_for("what is twelve times seven please")
    assert len(f1) == 1 and f1[0] is f2[0]  # the prefetched call is reused, not repeated
    assert f1[0].result(timeout=5) == "twelve times seven = 84"
    assert calc.match("what is 12 divided by 4") and calc.fn(calc.match("12 divided by 4")) == "12 divided by 4 = 3"
    assert clock_tool().match("do you know what time it is") and not clock_tool().match("i had a good time")
    slow = remote_tool(calc, 0.3)
    t0 = time.perf_counter()
    assert slow.fn(slow.match("two plus two")) == "two plus two = 4"
    assert time.perf_counter() - t0 == pytest.approx(0.3, abs=0.15)
    runner.close()


def test_tts_failure_still_delivers_the_text():
    from vad_turn.engines.tts import Voice

    conv = Conversation()
    tts = TTSProcessor(Voice("espeak", "no-such-voice-xx"))
    out = OutputProcessor()
    p, log = asyncio.run(_run([tts, out], [AgentText(0.0, 0, "Hello there."), EndOfResponse(0.0, 0)], conv))
    assert [(a.text, a.spoken) for a in out.delivered] == [("Hello there.", False)]
    assert any("TTS failed" in text and "no-such-voice-xx" in text for _, text in conv.log)
    assert out.played == []


def test_tts_streams_20ms_chunks_for_each_clause():
    from vad_turn.engines.tts import Voice

    tts = TTSProcessor(Voice("espeak", "en-us"))
    p, log = asyncio.run(_run([tts], [AgentText(0.0, 0, "Hello there, friend."), EndOfResponse(0.0, 0)]))
    chunks = [f.audio for _, src, f in log.frames if src == "tts" and isinstance(f, TTSAudio)]
    assert len(chunks) >= 20 and all(c.size == 320 for c in chunks[:-1])
    assert float(np.abs(np.concatenate(chunks)).max()) > 0.05


def test_vad_processor_converts_stereo_44k_input_and_finds_the_speech():
    from vad_turn.core.audio import resample, trim_silence
    from vad_turn.engines.tts import Voice, synthesize
    from vad_turn.engines.vad import make_vad

    speech = trim_silence(synthesize("this is a test of the voice activity detector", Voice("espeak", "en-us")))[0]
    a16 = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000, np.float32)])
    a44 = resample(a16, 16000, 44100)
    stereo = np.stack([a44, a44], axis=1)  # (n, 2) at 44.1 kHz
    n = 882
    frames = [AudioIn(0.0, stereo[i:i + n], 44100, i / 44100) for i in range(0, len(stereo), n)]
    p, log = asyncio.run(_run([VADProcessor(make_vad("silero"))], frames))
    starts, stops = log.of(UserStartedSpeaking), log.of(UserStoppedSpeaking)
    end_s = 1.0 + speech.size / 16000
    assert len(starts) >= 1 and starts[0].stream_t_s == pytest.approx(1.0, abs=0.1)
    assert stops and stops[-1].stream_t_s == pytest.approx(end_s, abs=0.15)
    out = [f for f in log.of(AudioIn) if f.sample_rate_hz == 16000]
    assert out and all(f.audio.ndim == 1 for f in out)  # converted once, to 16 kHz mono


# ----------------------------------------------------------------------------- LLM wrappers (real SmolLM2)

MESSAGES = [{"role": "user", "content": "Name a color."}]


@pytest.fixture(scope="module")
def local_llm():
    from vad_turn.engines.llm.local import LocalLLM

    return LocalLLM(n_threads=1).load()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_hedging_fallback_and_cancellation(local_llm):
    from pipeline.serving.llm_server import serve_llm
    from pipeline.runtime.llm_wrappers import PROFILES, FallbackLLM, HedgedLLM, LatencyProfile, LatencyProfileLLM
    from vad_turn.engines.llm.http import OpenAIChatLLM

    expected = local_llm.complete(MESSAGES, max_new_tokens=5)
    slow = LatencyProfileLLM(local_llm, LatencyProfile("slow", 3.0, 3.01, "test"))
    with serve_llm(local_llm) as (url, server), OpenAIChatLLM(url, "smollm2") as fast:
        hedged = HedgedLLM(slow, fast)
        t0 = time.perf_counter()
        text = hedged.complete(MESSAGES, max_new_tokens=5)
        assert text == expected and hedged.last_winner == fast.name
        assert time.perf_counter() - t0 < 2.9  # did not wait for the slow request

    dead = OpenAIChatLLM(f"http://127.0.0.1:{_free_port()}/v1", "nobody", connect_timeout_s=0.5)
    fb = FallbackLLM(dead, local_llm, first_token_timeout_s=5.0)
    assert fb.complete(MESSAGES, max_new_tokens=5) == expected
    assert len(fb.events) == 1 and "unreachable" in fb.events[0]

    gen = local_llm.stream([{"role": "user", "content": "Write a long story about a dragon."}], max_new_tokens=300)
    next(gen)
    t0 = time.perf_counter()
    gen.close()  # cancellation: generation stops after the current token instead of running 300 tokens
    assert time.perf_counter() - t0 < 3.0

    p = PROFILES["groq-llama-3.3-70b"]
    draws = np.array([p.sample_s(np.random.default_rng(i)) for i in range(2000)])
    assert np.median(draws) == pytest.approx(p.p50_s, rel=0.05)
    assert np.percentile(draws, 95) == pytest.approx(p.p95_s, rel=0.1)
    assert "tokenmix" in p.source


def _llm_pipeline(llm, eot_text: str, **kw):
    """[LLMProcessor, ClauseAggregator] on the wall clock: one EndOfTurn in, frames out."""
    from pipeline.runtime.clock import WallClock
    from pipeline.runtime.frames import EndOfTurn
    from pipeline.runtime.processors.llm_proc import LLMProcessor

    async def go():
        conv = Conversation(messages=[{"role": "system", "content": "Answer in one short sentence."}])
        log = FrameLog()
        p = Pipeline([LLMProcessor(llm, max_new_tokens=6, **kw), ClauseAggregator()], WallClock(), observers=[log],
                     conversation=conv)
        await p.start()
        p.feed(EndOfTurn(0.0, 0, eot_text, 1.0, 0.6, 1.0))
        p.feed(EndOfStream(0.0))
        await p.wait(60.0)
        return log, conv, [f for f in p.outputs if isinstance(f, AgentText)]

    return asyncio.run(go())


@pytest.mark.timeout(120)
def test_llm_faults_fall_back_bridge_or_apologise_without_deadlock(local_llm):
    from pipeline.runtime.llm_wrappers import FallbackLLM, LatencyProfile, LatencyProfileLLM
    from vad_turn.engines.llm.http import OpenAIChatLLM

    dead = lambda: OpenAIChatLLM(f"http://127.0.0.1:{_free_port()}/v1", "nobody", connect_timeout_s=0.5)  # noqa: E731
    expected = local_llm.complete([{"role": "system", "content": "Answer in one short sentence."},
                                   {"role": "user", "content": "Name a color."}], max_new_tokens=6)
    # endpoint down -> the local model answers, and the fallback is recorded
    fb = FallbackLLM(dead(), local_llm, first_token_timeout_s=5.0)
    log, conv, _ = _llm_pipeline(fb, "Name a color.")
    assert "".join(f.text for f in log.of(LLMToken)) == expected and len(fb.events) == 1
    # endpoint slow -> the bridging phrase comes first, then the answer
    slow = LatencyProfileLLM(local_llm, LatencyProfile("slow", 1.5, 1.51, "test"))
    log, conv, said = _llm_pipeline(slow, "Name a color.", llm_bridge_after_s=0.3)
    texts = [(f.text, f.bridge) for f in said]
    assert texts[0] == ("Let me pull that up.", True) and "".join(t for t, b in texts[1:]).strip()
    assert any("bridging" in t for _, t in conv.log)
    # endpoint down and no fallback -> an apology is said, the failure logged, and the stream still ends
    log, conv, said = _llm_pipeline(dead(), "Name a color.")
    assert [(f.text, f.bridge) for f in said] == [("Sorry, I lost my train of thought.", True)]
    assert any("LLM failed" in t and "unreachable" in t for _, t in conv.log)
    assert log.of(EndOfResponse) and log.of(EndOfStream)
