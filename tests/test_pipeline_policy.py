"""Latency knobs of the pipeline without models: first-chunk cut, history window, the policy from an eval run."""
from __future__ import annotations

import json

import pytest

from pipeline.bench.e2e import BenchConfig, _command, bench_policy, pipeline_config, summarize
from vad_turn.harness.operating_points import OperatingPointError, policy_from_eval
from pipeline.runtime.processors.llm_proc import LLMProcessor
from pipeline.runtime.processors.speech import clause_cut, first_chunk_pieces
from vad_turn.harness.policy import TurnPolicy


def test_clause_cut_waits_for_the_next_word_and_prefers_punctuation():
    assert clause_cut("I'm so", 2) is None  # "so" may still grow ("sorry")
    assert clause_cut("I'm so sorry", 2) == len("I'm so")
    assert clause_cut(" Well, I", 4) == len(" Well,")
    assert clause_cut("Sure.", 2) is None  # punctuation counts once a space follows
    pieces = ["I", "'m", " so", " sorry", " to", " hear", " that", "."]
    assert [first_chunk_pieces(pieces, k) for k in (1, 2, 3, 4)] == [3, 4, 5, 6]
    assert first_chunk_pieces(["Yes", "."], 4) == 2  # a reply shorter than the cut: all of it


def test_history_window_moves_in_blocks_so_prompts_share_a_prefix():
    proc = LLMProcessor(llm=None, max_history=6)
    hist = [{"role": "user" if i % 2 == 0 else "assistant", "content": str(i)} for i in range(12)]
    starts = [int(proc._window(hist[:n])[0]["content"]) for n in range(1, 13)]
    # 1..6 messages: from 0; 7 overflows -> keep the last 3 (start 4) until 11 overflows again -> start 8
    assert starts == [0] * 6 + [4] * 4 + [8] * 2
    assert all(len(proc._window(hist[:n])) <= 6 for n in range(1, 13))


def _eval_run(tmp_path, detector="fused"):
    run = tmp_path / "eval-x"
    run.mkdir()
    ops = [{"name": "lat@fcr<=10%", "reachable": True, "threshold": 0.35, "action_delay_s": 0.4, "timeout_s": 1.5,
            "false_cutoff_rate": 0.098, "mean_latency_s": 0.52,
            "vad_only": {"threshold": 0.05, "action_delay_s": 0.8, "timeout_s": 1.0, "false_cutoff_rate": 0.097,
                         "mean_latency_s": 0.8}},
           {"name": "lat@fcr<=5%", "reachable": False, "threshold": 0.9, "action_delay_s": 2.0, "timeout_s": 3.0}]
    (run / "metrics.json").write_text(json.dumps({"detector": detector, "dataset": "data/built/switchboard-rendered",
                                                  "split": "dev", "operating_points": ops}))
    return run


def test_policy_comes_from_the_eval_run_with_its_provenance(tmp_path):
    run = _eval_run(tmp_path)
    p = policy_from_eval("fused", "lat@fcr<=10%", run_dir=run)
    assert (p["threshold"], p["action_delay_s"], p["timeout_s"]) == (0.35, 0.4, 1.5)
    assert p["vad_only"] == {"stop_silence_s": 0.8, "false_cutoff_rate": 0.097, "mean_latency_s": 0.8}
    assert p["source"] == str(run) and p["split"] == "dev"
    cfg = BenchConfig(policy_run=run, operating_point="lat@fcr<=10%")
    pol = bench_policy(cfg, "fused")
    pc = pipeline_config(cfg, "streaming-semantic", pol)
    assert pc.turn_policy("fused").threshold == pytest.approx(0.35) and pc.turn_policy("fused").action_delay_s == 0.4
    # one meaning of the preemptive start: a fraction of the threshold; the cascade and the no-preempt config wait
    assert pc.turn_policy("fused").preemptive_threshold == pytest.approx(0.035)
    assert pipeline_config(cfg, "streaming-semantic-no-preempt", pol).turn_policy("fused").preemptive_threshold is None
    assert pipeline_config(cfg, "cascade-semantic", pol).turn_policy("fused").preemptive_threshold is None
    vad = pipeline_config(cfg, "streaming-vad", pol).turn_policy()
    assert (vad.threshold, vad.action_delay_s, vad.timeout_s, vad.preemptive_threshold) == (0.0, 0.6, 0.6, None)
    assert pipeline_config(cfg, "streaming-vad-preempt", pol).turn_policy().preemptive_threshold == 0.0
    assert pc.first_clause_words == 2 and pc.llm_quantize == "auto"
    assert pipeline_config(cfg, "streaming-semantic-int8", pol).llm_quantize == "int8"
    # the like-for-like VAD-only baseline stops at VAD-only's silence of the same evaluated operating point
    assert pipeline_config(cfg, "streaming-vad-eval", pol).policy.stop_silence_s == pytest.approx(0.8)
    assert pipeline_config(cfg, "streaming-vad", pol).policy.stop_silence_s == pytest.approx(0.6)
    assert pipeline_config(cfg, "streaming-vad-matched", pol, stop_silence_s=0.3).turn_policy().timeout_s == 0.3
    with pytest.raises(ValueError, match="matched"):
        pipeline_config(cfg, "streaming-vad-matched", pol)
    manual = bench_policy(BenchConfig(operating_point="manual", policy=TurnPolicy(threshold=0.7, action_delay_s=0.1)),
                          "fused")
    assert (manual["threshold"], manual["action_delay_s"], manual["source"]) == (0.7, 0.1, "manual (bench flags)")
    with pytest.raises(ValueError, match="evaluation run"):
        pipeline_config(BenchConfig(operating_point="manual"), "streaming-vad-eval", manual)


def test_policy_errors_name_the_file_and_the_problem(tmp_path):
    run = _eval_run(tmp_path)
    with pytest.raises(OperatingPointError, match="no operating point 'fcr@lat<=9s'"):
        policy_from_eval("fused", "fcr@lat<=9s", run_dir=run)
    with pytest.raises(OperatingPointError, match="not reachable"):
        policy_from_eval("fused", "lat@fcr<=5%", run_dir=run)
    with pytest.raises(OperatingPointError, match="evaluates detector 'fused', not 'lexical'"):
        policy_from_eval("lexical", run_dir=run)
    with pytest.raises(OperatingPointError, match=r"missing/metrics.json: evaluation metrics not found"):
        policy_from_eval("fused", run_dir=tmp_path / "missing")
    (run / "metrics.json").write_text("{not json")
    with pytest.raises(OperatingPointError, match="malformed"):
        policy_from_eval("fused", run_dir=run)
    with pytest.raises(OperatingPointError, match="no voice-agent evaluation run is known"):
        policy_from_eval("mystery")


def test_bench_command_and_confident_slice():
    cfg = BenchConfig(configs=("streaming-semantic", "streaming-vad"), n_conversation_turns=4,
                      voices=("espeak:en-us",))
    assert _command(cfg) == ("pipeline bench --configs streaming-semantic streaming-vad --n-conversation-turns 4 "
                             "--voices espeak:en-us")
    rows = [{"config": "streaming-semantic", "kind": "conversation", "cutoff": c, "answered": True, "e2e_s": e,
             "p_eot": p} for c, e, p in ((False, 0.3, 0.95), (True, 0.2, 0.97), (False, 1.4, 0.2), (False, 1.6, None))]
    rows += [{"config": "streaming-vad", "kind": "conversation", "cutoff": False, "answered": True, "e2e_s": 0.9,
              "p_eot": 1.0}]
    assert summarize(rows)["streaming-vad"]["e2e_confident_s"]["n"] == 0  # VAD-only has no model confidence
    s = summarize(rows, confident_p_eot=0.9)["streaming-semantic"]
    assert s["e2e_confident_s"]["n"] == 2 and s["e2e_confident_s"]["p50"] == pytest.approx(0.25)
    assert s["false_cutoff_rate"] == pytest.approx(0.25) and s["e2e_s"]["p50"] == pytest.approx(0.85)


def test_words_given_to_an_audio_detector_lie_inside_the_turn_audio():
    """A bench run at threshold 0.5 / delay 0.2 s crashed: PocketSphinx's last word ended 0.26 s after the turn
    audio the processor held, and the fused detector (audio + words) refused it. Word ends are clipped to the audio."""
    from pipeline.runtime.processors.turn import turn_relative_words
    from vad_turn.core.schema import Word, check_words

    words = (Word("to", 9.8, 10.2), Word("fly", 10.2, 10.9), Word("morocco", 14.435, 15.105))
    out = turn_relative_words(words, 10.0, 4.845)
    assert [(w.start, w.end) for w in out] == [(pytest.approx(-0.2), pytest.approx(0.2)), (pytest.approx(0.2), pytest.approx(0.9)),
                                               (pytest.approx(4.435), 4.845)]
    check_words(out, audio_end_s=4.845, source="clipped")  # accepted as the detector checks them
    assert turn_relative_words(words, 10.0, None)[-1].end == pytest.approx(5.105)  # text-only: kept as heard


def test_bench_checks_the_stt_word_lag_against_the_policy_the_semantic_agent_runs(monkeypatch, tmp_path, caplog):
    """The bench loads its models with the base config (the default policy, words 0.5 s late) and sets the shipped
    voice-agent point after: the STT's lag is checked against that point's 0.7 s, which Moonshine (P90 0.69 s)
    meets, not against the base default it would miss."""
    import logging
    from types import SimpleNamespace

    from pipeline.runtime.runner import check_transcript_lag

    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path))  # the shipped point, as on a fresh clone
    cfg = BenchConfig()
    runs = pipeline_config(cfg, "streaming-semantic", bench_policy(cfg, "fused")).turn_policy("fused")
    base = pipeline_config(cfg, "streaming-semantic").turn_policy("fused")
    assert runs.transcript_lag_s == pytest.approx(0.7) and base.transcript_lag_s == pytest.approx(0.5)
    moonshine = SimpleNamespace(name="moonshine-base")
    with caplog.at_level(logging.WARNING):
        assert check_transcript_lag(runs, moonshine) is True and not caplog.records
        assert check_transcript_lag(base, moonshine) is False
    assert "more than 0.69 s after they end, later than the 0.50 s" in caplog.records[-1].getMessage()
