"""AMI builder: RTTM floor, short-segment backchannels, and real audio clips from a generated WAV."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from fixtures.corpora.make_root import ami_signal, make_data_root

from vad_turn.core.audio import AudioError, decode_audio_bytes
from vad_turn.data.corpora import CorpusError, ami, load_recipe


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_data_root(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def built(root):
    return ami.build(root, load_recipe("ami"))


def spans(rec):
    return [t for s in rec.silence_spans for t in (s.start, s.end)]


def test_spans_splits_and_backchannels(built):
    by_split, notes = built
    assert {k: [r.id for r in v] for k, v in by_split.items()} == {
        "train": ["mtg01-0000-SPK1", "mtg01-0001-SPK2"],  # SPK1's last turn runs into the excerpt end
        "dev": ["mtg02-0000-SPK3", "mtg02-0001-SPK4"],
        "test": ["mtg03-0000-SPK5", "mtg03-0001-SPK6"],
    }
    assert notes == {"turns_cut_by_excerpt_end": 1}
    spk1, spk2 = by_split["train"]
    # SPK1 0.5-2.5 and 2.8-4.0 (0.3 s hold); SPK2's 0.4 s segment at 1.0 s is a backchannel;
    # SPK2 takes the floor at 4.3 s. Times relative to the clip start (0.5 s).
    assert spans(spk1) == pytest.approx([2.0, 2.3, 3.5, 3.8], abs=1e-6)
    assert spk1.backchannel_context and not spk2.backchannel_context
    assert spans(spk2) == pytest.approx([2.2, 2.2], abs=1e-6)  # SPK1 overlaps from 6.2 s: zero-length end
    spk3, spk4 = by_split["dev"]
    # SPK4's 0.7 s segment is followed by SPK4's own: it takes the floor, not a backchannel.
    assert spans(spk3) == pytest.approx([3.0, 3.6], abs=1e-6)
    assert not spk3.backchannel_context
    # hold 5.3-5.5; end span to the clip end: min(7.5 + 3.0, 10.0) - 4.6 = 5.4
    assert spans(spk4) == pytest.approx([0.7, 0.9, 2.9, 5.4], abs=1e-6)
    for r in (spk1, spk2, spk3, spk4):
        assert r.words == [] and r.word_timing == "none" and r.audio_condition == "real" and r.messages == []


def test_audio_clip_is_the_source_slice(built):
    spk1, spk2 = built[0]["train"]
    src = ami_signal("mtg01")
    for rec, (a_s, b_s) in ((spk1, (0.5, 7.0)), (spk2, (4.3, 9.5))):
        clip = decode_audio_bytes(rec.audio["bytes"], source=rec.id)
        assert clip.size == round((b_s - a_s) * 16_000)
        ref = src[round(a_s * 16_000) : round(b_s * 16_000)]
        assert np.max(np.abs(clip - ref)) < 1.0 / 16_000 + 1e-4  # 16-bit quantisation only
        assert rec.silence_spans[-1].end <= clip.size / 16_000 + 1e-6


def test_rttm_errors_and_missing_wav(root, tmp_path):
    bad = tmp_path / "r.rttm"
    bad.write_text("SPEAKER mtg01 1 0.5 2.0 <NA> <NA> SPK1 <NA> <NA>\nSPEAKER mtg01 1 0.5\n")
    with pytest.raises(CorpusError, match=r"r.rttm:2: expected 'SPEAKER uri channel start duration"):
        ami.read_rttm(bad)
    bad.write_text("SPEAKER mtg01 1 0.5 -2.0 <NA> <NA> SPK1 <NA> <NA>\n")
    with pytest.raises(CorpusError, match=r"r.rttm:1: negative duration"):
        ami.read_rttm(bad)
    data = tmp_path / "data"
    shutil.copytree(root / "ami_excerpts", data / "ami_excerpts")
    (data / "ami_excerpts" / "mtg02.wav").unlink()
    with pytest.raises(CorpusError, match=r"mtg02.wav: file not found"):
        ami.build(data, load_recipe("ami"))
    # a listed file that is empty (like the unlisted empty.wav trap) is a clear audio error
    shutil.copy(root / "ami_excerpts" / "empty.wav", data / "ami_excerpts" / "mtg02.wav")
    with pytest.raises(AudioError, match=r"mtg02.wav: audio is empty"):
        ami.build(data, load_recipe("ami"))
