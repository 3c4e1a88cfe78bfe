import pytest

from vad_turn.core.schema import (
    Span,
    TurnRecord,
    Word,
    is_backchannel_text,
    normalize_text,
    normalize_word,
    normalize_words,
    pause_contexts,
    silence_spans_from_words,
    turn_length_bin,
)
from vad_turn.data.dataset import load_turns, write_turns


def words():
    return [Word("so", 0.0, 0.2), Word("um", 0.35, 0.6), Word("I", 1.4, 1.5), Word("think", 1.5, 1.8),
            Word("and", 1.8, 2.0), Word("yes", 2.5, 2.9)]


def test_spans_are_holds_of_at_least_100ms_plus_end_span():
    spans = silence_spans_from_words(words(), end_span_end_s=3.4)
    assert [(round(s.start, 3), round(s.end, 3)) for s in spans] == [(0.2, 0.35), (0.6, 1.4), (2.0, 2.5), (2.9, 3.4)]
    assert pause_contexts(words(), spans) == ["conjunction", "filler", "conjunction", "none"]
    overlapped = silence_spans_from_words(words(), end_span_end_s=2.5)  # next speaker overlaps
    assert overlapped[-1].duration_s == 0.0


def test_normalisation_is_asr_like():
    assert normalize_word("thi[s]-") == "this"
    assert normalize_word("[laughter-yeah]") == "yeah"
    assert normalize_word("Bridgette,") == "bridgette"
    assert normalize_word("<UNK>") == ""
    assert normalize_word("José") == "jose"
    assert normalize_text(["Well,", "I", "don't", "KNOW."]) == "well i don't know"
    # the one normalisation of a transcript line, as the STT, the tools, barge-in and the WER read it
    assert normalize_words("Uh-huh, <UNK> José -- OK.".split()) == ["uh-huh", "jose", "ok"]
    from vad_turn.engines.stt import wer_tokens
    assert wer_tokens("Uh-huh, <UNK> José -- OK.") == ["uh", "huh", "jose", "ok"]  # hyphens split for scoring
    assert is_backchannel_text(["uh-huh"]) and is_backchannel_text(["oh", "yeah"])
    assert not is_backchannel_text(["yeah", "i", "went", "there"])
    assert [turn_length_bin(n) for n in (1, 10, 11, 30, 31)] == ["1-10", "1-10", "11-30", "11-30", ">30"]


def test_invariants_are_enforced():
    with pytest.raises(ValueError, match="t1"):
        TurnRecord(id="t1", source="x", split="val", words=words(), silence_spans=[Span(1.0, 1.2), Span(0.5, 0.6)])
    with pytest.raises(ValueError, match="last word"):
        TurnRecord(id="t2", source="x", split="val", words=words(), silence_spans=[Span(2.0, 3.0)])


def test_dataset_roundtrip_and_atomic_replace(tmp_path):
    ws = words()
    rec = TurnRecord(id="a", source="x", split="val", words=ws, silence_spans=silence_spans_from_words(ws, 3.4))
    out = write_turns([rec], tmp_path / "ds", info={"turns": 1})
    ds = load_turns(out)
    assert ds[0]["pause_context"] == ["conjunction", "filler", "conjunction", "none"]
    assert ds[0]["n_words"] == 6 and ds[0]["audio"] is None
    with pytest.raises(ValueError, match="no turns"):
        write_turns([], tmp_path / "ds")
    assert load_turns(out).num_rows == 1  # the failed write left the old dataset intact
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ds")]
