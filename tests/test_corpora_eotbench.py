"""eot-bench-data loader, offline: a small dataset in the eot-bench columns made in the test."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vad_turn.core.audio import decode_audio_bytes, encode_wav_bytes  # noqa: E402
from vad_turn.core.schema import Message, Span, TurnRecord, Word, features  # noqa: E402
from vad_turn.data.corpora.eotbench import load_eot_bench  # noqa: E402
from vad_turn.data.dataset import load_turns, write_turns  # noqa: E402

EOT_COLUMNS = ["id", "language", "audio", "silence_spans", "words", "messages"]  # what eot-bench ships


def records():
    tone = (0.3 * np.sin(2 * np.pi * 220 * np.arange(32_000) / 16_000)).astype(np.float32)
    wav = {"bytes": encode_wav_bytes(tone), "path": "a.wav"}
    w1 = [Word("so", 0.1, 0.4), Word("um", 0.5, 0.8), Word("i", 1.4, 1.5), Word("think", 1.5, 1.9)]
    w2 = [Word("yes", 0.2, 0.6)]
    return [
        TurnRecord(id="r1", source="x", split="x", words=w1, silence_spans=[Span(0.8, 1.4), Span(1.9, 2.0)],
                   messages=[Message("assistant", "how are you")], audio=wav),
        TurnRecord(id="r2", source="x", split="x", words=w2, silence_spans=[Span(0.6, 2.0)], audio=wav),
    ]


@pytest.fixture
def eot_folder(tmp_path):
    write_turns(records(), tmp_path / "full")
    ds = load_turns(tmp_path / "full").select_columns(EOT_COLUMNS)
    ds.save_to_disk(str(tmp_path / "eot"))
    return tmp_path / "eot"


def test_local_folder_gets_every_schema_column_with_derived_tags(eot_folder):
    ds = load_eot_bench(eot_folder)
    assert set(ds.column_names) == set(features())
    assert ds["pause_context"] == [["filler", "none"], ["none"]]  # after "um", after "think"; after "yes"
    assert ds["unit_punct"] == [["", ""], [""]]
    assert ds["n_words"] == [4, 1]
    assert ds["source"] == ["eot-bench", "eot-bench"] and ds["split"] == ["validation"] * 2
    assert ds["audio_condition"] == ["real"] * 2 and ds["word_timing"] == ["aligned"] * 2
    assert ds["conversation"] == ["r1", "r2"] and ds["backchannel_context"] == [False, False]
    audio = decode_audio_bytes(ds[0]["audio"]["bytes"])
    assert audio.size == 32_000 and abs(float(np.abs(audio).max()) - 0.3) < 2e-3


def test_dataset_dict_folder_and_split(eot_folder, tmp_path):
    from datasets import DatasetDict, load_from_disk

    d = load_from_disk(str(eot_folder))
    DatasetDict({"validation": d, "test": d.select([0])}).save_to_disk(str(tmp_path / "dd"))
    val = load_eot_bench(tmp_path / "dd", split="validation")
    assert len(val) == 2 and set(val["split"]) == {"validation"}
    both = load_eot_bench(tmp_path / "dd")
    assert sorted(both["split"]) == ["test", "validation", "validation"]
    with pytest.raises(ValueError, match="no split 'train'"):
        load_eot_bench(tmp_path / "dd", split="train")


def test_bad_inputs_are_named(eot_folder, tmp_path):
    from datasets import load_from_disk

    d = load_from_disk(str(eot_folder))
    d.remove_columns(["messages"]).save_to_disk(str(tmp_path / "nomsg"))
    with pytest.raises(ValueError, match=r"missing columns \['messages'\]"):
        load_eot_bench(tmp_path / "nomsg")
    bad_spans = [{"start": 1.0, "end": 1.5}, {"start": 0.5, "end": 0.9}]
    d.map(lambda spans, i: {"silence_spans": bad_spans if i == 1 else spans}, input_columns=["silence_spans"],
          with_indices=True).save_to_disk(str(tmp_path / "unordered"))
    with pytest.raises(ValueError, match="row r2 has unordered or overlapping silence spans"):
        load_eot_bench(tmp_path / "unordered")
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_eot_bench(tmp_path / "absent")
