"""The bench's "getgoing" scenario set (real callers' telephone turns), the per-set report and the STT
word agreement: scenarios checked against their dataset rows, agreement on hand-made strings, summaries
on hand-made rows, and a real-time bench run (about 25 s) over two GetGoing turns.

The GetGoing tests build their own two-call GetGoing test split from the real calls (read in place, about
half a minute): a fresh clone's `make test-data` does not build the 28 h corpus."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import emitted_silence_bounds, endpoint_bounds  # noqa: E402

from pipeline.bench.e2e import BenchConfig, pipeline_config, summarize, summarize_sets  # noqa: E402
from pipeline.bench.report import report_md  # noqa: E402
from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes  # noqa: E402
from vad_turn.core.schema import normalize_text  # noqa: E402
from vad_turn.engines.stt import word_agreement  # noqa: E402


def test_word_agreement_is_one_minus_corpus_wer_on_hand_made_strings():
    # "and atwood" -> "at wood": 2 substitutions; "yes" -> "yes please": 1 insertion; 3 edits / 6 reference words
    w = word_agreement(["go to fifth and atwood", "yes"], ["go to fifth at wood", "yes please"])
    assert (w["n_errors"], w["n_ref_words"], w["n_utts"]) == (3, 6, 2)
    assert w["wer"] == pytest.approx(0.5) and w["agreement"] == pytest.approx(0.5)
    assert word_agreement(["Fifth and Atwood."], ["fifth and atwood"])["agreement"] == pytest.approx(1.0)
    assert word_agreement(["yes"], ["oh yes yes yes"])["agreement"] == pytest.approx(-2.0)  # 3 insertions / 1 word
    assert word_agreement(["no"], [""])["agreement"] == pytest.approx(0.0)


def test_getgoing_scenarios_match_their_dataset_rows(tiny_getgoing):
    from pipeline.bench.getgoing_scenarios import getgoing_scenarios, select_getgoing_rows

    rows = select_getgoing_rows(4, seed=0)
    scen = getgoing_scenarios(4, seed=0)
    assert [r["split"] for r in rows] == ["test"] * 4
    assert sum(len(r["silence_spans"]) > 1 for r in rows) == 2  # half of them hold inside the turn
    assert [s.id for s in scen] == [f"gg-{r['id']}" for r in rows]
    for sc, row in zip(scen, rows):
        (turn,) = sc.turns
        audio = decode_audio_bytes(row["audio"]["bytes"], source=row["id"])
        assert sc.kind == "conversation" and sc.meta["set"] == "getgoing" and turn.source == "getgoing"
        assert turn.audio.size == audio.size and np.array_equal(turn.audio, audio)  # the whole clip, as recorded
        spans = row["silence_spans"]
        assert turn.speech_end_s == pytest.approx(spans[-1]["start"], abs=1e-9)
        assert row["words"][-1]["end"] <= turn.speech_end_s + 1e-6  # the words lie inside the turn's speech
        assert turn.holds == tuple((s["start"], s["end"]) for s in spans[:-1])
        assert all(turn.speech_end_s > b > a > 0.0 for a, b in turn.holds)
        # the clip: 1 s of lead-in (from the recording start at most), the turn, its real end span
        assert turn.duration_s == pytest.approx(spans[-1]["end"], abs=2.0 / SAMPLE_RATE_HZ)
        assert turn.speech_end_s < turn.duration_s
        assert turn.text == normalize_text(sc.meta["log_text"].split()) and turn.text
        assert [dict(m) for m in sc.history] == [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        assert sc.history[-1]["role"] == "assistant"  # the system's prompt the caller answered
    assert [s.id for s in getgoing_scenarios(4, seed=0)] == [s.id for s in scen]  # seeded
    assert [s.id for s in getgoing_scenarios(4, seed=1)] != [s.id for s in scen]


def test_player_seeds_the_history_plays_the_real_tail_and_ends_the_turn_at_speech_end():
    """A recording with a real tail: the truth's end is `end_s`, not the clip's end; the whole clip is played;
    the call's earlier turns are in the conversation before the first audio (manual clock, no models)."""
    import asyncio

    from pipeline.bench.e2e import play_scenario
    from pipeline.runtime.clock import ManualClock
    from pipeline.runtime.frames import AudioIn
    from pipeline.runtime.observers import LatencyObserver
    from pipeline.runtime.processors.base import Conversation
    from pipeline.runtime.runner import AudioInput
    from pipeline.bench.scenarios import Scenario, ScriptedTurn

    class Stub:  # what play_scenario touches of a pipeline
        def __init__(self):
            self.clock, self.conversation, self.fed = ManualClock(), Conversation(messages=[{"role": "system",
                                                                                          "content": "sys"}]), []

        def feed(self, frame):
            self.fed.append((frame, list(self.conversation.messages)))

        def broadcast(self, frame, source):
            pass

    turn = ScriptedTurn("t", "fifth and atwood", np.full(2 * SAMPLE_RATE_HZ, 0.1, np.float32), ((0.5, 0.7),),
                        "getgoing", end_s=1.2)
    history = ({"role": "user", "content": "transit"}, {"role": "assistant", "content": "Where do you want to go?"})
    sc = Scenario("gg-t", "conversation", (turn,), meta={"set": "getgoing"}, history=history)

    async def go():
        p = Stub()
        src = AudioInput(p)
        task = asyncio.ensure_future(play_scenario(p, src, LatencyObserver(), sc, max_wait_s=0.5))
        while not task.done():
            await p.clock.advance(0.1)
        return p, src, task.result()

    p, src, (truth,) = asyncio.run(go())
    assert truth["start_stream"] == pytest.approx(0.3) and truth["end_stream"] == pytest.approx(0.3 + 1.2)
    assert truth["end"] - truth["start"] == pytest.approx(1.2) and truth["n_holds"] == 1
    assert truth["holds"] == [pytest.approx((truth["start"] + 0.5, truth["start"] + 0.7))]
    loud = [f for f, _ in p.fed if isinstance(f, AudioIn) and f.audio.any()]
    assert sum(f.audio.size for f in loud) == turn.audio.size  # lead-in, speech and the real tail, all played
    assert loud[0].stream_t_s == pytest.approx(0.3) and loud[-1].end_stream_s == pytest.approx(2.3)
    assert all(msgs[1:] == list(history) for _, msgs in p.fed)  # seeded before the first frame


def test_bench_config_checks_scenario_sets():
    with pytest.raises(ValueError, match="unknown"):
        BenchConfig(scenario_sets=("festival", "ami"))
    with pytest.raises(ValueError, match="at least one"):
        BenchConfig(scenario_sets=())
    with pytest.raises(ValueError, match="getgoing-turns"):
        BenchConfig(getgoing_turns=0)


def _row(set_name, e2e_s, cutoff, text, transcript):
    return {"config": "streaming-vad", "scenario": f"{set_name}-{e2e_s}", "kind": "conversation", "set": set_name,
            "cutoff": cutoff, "answered": True, "e2e_s": e2e_s, "endpoint_s": e2e_s - 0.5, "processing_s": 0.5,
            "text": text, "transcript": transcript}


def test_summaries_and_report_per_scenario_set():
    rows = [_row("festival", 1.0, False, "a b c d", "a b c d"), _row("festival", 2.0, False, "a b", "a x"),
            _row("getgoing", 3.0, True, "fifth and atwood", "fifth at wood"), _row("getgoing", 5.0, False, "no", "no")]
    old = {k: v for k, v in _row("festival", 4.0, False, "yes", "yes").items() if k != "set"}  # a run before sets
    by_set = summarize_sets(rows + [old])
    assert list(by_set) == ["festival", "getgoing"]
    fest, gg = by_set["festival"]["streaming-vad"], by_set["getgoing"]["streaming-vad"]
    assert fest["n_turns"] == 3 and fest["e2e_s"]["p50"] == pytest.approx(2.0) and fest["false_cutoff_rate"] == 0.0
    assert fest["stt_wer"]["wer"] == pytest.approx(1 / 7)  # 1 substitution in 4 + 2 + 1 words
    assert gg["n_turns"] == 2 and gg["e2e_s"]["p50"] == pytest.approx(4.0) and gg["false_cutoff_rate"] == 0.5
    assert gg["stt_wer"]["wer"] == pytest.approx(2 / 4) and gg["stt_wer"]["n_ref_words"] == 4
    everything = summarize(rows + [old])["streaming-vad"]
    assert everything["n_turns"] == 5 and everything["e2e_s"]["p50"] == pytest.approx(3.0)
    md = report_md(summarize(rows), {"command": "pipeline bench"}, by_set)
    assert md.index("## Scenario set `festival`") < md.index("## Scenario set `getgoing`")
    for n in (4, 3, 2):  # all sets (without the old row), festival, getgoing
        assert md.count(f"| streaming-vad | {n} |") == 1
    assert "| 50% | 0.50 (4 words) |" in md  # getgoing: false cut-offs, STT WER
    assert "barge-in n" not in md  # no interjection scenario, no empty table


def test_preemptive_starts_and_their_waste_are_summarised():
    """Issue 15 #2: preemptive generation's cost is reported: starts, confirmed, discarded (wasted LLM work)."""
    rows = [{**_row("festival", 1.0, False, "a", "a"), "config": "streaming-semantic", "n_preemptive": 1,
             "n_preempt_discarded": 0, "preempt_hidden_s": 0.3},
            {**_row("festival", 2.0, False, "b", "b"), "config": "streaming-semantic", "n_preemptive": 2,
             "n_preempt_discarded": 1, "preempt_hidden_s": 0.1},
            {**_row("festival", 3.0, False, "c", "c"), "config": "streaming-semantic", "n_preemptive": 0,
             "n_preempt_discarded": 0}]
    s = summarize(rows)["streaming-semantic"]
    assert s["preemptive"] == {"starts": 3, "discarded": 1, "confirmed": 2}
    md = report_md(summarize(rows), {"command": "pipeline bench"})
    assert "streaming-semantic: 3 starts, 2 confirmed, 1 discarded (wasted LLM work)" in md


def test_demo_lists_getgoing_test_turns_as_real_samples(tiny_getgoing):
    """Issue 15 #4: the demo offers GetGoing test turns (real callers) as samples, from the built GetGoing root."""
    from pipeline.serving.demo.samples import getgoing_built_root, getgoing_samples

    assert getgoing_built_root() == tiny_getgoing  # $VAD_TURN_BUILT_ROOT, as a full build would be found
    samples = getgoing_samples(tiny_getgoing, n=4)
    assert len(samples) == 4
    held = [label for label, sc in samples.items() if sc.turns[0].holds]
    assert len(held) == 2 and all("pause" in label for label in held)  # half with a pause inside, as in the bench
    for label, sc in samples.items():
        assert sc.meta["set"] == "getgoing" and sc.history and sc.history[-1]["role"] == "assistant"
        assert f"\"{sc.meta['log_text']}\"" in label and sc.turns[0].audio.dtype == np.float32


@pytest.mark.timeout(600)
def test_bench_plays_two_getgoing_turns_in_real_time(tiny_getgoing, tmp_path, monkeypatch):
    """VAD-only and the peer (Smart Turn v3.2 at Pipecat's policy) on the same two real caller turns."""
    from pipeline.bench.e2e import PEER_CONFIGS, run

    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path / "runs"))
    res = run(BenchConfig(out=tmp_path / "bench", configs=("streaming-vad", "streaming-smart-turn"),
                          scenario_sets=("getgoing",), getgoing_turns=2, max_new_tokens=8))
    rows = [json.loads(line) for line in (tmp_path / "bench" / "turns.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {r["set"] for r in rows} == {"getgoing"}
    for config in ("streaming-vad", "streaming-smart-turn"):
        mine = [r for r in rows if r["config"] == config]
        assert len(mine) == 2 and sum(r["n_holds"] > 0 for r in mine) == 1
    # each decision where the policy in force puts it: VAD-only at its stop silence, the peer between its action
    # delay and its timeout, before the timeout only by its score (p_eot >= threshold)
    pols = {c: pipeline_config(BenchConfig(), c).turn_policy() for c in ("streaming-vad", "streaming-smart-turn")}
    span = {c: (p.action_delay_s, p.timeout_s) for c, p in pols.items()}  # VAD-only: both are its stop silence
    assert span["streaming-vad"] == (BenchConfig().policy.stop_silence_s,) * 2
    for r in rows:
        assert r["answered"] and r["source"] == "getgoing"
        assert r["e2e_s"] == pytest.approx(r["endpoint_s"] + r["processing_s"], abs=1e-6)
        pol = pols[r["config"]]
        lo, hi = emitted_silence_bounds(*span[r["config"]], r)
        assert lo <= r["eot_silence_s"] <= hi, (r, pol)
        assert r["p_eot"] >= pol.threshold or r["eot_silence_s"] >= pol.timeout_s - 1e-6, (r, pol)
        if not r["cutoff"]:
            lo, hi = endpoint_bounds(*span[r["config"]], r)
            assert lo <= r["endpoint_s"] <= hi, (r, pol)
    for config in pols:  # the endpoint checks above ran (a turn answered, not cut off) for both configs
        assert any(not r["cutoff"] for r in rows if r["config"] == config), rows
    assert list(res["by_set"]) == ["getgoing"] and res["by_set"]["getgoing"]["streaming-vad"]["n_turns"] == 2
    metrics = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert metrics["by_set"]["getgoing"]["streaming-vad"]["stt_wer"]["n_ref_words"] > 0
    assert metrics["info"]["peer_policies"] == {"streaming-smart-turn": PEER_CONFIGS["streaming-smart-turn"]}
    assert "## Scenario set `getgoing`" in (tmp_path / "bench" / "report.md").read_text()
