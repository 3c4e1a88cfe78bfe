"""SBCSAE builder on hand-written STM/UEM lines: IU floor, interpolated words, unit punctuation."""
from __future__ import annotations

import gzip

import pytest
from fixtures.corpora.make_root import make_data_root

from vad_turn.data.corpora import CorpusError, load_recipe, sbcsae


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return sbcsae.build(make_data_root(tmp_path_factory.mktemp("data")), load_recipe("sbcsae"))


def spans(rec):
    return [t for s in rec.silence_spans for t in (s.start, s.end)]


def test_multi_party_turns_and_scored_regions(built):
    by_split, notes = built
    assert list(by_split) == ["test"]
    rows = by_split["test"]
    # SBC901: the MANY group takes the floor but has no row; SBC902: DAN's first turn lies before
    # the scored region (starts at 1.8 s) and is dropped, though it stays in the messages.
    assert notes == {"turns_outside_scored_regions": 1, "turns_of_group_speakers": 1}
    assert [r.id for r in rows] == [
        "SBC901-0000-0001_ANN", "SBC901-0001-0003_CAT", "SBC901-0002-0001_ANN",
        "SBC902-0001-0002_EVE", "SBC902-0002-0001_DAN",
    ]
    ann, cat, ann2, eve, dan = rows
    assert ann.backchannel_context  # BOB's "Mhm." did not take the floor; his <LAUGH> IU is dropped
    assert spans(ann) == pytest.approx([1.5, 1.9, 3.0, 3.5], abs=1e-6)  # hold between IUs, end at CAT's start
    assert spans(cat) == pytest.approx([1.1, 1.5], abs=1e-6)
    assert spans(ann2) == pytest.approx([0.6, 0.8, 1.4, 1.6], abs=1e-6)  # end at the MANY group's start
    assert eve.messages[0].content == "hello there" and eve.messages[0].role == "assistant"
    assert [m.role for m in dan.messages] == ["user", "assistant"]
    assert spans(dan) == pytest.approx([1.0, 6.5], abs=1e-6)  # last turn: to the scored region's end (10 s)
    assert {r.word_timing for r in rows} == {"interpolated"} and {r.split for r in rows} == {"test"}


def test_unit_final_punctuation_per_span(built):
    ann, cat, ann2, eve, dan = built[0]["test"]
    assert ann.unit_punct == [",", "."]
    assert cat.unit_punct == ["?"]
    assert ann2.unit_punct == ["-", "."]  # "they were--" truncated, then "<UNK> closed."
    assert dan.unit_punct == ["?"]


def test_words_are_readable_and_spread_by_characters(built):
    ann, _, ann2, eve, _ = built[0]["test"]
    assert [w.word for w in ann.words] == ["So", "I", "went", "to", "the", "Store", "and", "they", "were", "closed"]
    assert [w.word for w in ann2.words] == ["Yeah", "they", "were", "closed"]  # '#', '--', <UNK> removed
    # "So I went to the Store" over 0.0-1.5 s: 17 characters, "So" gets 2/17 of it.
    assert ann.words[0].end == pytest.approx(1.5 * 2 / 17, abs=1e-6)
    assert ann.words[5].start == pytest.approx(1.5 * 12 / 17, abs=1e-6)
    assert ann.words[5].end == pytest.approx(1.5, abs=1e-6)
    assert [w.word for w in eve.words] == ["Hi", "Dan"]


@pytest.mark.parametrize(
    "text, mark",
    [("and they were closed.", "."), ("So I went,", ","), ("Were they?", "?"), ("they were--", "-"),
     ("cause y-", "-"), ("you have this piece of <LAUGH> horse <LAUGH>", ""), ("to", "")],
)
def test_unit_final_mark(text, mark):
    assert sbcsae.unit_final_mark(text) == mark


def test_malformed_stm_line_and_truncated_file(tmp_path):
    stm = tmp_path / "bad.stm.gz"
    with gzip.open(stm, "wt") as fh:
        fh.write("SBC001 1 0001_A 0.0 1.0 Hello.\nSBC001 1 0001_A 1.0\n")
    with pytest.raises(CorpusError, match=r"bad.stm.gz:2: expected 'SBCnnn 1 SPEAKER start end text'"):
        sbcsae.read_stm(stm)
    data = gzip.compress(("SBC001 1 0001_A 0.0 1.0 Hello there.\n" * 200).encode())
    stm.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"bad.stm.gz: truncated or corrupt"):
        sbcsae.read_stm(stm)
    uem = tmp_path / "x.uem"
    uem.write_text("SBC001 1 0.0 5.0\nSBC001 1 6.0\n")
    with pytest.raises(CorpusError, match=r"x.uem:2: expected 'uri channel start end'"):
        sbcsae.read_uem(uem)
