"""eot-bench batch contract on a small local dataset in eot-bench's schema (real speech: the JFK clip)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vad_turn.core.audio import AudioError, encode_wav_bytes, load_audio, resample  # noqa: E402
from vad_turn.core.schema import Message, Span, TurnRecord, Word  # noqa: E402

EOT_COLUMNS = ["id", "language", "audio", "silence_spans", "words", "messages"]


@pytest.fixture(scope="module")
def eot_rows(data_root, tmp_path_factory):
    """Two turns of the JFK clip ("and so my fellow americans ... ask not") + silence, saved with
    save_to_disk in eot-bench's columns and read back with load_eot_bench."""
    from vad_turn.data.corpora.eotbench import load_eot_bench
    from vad_turn.data.dataset import load_turns, write_turns

    clip = load_audio(data_root / "clips" / "jfk.flac")
    a = np.concatenate([clip[: int(3.3 * 16000)], np.zeros(3 * 16000, np.float32)])
    w = [Word("and", 0.3, 0.6), Word("so", 0.6, 1.0), Word("my", 1.6, 1.8), Word("fellow", 1.8, 2.2),
         Word("americans", 2.2, 3.0)]
    recs = [TurnRecord(id="jfk1", source="x", split="validation", words=w, silence_spans=[Span(1.0, 1.6), Span(3.0, 6.3)],
                       messages=[Message("assistant", "what do you want to say")],
                       audio={"bytes": encode_wav_bytes(a), "path": "jfk1.wav"}),
            TurnRecord(id="jfk2", source="x", split="validation", words=w[:2], silence_spans=[Span(1.0, 6.3)],
                       audio={"bytes": encode_wav_bytes(a), "path": "jfk2.wav"})]
    tmp = tmp_path_factory.mktemp("eot")
    write_turns(recs, tmp / "full")
    load_turns(tmp / "full").select_columns(EOT_COLUMNS).save_to_disk(str(tmp / "eot"))
    return load_eot_bench(tmp / "eot").to_list()


@pytest.fixture(scope="module")
def adapter():
    from vad_turn.fusion.eotbench import EotBenchModel

    return EotBenchModel()


def _queries(rows):
    from vad_turn.fusion.detector import FusedDetector
    from vad_turn.harness.evaluate import EvalConfig, turn_queries

    det = FusedDetector()
    qs = [q for r in rows for q in turn_queries(r, det, EvalConfig())[0]]
    return det, qs


def test_predict_batch_matches_the_harness_detector(eot_rows, adapter):
    det, qs = _queries(eot_rows)
    assert len(qs) >= 40
    items = [{"audio": {"array": q.audio, "sampling_rate": 16000}, "silence_s": q.silence_s,
              "words": [{"word": x.word, "start": x.start, "end": x.end} for x in q.words],
              "messages": [{"role": m.role, "content": m.content} for m in q.messages]} for q in qs]
    p = adapter.predict_batch(items)
    np.testing.assert_allclose(p, det.predict_batch(qs), atol=1e-9)
    assert p.min() >= 0 and p.max() <= 1 and p.std() > 0.02
    # the same items as 8 kHz telephony arrays: close, not equal
    items8 = [{**it, "audio": {"array": resample(np.asarray(it["audio"]["array"]), 16000, 8000), "sampling_rate": 8000}}
              for it in items[::5]]
    assert np.abs(adapter.predict_batch(items8) - p[::5]).max() < 0.05


def test_bytes_audio_and_transcript_in_messages(eot_rows, adapter):
    row = eot_rows[0]
    msgs = [dict(m) for m in row["messages"]] + [{"role": "user", "content": "and so my fellow americans"}]
    p = adapter.predict_batch([{"audio": row["audio"], "messages": msgs, "silence_s": 0.8}])
    # the transcript's words get times spread over the speech part: 6.3 s audio - 0.8 s silence
    from vad_turn.core.audio import decode_audio_bytes

    a = decode_audio_bytes(row["audio"]["bytes"])
    step = (a.size / 16000 - 0.8) / 5
    words = tuple(Word(t, i * step, (i + 1) * step) for i, t in enumerate("and so my fellow americans".split()))
    want = adapter.model.p_eot([(a, words, (Message("assistant", "what do you want to say"),), 0.8)])
    assert p[0] == pytest.approx(want[0], abs=1e-12)


def test_bad_items_are_named(adapter):
    ok = {"audio": {"array": np.zeros(1600, np.float32) + 0.01, "sampling_rate": 16000}, "messages": []}
    with pytest.raises(AudioError, match="item 1 audio"):
        adapter.predict_batch([ok, {"messages": []}])
    with pytest.raises(AudioError, match="item 0 audio.*empty"):
        adapter.predict_batch([{"audio": {"array": np.zeros(0, np.float32), "sampling_rate": 16000}, "messages": []}])
    with pytest.raises(ValueError, match="item 0: word 0"):
        adapter.predict_batch([{**ok, "words": ["hello"]}])
    with pytest.raises(ValueError, match="item 0: silence_s"):
        adapter.predict_batch([{**ok, "silence_s": float("nan")}])
