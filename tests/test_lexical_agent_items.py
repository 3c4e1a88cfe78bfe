"""Lexical training items from agent-directed text: one example per word boundary, the whole turn the
only positive, never from the test splits, and a training run that uses them."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import require_data
from vad_turn.data.corpora.agent_text import (READERS, TRAIN_SPLITS, VAL_SPLITS, sample_turns, timed_words,
                                             turn_words, word_durations_s)
from vad_turn.lexical.agent_items import agent_items, agent_turn_item
from vad_turn.lexical.runtime import SHIPPED_LEXICAL_DIR, LexicalTokenizer

TOKENIZER = SHIPPED_LEXICAL_DIR / "tokenizer.json"


@pytest.fixture(scope="module")
def tok() -> LexicalTokenizer:
    return LexicalTokenizer(TOKENIZER)


@pytest.fixture(scope="module")
def dstc2_train():
    return READERS["dstc2"](require_data("agent_text"), "train")


def test_training_never_reads_a_test_split():
    assert "test" not in TRAIN_SPLITS.values() and "test" not in VAL_SPLITS.values()
    assert not set(TRAIN_SPLITS.items()) & set(VAL_SPLITS.items())


def test_words_get_plausible_back_to_back_times():
    rng = np.random.default_rng(0)
    d = word_durations_s(["a", "restaurant", "in", "the", "north"], rng)
    assert ((d >= 0.12) & (d <= 0.9)).all()
    assert d[1] > d[0]  # longer words last longer (the jitter is +-20%)
    ws = timed_words(["cheap", "food", "please"], np.random.default_rng(1))
    assert ws[0].start == 0.0 and all(a.end == b.start for a, b in zip(ws, ws[1:]))


def test_an_item_has_one_example_per_word_boundary_and_only_the_whole_turn_is_an_end(tok, dstc2_train):
    di, ti = sample_turns(dstc2_train, 50, seed=3)[7]
    item = agent_turn_item(dstc2_train[di], ti, tok, np.random.default_rng(0), transcript_lag_s=0.5)
    n = len(turn_words(dstc2_train[di].turns[ti][1]))
    assert item["labels"].tolist() == [0.0] * (n - 1) + [1.0]
    assert len(item["pos"]) == len(item["timing"]) == n
    assert np.all(np.diff(item["pos"]) >= 1) and item["pos"][-1] == len(item["tokens"]) - 1
    silence = item["timing"][:, 0]  # clipped to [0, 3] by timing_features
    assert ((silence >= 0.5) & (silence <= 1.5)).all()
    assert item["timing"][:, 1] == pytest.approx(np.log1p(np.arange(1, n + 1)))  # k words visible at boundary k


def test_items_are_seeded_and_cover_each_corpus(tok):
    root = require_data()
    a = agent_items(root, {"dstc2": "train", "slurp": "devel"}, tok, max_turns_per_corpus=40, seed=0,
                    transcript_lag_s=0.5)
    b = agent_items(root, {"dstc2": "train", "slurp": "devel"}, tok, max_turns_per_corpus=40, seed=0,
                    transcript_lag_s=0.5)
    assert [x["turn_id"] for x in a] == [x["turn_id"] for x in b]
    assert all(np.array_equal(x["timing"], y["timing"]) for x, y in zip(a, b))
    assert {x["turn_id"].split(":")[0] for x in a} == {"dstc2", "slurp"}
    ends = np.concatenate([x["labels"] for x in a])
    assert 0.1 < ends.mean() < 0.5  # one end per turn of a few words
    with pytest.raises(ValueError, match="unknown agent-text corpus"):
        agent_items(root, {"atis": "train"}, tok, max_turns_per_corpus=1, seed=0, transcript_lag_s=0.5)
    with pytest.raises(FileNotFoundError, match="agent_text"):
        agent_items(root / "nowhere", TRAIN_SPLITS, tok, max_turns_per_corpus=1, seed=0, transcript_lag_s=0.5)


@pytest.mark.slow  # ~26 s over all of DSTC2 train; balancing is an opt-in training option
def test_balance_repeats_the_smaller_corpus_with_new_timing(tok):
    root = require_data()
    splits = {"dstc2": "train", "slurp": "devel"}
    kw = dict(seed=0, transcript_lag_s=0.5)
    plain = agent_items(root, splits, tok, max_turns_per_corpus=None, **kw)
    n = {c: sum(x["turn_id"].startswith(c + ":") for x in plain) for c in splits}
    assert n["dstc2"] > 2 * n["slurp"]  # DSTC2 train is the larger corpus
    bal = agent_items(root, splits, tok, max_turns_per_corpus=None, balance=True, **kw)
    copies = min(8, round(n["dstc2"] / n["slurp"]))
    assert sum(x["turn_id"].startswith("slurp:") for x in bal) == copies * n["slurp"]
    assert sum(x["turn_id"].startswith("dstc2:") for x in bal) == n["dstc2"]  # the largest is not repeated
    slurp_plain = [x for x in plain if x["turn_id"].startswith("slurp:")]
    slurp_bal = [x for x in bal if x["turn_id"].startswith("slurp:")]
    # copy 0 is the unbalanced sample itself; copy 1 has the same text and labels but its own timing
    assert all(np.array_equal(a["timing"], b["timing"]) for a, b in zip(slurp_plain, slurp_bal))
    second = slurp_bal[n["slurp"]:2 * n["slurp"]]
    assert [x["turn_id"] for x in second] == [x["turn_id"] for x in slurp_plain]
    assert all(np.array_equal(a["labels"], b["labels"]) for a, b in zip(slurp_plain, second))
    assert not all(np.array_equal(a["timing"], b["timing"]) for a, b in zip(slurp_plain, second))


def test_a_training_run_learns_from_agent_text_beside_the_dataset(tmp_path):
    import vad_turn.lexical.train as L
    from vad_turn.core.schema import Message, TurnRecord, Word, silence_spans_from_words
    from vad_turn.data.dataset import write_turns

    def turn(tid, words, end_s, split):
        ws = [Word(w, a, b) for w, a, b in words]
        return TurnRecord(id=tid, source="hand", split=split, words=ws,
                          silence_spans=silence_spans_from_words(ws, end_s), messages=[Message("assistant", "hi")])

    ds = write_turns([turn("t", [("so", 0.0, 0.4), ("fine", 1.0, 1.4)], 2.4, "train"),
                      turn("v", [("yes", 0.0, 0.4)], 1.4, "dev")], tmp_path / "data")
    write_turns([turn("g1", [("forbes", 0.0, 0.4), ("avenue", 1.2, 1.6)], 2.6, "train"),
                 turn("g2", [("downtown", 0.0, 0.5)], 1.5, "train"),
                 turn("g3", [("no", 0.0, 0.3)], 1.3, "dev")], tmp_path / "gg")
    cfg = L.LexicalConfig(dataset=ds, max_turns=None, val_turns=10, emb_dim=8, hidden=12, head_hidden=8, epochs=1,
                          min_token_count=1, tokenizer=TOKENIZER, agent_text_turns=20, agent_text_val_turns=10,
                          agent_text_root=require_data(), extra_datasets=("gg",), extra_repeat=3, out=tmp_path / "run")
    metrics = L.run(cfg)
    assert metrics["n_agent_train_turns"] == 4 * 20 and metrics["n_agent_val_turns"] == 2 * 10
    assert metrics["n_gg_train_items"] == 3 * 2 and metrics["n_gg_val_turns"] == 1
    assert metrics["n_train_turns"] == 1 + 80 + 6
    split_ids = json.loads((tmp_path / "run" / "split_ids.json").read_text())
    assert {i.split(":")[0] for i in split_ids["train"] if ":" in i} == set(TRAIN_SPLITS) | {"gg"}
    assert "t" in split_ids["train"] and split_ids["train"].count("gg:g1") == 3 and "gg:g3" in split_ids["dev"]
    with pytest.raises(ValueError, match="extra-repeat"):
        L.LexicalConfig(extra_repeat=0)
    assert (tmp_path / "run" / "model" / "lexical_step.onnx").exists()
    with pytest.raises(ValueError, match="agent-text-turns"):
        L.LexicalConfig(agent_text_turns=-1)


def test_a_spoken_filler_goes_inside_the_turn_and_its_prefix_is_not_an_end(tok, dstc2_train):
    from vad_turn.lexical.agent_items import SPOKEN_FILLERS, with_filler

    rng = np.random.default_rng(0)
    for _ in range(50):
        out = with_filler(["cheap", "food", "in", "the", "north"], rng)
        k = next(i for i, w in enumerate(out) if w in SPOKEN_FILLERS)
        assert len(out) == 6 and 1 <= k <= 4  # never first, never last
    assert with_filler(["yes"], rng) == ["yes"]
    di, ti = sample_turns(dstc2_train, 50, seed=3)[7]
    n = len(turn_words(dstc2_train[di].turns[ti][1]))
    item = agent_turn_item(dstc2_train[di], ti, tok, np.random.default_rng(0), transcript_lag_s=0.5,
                           filler_rng=np.random.default_rng(1), filler_rate=1.0)
    assert item["labels"].tolist() == [0.0] * n + [1.0]  # one more word boundary, still one end
    plain = agent_turn_item(dstc2_train[di], ti, tok, np.random.default_rng(0), transcript_lag_s=0.5)
    assert len(plain["labels"]) == n


def test_slurp_slot_swaps_keep_the_carrier_and_draw_values_of_the_same_entity_type():
    import gzip

    from vad_turn.data.corpora.agent_text import SLURP_ENTITY, slurp_slot_swaps

    root = require_data("agent_text")
    rows = [json.loads(line) for line in gzip.open(root / "slurp" / "devel.jsonl.gz", "rt")]
    values = {}
    for r in rows:
        for t, v in SLURP_ENTITY.findall(r["sentence_annotation"]):
            values.setdefault(t, set()).add(v)
    n_with = sum(bool(SLURP_ENTITY.search(r["sentence_annotation"])) for r in rows)
    swaps = slurp_slot_swaps(root, "devel", 3, seed=0)
    assert swaps == slurp_slot_swaps(root, "devel", 3, seed=0)  # seeded
    originals = {" ".join(r["sentence"].split()) for r in rows}
    texts = [d.turns[0][1] for d in swaps]
    assert len(set(texts)) == len(texts) and not set(texts) & originals
    assert 1.5 * n_with < len(swaps) <= 3 * n_with  # most draws give a new command, none from a test split
    by_id = {r["slurp_id"]: r for r in rows}
    for d in swaps[:300]:  # each variant is its source with every entity replaced by a value of the same type
        src = by_id[int(d.dialogue_id.split("-")[1])]
        parts = SLURP_ENTITY.split(src["sentence_annotation"])  # carrier, type, value, carrier, type, value, ...
        carriers, types = parts[0::3], parts[1::3]
        slots = ["(" + "|".join(re.escape(v) for v in sorted(values[t], key=len, reverse=True)) + ")" for t in types]
        pieces = [r"\s*".join(map(re.escape, carriers[0].split()))]
        for slot, carrier in zip(slots, carriers[1:]):
            pieces += [slot, r"\s*".join(map(re.escape, carrier.split()))]
        assert re.fullmatch(r"\s*".join(pieces), d.turns[0][1]) is not None, (d.turns[0][1], src["sentence_annotation"])
    with pytest.raises(ValueError, match="copies"):
        slurp_slot_swaps(root, "devel", -1, seed=0)
