"""The id hashes and seeded selections of `vad_turn.core.seeds`, pinned: recorded selections depend on them
(GetGoing's call splits, the fusion's folds, the rendered turns and voices, the scenario sets, the harness's
`max_turns` sample, the training examples' per-turn subsample), so a change to any of them must fail here."""
from __future__ import annotations

import random

import numpy as np

from vad_turn.core.seeds import seeded_order, seeded_sample, stable_hash, stable_seed, stable_unit, turn_seed

ID = "sw02001_A_3"


def test_the_keyings_are_pinned_bit_for_bit():
    assert stable_hash(ID, 0) == 10767898886804130842
    assert stable_unit(ID, 0) == 10767898886804130842 / 2**64
    assert stable_seed(0, "select", ID) == 6534988601696210861
    assert turn_seed(0, ID) == 2710987882 and turn_seed(7, ID) == 2717987903


def test_seeded_order_depends_on_the_ids_not_their_order():
    ids = [f"turn{i:03d}" for i in range(200)]
    order = [ids[i] for i in seeded_order(ids, 0, "select")]
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    assert [shuffled[i] for i in seeded_order(shuffled, 0, "select")] == order
    assert seeded_order(["a", "b", "c", "d", "e"], 0, "select") == [3, 4, 2, 0, 1]
    # the salt and the seed each give another order
    assert order != [ids[i] for i in seeded_order(ids, 0, "scenario")]
    assert order != [ids[i] for i in seeded_order(ids, 1, "select")]


def test_seeded_sample_is_numpys_choice_sorted():
    assert seeded_sample(10, 4, 0) == [2, 4, 5, 7]
    for n, k, seed in ((50, 7, 0), (500, 300, 3), (9, 8, [2, 5])):
        want = sorted(np.random.default_rng(seed).choice(n, size=k, replace=False).tolist())
        assert seeded_sample(n, k, seed) == want
    assert seeded_sample(5, None, 0) == seeded_sample(5, 5, 0) == seeded_sample(5, 9, 0) == [0, 1, 2, 3, 4]
