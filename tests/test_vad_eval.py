"""The VAD evaluation: label parsing, the 10 ms grid, metrics on hand-made pairs, and run() end to end."""
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import soundfile as sf
from conftest import require_data

from vad_turn.harness.vad_eval import (
    VadEvalConfig,
    advance,
    apply_condition,
    frame_metrics,
    frames_to_cells,
    list_clips,
    load_labels,
    reference_cells,
    run,
)

SR = 16_000


def write_scv(path, text):
    path.write_text(text)
    return path


def test_load_labels_parses_the_scv_format(tmp_path):
    p = write_scv(tmp_path / "clip-01.scv", "clip-01,0.000,0.519,0,0.519,2.371,1,2.371,2.683,0,2.683,3.595,1,3.595,3.880,0\n")
    segs = load_labels(p)
    assert segs == [(0.0, 0.519, 0), (0.519, 2.371, 1), (2.371, 2.683, 0), (2.683, 3.595, 1), (3.595, 3.88, 0)]


@pytest.mark.parametrize(
    "text, match",
    [
        ("clip,0.0,1.0\n", "triples"),
        ("clip,0.0,1.0,1,1.0,x,0\n", "field 5"),
        ("clip,0.0,1.0,2\n", "bad segment"),
        ("clip,0.0,1.0,1,0.5,2.0,0\n", "before the previous ends"),
        ("clip,0.0,1.0,1\nclip,1.0,2.0,0\n", "exactly one"),
    ],
)
def test_load_labels_rejects_malformed_files_naming_them(tmp_path, text, match):
    p = write_scv(tmp_path / "bad.scv", text)
    with pytest.raises(ValueError, match=match) as e:
        load_labels(p)
    assert str(p) in str(e.value)


def test_reference_cells_use_cell_centres():
    # speech [0.013, 0.035): centres 0.005 0.015 0.025 0.035 0.045 -> cells 1 and 2 only (0.035 is the open end)
    ref = reference_cells([(0.0, 0.013, 0), (0.013, 0.035, 1), (0.035, 0.05, 0)], 5, 0.01)
    assert ref.tolist() == [False, True, True, False, False]


def test_frames_to_cells_maps_each_cell_to_the_frame_holding_its_centre():
    # 512-sample frames, 160-sample cells: centres 80, 240, 400, 560, 720, 880, 1040 -> frames 0,0,0,1,1,1,2
    out = frames_to_cells(np.array([0.1, 0.7, 0.3]), 512, 7, 160)
    np.testing.assert_allclose(out, [0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.3])
    with pytest.raises(ValueError, match="do not cover"):
        frames_to_cells(np.array([0.1, 0.7]), 512, 7, 160)


def test_frame_metrics_on_a_hand_made_pair():
    ref = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    probs = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.1, 0.3, 0.4, 0.0])
    m = frame_metrics(ref, probs, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 1, 1, 5)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    # AUC = P(score of a speech cell > score of a non-speech cell), no ties: of the 4 x 6 pairs,
    # 0.9 and 0.8 win 6 each, 0.6 wins 5 (loses to 0.7), 0.2 wins 3 (loses to 0.7, 0.3, 0.4) -> 20/24
    assert m["auc"] == pytest.approx(20 / 24)
    assert m["speech_fraction"] == pytest.approx(0.4)
    binary = frame_metrics(ref, np.array([1, 1, 0, 0, 1, 1, 1, 0, 0, 0.0]), 0.5, with_auc=False)
    assert binary["precision"] == pytest.approx(2 / 5) and binary["recall"] == pytest.approx(0.5)
    assert binary["f1"] == pytest.approx(2 * 2 / (2 * 2 + 3 + 2)) and np.isnan(binary["auc"])
    none = frame_metrics(ref, np.zeros(10), 0.5)
    assert np.isnan(none["precision"]) and none["recall"] == 0.0 and none["f1"] == 0.0


def test_advance_shifts_outputs_earlier():
    p = np.array([0.0, 0.1, 0.2, 0.3])
    np.testing.assert_allclose(advance(p, 2), [0.2, 0.3, 0.3, 0.3])
    assert advance(p, 0) is p
    np.testing.assert_allclose(advance(p, 10), [0.3, 0.3, 0.3, 0.3])


def test_apply_condition():
    x = np.sin(2 * np.pi * 300 * np.arange(SR) / SR).astype(np.float32) * 0.5
    assert apply_condition(x, "clean", 0) is x
    tel = apply_condition(x, "telephony_8k", 0)
    assert tel.shape == x.shape and np.max(np.abs(tel[1000:-1000] - x[1000:-1000])) < 0.01  # 300 Hz passes
    noisy = apply_condition(x, "noisy_10db", 0)
    snr_db = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
    assert snr_db == pytest.approx(10.0, abs=0.5)
    with pytest.raises(ValueError, match="unknown audio condition"):
        apply_condition(x, "reverb", 0)


def make_testset(folder, with_extra=True):
    """Two 2 s clips: 0.5 s quiet noise, 1 s voiced-like signal, 0.5 s quiet noise, labelled by hand."""
    from test_vad import voiced_like

    folder.mkdir()
    rng = np.random.default_rng(1)
    for i, f0 in enumerate([120.0, 210.0], start=1):
        x = np.concatenate([np.zeros(SR // 2), voiced_like(1.0, f0), np.zeros(SR // 2)])
        x = (x + 5e-4 * rng.standard_normal(x.size)).astype(np.float32)
        sf.write(folder / f"clip-0{i}.wav", x, SR, subtype="PCM_16")
        write_scv(folder / f"clip-0{i}.scv", f"clip-0{i},0.000,0.500,0,0.500,1.500,1,1.500,2.000,0\n")
    if with_extra:
        sf.write(folder / "extra.wav", np.zeros(SR, dtype=np.float32), SR)
    return folder


def test_run_end_to_end_on_a_synthetic_labelled_set(tmp_path):
    testset = make_testset(tmp_path / "set")
    cfg = VadEvalConfig(testset_dir=testset, vads=("energy", "webrtc"), webrtc_aggressiveness=(3,),
                        conditions=("clean", "telephony_8k"), out_dir=tmp_path / "run")
    metrics = run(cfg)
    assert metrics["unlabelled_skipped"] == ["extra.wav"] and metrics["clips"] == ["clip-01", "clip-02"]
    assert metrics["speech_fraction"] == pytest.approx(0.5)
    energy = metrics["rows"]["energy"]["conditions"]["clean"]
    assert energy["n_cells"] == 400
    assert energy["f1"] >= 0.98 and energy["auc"] >= 0.99
    assert metrics["rows"]["energy"]["conditions"]["telephony_8k"]["f1"] >= 0.97
    web = metrics["rows"]["webrtc-a3"]
    assert web["frame_ms"] == 30 and np.isnan(web["conditions"]["clean"]["auc"])
    assert web["conditions"]["clean"]["recall"] >= 0.95
    assert 0 < web["us_per_frame_median"] < 1000 and 0 < web["rtf"] < 0.1
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["rows"]["energy"]["conditions"]["clean"]["f1"] == pytest.approx(energy["f1"])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["type"] == "VadEvalConfig"
    report = (tmp_path / "run" / "report.md").read_text()
    assert f"| energy | 10 | {energy['precision']:.3f} | {energy['recall']:.3f} | {energy['f1']:.3f} |" in report
    assert "Skipped (no label file): extra.wav" in report


def test_labels_that_do_not_span_the_clip_are_refused(tmp_path):
    testset = make_testset(tmp_path / "set", with_extra=False)
    write_scv(testset / "clip-02.scv", "clip-02,0.000,0.500,0,0.500,1.000,1\n")
    with pytest.raises(ValueError, match="clip-02.scv: labels span"):
        run(VadEvalConfig(testset_dir=testset, vads=("energy",), conditions=("clean",), out_dir=tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_clips(tmp_path / "nowhere")


def test_real_testset_layout():
    clips, unlabelled = list_clips(require_data("ten_vad_testset"))
    assert len(clips) == 30 and unlabelled == ["extra_s0724-s0730.wav"]
    for clip_id, wav, scv in clips:
        segs = load_labels(scv)
        assert segs[0][0] == 0.0 and sf.info(str(wav)).duration == pytest.approx(segs[-1][1], abs=1e-3)
        assert all(a[1] == pytest.approx(b[0]) for a, b in zip(segs, segs[1:]))  # segments tile the clip
