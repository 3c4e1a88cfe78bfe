"""The shared floor construction on scripted units (multi-party, backchannels, overlap, tail clamp)."""
from __future__ import annotations

import pytest

from vad_turn.data.corpora.turns import Unit, build_turns, merge_intervals, turn_spans


def u(spk, a, b, bc=False, punct=""):
    return Unit(spk, ((a, b),), backchannel=bc, punct=punct)


def test_floor_passes_only_on_non_backchannel_units_of_others():
    units = [u("A", 0.0, 2.0, punct=","), u("B", 1.0, 1.3, bc=True), u("A", 2.5, 4.0, punct="."),
             u("C", 3.8, 5.0), u("A", 4.5, 4.8, bc=True), u("B", 6.0, 7.0)]
    turns = build_turns(reversed(units))  # any input order
    assert [(t.speaker, len(t.units), t.next_start_s, t.backchannel_context) for t in turns] == [
        ("A", 2, 3.8, True), ("C", 1, 6.0, True), ("B", 1, None, False)]
    spans, puncts = turn_spans(turns[0], end_s=10.0)
    assert [(s.start, s.end) for s in spans] == [(2.0, 2.5), (4.0, 4.0)]  # C overlaps A: zero-length end
    assert puncts == [",", "."]
    spans, _ = turn_spans(turns[2], end_s=10.0, tail_s=1.5)  # last turn: to the end, at most tail_s
    assert [(s.start, s.end) for s in spans] == [(7.0, 8.5)]


def test_min_silence_and_overlapping_intervals():
    t = build_turns([Unit("A", ((0.0, 1.0), (1.05, 2.0), (1.5, 2.5), (2.6, 3.0)))])[0]
    spans, _ = turn_spans(t, end_s=3.0, min_silence_s=0.1)
    assert [round(s.start, 6) for s in spans] == [2.5, 3.0] and [round(s.end, 6) for s in spans] == [2.6, 3.0]
    assert merge_intervals([(1.0, 2.0), (0.0, 1.0), (3.0, 4.0)]) == [(0.0, 2.0), (3.0, 4.0)]
    with pytest.raises(ValueError, match="at least one sound interval"):
        Unit("A", ())
