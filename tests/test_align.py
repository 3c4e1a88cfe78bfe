"""Whole-turn renders are cut at the holds between the right words, at the quietest moment of the gap."""
from __future__ import annotations

import numpy as np
import pytest

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.data.align import hold_cut_s, match_words, split_at_holds

SR = SAMPLE_RATE_HZ


def _speech(spans_s: list[tuple[float, float]], total_s: float) -> np.ndarray:
    """A 200 Hz tone inside each (start, end) span, near-silence (tiny noise) elsewhere."""
    t = np.arange(int(total_s * SR)) / SR
    x = 1e-4 * np.random.default_rng(0).standard_normal(t.size)
    for a, b in spans_s:
        on = (t >= a) & (t < b)
        x[on] += 0.5 * np.sin(2 * np.pi * 200 * t[on])
    return x.astype(np.float32)


def test_words_are_matched_on_normalised_spellings_in_order():
    m = match_words(["I", "want", "uh", "a", "flight", "to", "Boston"], ["i", "want", "a", "flight", "to", "boston."])
    assert m == {0: 0, 1: 1, 3: 2, 4: 3, 5: 4, 6: 5}  # the filler has no partner


def test_the_cut_goes_to_the_quietest_frame_of_the_gap():
    audio = _speech([(0.0, 0.50), (0.62, 1.0)], 1.0)  # real gap 0.50-0.62 s
    # the aligner's times are off by 40 ms either way: the cut still lands in the real gap
    cut = hold_cut_s(audio, before_end_s=0.54, after_start_s=0.58)
    assert 0.50 <= cut <= 0.62
    assert hold_cut_s(audio, 0.46, 0.66) == pytest.approx(0.56, abs=0.06)


def test_split_at_holds_gives_one_piece_per_unit_at_the_gaps():
    audio = _speech([(0.0, 0.30), (0.35, 0.70), (0.78, 1.10), (1.15, 1.50)], 1.5)
    target = ["so", "i", "think", "yes"]
    recognized = [("so", 0.0, 0.30), ("I", 0.35, 0.70), ("think", 0.78, 1.10), ("yes.", 1.15, 1.50)]
    pieces = split_at_holds(audio, target, [[0, 1], [2, 3]], recognized)  # one hold, between "i" and "think"
    assert len(pieces) == 2 and sum(p.size for p in pieces) == audio.size
    assert 0.70 * SR <= pieces[0].size <= 0.78 * SR
    assert split_at_holds(audio, target, [[0, 1, 2, 3]], recognized) == [audio]


def test_an_unrecognised_filler_next_to_a_hold_is_bridged_but_a_long_stretch_is_not():
    audio = _speech([(0.0, 0.30), (0.40, 0.60), (0.80, 1.20)], 1.2)
    target = ["well", "uh", "okay"]
    recognized = [("well", 0.0, 0.30), ("okay", 0.80, 1.20)]  # "uh" (0.40-0.60) not transcribed
    pieces = split_at_holds(audio, target, [[0, 1], [2]], recognized)  # hold after "uh"
    assert pieces is not None and 0.30 * SR <= pieces[0].size <= 0.80 * SR
    # a unit at the start with no recognised word: the turn's start stands in
    first = split_at_holds(audio, target, [[0], [1, 2]], [("okay", 0.80, 1.20)])
    assert first is not None and first[0].size <= 0.80 * SR
    many = ["a", "b", "c", "d", "okay"]
    assert split_at_holds(audio, many, [[0, 1, 2], [3, 4]], [("zzz", 0.0, 0.3)]) is None  # nothing near the hold
