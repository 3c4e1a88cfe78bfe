"""The shipped turn model as a Pipecat turn analyzer (issue 27), tested by running Pipecat itself.

Real Pipecat pipelines (`vad_turn.integrations.pipecat_replay.replay`: Pipecat's Silero VAD processor, its user
turn processor and `TurnAnalyzerUserTurnStopStrategy`) are fed recorded audio: the demo's hesitation sample
("I want to book a flight to, um" + 1 s + "Boston") and real GetGoing callers (the two-call test build of
tests/conftest.py). Our analyzer must end the turns where the project's own pipeline decides on the
same audio with the same policy (`benchmarks/pipecat_agreement.project_decisions`: the project's VAD processor
and TurnProcessor, manual clock), within one 0.1 s grid step; Pipecat's own Smart Turn analyzer swapped in gives
its own decisions, with the very probabilities of the project's Smart Turn detector on the audio it scored.
Nothing is mocked: Pipecat's classes, our model, Smart Turn's ONNX file."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from pipecat_agreement import (  # noqa: E402
    _DetectorShownNoWords,
    agree,
    getgoing_turns,
    outcome,
    paired_difference,
    project_decisions,
    recording_smart_turn,
)

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, resample  # noqa: E402
from vad_turn.core.schema import WordError  # noqa: E402
from vad_turn.harness.query import QUERY_GRID_S  # noqa: E402
from vad_turn.integrations.pipecat import TranscriptFeeder, TurnModelAnalyzer, TurnModelParams  # noqa: E402
from vad_turn.integrations.pipecat_replay import pcm16, replay  # noqa: E402

LEAD_S, TAIL_S = 0.5, 3.5


@pytest.fixture(scope="module")
def fused():
    from vad_turn.harness.detectors import make_detector

    return make_detector("fused")


@pytest.fixture(scope="module")
def clips(tiny_getgoing):
    """The hesitation sample and three GetGoing test turns (two of them with a pause inside), each followed by
    TAIL_S of silence (room for Smart Turn's 3 s timeout)."""
    from pipeline.serving.demo.samples import HESITATION_PARTS, hesitation_turn

    hes = hesitation_turn(1.0)
    lead, tail = np.zeros(int(LEAD_S * SAMPLE_RATE_HZ), np.float32), np.zeros(int(TAIL_S * SAMPLE_RATE_HZ), np.float32)
    out = [{"id": "hesitation", "audio": np.concatenate([lead, hes.audio, tail]), "end_s": LEAD_S + hes.speech_end_s,
            "holds": [(LEAD_S + a, LEAD_S + b) for a, b in hes.holds], "words": (), "messages": (),
            "text": " ".join(HESITATION_PARTS)}]
    gg = getgoing_turns("test", built_root=tiny_getgoing)
    held = [t for t in gg if t["holds"]]
    assert len(held) == 2, [t["id"] for t in gg]
    for t in held + [next(t for t in gg if not t["holds"])]:
        out.append({**t, "audio": np.concatenate([t["audio"], tail]), "text": " ".join(w.word for w in t["words"])})
    return out


@pytest.fixture(scope="module")
def ours_runs(clips, fused):
    """Our analyzer (audio only, the shipped voice-agent policy) through Pipecat, and the project's pipeline."""
    out = {}
    for c in clips:
        an = TurnModelAnalyzer(model=fused.model)
        an.set_messages(c["messages"])
        run = replay(c["audio"], an)
        proj = project_decisions(c["audio"], _DetectorShownNoWords(fused), an.policy, words=c["words"],
                                 messages=c["messages"], text=c["text"])
        out[c["id"]] = (an, run, [d["decided_s"] for d in proj], proj)
    return out


def _same_or_vads_apart(an, run, proj: list[dict]) -> bool:
    """Both pipelines end the turn first within one grid step (`agree`); or, where they do not, the two VADs put the
    first speech end at least 20 ms apart (Pipecat's VAD stop less its 0.2 s against the project's VAD processor,
    which may also bridge a short pause Pipecat's reports). The model's p at a short silence moves with those last
    frames (v3 at 0 s: 0.37 against 0.68 on a real caller's short turn), so there the two may decide differently;
    `benchmarks/pipecat_agreement.py` measures how often on every GetGoing test turn (README)."""
    ours = run.turn_stops_s
    if agree(ours, [d["decided_s"] for d in proj]):
        return True
    if not (ours and proj and an.decisions):
        return False
    return abs((proj[0]["decided_s"] - proj[0]["silence_s"]) - an.decisions[0]["speech_end_s"]) >= 0.02


def test_pipecat_ends_turns_where_the_project_pipeline_decides(clips, ours_runs):
    from vad_turn.harness.operating_points import default_policy

    pol = default_policy()
    n_decisions = 0
    n_apart = 0
    for c in clips:
        an, run, project_s, proj = ours_runs[c["id"]]
        assert (an.policy.threshold, an.policy.action_delay_s, an.policy.timeout_s) == \
            (pol.threshold, pol.action_delay_s, pol.timeout_s)
        assert run.turn_stops_s, (c["id"], run.events)
        # the same decision as the project's pipeline, within one grid step; when it is not a false cut-off, the only
        # one on both sides (after a cut-off the pipelines differ by design: `agree`). Only where the two VADs
        # disagree on the speech end may they differ (`_same_or_vads_apart`), never on the hesitation sample
        assert _same_or_vads_apart(an, run, proj), (c["id"], run.turn_stops_s, proj)
        apart = not agree(run.turn_stops_s, project_s)
        assert not (apart and c["id"] == "hesitation"), (run.turn_stops_s, proj)
        n_apart += apart
        if not apart and run.turn_stops_s[0] >= c["end_s"]:
            assert len(run.turn_stops_s) == len(project_s) == 1, (c["id"], run.turn_stops_s, project_s)
        # each decision: on the 0.1 s grid from the speech end (Pipecat's VAD stop less its 0.2 s), at p >= threshold or
        # at the timeout, emitted on the 20 ms chunk that reached it, never before Pipecat's VAD heard the stop
        assert len(an.decisions) == len(run.turn_stops_s)
        for d, t in zip(an.decisions, run.turn_stops_s):
            k = d["silence_s"] / QUERY_GRID_S
            assert abs(k - round(k)) < 1e-6 and d["silence_s"] <= pol.timeout_s + 1e-9
            assert d["timeout"] or d["p_eot"] >= pol.threshold
            assert t == pytest.approx(d["emitted_s"], abs=1e-6)
            assert -1e-6 <= d["emitted_s"] - max(d["decided_s"], d["speech_end_s"] + 0.2) < 0.02 + 1e-6
            assert any(abs(v - 0.2 - d["speech_end_s"]) < 1e-6 for v in run.times("vad_stop"))
        n_decisions += len(project_s)
    assert n_decisions >= len(clips) and n_apart <= len(clips) // 2
    # the hesitation sample: Pipecat's VAD hears the pause (a stop inside it) and the end
    hes = next(c for c in clips if c["id"] == "hesitation")
    (a, b), = hes["holds"]
    stops = ours_runs["hesitation"][1].times("vad_stop")
    assert len(stops) == 2 and a < stops[0] - 0.2 < a + 0.3 and stops[1] - 0.2 > b


def test_smart_turn_swapped_in_gives_its_own_decisions(clips, ours_runs):
    """Pipecat's LocalSmartTurnAnalyzerV3 on the same audio: asked once per VAD stop, the turn ends there when
    P(complete) > 0.5, else stop_secs (3 s) of silence later; its P equals the project's Smart Turn detector's on
    the audio Pipecat scored; and its decisions are its own (the hesitation's pause is held, not ended)."""
    from vad_turn.harness.detectors import make_detector

    ours_det = make_detector("smart-turn")
    differs = False
    for c in clips:
        st = recording_smart_turn()
        run = replay(c["audio"], st)
        vad_stops = run.times("vad_stop")
        assert len(st.scored) == len(vad_stops) >= 1, (c["id"], run.events)
        heard = np.frombuffer(pcm16(c["audio"]), "<i2").astype(np.float32) / 32768.0  # what Pipecat was given
        for (audio, p), v in zip(st.scored, vad_stops):
            assert abs(ours_det.predict(audio, (), (), 0.0) - p) < 1e-5
            end = int(round(v * SAMPLE_RATE_HZ))  # it scored the audio up to its VAD's stop (how far back: wall clock)
            assert 0 < audio.size <= end and np.array_equal(audio, heard[end - audio.size:end])
        complete = [v for (_, p), v in zip(st.scored, vad_stops) if p > 0.5]
        for t in run.turn_stops_s:
            assert any(abs(t - v) < 1e-6 for v in complete) or any(abs(t - v - 3.0) < 0.02 + 1e-6 for v in vad_stops), \
                (c["id"], t, vad_stops)
        differs |= not agree(run.turn_stops_s, ours_runs[c["id"]][1].turn_stops_s)
        if c["id"] == "hesitation":
            (a, b), = c["holds"]
            assert st.scored[0][1] < 0.1 and run.turn_stops_s[0] > b  # "... a flight to, um": incomplete, held
    assert differs


def test_the_transcript_is_used_when_given(clips, fused):
    """With the turn's words (`add_words`, stream times) our analyzer in Pipecat still decides where the project's
    pipeline decides when its fused detector is shown the same words (0.7 s after they end), on a real caller's
    turn with a pause; and the words change p_eot from the audio-only run's."""
    c = next(c for c in clips if c["holds"] and c["id"] != "hesitation")
    an = TurnModelAnalyzer(model=fused.model)
    an.set_messages(c["messages"])
    an.add_words(c["words"])
    run = replay(c["audio"], an)
    proj = project_decisions(c["audio"], fused, an.policy, words=c["words"], messages=c["messages"], text=c["text"])
    assert _same_or_vads_apart(an, run, proj), (run.turn_stops_s, proj)
    # every grid point asked (threshold 1: only the timeout ends the turn), with and without the words: the same
    # p_eot until the first word is shown (lag after it ends), different once words are shown
    lag = an.policy.transcript_lag_s
    scores = {}
    for mode in ("audio", "words"):
        a = TurnModelAnalyzer(model=fused.model, params=TurnModelParams(threshold=1.0))
        a.set_messages(c["messages"])
        if mode == "words":
            a.add_words(c["words"])
        replay(c["audio"], a)
        scores[mode] = list(a.scores)
    assert [s[:2] for s in scores["audio"]] == [s[:2] for s in scores["words"]] and len(scores["audio"]) >= 15
    first_seen = c["words"][0].end + lag
    before = [(x[2], y[2]) for x, y in zip(scores["audio"], scores["words"]) if x[0] < first_seen - 1e-6]
    after = [(x[2], y[2]) for x, y in zip(scores["audio"], scores["words"]) if x[0] >= first_seen + 1e-6]
    assert after and max(abs(x - y) for x, y in after) > 0.01
    assert all(abs(x - y) < 1e-9 for x, y in before)


def test_transcript_feeder_forwards_pipecat_transcripts():
    """Pipecat's TranscriptionFrame / InterimTranscriptionFrame reach the analyzer through TranscriptFeeder (frames pass
    on unchanged); the text's words are spread evenly over the speech up to its end, as the project's pipeline spreads
    a partial transcript."""
    from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
    from pipecat.tests.utils import run_test

    an = TurnModelAnalyzer(params=TurnModelParams(threshold=1.0), sample_rate=SAMPLE_RATE_HZ)  # never ends the turn
    frames = [TranscriptionFrame("i want to", "u", "t"), InterimTranscriptionFrame("book a", "u", "t")]
    down, _ = asyncio.run(run_test(TranscriptFeeder(an), frames_to_send=frames,
                                   expected_down_frames=[TranscriptionFrame, InterimTranscriptionFrame]))
    assert [f.text for f in down] == ["i want to", "book a"]
    speech, silence = np.full(16_000, 0.1, np.float32), np.zeros(3_200, np.float32)
    an.append_audio(pcm16(speech), True)   # 1 s of "speech" (the onset 0.2 s before it: no audio kept before)
    an.append_audio(pcm16(silence), False)  # the stop: the speech ended vad_stop_secs (0.2 s) before 1.0 s
    words = an._words()
    assert [w.word for w in words] == ["i", "want", "to", "book", "a"]
    assert words[-1].end == pytest.approx(0.8) and words[1].start == pytest.approx(0.16)


def test_params_default_to_the_voice_agent_operating_point_and_override():
    from vad_turn.harness.operating_points import default_policy

    pol = default_policy()
    p = TurnModelParams().resolved()
    assert (p.threshold, p.action_delay_s, p.timeout_s, p.transcript_lag_s) == \
        (pol.threshold, pol.action_delay_s, pol.timeout_s, pol.transcript_lag_s)
    q = TurnModelParams(threshold=0.9, timeout_s=2.0).resolved()
    assert (q.threshold, q.timeout_s, q.action_delay_s) == (0.9, 2.0, pol.action_delay_s)
    an = TurnModelAnalyzer(params=TurnModelParams(threshold=0.9), sample_rate=8000)
    assert an.params.threshold == 0.9 and an.policy.threshold == 0.9 and an.policy.preemptive_fraction is None
    with pytest.raises(ValueError, match="threshold"):
        TurnModelAnalyzer(params=TurnModelParams(threshold=1.5))
    with pytest.raises(ValueError, match="action-delay-s 2 must be <= --timeout-s 1"):
        TurnModelAnalyzer(params=TurnModelParams(action_delay_s=2.0, timeout_s=1.0))
    with pytest.raises(ValueError, match="grid-s"):
        TurnModelAnalyzer(params=TurnModelParams(grid_s=0.0))
    with pytest.raises(ValueError, match="vad_stop_secs 2 must be <= timeout_s 1.5"):
        TurnModelAnalyzer(params=TurnModelParams(vad_stop_secs=2.0, timeout_s=1.5))


def test_bad_input_is_refused():
    an = TurnModelAnalyzer()
    with pytest.raises(AudioError, match="no sample rate"):
        an.append_audio(b"\x00\x00", False)
    an.set_sample_rate(16_000)
    with pytest.raises(AudioError, match="3 bytes is not 16-bit PCM"):
        an.append_audio(b"\x00\x00\x00", True)
    with pytest.raises(WordError, match="before word 0"):
        an.add_words([("later", 2.0, 2.3), ("earlier", 1.0, 1.2)])
    with pytest.raises(ValueError, match="text must be a str"):
        an.update_transcript(None)
    with pytest.raises(AudioError, match="finite mono"):
        pcm16(np.zeros((10, 2)))


def test_telephone_rate_input_decides_as_at_16k(clips, fused):
    """The same real caller at 8 kHz (a telephony pipeline's rate), fed with the same VAD verdicts as at 16 kHz:
    the analyzer converts it in stream and ends the turn within one grid step of the 16 kHz decision."""
    c = next(c for c in clips if c["id"] != "hesitation")
    decisions = {}
    for rate in (16_000, 8_000):
        an = TurnModelAnalyzer(model=fused.model, sample_rate=rate)
        audio = c["audio"] if rate == 16_000 else resample(c["audio"], 16_000, rate)
        speech_until = c["end_s"] + 0.2  # a VAD that hears speech up to the turn's end, its stop 0.2 s later
        n = int(0.02 * rate)
        for i in range(0, audio.size, n):
            if an.append_audio(pcm16(audio[i:i + n]), i / rate < speech_until).name == "COMPLETE":
                decisions[rate] = (i + n) / rate
                break
    assert decisions[8_000] == pytest.approx(decisions[16_000], abs=QUERY_GRID_S + 1e-6), decisions


def test_paired_difference_to_vad_only_counts_turns_and_resamples_calls():
    """The agreement benchmark's policy - VAD-only: cut-off points over all turns, latency over turns both answered,
    intervals that resample calls (two calls: every resample is one of the four call draws)."""
    def row(call, i, ours_s, vad_s, end_s=1.0):
        return {"id": f"{call}-{i:03d}-caller", "a": outcome(ours_s, end_s), "b": outcome(vad_s, end_s)}

    rows = [row("c1", 0, [1.6], [1.6]), row("c1", 1, [0.5], [0.5]), row("c2", 0, [1.7], [0.6]),
            row("c2", 1, [1.65], [1.6])]
    d = paired_difference(rows, "a", "b", n_boot=400)
    assert d["n_turns"] == 4 and d["n_calls"] == 2 and d["false_cutoffs"] == [1, 2]
    assert d["fcr_pt"]["value"] == pytest.approx(-25.0)
    assert d["n_turns_latency"] == 2 and d["mean_latency_s"]["value"] == pytest.approx(0.025)
    lo, hi = d["fcr_pt"]["ci95"]
    assert lo == pytest.approx(-50.0) and hi == pytest.approx(0.0)  # c2 twice, c1 twice
    assert d["mean_latency_s"]["ci95"][0] == pytest.approx(0.0) and d["mean_latency_s"]["ci95"][1] == pytest.approx(0.05)
