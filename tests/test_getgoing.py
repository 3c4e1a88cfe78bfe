"""GetGoing builder: log parsing, the alignment DP, turn location, splits, and a real 2-call build."""
from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter

import numpy as np
import pytest
from conftest import require_data

from vad_turn.core.audio import decode_audio_bytes
from vad_turn.core.schema import Span
from vad_turn.data.corpora import load_recipe
from vad_turn.data.corpora.getgoing import (
    Recipe,
    endpointer_holds,
    history_messages,
    locate_turns,
    recipe_text,
    split_of,
    turn_record,
)
from vad_turn.data.corpora.getgoing_log import (
    AlignParams,
    LogLine,
    align_tokens,
    align_words,
    drop_inserted_lines,
    hyp_tokens,
    log_turns,
    number_words,
    parse_history,
    strip_ssml,
    text_similarity,
    turn_hulls,
    word_errors,
)
from vad_turn.data.corpora.getgoing_speech import (
    AsrParams,
    VadParams,
    asr_segments,
    empty_segments,
    map_word_time,
    pack_chunks,
    speech_regions,
)

HISTORY = [
    "TTS !b Welcome to CMU GetGoing <break time='1s' />. <break strength='strong'/> Your call is recorded. </speak>",
    "TTS <speak> How would you like to travel today? <break time='800ms'/> </speak>",
    "USER Transit please.",
    "TTS Where are you going?",
    "USER I'm going to",
    "USER the airport.",
    "dummy message",
    "TTS <speak> Just a minute. Let me look up the directions. </speak>",
    "USER yes",
    "TTS Thank you.",
    "USER   ",
]
RULES = (("look up the directions.", "yes"),)


def recipe(**kw) -> Recipe:
    return Recipe(folder="getgoing/calls", splits={}, spam_patterns=(r"\bpress star\b",), inserted_user_lines=RULES, **kw)


def test_log_parser_ssml_inserted_lines_and_joined_splits():
    assert strip_ssml("!b <speak> Hi <break time='1s' />. Go? <break strength='strong'/> Now.\n </speak>") == "Hi. Go? Now."
    lines, n_other = parse_history(HISTORY)
    assert n_other == 2  # "dummy message" and the empty USER line
    assert [(ln.kind, ln.text, ln.index) for ln in lines] == [
        ("TTS", "Welcome to CMU GetGoing. Your call is recorded.", 0),
        ("TTS", "How would you like to travel today?", 1),
        ("USER", "Transit please.", 2), ("TTS", "Where are you going?", 3), ("USER", "I'm going to", 4),
        ("USER", "the airport.", 5), ("TTS", "Just a minute. Let me look up the directions.", 7), ("USER", "yes", 8),
        ("TTS", "Thank you.", 9)]
    kept, n_inserted = drop_inserted_lines(lines, RULES)
    assert n_inserted == 1 and all(ln.index != 8 for ln in kept)
    # a "yes" said anywhere else is the caller's
    assert drop_inserted_lines([LogLine("TTS", "Where to?", 0), LogLine("USER", "yes", 1)], RULES)[1] == 0
    turns = log_turns(kept)
    assert [(t.role, t.texts, t.joined_split) for t in turns] == [
        ("assistant", ("Welcome to CMU GetGoing. Your call is recorded.", "How would you like to travel today?"), False),
        ("user", ("Transit please.",), False),
        ("assistant", ("Where are you going?",), False),
        ("user", ("I'm going to", "the airport."), True),
        ("assistant", ("Just a minute. Let me look up the directions.", "Thank you."), False)]
    assert turns[3].text == "I'm going to the airport." and turns[3].line_indices == (4, 5)
    msgs = history_messages(turns, 6)
    assert [(m.role, m.content) for m in msgs[1]] == [
        ("assistant", "Welcome to CMU GetGoing. Your call is recorded. How would you like to travel today?"),
        ("user", "transit please"), ("assistant", "Where are you going?")]


def test_align_tokens_numbers_and_similarity():
    assert number_words(12) == ["twelve"] and number_words(405) == ["four", "hundred", "five"]
    assert number_words(1130) == ["eleven", "thirty"] and number_words(2000) == ["two", "thousand"]
    assert align_tokens("At 9:30 p.m. on the 5th, $20") == ["at", "nine", "thirty", "pm", "on", "the", "fifth", "twenty"]
    assert align_tokens("8pm") == align_tokens("8 P.M.") == align_tokens("8 p .m.") == ["eight", "pm"]
    assert text_similarity("Twelve o'clock.", "12 o'clock") == 1.0
    assert text_similarity("the airport", "") == 0.0
    assert word_errors("I'm going to the airport.", "going to the airport please") == (2, 5)


def _align(ref_turns, words, params=AlignParams()):
    ref = [(t, k) for k, x in enumerate(ref_turns) for t in align_tokens(x)]
    toks, costs, owner = hyp_tokens(words, params)
    pairs = align_words(ref, toks, params, costs)
    hulls = turn_hulls(pairs, ref, len(ref_turns))
    return [None if h is None else sorted({owner[j] for j in range(h[0], h[1] + 1)} - {-1}) for h in hulls], pairs


def test_alignment_dp_insertions_deletions_and_a_line_without_speech():
    ref_turns = ["Transit please.", "I'm going to the airport.", "yes", "Fifth and Highland"]
    words = [("um", 1.0, 1.2),  # noise before the first turn: unmatched, costs nothing
             ("transit", 5.0, 5.4), ("please.", 5.5, 5.9),
             ("uh", 9.0, 9.2),  # between turns
             ("going", 15.0, 15.2), ("to", 15.2, 15.3), ("the", 15.3, 15.4), ("uh", 15.45, 15.5), ("airport", 15.5, 16.0),
             # "yes" was never said: its turn gets nothing
             ("fifth", 30.0, 30.3), ("in", 30.4, 30.5), ("highland.", 30.6, 31.0)]
    hulls, pairs = _align(ref_turns, words)
    # "I'm" deleted, "uh" inserted inside turn 1, "and" recognised as "in" (too dissimilar: an insertion)
    assert hulls == [[1, 2], [4, 5, 6, 7, 8], None, [9, 10, 11]]
    assert len(pairs) == 2 + 4 + 2
    # pairs are monotone in both sequences
    assert all(a1 < a2 and b1 < b2 for (a1, b1), (a2, b2) in zip(pairs, pairs[1:]))


def test_alignment_pause_cost_keeps_a_turn_compact():
    # "4 p.m. today": "for" 19 s before "pm today" would stretch the turn over 19 s of silence
    words = [("water", 30.7, 30.9), ("for", 30.9, 31.0), ("pm", 49.7, 49.9), ("today", 50.0, 50.5)]
    hulls, _ = _align(["the waterfront", "4 p.m. Today"], words)
    assert hulls == [[0], [2, 3]]
    no_pause = AlignParams(pause_cost_per_s=0.0)
    assert _align(["the waterfront", "4 p.m. Today"], words, no_pause)[0] == [[0], [1, 2, 3]]


def test_alignment_with_no_words_or_no_log():
    assert align_words([("yes", 0)], []) == [] and align_words([], ["yes"]) == []
    assert _align(["yes", "no"], [("maybe", 1.0, 1.3)])[0] == [None, None]


# ----------------------------------------------------------------------------- turns from hand-made speech


REGIONS = [(2.0, 2.6), (10.0, 10.6), (11.3, 11.9), (20.0, 20.3), (20.8, 21.9), (22.6, 22.9), (40.0, 40.5)]
WORDS = [("Transit", 1.9, 2.3, 0.9), ("please.", 2.35, 2.7, 0.9),
         ("I'm", 10.0, 10.1, 0.9), ("going", 10.15, 10.35, 0.9), ("to", 10.4, 10.6, 0.9),
         ("the", 11.3, 11.4, 0.9), ("airport.", 11.45, 11.9, 0.9),
         ("Um,", 20.0, 20.3, 0.9), ("Fifth", 20.8, 21.1, 0.9), ("and", 21.15, 21.3, 0.9), ("Highland.", 21.35, 21.95, 0.9),
         ("Thank", 40.0, 40.2, 0.9), ("you.", 40.2, 40.5, 0.9)]
USER_TURNS = [LogLine("TTS", "How would you like to travel?", 0), LogLine("USER", "Transit please.", 1),
              LogLine("TTS", "Where are you going?", 2), LogLine("USER", "I'm going to", 3),
              LogLine("USER", "the airport.", 4), LogLine("TTS", "Okay.", 5), LogLine("USER", "yes", 6),
              LogLine("TTS", "Where do you leave from?", 7), LogLine("USER", "Fifth and Highland", 8),
              LogLine("TTS", "Okay, leaving from fifth avenue and highland avenue.", 9)]


@pytest.fixture(scope="module")
def located():
    return locate_turns(log_turns(USER_TURNS), REGIONS, WORDS, 45.0, recipe())


def test_locate_turns_joined_split_no_speech_and_leading_filler(located):
    assert [lt.status for lt in located] == ["aligned", "aligned", "no_match", "aligned"]
    t0, t1, _, t3 = located
    assert t0.regions == (REGIONS[0],) and t0.end_span_end_s == pytest.approx(4.6)  # +2 s tail
    assert [(w.word, w.start, w.end) for w in t0.words] == [("Transit", 2.0, 2.3), ("please.", 2.35, 2.6)]  # snapped
    assert t1.log.joined_split and t1.regions == (REGIONS[1], REGIONS[2])
    assert t1.endpointer_cuts_s == ((10.6, 11.3),) and t1.end_span_end_s == pytest.approx(13.9)
    # the "Um," region 0.5 s before the matched words joins the turn; the noise at 22.6 s ends the end span
    assert t3.regions == (REGIONS[3], REGIONS[4]) and t3.words[0].word == "Um,"
    assert t3.end_span_end_s == pytest.approx(22.6) and t3.words[-1].end == pytest.approx(21.9)
    assert t3.prompt_words_before == 5 and t1.prompt_words_before == 4  # "Where do you leave from?"


def test_turn_records_invariants(located):
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(45 * 16_000)).astype(np.float32)
    msgs = history_messages(log_turns(USER_TURNS), 6)
    recs = {}
    for lt in located:
        if lt.status == "aligned":
            rec, info = turn_record(lt, uuid="c0ffee", split="dev", audio=audio, messages=msgs[lt.index], recipe=recipe(),
                                    min_silence_s=0.1)
            recs[lt.index] = (rec, info)
    rec1, info1 = recs[1]
    # clip from 1 s before the turn (9.0 s) to the end span's end (13.9 s)
    clip = decode_audio_bytes(rec1.audio["bytes"])
    assert clip.size == round((13.9 - 9.0) * 16_000)
    assert np.max(np.abs(clip - audio[9 * 16_000: round(13.9 * 16_000)])) < 1e-4
    assert [t for s in rec1.silence_spans for t in (s.start, s.end)] == pytest.approx([1.6, 2.3, 2.9, 4.9])
    assert info1["joined_split"] and info1["endpointer_holds"] == [0] and info1["n_log_lines"] == 2
    assert rec1.id == "c0ffee-001-caller" and rec1.audio_condition == "real" and rec1.word_timing == "aligned"
    assert [m.role for m in rec1.messages] == ["assistant", "user", "assistant"]
    rec3, info3 = recs[3]
    assert rec3.pause_context == ["filler", "none"] and not info3["joined_split"] and info3["endpointer_holds"] == []
    for rec, _ in recs.values():
        _check_row(rec.to_row())


def test_region_claimed_by_two_turns_goes_to_the_better_overlap():
    lines = [LogLine("TTS", "Anything else?", 0), LogLine("USER", "Yes.", 1), LogLine("TTS", "Continue?", 2),
             LogLine("USER", "No.", 3)]
    regions = [(25.0, 25.4), (30.0, 30.5)]
    words = [("Yes.", 29.9, 30.1, 0.9), ("No.", 30.2, 30.5, 0.9)]  # Whisper put both words in one region
    out = locate_turns(log_turns(lines), regions, words, 40.0, recipe())
    assert [lt.status for lt in out] == ["region_conflict", "aligned"]
    assert out[1].regions == ((30.0, 30.5),)


def test_a_misplaced_word_neither_extends_a_turn_nor_joins_it():
    lines = [LogLine("TTS", "Where to?", 0), LogLine("USER", "the airport", 1)]
    regions = [(9.2, 9.5), (10.0, 10.6)]  # 9.2-9.5: noise, 0.5 s before the answer
    words = [("so", 9.6, 9.7, 0.5),  # in the silence, nearest to the noise region, matched to nothing
             ("the", 10.0, 10.1, 0.9), ("airport", 10.1, 10.6, 0.9)]
    (lt,) = locate_turns(log_turns(lines), regions, words, 20.0, recipe())
    assert lt.status == "aligned" and lt.regions == ((10.0, 10.6),) and [w.word for w in lt.words] == ["the", "airport"]
    words[0] = ("so", 9.3, 9.4, 0.5)  # said in the noise region: it joins the turn, with a 0.5 s hold
    (lt,) = locate_turns(log_turns(lines), regions, words, 20.0, recipe())
    assert lt.regions == ((9.2, 9.5), (10.0, 10.6)) and [w.word for w in lt.words] == ["so", "the", "airport"]


def test_partial_joined_split_is_not_aligned():
    lines = [LogLine("TTS", "Where to?", 0), LogLine("USER", "I'm done.", 1), LogLine("USER", "Goodbye.", 2)]
    out = locate_turns(log_turns(lines), [(5.0, 5.8)], [("I'm", 5.0, 5.3, 0.9), ("done.", 5.3, 5.8, 0.9)], 20.0, recipe())
    assert [lt.status for lt in out] == ["partial"]  # the pause after "I'm done." is a hold, not the end


def test_endpointer_hold_is_the_longest_hold_between_the_lines():
    spans = [Span(1.0, 1.2), Span(1.5, 2.4), Span(3.0, 5.0)]
    assert endpointer_holds(spans, [(1.4, 2.5)]) == [1]
    assert endpointer_holds(spans, [(4.0, 4.5)]) == []  # the end span is never a hold


# ----------------------------------------------------------------------------- speech helpers


def flat(pairs) -> list[float]:
    return [t for pair in pairs for t in pair]


def test_speech_regions_hysteresis_merging_and_short_drops():
    f = 0.032
    p = np.zeros(100, dtype=np.float32)
    p[10:20] = 0.9
    p[20:22] = 0.4  # above neg_threshold 0.35: speech continues
    p[22:24] = 0.1  # 2 frames (0.064 s) of silence: merged, shorter than min_silence_s
    p[24:30] = 0.8
    p[40:42] = 0.9  # 0.064 s: dropped (min_speech_s 0.1)
    p[60:70] = 0.6
    regions = speech_regions(p, VadParams())
    assert flat(regions) == pytest.approx([10 * f, 30 * f, 60 * f, 70 * f])
    assert speech_regions(p, VadParams(), audio_end_s=65 * f)[-1] == pytest.approx((60 * f, 65 * f))


def test_asr_packing_and_time_mapping():
    regions = [(1.0, 1.5), (2.0, 2.4), (10.0, 10.5), (40.0, 41.0)]
    p = AsrParams(merge_gap_s=1.0, pad_s=0.2, gap_s=0.5, max_chunk_s=3.0)
    segs = asr_segments(regions, 41.1, p)
    assert flat(segs) == pytest.approx([0.8, 2.6, 9.8, 10.7, 39.8, 41.1])
    assert pack_chunks(segs, p) == [[segs[0]], [segs[1], segs[2]]]  # 1.8 + 0.5 + 0.9 > 3.0; 0.9 + 0.5 + 1.3 <= 3.0
    where = [(0.0, 9.8, 0.9), (1.4, 39.8, 1.3)]
    assert map_word_time(0.1, 0.5, where) == (9.9, 10.3)
    assert map_word_time(0.8, 1.6, where) == (39.8, 40.0)  # half in the zero gap: the segment it overlaps most
    assert map_word_time(1.0, 1.1, where) == (10.7, 10.7)  # entirely in the gap: the nearest segment's edge
    words = [("yes", 9.9, 10.3, 0.9)]
    assert flat(empty_segments(regions, words, 41.1, p)) == pytest.approx([0.8, 2.6, 39.8, 41.1])


# ----------------------------------------------------------------------------- splits and the recipe


def test_split_assignment_is_stable_and_about_80_10_10():
    uuids = ("2df66a93f3ec5a856e9f3ce0b9dc8b30", "2b7fe1873ca02362485fee19d50b8639", "01220cdb996c801828472c05cde6e61c",
             "0202e8e07edcf18eae08e8832cd6eb2d")
    assert [split_of(u) for u in uuids] == ["dev", "test", "test", "train"]
    raw = load_recipe("getgoing")
    calls = require_data(raw["folder"])
    uuids = sorted(p.name for p in calls.iterdir() if (p / "log.json").exists())
    counts = Counter(split_of(u) for u in uuids)
    assert len(uuids) == 728 and counts == {"train": 582, "dev": 75, "test": 71}
    for name, share in (("train", 0.8), ("dev", 0.1), ("test", 0.1)):
        assert counts[name] / len(uuids) == pytest.approx(share, abs=0.02)
    # the recipe lists every call once, in the split the hash gives
    listed = [(u, s) for s, us in raw["splits"].items() for u in us]
    assert sorted(u for u, _ in listed) == uuids and all(split_of(u) == s for u, s in listed)
    assert json.loads(recipe_text(raw)) == raw


# ----------------------------------------------------------------------------- a real build


def _check_row(row: dict) -> None:
    words, spans = row["words"], row["silence_spans"]
    assert words and spans
    assert all(a["start"] <= b["start"] for a, b in zip(words, words[1:])), "words in time order"
    assert all(w["start"] <= w["end"] for w in words)
    start, end = words[0]["start"], spans[-1]["start"]
    assert words[-1]["end"] <= end + 1e-6, "the end span starts after the last word"
    for h in spans[:-1]:  # holds lie inside the turn, are >= 0.1 s and contain no word
        assert start - 1e-6 <= h["start"] < h["end"] <= end + 1e-6 and h["end"] - h["start"] >= 0.1 - 1e-6
        assert not any(w["start"] < h["end"] - 1e-6 and w["end"] > h["start"] + 1e-6 for w in words)
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in zip(spans, spans[1:]))
    assert 0.0 <= spans[-1]["end"] - spans[-1]["start"] <= 2.0 + 1e-6
    n = decode_audio_bytes(row["audio"]["bytes"]).size
    assert n == pytest.approx(spans[-1]["end"] * 16_000, abs=1.0), "the audio ends with the end span"
    assert len(row["pause_context"]) == len(spans) == len(row["unit_punct"])


CALLS = {"2df66a93f3ec5a856e9f3ce0b9dc8b30": "dev", "2b7fe1873ca02362485fee19d50b8639": "test"}


def test_build_two_real_calls(data_root, tmp_path, capsys):
    from vad_turn.data.corpora.getgoing_build import GetGoingConfig, load_turn_tags, run
    from vad_turn.data.dataset import load_turns

    raw = load_recipe("getgoing")
    for u in CALLS:
        require_data(raw["folder"], u)
    root = tmp_path / "data"
    (root / raw["folder"]).mkdir(parents=True)
    for u in CALLS:  # read in place: links, no copies
        os.symlink(data_root / raw["folder"] / u, root / raw["folder"] / u)
    (tmp_path / "recipes").mkdir()
    splits = {s: [u for u, su in CALLS.items() if su == s] for s in ("train", "dev", "test")}
    (tmp_path / "recipes" / "getgoing.json").write_text(recipe_text({**raw, "splits": splits}))
    cfg = GetGoingConfig(data_root=root, out_root=tmp_path / "built", cache_dir=tmp_path / "cache",
                         recipes_dir=tmp_path / "recipes", splits=("dev", "test"), n_check_turns=5)
    info = run(cfg)
    out = tmp_path / "built" / "getgoing"
    ds = load_turns(out)
    rows = {r["id"]: r for r in ds}
    by_call = Counter(r["conversation"] for r in rows.values())
    # 2df66a93: 7 user turns, one ("CMU") not found; 2b7fe187: one turn, "Um," then "transit directions"
    assert by_call["2df66a93f3ec5a856e9f3ce0b9dc8b30"] == pytest.approx(6, abs=1)
    assert by_call["2b7fe1873ca02362485fee19d50b8639"] == 1
    assert info["counts"]["test"]["turns"] == 1 and info["notes"]["calls_computed_now"] == 2
    for row in rows.values():
        _check_row(row)
        assert row["source"] == "getgoing" and row["audio_condition"] == "real" and row["split"] == CALLS[row["conversation"]]
        assert row["words"][0]["start"] >= 1.0 - 1e-6  # 1 s of audio before the turn's first speech
        assert row["messages"] and row["messages"][-1]["role"] == "assistant"  # the prompt just before
    um = rows["2b7fe1873ca02362485fee19d50b8639-000-caller"]
    # Whisper tiny.en int8 hears "Um," on CPUs with VNNI and "of" on an AVX2-only AMD EPYC (int8 kernels
    # differ); the hold after it is the VAD's either way
    assert [w["word"].lower().strip(",.") for w in um["words"]][0] in ("um", "of") and len(um["silence_spans"]) == 2
    assert um["pause_context"][0] == ("filler" if um["words"][0]["word"].lower().startswith("um") else "none")
    hold = um["silence_spans"][0]
    assert hold["end"] - hold["start"] == pytest.approx(0.64, abs=0.07)  # VAD: "Um," ... "transit directions"
    assert um["silence_spans"][-1]["end"] - um["silence_spans"][-1]["start"] == pytest.approx(2.0)
    tags = load_turn_tags(out)
    assert set(tags) == set(rows) and tags[um["id"]]["log_text"] == "transit directions"
    quality = json.loads((out / "label_quality.json").read_text())
    assert quality["calls"]["kept"] == 2 and quality["user_lines"]["total"] == 8
    assert quality["user_lines"]["aligned"] == len(rows) and quality["asr_vs_log"]["check"]["n"] == 5
    # a second run with the same recipe and options is skipped; the cache makes a forced rebuild cheap
    assert run(cfg).get("skipped") is True
    again = run(dataclasses.replace(cfg, force=True))
    assert again["notes"]["calls_computed_now"] == 0 and again["counts"] == info["counts"]
    assert "up to date" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--splits", "val"], "--splits: choose from ['train', 'dev', 'test']"),
    (["--max-calls", "0"], "--max-calls must be >= 1"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--min-silence-s", "0"], "--min-silence-s: 0.0 is outside"),
])
def test_bad_option_is_one_line(argv, message, capsys, tmp_path):
    from vad_turn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["build-getgoing", "--out-root", str(tmp_path / "b"), "--cache-dir", str(tmp_path / "c")] + argv)
    assert e.value.code == 2 and message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_recipe_that_misses_a_call_is_refused(tmp_path):
    from vad_turn.data.corpora import CorpusError
    from vad_turn.data.corpora.getgoing_build import GetGoingConfig, call_jobs

    (tmp_path / "getgoing" / "calls" / "abc").mkdir(parents=True)
    for name in ("user.ogg", "log.json"):  # a usable call (an empty folder is skipped: test_getgoing_inputs)
        (tmp_path / "getgoing" / "calls" / "abc" / name).write_bytes(b"x")
    cfg = GetGoingConfig(data_root=tmp_path)
    with pytest.raises(CorpusError, match="in no split of the recipe.*--update-recipe"):
        call_jobs(recipe(), cfg)
    r = Recipe(folder="getgoing/calls", splits={"dev": ["abc", "def"]}, spam_patterns=())
    with pytest.raises(CorpusError, match="1 calls of split dev are missing"):
        call_jobs(r, GetGoingConfig(data_root=tmp_path, splits=("dev",)))
    assert call_jobs(Recipe(folder="getgoing/calls", splits={"dev": ["abc"]}, spam_patterns=()),
                     GetGoingConfig(data_root=tmp_path, splits=("dev",))) == [(tmp_path / "getgoing/calls/abc", "dev")]
