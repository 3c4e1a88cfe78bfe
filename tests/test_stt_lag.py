"""The STT measurements on real callers (pipeline/bench/stt_lag.py), the domain LM's estimator, the committed
word-lag record and the Moonshine engine: hand-computed Witten-Bell probabilities, the alignment that
decides when a partial shows a word, the record against its JSON, Moonshine on two real GetGoing test
turns and the word-lag measurement on them (a two-call GetGoing build, about half a minute, as
tests/test_bench_getgoing.py makes it)."""
from __future__ import annotations

import json
import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pipeline.bench.stt_lag import Segment, SttLagBenchConfig, aligned_ref, engine_summary, measure_engine, prepare_turns, word_lags  # noqa: E402
from vad_turn.engines.arpa_lm import NgramLM  # noqa: E402
from vad_turn.core.schema import Word  # noqa: E402
from vad_turn.engines.stt import STT_ENGINES, stt_word_lag, word_error_rate, word_lag_path  # noqa: E402


def test_witten_bell_trigram_by_hand():
    lm = NgramLM([([["a", "b"], ["a", "c"], ["a", "b"]], 1.0)])
    # unigram counts (</s> 3, a 3, b 2, c 1: N = 9, 4 types): lambda = 9 / 13, uniform 1/4
    assert lm.prob(["a"]) == pytest.approx(9 / 13 * 3 / 9 + 4 / 13 / 4)
    assert lm.prob(["c"]) == pytest.approx(9 / 13 * 1 / 9 + 4 / 13 / 4)
    # P(b | a): c(a) = 3 with 2 follower types -> lambda 3/5; P(b | <s> a): c = 3, 2 types
    p_b_a = 3 / 5 * 2 / 3 + 2 / 5 * lm.prob(["b"])
    assert lm.prob(["a", "b"]) == pytest.approx(p_b_a)
    assert lm.prob(["<s>", "a", "b"]) == pytest.approx(3 / 5 * 2 / 3 + 2 / 5 * p_b_a)
    # an unseen trigram backs off: alpha(b) * P(</s> | b) ... and every context sums to one
    vocab = [w for w in lm.vocab if w != "<s>"]
    for ctx in [(), ("<s>",), ("a",), ("b",), ("<s>", "a"), ("a", "b"), ("x", "y")]:
        assert sum(lm.prob(list(ctx) + [w]) for w in vocab) == pytest.approx(1.0, abs=1e-9)
    arpa = lm.arpa()
    assert "ngram 1=5" in arpa and "ngram 3=4" in arpa
    assert f"{math.log10(4 / 13):.6f}\ta\t" in arpa


def test_pruned_model_stays_normalised_and_oov_words_split_sentences():
    sents = [["go", "to", "fifth", "avenue"], ["go", "to", "forbes"], ["go", "home"], ["zzz", "go", "to"]]
    lm = NgramLM([(sents, 2.0)], min_count=3.0, vocab={"go", "to", "fifth", "avenue", "forbes", "home"})
    assert ("zzz",) not in lm.probs[0]  # out of the vocabulary: no n-gram holds it
    assert ("<s>", "go", "to") in lm.probs[2] and ("go", "to", "fifth") not in lm.probs[2]  # weighted count 6 vs 2
    vocab = [w for w in lm.vocab if w != "<s>"]
    for ctx in [("go", "to"), ("<s>", "go"), ("to",)]:
        assert sum(lm.prob(list(ctx) + [w]) for w in vocab) == pytest.approx(1.0, abs=1e-9)


def test_a_partial_shows_a_word_when_the_alignment_fills_its_place():
    assert aligned_ref(["go", "to", "fifth"], ["go", "two"]) == {0, 1}
    assert aligned_ref(["go", "to", "fifth"], []) == set()
    assert aligned_ref(["yes"], ["yes", "please"]) == {0}
    words = [Word("go", 0.5, 0.7), Word("home", 0.8, 1.1), Word("now", 3.0, 3.2)]
    seg = Segment([np.zeros(19200, np.float32)], [1], start_s=0.2, end_s=1.4)  # one 1.2 s chunk, read at its end
    dec = {"partials": [(1.2, "go hum", 0.01)], "finish_cpu_s": 0.05}
    lags = word_lags(words, [seg], [dec])
    assert [w["segment"] for w in lags] == [0, 0, None]
    assert lags[0]["final_lag_s"] == pytest.approx(1.45 - 0.7) and lags[1]["final_lag_s"] == pytest.approx(1.45 - 1.1)
    assert lags[1]["partial_lag_s"] == pytest.approx(1.21 - 1.1)  # "hum" fills "home"'s place at the read
    assert "final_lag_s" not in lags[2]  # outside every VAD segment


def test_the_committed_record_is_what_stt_word_lag_reads():
    doc = json.loads(word_lag_path().read_text())
    assert set(doc["engines"]) <= set(STT_ENGINES.values()) and "moonshine-base" in doc["engines"]
    for name, row in doc["engines"].items():
        rec = stt_word_lag(name)
        assert rec["final_p90_s"] == row["final_p90_s"] and rec["wer"] == row["wer"]
        assert rec["measured"]["n_turns"] >= 60 and rec["measured"]["threads"] == 1 and rec["measured"]["cpu"]
        assert rec["final_p50_s"] <= rec["final_p90_s"] and rec["partial_p50_s"] <= rec["partial_p90_s"]
        assert rec["partial_p90_s"] <= rec["final_p90_s"] + 1e-9  # a partial never shows a word after its final
        assert rec["segment_end_final_p90_s"] <= rec["final_p90_s"] + 1e-9 and rec["has_partials"] == (rec["partial_wer"] is not None)
        assert rec["finish_ms_p50"] <= rec["finish_ms_p90"] and 0 < rec["rtf"] < 5  # whisper's 30 s window: > 1
    assert doc["definition"].startswith("Lags")
    ms, ps = stt_word_lag("moonshine"), stt_word_lag("pocketsphinx")  # what made moonshine the recommendation
    assert ms["wer"] < 0.5 < 0.8 < ps["wer"] and not ms["has_partials"] and ps["has_partials"]
    assert stt_word_lag("moonshine") == stt_word_lag("moonshine-base")  # make_stt name or engine name
    from vad_turn.engines.stt import make_stt

    eng = make_stt("pocketsphinx")  # the engine carries its record; the detector's lag is its pause-word P90
    assert eng.word_lag == stt_word_lag("pocketsphinx") and eng.word_lag_s == eng.word_lag["segment_end_partial_p90_s"]
    with pytest.raises(KeyError, match="no word-lag record"):
        stt_word_lag("no-such-engine")


@pytest.fixture(scope="module")
def two_turns(tiny_getgoing):
    return prepare_turns(SttLagBenchConfig(n_turns=2))


def test_moonshine_hears_real_getgoing_callers(two_turns):
    from vad_turn.engines.stt_moonshine import MoonshineSTT

    stt = MoonshineSTT()
    hyps = [stt.transcribe(t["audio"])[0] for t in two_turns]
    w = word_error_rate([t["ref"] for t in two_turns], hyps)
    assert w["n_ref_words"] >= 2 and w["wer"] <= 0.5, (hyps, [t["ref"] for t in two_turns])


def test_word_lag_measurement_on_two_real_turns(two_turns):
    from vad_turn.engines.stt import PocketsphinxSTT
    from vad_turn.engines.stt_moonshine import MoonshineSTT

    # the pipeline's VAD cuts the clips (1 s lead-in) into 1 and 2 segments, each from 0.3 s before its onset
    assert [len(t["segments"]) for t in two_turns] == [1, 2]
    assert all(0.6 < t["segments"][0].start_s < 0.9 for t in two_turns)
    ps = engine_summary(measure_engine(PocketsphinxSTT(), two_turns))
    ms = engine_summary(measure_engine(MoonshineSTT(), two_turns))
    # the build's words are faster-whisper's timings: 12 on AVX2 CPUs, 11 with AVX-512 ("murray" unheard)
    n_words = sum(len(t["words"]) for t in two_turns)
    assert 11 <= n_words <= 12 and ps["n_words"] == ms["n_words"] == n_words and ps["n_words_outside_vad"] == 0
    assert ps["has_partials"] and not ms["has_partials"]
    assert ms["wer"] <= 0.4 < 0.5 <= ps["wer"]  # measured 0.17 vs 0.75
    # the last word's final: VAD stop (~0.2-0.3 s after it) + the decode; Moonshine decodes only at the stop
    assert 0.1 < ps["eot_final_p50_s"] < 0.6 and 0.3 < ms["eot_final_p50_s"] < 1.5  # measured 0.29, 0.74
    assert ms["eot_final_p50_s"] > ps["eot_final_p50_s"]
    assert 1 <= ps["finish_ms_p50"] < 250 and 100 <= ms["finish_ms_p50"] < 1500  # 1 shared EPYC core: noisy
    assert ps["partial_p50_s"] < ps["final_p50_s"] and ms["partial_p50_s"] == ms["final_p50_s"]
    assert 0.05 < ps["rtf"] < 1.0 and 0.05 < ms["rtf"] < 1.0
