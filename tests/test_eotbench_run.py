"""eot-bench's current batch adapter contract and artifact layout (issue 27), on a small set exported to its schema.

The set: two English turns of the JFK clip ("and so my fellow americans" + silence) and one German row, written as
a built corpus (save_to_disk, the project's own form), scored by `python -m vad_turn.fusion.eotbench_run`, exported
to eot-bench's schema (parquet + a dataset card: what `datasets.load_dataset` and eot-bench's harness read) and
scored again from the export."""
from __future__ import annotations

import hashlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vad_turn.core.audio import encode_wav_bytes, load_audio  # noqa: E402
from vad_turn.core.schema import Message, Span, TurnRecord, Word  # noqa: E402

PRED_COLUMNS = ["id", "language", "span_index", "timestamp", "silence_dur", "p_eot", "label"]


@pytest.fixture(scope="module")
def jfk_set(data_root, tmp_path_factory):
    from vad_turn.data.dataset import write_turns

    clip = load_audio(data_root / "clips" / "jfk.flac")
    a = np.concatenate([clip[: int(3.3 * 16000)], np.zeros(3 * 16000, np.float32)])
    wav = {"bytes": encode_wav_bytes(a), "path": "jfk.wav"}
    w = [Word("and", 0.3, 0.6), Word("so", 0.6, 1.0), Word("my", 1.6, 1.8), Word("fellow", 1.8, 2.2),
         Word("americans", 2.2, 3.0)]
    recs = [TurnRecord(id="jfk1", source="x", split="validation", words=w, silence_spans=[Span(1.0, 1.6), Span(3.0, 6.3)],
                       messages=[Message("assistant", "what do you want to say")], audio=wav),
            TurnRecord(id="jfk2", source="x", split="validation", words=w[:2], silence_spans=[Span(1.0, 6.3)], audio=wav),
            TurnRecord(id="de1", source="x", split="validation", words=w[:2], silence_spans=[Span(1.0, 6.3)], audio=wav,
                       language="de"),
            TurnRecord(id="other-split", source="x", split="test", words=w[:2], silence_spans=[Span(1.0, 6.3)], audio=wav)]
    tmp = tmp_path_factory.mktemp("eotrun")
    write_turns(recs, tmp / "built")
    return tmp


@pytest.fixture(scope="module")
def adapter():
    from vad_turn.fusion.eotbench import EotBenchModel

    return EotBenchModel()


def test_adapter_contract(adapter):
    from vad_turn.fusion.eotbench import EotBenchModel

    assert adapter.supports_language("en") and adapter.supports_language("en-US") and adapter.supports_language("EN_gb")
    assert not adapter.supports_language("de") and not adapter.supports_language("zh")
    assert adapter.display_name and adapter.adapter_id.startswith("vad-turn/fused-")
    # every option that changes a prediction changes adapter_id (so eot-bench's run folder hash)
    ids = {adapter.adapter_id, EotBenchModel(silence_vad="energy").adapter_id, EotBenchModel(int8=True).adapter_id}
    assert len(ids) == 3 and EotBenchModel(threads=2).adapter_id == adapter.adapter_id
    with pytest.raises(ValueError, match="silence_vad must be one of silero, energy"):
        EotBenchModel(silence_vad="webrtc")


def test_the_silence_so_far_is_measured_on_the_audio(adapter, data_root):
    """eot-bench passes no silence duration: the adapter's VAD measures it; it grows with the silence, one VAD frame
    (32 ms) at most off, and the item's own silence_s (an extension of the contract) is used when given."""
    from vad_turn.fusion.eotbench import trailing_silence_s

    clip = load_audio(data_root / "clips" / "jfk.flac")
    a = np.concatenate([clip[: int(3.3 * 16000)], np.zeros(3 * 16000, np.float32)])
    est = {t: trailing_silence_s(a[: int(t * 16000)], adapter._vad) for t in (3.5, 4.0, 5.0, 6.0)}
    for t in (4.0, 5.0, 6.0):
        assert est[t] - est[3.5] == pytest.approx(t - 3.5, abs=0.033), est
    # "americans" ends at 2.1-2.2 s (50 ms frames: -8..-16 dB up to 2.1 s, then the -41 dB room until the cut at
    # 3.3 s, whose last 50 ms hold the onset of "ask", which Silero does not call speech)
    assert 1.1 <= est[3.5] <= 1.45, est
    item = {"audio": {"array": a[:64000], "sampling_rate": 16000}, "messages": []}
    assert adapter.item_query(item, 0)[3] == pytest.approx(est[4.0])
    assert adapter.item_query({**item, "silence_s": 0.7}, 0)[3] == 0.7


def _run(source: str, out, **kw):
    from vad_turn.fusion.eotbench_run import EotBenchRunConfig, run

    return run(EotBenchRunConfig(dataset=source, split="validation", out=out, **kw))


def test_scores_a_dataset_in_eot_bench_layout(jfk_set, adapter, tmp_path):
    from datasets import load_dataset

    from vad_turn.fusion.eotbench_run import ADAPTER_REF

    src = str(jfk_set / "built")
    runs = _run(src, tmp_path / "out", export_to=tmp_path / "export")
    model = {"adapter": ADAPTER_REF, "adapter_id": adapter.adapter_id, "inference_interval": 0.1, "transcript_lag": 0.5,
             "display_name": adapter.display_name}
    digest = hashlib.sha256(json.dumps(model, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:10]
    root = tmp_path / "out" / (src.strip("/").replace("/", "__") + "__validation__min_silence_100ms")
    assert runs == [root / "en" / f"eot_bench_model__{digest}"]
    # the German row: its span set is written, the model run skipped (unsupported language)
    assert sorted(p.name for p in root.iterdir()) == ["de", "en"]
    assert sorted(p.name for p in (root / "de").iterdir()) == ["span_set.parquet", "span_set_manifest.json"]
    spans = pd.read_parquet(root / "en" / "span_set.parquet")
    assert spans[["id", "span_index", "label"]].values.tolist() == [["jfk1", 0, "hold"], ["jfk1", 1, "eot"],
                                                                    ["jfk2", 0, "eot"]]
    preds = pd.read_parquet(runs[0] / "predictions.parquet")
    assert list(preds.columns) == PRED_COLUMNS
    # every 0.1 s from each span's start to its end: 1.0..1.6 (7), 3.0..6.3 (34), 1.0..6.3 (54)
    assert preds.groupby(["id", "span_index"]).size().to_dict() == {("jfk1", 0): 7, ("jfk1", 1): 34, ("jfk2", 0): 54}
    assert preds["silence_dur"].min() == 0.0 and preds["silence_dur"].max() == pytest.approx(5.3)
    assert preds["p_eot"].between(0, 1).all() and set(preds["label"]) == {"hold", "eot"}
    man = json.loads((runs[0] / "manifest.json").read_text())
    assert man["model_run_id"] == runs[0].name and man["model"] == model and man["n_rows"] == 95 and man["n_spans"] == 3
    assert man["dataset"] == {"path": src, "split": "validation", "min_silence_span": 0.1, "language": "en"}
    # the end of turn, its words shown, scores above the pause after "and so" at its end (0.6 s)
    p = preds.set_index(["id", "span_index", "silence_dur"])["p_eot"]
    assert p[("jfk1", 1, 1.0)] > p[("jfk1", 0, 0.6)] + 0.05  # measured 0.93 vs 0.81
    with pytest.raises(FileExistsError, match="--overwrite"):
        _run(src, tmp_path / "out")
    # the export: eot-bench's columns, read by datasets.load_dataset as the harness reads a dataset; scored from it,
    # the same predictions under the export's own span-set folder
    ds = load_dataset(str(tmp_path / "export"), "en", split="validation")
    assert sorted(ds.column_names) == sorted(["id", "language", "audio", "silence_spans", "words", "messages"])
    assert sorted(ds["id"]) == ["jfk1", "jfk2"]
    again = _run(str(tmp_path / "export"), tmp_path / "out2", name="en")
    p2 = pd.read_parquet(again[0] / "predictions.parquet")
    merged = preds.merge(p2, on=["id", "span_index", "timestamp"])
    assert len(merged) == 95 and np.abs(merged["p_eot_x"] - merged["p_eot_y"]).max() < 1e-6
