"""The one definition of audio input handling: load, check, downmix, resample.

Everything in the workbench (dataset builders, VADs, the turn model, the pipeline) gets its
audio through `prepare_audio` / `load_audio`, so 8 kHz telephony, stereo, int16 and bad
files are handled identically everywhere. Levels and silence (`frame_levels_db`, `trim_silence`,
`low_energy_gaps`) are measured here too.

Convention: audio is float32 `(n_samples,)`, mono, in [-1, 1], at `SAMPLE_RATE_HZ` (16 kHz).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

SAMPLE_RATE_HZ = 16_000
# Float audio is in [-1, 1]; peaks up to 2 are let through because band-limited resampling of clipped
# audio overshoots (measured with soxr HQ: 1.56 for heavily clipped speech 8 kHz -> 16 kHz, 1.43 at
# 48 kHz), while integer PCM cast to float without scaling peaks at tens to 32767 for anything audible.
FLOAT_AUDIO_MAX_ABS = 2.0


class AudioError(ValueError):
    """Audio that cannot be used, with a message naming the problem and its source."""


def seconds_to_samples(t_s: float, sample_rate_hz: int = SAMPLE_RATE_HZ) -> int:
    return int(round(t_s * sample_rate_hz))


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(n_samples,) or (n_samples, n_channels) -> (n_samples,) by averaging channels."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        return audio
    if audio.ndim == 2:
        # soundfile gives (frames, channels); accept (channels, frames) when clearly so.
        if audio.shape[0] <= 8 and audio.shape[1] > audio.shape[0]:
            audio = audio.T
        return audio.mean(axis=1)
    raise AudioError(f"audio must be 1-D or 2-D (samples x channels), got shape {audio.shape}")


def resample(audio: np.ndarray, from_hz: int, to_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Band-limited resampling with soxr (HQ). float32 in, float32 out."""
    if from_hz == to_hz:
        return audio.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(audio.astype(np.float32, copy=False), from_hz, to_hz, quality="HQ").astype(np.float32)


def prepare_audio(
    audio: np.ndarray,
    sample_rate_hz: int,
    *,
    source: str = "audio",
    target_rate_hz: int = SAMPLE_RATE_HZ,
    allow_empty: bool = False,
) -> np.ndarray:
    """Validate and convert any input to float32 (n_samples,) mono at `target_rate_hz`.

    Integer PCM is scaled to [-1, 1]; stereo is averaged; other rates (8 kHz telephony,
    44.1/48 kHz) are resampled. Raises AudioError for empty or non-finite audio, float audio
    with max |x| > FLOAT_AUDIO_MAX_ABS (2.0: integer PCM cast to float without scaling), or a
    nonsensical sample rate, naming `source`.
    """
    if not isinstance(sample_rate_hz, (int, np.integer)) or not (1000 <= int(sample_rate_hz) <= 384_000):
        raise AudioError(f"{source}: invalid sample rate {sample_rate_hz!r} Hz")
    a = np.asarray(audio)
    is_float = a.dtype.kind == "f"
    if a.dtype.kind in "iu":
        info = np.iinfo(a.dtype)
        a = (a.astype(np.float32) - (info.max + info.min + 1) / 2) / (info.max + 1 - (info.max + info.min + 1) / 2)
    elif a.dtype.kind != "f":
        raise AudioError(f"{source}: unsupported sample type {a.dtype}")
    a = to_mono(a).astype(np.float32, copy=False)
    if a.size == 0:
        if allow_empty:
            return a
        raise AudioError(f"{source}: audio is empty (0 samples)")
    if not np.all(np.isfinite(a)):
        raise AudioError(f"{source}: audio contains NaN or infinite samples")
    if is_float:  # integer input was scaled into [-1, 1) above
        peak = float(np.max(np.abs(a)))
        if peak > FLOAT_AUDIO_MAX_ABS:
            raise AudioError(f"{source}: float audio peaks at |x| = {peak:g}, far outside [-1, 1]: it looks like "
                             "unscaled integer PCM cast to float. Pass the integer array itself (e.g. np.int16, "
                             "scaled here) or divide by 32768 (int16) / 2147483648 (int32)")
    return resample(a, int(sample_rate_hz), target_rate_hz)


def read_audio_file(path: str | Path) -> tuple[np.ndarray, int]:
    """An audio file (WAV/FLAC/OGG via soundfile) as it is: float32 (n,) or (n, channels), and its rate.

    For streaming inputs that convert chunk by chunk; everything else uses `load_audio`.
    Raises AudioError naming the file when it is missing or cannot be decoded.
    """
    import soundfile as sf

    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as e:  # corrupt / truncated / not audio
        raise AudioError(f"{path}: cannot decode audio ({e})") from e
    return data, int(sr)


def load_audio(path: str | Path, *, target_rate_hz: int = SAMPLE_RATE_HZ, allow_empty: bool = False) -> np.ndarray:
    """Read an audio file (WAV/FLAC/OGG via soundfile) as float32 mono at `target_rate_hz`."""
    data, sr = read_audio_file(path)
    return prepare_audio(data, sr, source=str(path), target_rate_hz=target_rate_hz, allow_empty=allow_empty)


def decode_audio_bytes(data: bytes, *, source: str = "audio bytes", target_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Decode encoded audio bytes (e.g. a dataset row's {bytes, path}) like `load_audio`."""
    import soundfile as sf

    if not data:
        raise AudioError(f"{source}: no audio bytes")
    try:
        arr, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    except (RuntimeError, sf.LibsndfileError) as e:
        raise AudioError(f"{source}: cannot decode audio ({e})") from e
    return prepare_audio(arr, sr, source=source, target_rate_hz=target_rate_hz)


def encode_wav_bytes(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> bytes:
    """float32 (n_samples,) -> 16-bit PCM WAV bytes, for dataset rows."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(audio, -1.0, 1.0), sample_rate_hz, subtype="PCM_16", format="WAV")
    return buf.getvalue()


def telephony_8k(audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Simulate an 8 kHz telephone channel: down to 8 kHz and back to `sample_rate_hz`."""
    return resample(resample(audio, sample_rate_hz, 8000), 8000, sample_rate_hz)


def add_noise(audio: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    """Add low-frequency-weighted noise at `snr_db` relative to the active-speech power (deterministic)."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(audio.size).astype(np.float32)
    # Leaky integration gives a 1/f-like (brown-pink) spectrum, closer to room noise than white.
    from scipy.signal import lfilter

    pink = lfilter([1.0], [1.0, -0.98], white).astype(np.float32)
    pink -= pink.mean()
    active = audio[np.abs(audio) > 0.01 * (np.abs(audio).max() + 1e-9)]
    p_sig = float(np.mean(active**2)) if active.size else float(np.mean(audio**2))
    p_noise = float(np.mean(pink**2)) + 1e-12
    scale = np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))
    return np.clip(audio + scale * pink, -1.0, 1.0).astype(np.float32)


def resample_stream(from_hz: int, to_hz: int = SAMPLE_RATE_HZ):
    """A chunk-by-chunk resampler with the same soxr HQ filter as `resample` (for streamed audio).

    Call `.resample_chunk(float32 chunk)` per chunk and `.resample_chunk(empty, last=True)` at the end.
    """
    import soxr

    return soxr.ResampleStream(from_hz, to_hz, 1, dtype="float32", quality="HQ")


def last_window(audio: np.ndarray, n_samples: int) -> np.ndarray:
    """The last `n_samples` of `audio`, left-padded with zeros: the window a model scores.

    The one definition of a model window (the acoustic model's `features.window_audio`, the fused
    runtime and Smart Turn all cut with it). audio: float32 (n,), n >= 0. Returns float32 (n_samples,).
    """
    a = np.asarray(audio, dtype=np.float32).reshape(-1)
    out = np.zeros(int(n_samples), dtype=np.float32)
    take = a[len(a) - min(len(a), int(n_samples)):]
    if take.size:
        out[-take.size:] = take
    return out


# ----------------------------------------------------------------------------- levels and silence


def frame_levels_db(audio: np.ndarray, frame_ms: float = 10.0) -> np.ndarray:
    """RMS per non-overlapping frame, in dB relative to the loudest frame: float (n_frames,), <= 0."""
    n = max(1, int(SAMPLE_RATE_HZ * frame_ms / 1000))
    m = audio.size // n
    rms = np.sqrt(np.mean(audio[: m * n].astype(np.float64).reshape(m, n) ** 2, axis=1)) if m else np.zeros(0)
    peak = rms.max() if rms.size else 0.0
    return 20 * np.log10(np.maximum(rms, 1e-12) / peak) if peak > 0 else np.full(rms.shape, -np.inf)


def trim_silence(audio: np.ndarray, threshold_db: float = -40.0, frame_ms: float = 10.0) -> tuple[np.ndarray, float, float]:
    """Cut leading/trailing frames quieter than `threshold_db` below the loudest frame.

    audio: float32 (n_samples,) 16 kHz. Returns (trimmed audio, lead_s removed, trail_s removed);
    all-silent audio gives an empty array with lead_s = its duration.
    """
    levels = frame_levels_db(audio, frame_ms)
    loud = np.flatnonzero(levels >= threshold_db)
    if loud.size == 0:
        return audio[:0], audio.size / SAMPLE_RATE_HZ, 0.0
    n = int(SAMPLE_RATE_HZ * frame_ms / 1000)
    a, b = loud[0] * n, min(audio.size, (loud[-1] + 1) * n)
    return audio[a:b], a / SAMPLE_RATE_HZ, (audio.size - b) / SAMPLE_RATE_HZ


def low_energy_gaps(audio: np.ndarray, threshold_db: float = -40.0, min_gap_s: float = 0.1,
                    frame_ms: float = 5.0) -> list[tuple[float, float]]:
    """(start_s, end_s) of runs of frames below `threshold_db` (re loudest frame) lasting >= `min_gap_s`."""
    quiet = frame_levels_db(audio, frame_ms) < threshold_db
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    hop_s = frame_ms / 1000
    return [(s * hop_s, e * hop_s) for s, e in zip(starts, ends) if (e - s) * hop_s >= min_gap_s - 1e-9]
