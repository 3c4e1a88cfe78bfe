"""Switchboard builder on a hand-made two-speaker conversation (MS98 + SWDA) and one without SWDA."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fixtures.corpora.make_root import make_data_root

from vad_turn.data.corpora import CorpusError, load_recipe, switchboard
from vad_turn.data.corpora.turns import span_counts


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return make_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def built(root):
    return switchboard.build(root, load_recipe("switchboard"))


def spans(rec):
    """Flat [start0, end0, start1, end1, ...] of a row's silence spans (pytest.approx needs flat lists)."""
    return [t for s in rec.silence_spans for t in (s.start, s.end)]


def flat(pairs):
    return [t for p in pairs for t in p]


def test_turns_holds_and_ends_of_the_hand_made_conversation(built):
    by_split, notes = built
    train = by_split["train"]
    assert notes == {"conversations_with_swda": 1, "conversations": {"train": 1, "dev": 1}}
    assert [r.id for r in train] == ["sw9901-0000-A", "sw9901-0001-B", "sw9901-0002-A", "sw9901-0003-B"]
    assert span_counts(train) == {"turns": 4, "holds": 3, "ends": 4, "holds_0.2-5s": 3}
    a0, b1, a2, b3 = train
    # A: 0.8 s hold after "think", laughter dropped (counts as silence: 0.3 s hold after "um"),
    # the 0.05 s gap "i"-"think" is not a hold; the end span runs to B's start (3.8 s).
    assert [w.word for w in a0.words] == ["so", "i", "think", "that", "um", "works"]
    assert spans(a0) == pytest.approx(flat([(0.8, 1.6), (2.2, 2.5), (3.0, 3.3)]), abs=1e-6)
    assert a0.silence_spans[0].duration_s == pytest.approx(0.8, abs=1e-6)
    assert a0.pause_context == ["none", "filler", "none"]
    assert a0.backchannel_context  # B's "uh-huh" (SWDA b^r) did not take the floor
    assert a0.audio is None and a0.audio_condition == "text" and a0.word_timing == "aligned"
    # B keeps "but not today" (begun before A took the floor at 5.3 s): zero-length end span at 5.6 s.
    assert spans(b1) == pytest.approx(flat([(0.5, 0.75), (1.8, 1.8)]), abs=1e-6)
    assert [(m.role, m.content) for m in b1.messages] == [("assistant", "so i think that um works")]
    assert spans(a2) == pytest.approx(flat([(0.6, 1.2)]), abs=1e-6)
    assert [m.role for m in a2.messages] == ["user", "assistant"]
    # The last turn's end span runs to the end of the recording (A's last [silence], 8.0 s).
    assert spans(b3) == pytest.approx(flat([(0.5, 1.5)]), abs=1e-6)


def test_conversation_without_swda_uses_backchannel_words(built):
    dev = built[0]["dev"]
    assert [r.id for r in dev] == ["sw9902-0000-A", "sw9902-0001-B", "sw9902-0002-A"]
    a0, b1, a2 = dev
    assert a0.backchannel_context  # "um-hum" is only backchannel words
    assert spans(a0) == pytest.approx(flat([(0.4, 0.6), (1.2, 1.4)]), abs=1e-6)
    assert [w.word for w in b1.words] == ["alrighty", "them"]  # {alrighty}, them_1, <b_aside> dropped
    assert spans(b1) == pytest.approx(flat([(0.6, 0.9)]), abs=1e-6)
    assert a2.messages[0].content == "hello how are you"  # y[ou]- normalised
    assert spans(a2) == pytest.approx(flat([(0.4, 1.0)]), abs=1e-6)


def test_without_swda_the_word_rule_applies_everywhere(root):
    by_split, notes = switchboard.build(root, {**load_recipe("switchboard"), "use_swda": False})
    assert notes["conversations_with_swda"] == 0
    a0 = by_split["train"][0]
    # "uh-huh" is a backchannel word too, and A's utterance is one unit: the same turns here
    assert [r.id for r in by_split["train"]] == ["sw9901-0000-A", "sw9901-0001-B", "sw9901-0002-A", "sw9901-0003-B"]
    assert a0.backchannel_context and spans(a0) == pytest.approx(flat([(0.8, 1.6), (2.2, 2.5), (3.0, 3.3)]), abs=1e-6)


@pytest.mark.parametrize(
    "tag, expected",
    [("b", True), ("b^r", True), ("bh", True), ("b^m", True), ("bh^m", True), ("b@", True),
     ("ba", False), ("bk", False), ("bf", False), ("aa", False), ("sd", False), ("+", False), ("", False)],
)
def test_swda_backchannel_tags(tag, expected):
    assert switchboard.swda_is_backchannel(tag) is expected


def test_truncated_archive_names_the_file(root, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(root / "switchboard", bad / "switchboard")
    arc = bad / "switchboard" / "swb_ms98_word_alignments.tar.gz"
    data = arc.read_bytes()
    arc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorpusError, match=r"swb_ms98_word_alignments\.tar\.gz: truncated or corrupt archive"):
        switchboard.build(bad, load_recipe("switchboard"))


def test_malformed_line_names_the_member_and_line(tmp_path):
    text = "sw9903A-ms98-a-0001 0.0 0.5 [silence]\nsw9903A-ms98-a-0001 0.5 0.9 hello\nsw9903A-ms98-a-0001 0.9 1.2\n"
    with pytest.raises(CorpusError, match=r"sw9903A-ms98-a-word.text:3: expected 'uttid start end word'"):
        switchboard.parse_ms98(text, "arch.tar.gz:sw9903A-ms98-a-word.text")
    with pytest.raises(CorpusError, match=r"x.csv:1: expected 7 fields"):
        switchboard.parse_swda("sw9903A-ms98-a-0001,0.5,0.9,hello,B,sd\n", "x.csv")
    with pytest.raises(CorpusError, match=r"x.text:1: start 'zero' is not a number"):
        switchboard.parse_ms98("u zero 0.9 hello\n", "x.text")


def test_missing_conversation_and_missing_folder(root, tmp_path):
    bad = tmp_path / "data"
    shutil.copytree(root / "switchboard", bad / "switchboard")
    (bad / "switchboard" / "splits" / "val.txt").write_text("9902\n9977\n")
    with pytest.raises(CorpusError, match=r"no member .*sw9977A-ms98-a-word.text"):
        switchboard.build(bad, load_recipe("switchboard"))
    with pytest.raises(CorpusError, match="data root folder not found"):
        switchboard.build(tmp_path / "nowhere", load_recipe("switchboard"))
    (bad / "switchboard" / "splits" / "val.txt").write_text("9902\nsw99x\n")
    with pytest.raises(CorpusError, match=r"val.txt:2: expected one id a line"):
        switchboard.build(bad, load_recipe("switchboard"))
