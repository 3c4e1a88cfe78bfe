"""The acoustic front end: F0 on tones and against Praat on real speech, torchaudio mel parity,
intensity in dB, streaming == offline windows and features, ONNX feature parity, edge cases."""
from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"

from vad_turn.acoustic.features import (
    PROSODIC_CHANNELS,
    AcousticFrontEnd,
    FeatureConfig,
    StreamingWindow,
    features_np,
    window_audio,
)
from vad_turn.core.audio import load_audio  # noqa: E402

SR = 16_000
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def front() -> AcousticFrontEnd:
    return AcousticFrontEnd(FeatureConfig()).eval()


def tone(f_hz: float, n: int, amp: float = 0.3) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f_hz * np.arange(n) / SR)).astype(np.float32)


def tracks(front, audio: np.ndarray) -> dict:
    with torch.no_grad():
        return {k: v[0].numpy() for k, v in front.tracks(torch.from_numpy(window_audio(audio, front.cfg))[None]).items()}


@pytest.mark.parametrize("f_hz", [90.0, 200.0, 310.0, 450.0])
def test_tone_f0_within_2_hz(front, f_hz):
    t = tracks(front, tone(f_hz, front.cfg.n_samples))
    steady = slice(5, None)  # the first frames lack a full 40 ms of history inside the window
    assert np.all(t["voiced"][steady] == 1.0)
    assert np.max(np.abs(t["f0_hz"][steady] - f_hz)) <= 2.0
    assert np.min(t["voicing"][steady]) > 0.95


def test_noise_and_silence_are_unvoiced(front):
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(front.cfg.n_samples)).astype(np.float32)
    assert tracks(front, noise)["voiced"].mean() < 0.05
    zeros = tracks(front, np.zeros(front.cfg.n_samples, np.float32))
    assert zeros["voiced"].sum() == 0 and np.allclose(zeros["intensity_db"], -100.0, atol=0.01)
    feats = features_np(np.zeros(0, np.float32), front.cfg, front)  # turn start: empty audio
    assert feats.shape == (front.cfg.n_channels, front.cfg.n_frames) and np.all(np.isfinite(feats))
    assert np.allclose(feats[front.cfg.n_mels:], [[0], [0], [0], [-1], [0]])  # f0_st, voicing, voiced, -100 dB, rel


def test_intensity_db_of_a_sine(front):
    amp = 0.1
    db = tracks(front, tone(250.0, front.cfg.n_samples, amp))["intensity_db"]
    assert np.allclose(db, 20 * np.log10(amp / np.sqrt(2)), atol=0.1)  # -23.0 dBFS


def test_mel_matches_torchaudio(front):
    import torchaudio

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, front.cfg.n_samples)).astype(np.float32) * 0.1)
    ref = torchaudio.transforms.MelSpectrogram(SR, n_fft=400, win_length=400, hop_length=160, n_mels=40, center=False,
                                               power=2.0)(x[:, front.mel_offset:])
    ours = torch.exp(front.log_mel(x)) - 1e-5
    assert ours.shape == ref.shape == (2, 40, front.cfg.n_frames)
    assert float(((ours - ref).abs() / (ref + 1e-3)).max()) < 1e-3


def test_f0_agrees_with_praat_on_real_speech(front, data_root):
    import parselmouth

    audio = load_audio(data_root / "clips" / "jfk.flac")
    pitch = parselmouth.Sound(audio.astype(np.float64), SR).to_pitch_ac(time_step=0.01, pitch_floor=70.0,
                                                                          pitch_ceiling=500.0)
    cfg = front.cfg
    ends = cfg.frame_end_samples()
    rel, n_praat_voiced = [], 0
    for start in range(0, audio.size - cfg.n_samples + 1, cfg.n_samples // 2):
        t = tracks(front, audio[start:start + cfg.n_samples])
        for i, e in enumerate(ends[5:], start=5):
            fp = pitch.get_value_at_time((start + e - SR * cfg.pitch_win_ms / 2000) / SR)  # our frame's centre
            if np.isnan(fp):
                continue
            n_praat_voiced += 1
            if t["f0_hz"][i] > 0:
                rel.append(abs(t["f0_hz"][i] - fp) / fp)
    rel = np.array(rel)
    assert rel.size > 0.9 * n_praat_voiced > 300  # we call voiced >90% of Praat's voiced frames
    assert np.median(rel) < 0.02  # measured 0.4%
    assert np.mean(rel > 0.2) < 0.15  # octave jumps (no Viterbi path): measured 9%


def test_window_audio_left_pads_and_crops():
    cfg = FeatureConfig(window_s=0.5)
    a = np.arange(1, 1001, dtype=np.float32)
    w = window_audio(a, cfg)
    assert w.shape == (8000,) and np.all(w[:7000] == 0) and np.array_equal(w[7000:], a)
    long = np.arange(20000, dtype=np.float32)
    assert np.array_equal(window_audio(long, cfg), long[-8000:])


def test_streaming_window_equals_offline(front):
    rng = np.random.default_rng(3)
    cfg = front.cfg
    audio = np.concatenate([tone(180, 30000), np.zeros(9000, np.float32), tone(220, 50000, 0.2)])
    audio += 0.01 * rng.standard_normal(audio.size).astype(np.float32)
    stream, pos, checked = StreamingWindow(cfg), 0, 0
    while pos < audio.size:
        n = int(rng.choice([0, 1, 160, 320, 999, 5000, 70000]))
        stream.push(audio[pos:pos + n])
        pos = min(pos + n, audio.size)
        assert stream.n_seen == pos
        offline = window_audio(audio[:pos], cfg)
        assert np.array_equal(stream.window(), offline)
        if checked < 4 and rng.random() < 0.3:
            with torch.no_grad():
                f_stream = front(torch.from_numpy(stream.window())[None])[0].numpy()
            assert np.array_equal(f_stream, features_np(audio[:pos], cfg, front))
            checked += 1
    assert checked >= 1


def test_onnx_front_end_matches_torch(front, data_root):
    import onnxruntime as ort

    cfg = front.cfg
    clip = load_audio(data_root / "clips" / "silero_test.wav")
    wins = np.stack([window_audio(clip[:e], cfg) for e in (16000, 100000, 400000, clip.size)])
    buf = io.BytesIO()
    torch.onnx.export(front, (torch.zeros(1, cfg.n_samples),), buf, opset_version=17, input_names=["audio"],
                      dynamic_axes={"audio": {0: "b"}}, dynamo=False)
    got = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"]).run(None, {"audio": wins})[0]
    with torch.no_grad():
        ref = front(torch.from_numpy(wins)).numpy()
    m = cfg.n_mels
    assert np.max(np.abs(got[:, :m] - ref[:, :m])) < 1e-3  # log-mel
    voiced = PROSODIC_CHANNELS.index("voiced") + m
    assert np.mean(got[:, voiced] == ref[:, voiced]) > 0.99
    both = (got[:, voiced] == 1) & (ref[:, voiced] == 1)
    assert np.max(np.abs(got[:, m][both] - ref[:, m][both])) < 1e-3  # f0 in semitones / 12
    assert np.max(np.abs(got[:, -2:] - ref[:, -2:])) < 1e-4  # intensity channels


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="pitch_rate_hz"):
        FeatureConfig(pitch_rate_hz=3000)
    with pytest.raises(ValueError, match="f0"):
        FeatureConfig(f0_min_hz=600.0)
    with pytest.raises(ValueError, match="shorter than one frame"):
        FeatureConfig(window_s=0.01)
