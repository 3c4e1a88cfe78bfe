"""Training examples are the harness's own causal queries: same grid, transcript lag, hold filtering
and labels, checked against `score_turns` on hand-made turns; subsampling and turn sampling are seeded."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vad_turn.core.schema import Message, TurnRecord, Word, silence_spans_from_words  # noqa: E402
from vad_turn.harness.evaluate import EvalConfig, _turn_queries, score_turns, turn_queries  # noqa: E402
from vad_turn.harness.examples import build_examples, class_balance, turn_examples  # noqa: E402


def turn(tid, words, end_s, split="train", **kw) -> TurnRecord:
    ws = [Word(w, a, b) for w, a, b in words]
    return TurnRecord(id=tid, source="hand", split=split, words=ws, silence_spans=silence_spans_from_words(ws, end_s), **kw)


# a 0.6 s hold after "b", a 0.15 s hold after "c" (too short: dropped), a 6 s hold (too long: dropped), end at 9.6
ABC = turn("abc", [("a", 0.0, 0.4), ("b", 0.4, 1.0), ("c", 1.6, 2.0), ("d", 2.15, 2.5), ("e", 8.5, 9.0)], 9.6,
           messages=[Message("assistant", "how are you")])
HI = turn("hi", [("hi", 0.0, 0.3)], 1.0)


class Recorder:
    name = "recorder"
    needs_audio, needs_words = False, True

    def __init__(self):
        self.seen = []

    def predict(self, audio, words, messages, silence_s):
        self.seen.append(([w.word for w in words], silence_s, tuple(messages)))
        return 0.5


def test_examples_are_exactly_the_harness_queries_with_labels():
    cfg = EvalConfig(timeouts_s=(1.0,))
    det = Recorder()
    preds = score_turns([ABC, HI], det, cfg)
    ex = build_examples([ABC, HI], "train", eval_cfg=cfg, progress=False)
    # 6 points in the 0.6 s hold, 10 in each end span (timeout 1.0 s / grid 0.1 s); short and long holds dropped
    assert len(ex) == len(preds) == 6 + 10 + 10
    assert [([w.word for w in q.words], q.silence_s, q.messages) for q in ex.queries] == det.seen
    t = ex.table
    assert t["label"].tolist() == preds["label"].tolist() == [0] * 6 + [1] * 20
    assert np.allclose(t["silence_s"], preds["silence_dur"]) and np.allclose(t["timestamp"], preds["timestamp"])
    assert t["span_index"].tolist() == preds["span_index"].tolist()
    assert t["span_index"].tolist()[:16] == [0] * 6 + [3] * 10  # span 0 = the 0.6 s hold, span 3 = the end
    # the lag: "b" (ends 1.0) becomes visible 0.5 s into the hold; "e" 0.5 s into the end span
    assert t["n_seen"].tolist()[:16] == [1] * 5 + [2] + [4] * 5 + [5] * 5
    assert t["turn_id"].tolist() == ["abc"] * 16 + ["hi"] * 10 and ex.turn_ids == ["abc", "hi"]
    assert class_balance(ex.labels) == {"n": 26, "n_end": 20, "end_rate": pytest.approx(20 / 26)}


def test_turn_queries_is_public_with_the_old_name_kept():
    assert _turn_queries is turn_queries


def test_subsampling_keeps_at_most_k_points_per_span_seeded_by_turn_id():
    cfg = EvalConfig(timeouts_s=(1.0,))
    q1, m1 = turn_examples(ABC, cfg, points_per_span=3, seed=7)
    q2, m2 = turn_examples(ABC, cfg, points_per_span=3, seed=7)
    q3, m3 = turn_examples(ABC, cfg, points_per_span=3, seed=8)
    assert np.bincount(m1["span_index"]).tolist() == [3, 0, 0, 3]
    assert np.array_equal(m1["silence_dur"], m2["silence_dur"]) and [q.silence_s for q in q1] == m1["silence_dur"].tolist()
    full_q, full = turn_queries(ABC, Recorder(), cfg)
    assert set(np.round(m1["silence_dur"], 6)) <= set(np.round(full["silence_dur"], 6))
    assert not np.array_equal(m1["silence_dur"], m3["silence_dur"])  # another seed picks other points
    with pytest.raises(ValueError, match="points_per_span"):
        turn_examples(ABC, cfg, points_per_span=0)


def test_turn_sample_matches_the_harness_max_turns_sample_and_split():
    recs = [turn(f"t{i}", [("w", 0.0, 0.3)], 1.0) for i in range(20)] + [turn("v0", [("w", 0.0, 0.3)], 1.0, split="dev")]
    ex = build_examples(recs, "train", max_turns=5, seed=3, progress=False)
    from vad_turn.harness.evaluate import select_turns

    _, ids = select_turns(recs, EvalConfig(split="train", max_turns=5, seed=3))
    assert ex.turn_ids == ids and len(ids) == 5 and "v0" not in ids
    assert build_examples(recs, "val", progress=False).turn_ids == ["v0"]  # val -> dev alias, as the harness
    with pytest.raises(ValueError, match="no rows of split"):
        build_examples(recs, "test", progress=False)
