"""The pause model (issue 14 part 2): counts of real holds by word class and position, the fit that puts a
prior's shape at the target's rate, sampling, and the agent-holds turns built with it."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from conftest import require_data
from vad_turn.core.schema import Span, TurnRecord, Word
from vad_turn.data.corpora.agent_holds import SOURCE, SPLITS, build, simulated_turn
from vad_turn.data.pause_model import (
    POSITIONS,
    RECIPE_PATH,
    WORD_CLASSES,
    PauseModel,
    count_pauses,
    fit,
    hold_after,
    load,
    position_bin,
    word_class,
)


def _row(words_and_gaps: list[tuple[str, float]], end_s: float = 1.0) -> dict:
    """A text row: each word 0.3 s long, followed by its gap (a hold when > 0)."""
    t, words, spans = 0.0, [], []
    for w, gap in words_and_gaps:
        words.append(Word(w, t, t + 0.3))
        t += 0.3
        if gap > 0:
            spans.append(Span(t, t + gap))
            t += gap
    spans.append(Span(t, t + end_s))
    return TurnRecord(id="r", source="t", split="train", words=words, silence_spans=spans).to_row()


def test_word_classes_and_positions():
    assert [word_class(w) for w in ("Um,", "and", "to", "the", "Pittsburgh")] == list(WORD_CLASSES)
    assert word_class("that") == "conjunction"  # the schema's conjunctions come first
    assert [position_bin(k, 7) for k in range(1, 7)] == ["early", "early", "middle", "middle", "late", "late"]
    assert position_bin(1, 2) == "early"
    with pytest.raises(ValueError):
        position_bin(3, 3)  # after the last word is the end, not a boundary


def test_counts_put_each_hold_after_its_word():
    row = _row([("i", 0.0), ("want", 0.0), ("to", 0.5), ("go", 0.0), ("um", 0.25), ("downtown", 0.0)])
    words = [Word(w["word"], w["start"], w["end"]) for w in row["words"]]
    spans = [Span(s["start"], s["end"]) for s in row["silence_spans"]]
    durs = hold_after(words, spans)
    assert durs[2] == pytest.approx(0.5) and durs[4] == pytest.approx(0.25)
    assert sum(d is not None for d in durs) == 2
    c = count_pauses([row])
    assert c["n_turns"] == 1 and c["n_boundaries"] == 5 and c["n_holds"] == 2
    # 6 words: boundaries after words 1..5 are early, early(2), middle(3), late(4), late(5)
    assert c["holds"]["preposition"]["middle"] == 1  # "to" is word 3 of 6
    assert c["holds"]["filler"]["late"] == 1  # "um" is word 5 of 6
    assert c["boundaries"]["content"]["early"] == 2 and c["boundaries"]["content"]["middle"] == 1
    assert c["duration_log"]["preposition"]["mean"] == pytest.approx(math.log(0.5))
    assert c["n_medial_fillers"] == 1 and c["n_initial_fillers"] == 0


def test_fit_takes_the_prior_shape_at_the_target_rate():
    # prior: holds only after prepositions (half of them); target: no holds in 100 boundaries of content words
    prior_rows = [_row([("go", 0.0), ("to", 0.4 if i % 2 else 0.0), ("town", 0.0)]) for i in range(400)]
    target_rows = [_row([("fifth", 0.0), ("avenue", 0.0)]) for _ in range(100)]
    prior, target = count_pauses(prior_rows), count_pauses(target_rows)
    m = fit(target, prior, prior_strength=200.0)
    r_p = 200 / 800
    assert m.fitted["hold_rate_prior"] == pytest.approx(r_p) and m.fitted["hold_rate_target"] == 0.0
    # the target has no holds: every cell goes to 0 x scale; only the pseudo-count keeps the prior's zero scale
    assert all(m.p_hold[c][p] == 0.0 for c in WORD_CLASSES for p in POSITIONS)
    # with target holds the prior's shape returns, scaled: prepositions far above content words
    target_rows += [_row([("from", 0.3), ("here", 0.0)]) for _ in range(5)]
    m = fit(count_pauses(target_rows), prior, prior_strength=200.0)
    assert m.p_hold["preposition"]["early"] > 20 * m.p_hold["content"]["early"]
    # a cell's value is the shrinkage formula: (h_t + K q) / (b_t + K), q = prior cell rate x r_t / r_p
    t = count_pauses(target_rows)
    r_t = t["n_holds"] / t["n_boundaries"]
    q = (prior["holds"]["preposition"]["late"] + r_p) / (prior["boundaries"]["preposition"]["late"] + 1) * r_t / r_p
    want = (t["holds"]["preposition"]["late"] + 200 * q) / (t["boundaries"]["preposition"]["late"] + 200)
    assert m.p_hold["preposition"]["late"] == pytest.approx(want)
    assert math.exp(m.duration_log_mean["preposition"]) == pytest.approx(0.3 ** (5 / 25) * 0.4 ** (20 / 25), rel=1e-6)


def test_fillers_come_from_the_prior_when_the_target_transcripts_have_none():
    # prior: "uh" starts every 4th turn; the target (ASR without fillers) has none
    prior_rows = [_row(([("uh", 0.0)] if i % 4 == 0 else []) + [("go", 0.3 if i % 2 else 0.0), ("home", 0.0)])
                  for i in range(400)]
    target_rows = [_row([("go", 0.3 if i % 5 == 0 else 0.0), ("home", 0.0)]) for i in range(100)]
    prior, target = count_pauses(prior_rows), count_pauses(target_rows)
    m = fit(target, prior)
    scale = m.fitted["hold_rate_target"] / m.fitted["hold_rate_prior"]
    assert m.fitted["filler_rates_from"].startswith("prior")
    assert m.filler_rate_initial == pytest.approx(0.25 * scale) and m.filler_rate_initial > 0
    # one target filler turns the target's counts back on (shrunk towards the scaled prior)
    target_rows.append(_row([("um", 0.0), ("go", 0.0), ("home", 0.0)]))
    m2 = fit(count_pauses(target_rows), prior)
    assert m2.fitted["filler_rates_from"] == "target + prior" and m2.filler_rate_initial < m.filler_rate_initial


def _model(p: dict[str, float], filler_medial: float = 0.0) -> PauseModel:
    return PauseModel(p_hold={c: {q: p.get(c, 0.0) for q in POSITIONS} for c in WORD_CLASSES},
                      duration_log_mean={c: math.log(0.4) for c in WORD_CLASSES},
                      duration_log_sd={c: 0.3 for c in WORD_CLASSES}, filler_rate_initial=0.0,
                      filler_rate_medial=filler_medial, filler_words={"um": 0.5, "uh": 0.5})


def test_sampling_follows_the_cells_and_scale():
    words = "i need a taxi to the station and then um home".split()
    m = _model({"conjunction": 0.95})
    rng = np.random.default_rng(0)
    n_holds = 0
    for _ in range(200):
        out, holds = m.sample(words, rng)
        assert out == words  # no filler rate: nothing inserted
        assert all(out[k] in ("and", "then") for k, _ in holds)  # "then" is a conjunction too
        assert all(0.1 <= d <= 3.0 for _, d in holds)
        n_holds += len(holds)
    assert 0.9 * 400 < n_holds <= 400  # two conjunctions x 200 at P 0.95
    m = _model({"content": 0.05})
    a = sum(len(m.sample(words, np.random.default_rng(s))[1]) for s in range(300))
    b = sum(len(m.sample(words, np.random.default_rng(s), hold_scale=4.0)[1]) for s in range(300))
    assert 3.0 < b / a < 5.0
    m = _model({}, filler_medial=0.5)
    out, holds = m.sample(words, np.random.default_rng(1))
    assert len(out) > len(words) and not holds and [w for w in out if w not in ("um", "uh")] == [
        w for w in words if w not in ("um", "uh")]


def test_simulated_turn_is_a_valid_row_with_its_holds_between_words():
    m = _model({"preposition": 0.95, "determiner": 0.95})
    rec = simulated_turn("agent-holds:dstc2:x#1", "i want to go to the airport".split(), [], m, split="train",
                         corpus="dstc2", seed=0, hold_scale=1.0, filler_scale=1.0, end_span_s=5.0)
    holds = rec.silence_spans[:-1]
    assert len(holds) >= 2 and rec.silence_spans[-1].duration_s == pytest.approx(5.0)
    assert rec.silence_spans[-1].start == pytest.approx(rec.words[-1].end)
    for h in holds:  # each hold follows a preposition or determiner and precedes the next word
        before = max((w for w in rec.words if w.end <= h.start + 1e-9), key=lambda w: w.end)
        after = min((w for w in rec.words if w.start >= h.end - 1e-9), key=lambda w: w.start)
        assert word_class(before.word) in ("preposition", "determiner") and after.start == pytest.approx(h.end)
    again = simulated_turn("agent-holds:dstc2:x#1", "i want to go to the airport".split(), [], m, split="train",
                           corpus="dstc2", seed=0, hold_scale=1.0, filler_scale=1.0, end_span_s=5.0)
    assert again.to_row() == rec.to_row()  # a function of (seed, id)


def test_the_shipped_recipe_holds_a_fitted_model_and_builds_from_train_splits_only():
    model = load(RECIPE_PATH)
    fitted = model.fitted
    assert fitted["target_set"] == "getgoing:train" and fitted["prior_set"] == "switchboard:train"
    assert fitted["target"]["n_holds"] > 50 and fitted["prior"]["n_holds"] > 10_000
    # agent-directed callers hold less often than people in conversation
    assert fitted["hold_rate_target"] < fitted["hold_rate_prior"]
    assert "test" not in [s for splits in SPLITS.values() for s in splits.values()]
    recipe = json.loads(RECIPE_PATH.read_text())
    by_split, notes = build(require_data("agent_text").parent, recipe, max_conversations=20)
    assert set(by_split) == {"train", "dev"} and notes["holds_simulated"] is True
    assert len(by_split["train"]) == 20 * len(SPLITS["train"]) and len(by_split["dev"]) == 20 * len(SPLITS["dev"])
    assert all(r.source == SOURCE and r.split == s for s, recs in by_split.items() for r in recs)
    assert {r.id.split(":")[1] for r in by_split["train"]} == set(SPLITS["train"])
    n_holds = sum(len(r.silence_spans) - 1 for r in by_split["train"])
    assert n_holds == notes["per_split"]["train"]["holds"] > 0
