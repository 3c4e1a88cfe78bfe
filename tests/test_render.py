"""Rendered turns: measured silences match the real holds, determinism, resume, engine errors, recipe."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from vad_turn.core.audio import decode_audio_bytes  # noqa: E402
from vad_turn.core.schema import (
    Message,
    Span,
    TurnRecord,
    Word,
    check_turn,
    row_spans,
    row_words,
    silence_spans_from_words,  # noqa: E402
)
from vad_turn.core.audio import low_energy_gaps  # noqa: E402
from vad_turn.engines.tts import EngineError  # noqa: E402
from vad_turn.data.dataset import load_turns, write_turns  # noqa: E402
from vad_turn.data.render import RECIPE_PATH, RenderConfig, ipus, load_recipe, render_rows, run, turn_voice  # noqa: E402

SR = 16_000
# A real-looking Switchboard turn: "well I went" 0.8 s hold "to the store," 0.3 s hold "um yesterday".
TURN_SPEC = [("well", 0.3), ("I", 0.1), ("went", 0.3), (None, 0.8), ("to", 0.1), ("the", 0.1), ("store,", 0.4),
             (None, 0.3), ("um", 0.3), ("yesterday", 0.5)]


def make_turn(turn_id: str, split: str = "val", spec=TURN_SPEC, t0: float = 0.0) -> TurnRecord:
    t, words = t0, []
    for w, d in spec:
        if w is not None:
            words.append(Word(w, t, t + d))
        t += d
    return TurnRecord(id=turn_id, source="switchboard", split=split, words=words,
                      silence_spans=silence_spans_from_words(words, t + 0.6),
                      messages=[Message("assistant", "how was your weekend")], conversation="sw1", speaker="A")


def cfg_for(tmp_path: Path, **kw) -> RenderConfig:
    base = dict(built_root=tmp_path / "built", out_root=tmp_path / "out", corpora=("switchboard",), workers=1,
                condition_splits=(), voices=("espeak:en-us", "espeak:en-us+f3", "flite:slt", "flite:awb"))
    return RenderConfig(**{**base, **kw})


@pytest.mark.parametrize("voice", ["espeak:en-us", "flite:rms", "festival:cmu_us_slt_arctic_hts"])
def test_measured_silences_match_the_real_holds(tmp_path, voice):
    src = make_turn("sw1-A-0003", t0=12.5)  # corpus times need not start at 0
    cfg = cfg_for(tmp_path, voices=(voice,), rate_jitter=0.0)
    out = render_rows([src.to_row()], cfg, "switchboard")
    assert out["skipped"] == []
    (rec,) = out["records"]
    assert rec.id == "sw1-A-0003@" + voice and rec.voice == voice and rec.source == "switchboard-rendered"
    assert rec.audio_condition == "clean" and rec.word_timing == "interpolated"
    check_turn(rec)
    spans = [(s.start, s.end) for s in rec.silence_spans]
    assert [round(b - a, 4) for a, b in spans] == [0.8, 0.3, 5.0]  # real holds, then tail_s
    audio = decode_audio_bytes(rec.audio["bytes"])
    assert audio.size / SR == pytest.approx(spans[-1][1], abs=1e-3)
    gaps = low_energy_gaps(audio, threshold_db=-40.0, min_gap_s=0.1, frame_ms=5.0)
    lead, *holds, tail = gaps
    assert lead[0] == 0.0 and lead[1] == pytest.approx(0.2, abs=0.03)  # speech starts at the lead-in
    assert rec.words[0].start == pytest.approx(0.2, abs=1e-4)
    assert len(holds) == 2
    for (ma, mb), (sa, sb) in zip(holds + [tail], spans):
        assert ma == pytest.approx(sa, abs=0.03) and mb == pytest.approx(sb, abs=0.03)
    # words: corpus spellings, in order, inside their IPUs, tags carried over
    assert [w.word for w in rec.words] == [w.word for w in src.words]
    assert all(a.end <= b.start + 1e-9 for a, b in zip(rec.words, rec.words[1:]))
    assert rec.words[2].end == pytest.approx(spans[0][0], abs=1e-6) and rec.words[3].start == pytest.approx(spans[0][1], abs=1e-6)
    assert rec.pause_context == src.pause_context == ["none", "none", "none"]
    assert rec.messages == src.messages and rec.split == "val"
    # proportional to characters: "yesterday" (9) lasts 4.5x "um" (2)
    assert (rec.words[-1].end - rec.words[-1].start) / (rec.words[-2].end - rec.words[-2].start) == pytest.approx(4.5, rel=1e-6)


def test_ipus_split_at_holds_only():
    rec = make_turn("t")
    assert ipus(rec.words, rec.silence_spans) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    with pytest.raises(ValueError, match="separate"):  # a "hold" in the middle of "well"
        ipus(rec.words, [Span(0.05, 0.6), rec.silence_spans[-1]])


def test_same_seed_is_byte_identical_and_other_seed_changes_voices(tmp_path):
    cfg = cfg_for(tmp_path, condition_splits=("val",))
    rows = [make_turn(f"sw{i}-A", spec=TURN_SPEC[:3]).to_row() for i in range(4)]
    a, b = render_rows(rows, cfg, "switchboard"), render_rows(rows[::-1], cfg, "switchboard")
    by_id = {r.id: r for r in b["records"]}
    assert len(a["records"]) == 12  # 4 clean + 4 8k + 4 noisy
    for r in a["records"]:
        assert r.audio["bytes"] == by_id[r.id].audio["bytes"] and r.voice == by_id[r.id].voice
    assert {r.audio_condition for r in a["records"]} == {"clean", "8k", "noisy"}
    ids = [f"sw{i}-A-{i:04d}" for i in range(60)]
    v0 = [turn_voice(i, cfg) for i in ids]
    v1 = [turn_voice(i, dataclasses.replace(cfg, seed=1)) for i in ids]
    assert v0 == [turn_voice(i, cfg) for i in ids]
    assert sum(x[0] != y[0] for x, y in zip(v0, v1)) >= 20  # ~3/4 of turns change voice with 4 voices
    assert {x[0] for x in v0} == set(cfg.voices)
    rates = np.array([x[1].rate for x in v0])
    assert rates.min() >= 1 - cfg.rate_jitter and rates.max() <= 1 + cfg.rate_jitter and rates.std() > 0.02


def test_run_writes_dataset_and_resume_reuses_shards(tmp_path):
    recs = [make_turn(f"sw{i}-A", split="dev" if i < 2 else "train", spec=TURN_SPEC[:7]) for i in range(5)]
    recs.append(make_turn("sw9-A", split="train", spec=[("<UNK>", 0.3)]))  # nothing speakable: skipped
    write_turns(recs, tmp_path / "built" / "switchboard")
    cfg = cfg_for(tmp_path, shard_size=2, condition_splits=("dev",), max_turns=("switchboard:train=3",))
    info = run(cfg)["switchboard"]
    assert info["counts"] == {"train/clean": 2, "dev/clean": 2, "dev/8k": 2, "dev/noisy": 2}
    assert info["skipped"] == 1 and info["skipped_examples"][0][0] == "sw9-A"
    out = tmp_path / "out" / "switchboard-rendered"
    first = load_turns(out).to_pandas()
    shards = sorted((tmp_path / "out" / ".render-work").glob("*.pkl"))
    assert len(shards) == 3  # val: 1 shard of 2, train: 3 turns -> 2 shards
    mtimes = [p.stat().st_mtime_ns for p in shards]
    import shutil

    shutil.rmtree(out)
    run(cfg)
    assert [p.stat().st_mtime_ns for p in shards] == mtimes  # nothing re-rendered
    second = load_turns(out).to_pandas()
    assert first.drop(columns=["audio"]).equals(second.drop(columns=["audio"]))
    assert [a["bytes"] for a in first["audio"]] == [a["bytes"] for a in second["audio"]]
    row = load_turns(out)[0]
    audio = decode_audio_bytes(row["audio"]["bytes"])
    assert audio.size / SR == pytest.approx(row_spans(row)[-1].end, abs=1e-3)
    assert row_words(row)[0].start == pytest.approx(0.2)


def test_missing_engine_binary_is_a_clear_error(tmp_path):
    cfg = cfg_for(tmp_path, voices=("flite:slt",), flite_bin=str(tmp_path / "no" / "flite"))
    with pytest.raises(EngineError, match=r"flite: binary .*no/flite.* not found.*apt-get install flite"):
        render_rows([make_turn("sw1-A").to_row()], cfg, "switchboard")


def test_recipe_matches_config_defaults():
    recipe = load_recipe(RECIPE_PATH)
    assert recipe == RenderConfig()
    assert len(recipe.voices) >= 6 and {v.split(":")[0] for v in recipe.voices} == {"espeak", "flite", "festival"}


def test_whole_turn_render_cuts_one_utterance_at_the_real_holds(tmp_path):
    """festival speaks the turn as one sentence; forced alignment (faster-whisper) cuts it at the holds, the real
    hold durations go in, and the result is its own dataset name. (Whether holds then sound like holds is
    measured over whole sets: benchmarks/final_f0_slope.py.)"""
    from vad_turn.data.render import rendered_name

    spec = [("i", 0.1), ("want", 0.3), ("a", 0.1), ("flight", 0.4), ("to", 0.2), (None, 0.7), ("boston", 0.5),
            ("on", 0.2), ("friday", 0.5)]
    src = make_turn("sw9-B-0001", spec=spec)
    cfg = cfg_for(tmp_path, voices=("festival:cmu_us_slt_arctic_hts",), rate_jitter=0.0, whole_turn=True)
    assert rendered_name("switchboard", cfg) == "switchboard-rendered-utt"
    out = render_rows([src.to_row()], cfg, "switchboard")
    assert out["skipped"] == []
    (rec,) = out["records"]
    assert rec.source == "switchboard-rendered-utt"
    assert [round(s.end - s.start, 4) for s in rec.silence_spans] == [0.7, 5.0]
    audio = decode_audio_bytes(rec.audio["bytes"])
    holds = low_energy_gaps(audio, threshold_db=-40.0, min_gap_s=0.1, frame_ms=5.0)[1:-1]
    # the real hold is there (festival may also breathe inside the sentence: build_info counts such gaps)
    assert max(b - a for a, b in holds) == pytest.approx(0.7, abs=0.05)
    # the words are in order and each unit's audio is a contiguous part of one utterance, not two sentences
    assert [w.word for w in rec.words] == [w.word for w in src.words]
    assert rec.words[4].end == pytest.approx(rec.silence_spans[0].start, abs=1e-6)
