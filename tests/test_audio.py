import numpy as np
import pytest

from vad_turn.core.audio import (
    SAMPLE_RATE_HZ,
    AudioError,
    add_noise,
    decode_audio_bytes,
    encode_wav_bytes,
    load_audio,
    prepare_audio,
    telephony_8k,
)


def tone(freq_hz, dur_s, sr):
    t = np.arange(int(dur_s * sr)) / sr
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def test_8k_telephony_is_resampled_to_16k_preserving_duration_and_pitch():
    x8 = tone(440, 1.0, 8000)
    y = prepare_audio(x8, 8000)
    assert y.dtype == np.float32 and y.shape == (SAMPLE_RATE_HZ,)
    spec = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spec) * SAMPLE_RATE_HZ / y.size
    assert abs(peak_hz - 440) <= 1.0


def test_stereo_int16_is_downmixed_and_scaled():
    left = (tone(300, 0.5, 16000) * 32767).astype(np.int16)
    stereo = np.stack([left, np.zeros_like(left)], axis=1)  # (n, 2)
    y = prepare_audio(stereo, 16000)
    assert y.shape == (8000,)
    assert abs(np.max(np.abs(y)) - 0.25) < 0.01  # half amplitude after averaging with a silent channel


@pytest.mark.parametrize(
    "audio, sr, msg",
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.array([0.0, np.nan], np.float32), 16000, "NaN"),
        (np.zeros(10, np.float32), 0, "sample rate"),
    ],
)
def test_bad_audio_raises_named_error(audio, sr, msg):
    with pytest.raises(AudioError, match=msg):
        prepare_audio(audio, sr, source="clip.wav")


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(AudioError, match="bad.wav"):
        load_audio(bad)
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    with pytest.raises(AudioError, match="no audio bytes"):
        decode_audio_bytes(b"")


def test_wav_bytes_roundtrip_within_16bit_quantisation():
    x = tone(200, 0.3, 16000)
    y = decode_audio_bytes(encode_wav_bytes(x))
    assert y.shape == x.shape
    assert np.max(np.abs(x - y)) < 1.0 / 32767 + 1e-6


def test_noise_snr_and_telephony_band_limit():
    x = tone(500, 1.0, 16000)
    noisy = add_noise(x, snr_db=10.0, seed=3)
    noise = noisy - x
    snr = 10 * np.log10(np.mean(x**2) / np.mean(noise**2))
    assert abs(snr - 10.0) < 0.5
    assert np.array_equal(noisy, add_noise(x, 10.0, seed=3))  # deterministic
    hi = tone(6000, 1.0, 16000)
    tel = telephony_8k(hi)
    assert np.sqrt(np.mean(tel**2)) < 0.01 * np.sqrt(np.mean(hi**2))  # 6 kHz is above the 4 kHz band
