"""The streaming VADs: energy on a synthetic signal, the model VADs on a real labelled clip,
stream/offline parity, input conversion and errors.

Floors were measured on testset-audio-02 (4 s, 63% speech): webrtc a2 F1 0.902 / precision
0.824, silero F1 0.943 / AUC 0.983, ten F1 0.931 / AUC 0.979; the asserted floors leave a margin.
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from conftest import require_data

from vad_turn.core.audio import AudioError, load_audio
from vad_turn.engines.vad import EnergyVAD, SileroVAD, StreamingVAD, WebRTCVAD, make_vad, run_vad, silero_model_path
from vad_turn.harness.vad_eval import frame_metrics, frames_to_cells, load_labels, reference_cells

SR = 16_000
CLIP = "testset-audio-02"  # in ten_vad_testset under the real data root


def voiced_like(dur_s: float, f0_hz: float = 140.0, seed: int = 0) -> np.ndarray:
    """A harmonic signal with 1/k harmonics, a 4 Hz syllable-rate envelope and slight vibrato, peak ~0.3."""
    t = np.arange(int(dur_s * SR)) / SR
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 15))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * x * env / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def synthetic() -> np.ndarray:
    """0.5 s quiet noise (-66 dBFS) + 1 s voiced-like signal + 0.5 s quiet noise, float32 (32000,)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(SR // 2), voiced_like(1.0), np.zeros(SR // 2)]).astype(np.float32)
    return x + (5e-4 * rng.standard_normal(x.size)).astype(np.float32)


@pytest.fixture(scope="module")
def real_clip():
    wav = require_data("ten_vad_testset", f"{CLIP}.wav")
    audio = load_audio(wav)
    ref = reference_cells(load_labels(wav.with_suffix(".scv")), audio.size // 160, 0.01)
    return audio, ref


def test_energy_vad_on_synthetic_speech(synthetic):
    times_s, probs = run_vad(EnergyVAD(), synthetic)
    assert probs.shape == (200,) and times_s[1] == pytest.approx(0.01)
    inside = (times_s >= 0.52) & (times_s < 1.48)
    outside = (times_s < 0.48) | (times_s >= 1.52)
    assert probs[inside].min() > 0.95
    assert probs[outside].max() < 0.05
    speech = probs >= 0.5
    assert abs(speech.sum() - 100) <= 2  # 1 s of speech = 100 frames of 10 ms, within 20 ms


def test_energy_vad_floor_falls_to_the_clamp_on_digital_silence():
    vad = EnergyVAD(min_floor_db=-70.0)
    _, probs = run_vad(vad, np.zeros(SR, dtype=np.float32))
    assert probs.max() < 1e-6
    assert vad.floor_db == pytest.approx(-70.0)


def test_webrtc_detects_synthetic_voice(synthetic):
    times_s, probs = run_vad(WebRTCVAD(aggressiveness=3), synthetic)
    assert set(np.unique(probs)) <= {0.0, 1.0}
    assert probs[(times_s >= 0.6) & (times_s < 1.4)].mean() > 0.9


@pytest.mark.parametrize(
    "name, f1_floor, precision_floor, auc_floor",
    [("webrtc", 0.85, 0.75, None), ("silero", 0.90, 0.93, 0.95), ("ten", 0.88, 0.93, 0.95)],
)
def test_model_vads_on_real_clip_and_digital_silence(real_clip, name, f1_floor, precision_floor, auc_floor):
    audio, ref = real_clip
    vad = make_vad(name)
    _, probs = run_vad(vad, audio)
    cells = frames_to_cells(probs, vad.frame_samples, ref.size, 160)
    m = frame_metrics(ref, cells, vad.threshold, with_auc=vad.gives_probability)
    assert m["f1"] >= f1_floor
    assert m["precision"] >= precision_floor > ref.mean()  # better than calling everything speech
    if auc_floor is not None:
        assert m["auc"] >= auc_floor
    _, silent = run_vad(vad, np.zeros(SR, dtype=np.float32))
    assert silent.max() < 0.3  # no frame of digital silence reaches the 0.5 threshold


def test_silero_matches_the_packages_own_onnx_wrapper(real_clip):
    import torch
    from silero_vad.utils_vad import OnnxWrapper

    audio, _ = real_clip
    ref = OnnxWrapper(str(silero_model_path()), force_onnx_cpu=True).audio_forward(torch.from_numpy(audio), SR)
    _, probs = run_vad(SileroVAD(), audio)
    np.testing.assert_allclose(probs, ref.numpy().ravel(), atol=1e-6)


@pytest.mark.parametrize("name", ["energy", "webrtc", "silero", "ten"])
def test_streaming_20ms_chunks_equal_offline(synthetic, name):
    audio = synthetic[: 2 * SR - 100]  # not a multiple of any frame: the tail is padded in both paths
    vad = make_vad(name)
    t_off, p_off = run_vad(vad, audio)
    stream = StreamingVAD(make_vad(name))
    outs = [stream.push(audio[i : i + 320]) for i in range(0, audio.size, 320)] + [stream.flush()]
    t_str = np.concatenate([o[0] for o in outs])
    p_str = np.concatenate([o[1] for o in outs])
    np.testing.assert_array_equal(p_str, p_off)
    np.testing.assert_allclose(t_str, t_off)
    # after flush the stream is fresh again: a second pass gives the same result
    outs2 = [stream.push(audio[i : i + 320]) for i in range(0, audio.size, 320)] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate([o[1] for o in outs2]), p_off)


def test_8khz_and_stereo_inputs_are_converted(synthetic):
    import soxr

    audio_8k = soxr.resample(synthetic, SR, 8000, quality="HQ").astype(np.float32)
    times_s, p8 = run_vad(EnergyVAD(), audio_8k, 8000)
    assert p8.shape == (200,)
    _, p16 = run_vad(EnergyVAD(), synthetic)
    stream = StreamingVAD(EnergyVAD(), sample_rate_hz=8000)  # 20 ms chunks of 8 kHz audio
    outs = [stream.push(audio_8k[i : i + 160]) for i in range(0, audio_8k.size, 160)] + [stream.flush()]
    np.testing.assert_array_equal(np.concatenate([o[1] for o in outs]), p8)
    assert np.mean((p8 >= 0.5) == (p16 >= 0.5)) >= 0.97
    stereo = np.stack([synthetic, synthetic], axis=1)  # (n_samples, 2)
    _, ps = run_vad(make_vad("webrtc"), stereo)
    _, pm = run_vad(make_vad("webrtc"), synthetic)
    np.testing.assert_array_equal(ps, pm)
    pcm = np.clip(np.rint(synthetic * 32768), -32768, 32767).astype(np.int16)
    _, pi = run_vad(make_vad("silero"), pcm)
    _, pf = run_vad(make_vad("silero"), synthetic)
    np.testing.assert_allclose(pi, pf, atol=1e-3)


def test_bad_input_raises():
    vad = EnergyVAD()
    with pytest.raises(AudioError, match="empty"):
        run_vad(vad, np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioError, match="NaN"):
        run_vad(vad, np.array([0.0, np.nan, 0.0], dtype=np.float32))
    with pytest.raises(AudioError, match="invalid sample rate"):
        StreamingVAD(vad, sample_rate_hz=0)
    with pytest.raises(ValueError, match=r"shape \(160,\)"):
        vad.process(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="unknown VAD 'rnnoise'"):
        make_vad("rnnoise")
    with pytest.raises(ValueError, match="aggressiveness"):
        make_vad("webrtc", aggressiveness=4)
    with pytest.raises(FileNotFoundError, match="nowhere/silero.onnx"):
        SileroVAD(model_path="/nowhere/silero.onnx")
