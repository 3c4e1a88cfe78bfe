"""Smart Turn v3.2 (Pipecat / Daily, BSD-2-Clause) as the harness detector "smart-turn".

The model is the int8 ONNX graph that ships inside the `pipecat-ai` wheel,
`pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx` (8,679,182 bytes, sha256
2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f, the pin in
`vad_turn.core.setup_check.MODEL_FILES`; the package is the [pipecat] extra). It is found through the package's
installed-file metadata, so the pipecat framework is never imported by this detector, and its sha256 is checked
at load. Licence: BSD-2-Clause, Copyright (c) 2024-2026 Daily.

    input  input_features float32 (batch, 80, 800): `whisper_log_mel` of `smart_turn_window(audio)`,
           i.e. the LAST 8 s of 16 kHz mono audio, left-padded with zeros to 128,000 samples,
           normalised to zero mean / unit variance (over the whole padded window), then the Whisper
           log-mel (n_fft 400, hop 160, 80 Slaney mels, 10 ms frames, log10, clamped to 8 decades
           below the window's maximum, (x + 4) / 4).
    output logits float32 (batch, 1): already P(turn complete) in [0, 1] (a sigmoid is in the graph).

The model sees the trailing silence in the audio itself, so `silence_s` is not an input. The feature
function is numpy only (no torch, no transformers); tests/test_smart_turn.py checks it against
transformers' `WhisperFeatureExtractor(chunk_length=8)` and against the wheel's own numpy reference.

The int8 graph is sensitive to its input. It is quantised statically (78 QuantizeLinear nodes), so a
change far below one quantisation step can still flip a rounding, and flips compound through the
layers: gaussian noise of std 1e-6 on the features (about 8 float32 ulps at 1.0) moves
P(complete) by up to 0.31 (at a window where P = 0.39); 90% of windows move by <= 0.10, the median by
0.006 (142 real windows, jfk.flac and silero_test.wav every 0.5 s, 8 draws each). Measured by
`python benchmarks/smart_turn_latency.py` ("noise_spread" in its report); tests/test_smart_turn.py
keeps it under 0.35 on jfk.flac. So features a few 1e-5 apart (transformers' float32 STFT is up to
3e-5 from ours) can give P a few hundredths apart, and two CPUs may too (onnxruntime's int8 kernels
differ between x86 CPUs, see vad_turn/onnx.py; not measured for this graph): that is the model, not a
bug. On the test's real windows our features equal the wheel's own numpy features exactly.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, last_window, prepare_audio
from vad_turn.core.model_files import sha256_file

MODEL_PACKAGE = "pipecat-ai"
WINDOW_S = 8.0
WINDOW_SAMPLES = 128_000  # WINDOW_S at 16 kHz
N_FFT = 400  # 25 ms
HOP_SAMPLES = 160  # 10 ms
N_MELS = 80
N_FRAMES = WINDOW_SAMPLES // HOP_SAMPLES  # 800 (the centred STFT's 801st frame is dropped, as Whisper does)
NORM_EPS = 1e-7  # added to the variance in the waveform normalisation
LOG_MEL_FLOOR = 1e-10  # mel power floor before log10
DYNAMIC_RANGE_LOG10 = 8.0  # log-mels are clamped to (window max - 8)


def _pinned() -> tuple[str, str]:
    """(file inside the pipecat-ai distribution, sha256): the one pin, in vad_turn.core.setup_check."""
    from vad_turn.core.setup_check import MODEL_FILES

    return MODEL_FILES[MODEL_PACKAGE]


def default_model_path() -> Path:
    """The Smart Turn v3.2 ONNX file inside the installed pipecat-ai wheel (pipecat is not imported).

    Raises FileNotFoundError naming the package and `make setup` when the wheel or the file is missing.
    """
    import importlib.metadata

    rel, _ = _pinned()
    try:
        path = Path(importlib.metadata.distribution(MODEL_PACKAGE).locate_file(rel))
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"smart-turn: the {MODEL_PACKAGE} package (which carries {rel}) is not installed; "
                                "run `make setup`") from None
    if not path.is_file():
        raise FileNotFoundError(f"smart-turn: model file not found: {path} (the {MODEL_PACKAGE} package is "
                                "incomplete; run `make setup`)")
    return path


def check_model_file(path: str | Path, sha256: str | None) -> Path:
    """`path` when it exists and (unless sha256 is None) has that sha256.

    Raises FileNotFoundError / ValueError naming the file, the expected and the actual digest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"smart-turn: model file not found: {path} (the default is the one in the "
                                f"{MODEL_PACKAGE} package; run `make setup`)")
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256.lower():
            raise ValueError(f"smart-turn: {path} has sha256 {got}, expected {sha256} (Smart Turn v3.2 from "
                             f"{MODEL_PACKAGE}); reinstall it with `make setup`, or pass sha256=any for another build")
    return path


# ----------------------------------------------------------------------------- features


def smart_turn_window(audio: np.ndarray | None, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One query's model window: any-rate mono/stereo float or integer audio -> float32 (WINDOW_SAMPLES,).

    Through `prepare_audio` (so 8 kHz, stereo and int16 are handled as everywhere else), then the last
    8 s left-padded with zeros (`vad_turn.core.audio.last_window`). Empty audio (turn start) gives an
    all-zero window; None or non-finite audio raises AudioError, as the acoustic detector's `query_window`.
    """
    if audio is None:
        raise AudioError("the smart-turn detector needs audio (this query has none: a text-only row?)")
    a = np.asarray(audio)
    if a.ndim == 1 and sample_rate_hz == SAMPLE_RATE_HZ:
        a = a[-WINDOW_SAMPLES:]  # only the window is needed (and checked)
    a = prepare_audio(a, sample_rate_hz, source="smart-turn query", allow_empty=True)
    return last_window(a, WINDOW_SAMPLES)


@functools.lru_cache(maxsize=1)
def slaney_mel_filters() -> np.ndarray:
    """float64 (N_FFT // 2 + 1, N_MELS) = (201, 80): triangular filters equally spaced on the Slaney mel
    scale (linear below 1 kHz, logarithmic above) from 0 to 8 kHz, each scaled to unit area (Slaney norm)."""

    def hz_to_mel(f):
        f = np.asarray(f, np.float64)
        return np.where(f < 1000.0, 3.0 * f / 200.0, 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) * 27.0 / np.log(6.4))

    def mel_to_hz(m):
        m = np.asarray(m, np.float64)
        return np.where(m < 15.0, 200.0 * m / 3.0, 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))

    fft_hz = np.linspace(0.0, SAMPLE_RATE_HZ / 2, N_FFT // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE_HZ / 2), N_MELS + 2))
    left, centre, right = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (fft_hz[:, None] - left) / (centre - left)
    falling = (right - fft_hz[:, None]) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (right - left))


@functools.lru_cache(maxsize=1)
def _sparse_mel_filters_t():
    """`slaney_mel_filters().T` as a scipy CSR matrix (80, 201): 391 non-zeros instead of 16,080, and no
    multi-threaded BLAS call (which ran 10x slower than one thread on a busy 2-core machine)."""
    from scipy import sparse

    return sparse.csr_matrix(slaney_mel_filters().T)


def whisper_log_mel(windows: np.ndarray) -> np.ndarray:
    """Smart Turn's input features: windows float (n, WINDOW_SAMPLES) or (WINDOW_SAMPLES,), 16 kHz
    (from `smart_turn_window`) -> float32 (n, 80, 800) or (80, 800), roughly in [-1.5, 1.5].

    Per window: x = (x - mean) / sqrt(var + 1e-7); centred STFT (reflect padding of N_FFT / 2, periodic
    Hann, N_FFT 400, hop 160), the first 800 frames' power spectra; Slaney mel filters; log10 of
    max(power, 1e-10); clamped to the window's maximum - 8; (x + 4) / 4. The normalisation in float32,
    the rest in float64, as the wheel's numpy reference (whose output it reproduces exactly on real
    windows); transformers' WhisperFeatureExtractor(chunk_length=8, do_normalize=True), whose STFT is
    float32, is within 1e-4 (measured 2.8e-5 in quiet bins, mean 6e-8).
    """
    w = np.asarray(windows, dtype=np.float32)
    single = w.ndim == 1
    w = np.atleast_2d(w)
    if w.ndim != 2 or w.shape[1] != WINDOW_SAMPLES:
        raise ValueError(f"windows must be ({WINDOW_SAMPLES},) or (n, {WINDOW_SAMPLES}), got {np.shape(windows)}")
    # normalised in float32 as both references do (float64 here moves quiet bins by up to 3e-5)
    w = ((w - w.mean(axis=1, keepdims=True)) / np.sqrt(w.var(axis=1, keepdims=True) + NORM_EPS)).astype(np.float64)
    padded = np.pad(w, ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP_SAMPLES][:, :N_FRAMES]
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic
    spec = np.fft.rfft(frames * hann, axis=-1)  # (n, 800, 201)
    power = (spec.real ** 2 + spec.imag ** 2).reshape(-1, N_FFT // 2 + 1)  # (n * 800, 201)
    mel = (_sparse_mel_filters_t() @ power.T).T.reshape(len(w), N_FRAMES, N_MELS)
    log_mel = np.log10(np.maximum(mel, LOG_MEL_FLOOR)).transpose(0, 2, 1)  # (n, 80, 800)
    log_mel = np.maximum(log_mel, log_mel.max(axis=(1, 2), keepdims=True) - DYNAMIC_RANGE_LOG10)
    out = ((log_mel + 4.0) / 4.0).astype(np.float32)
    return out[0] if single else out


# ----------------------------------------------------------------------------- detector


class SmartTurnDetector:
    """The harness `Detector` for Smart Turn v3.2: p_eot = the model's P(turn complete).

    model: the ONNX file (default: the one in the pipecat-ai wheel). sha256: its expected digest
    (default the v3.2 pin; "any" skips the check, for another Smart Turn v3 build with the same I/O).
    threads: onnxruntime intra-op threads. batch_size: windows per inference call (default 1: batches of
    8 / 32 cost ~20% / ~45% more CPU per window here, on an AMD EPYC). `silence_s` is ignored: the
    window already ends with the silence so far.
    """

    needs_audio = True
    needs_words = False

    def __init__(self, model: str | Path | None = None, threads: int | str = 1, batch_size: int | str = 1,
                 sha256: str | None = None, name: str = "smart-turn"):
        from vad_turn.core.onnx import cpu_session

        self.name, self.threads, self.batch_size = name, int(threads), int(batch_size)
        if self.threads < 1 or self.batch_size < 1:
            raise ValueError(f"threads and batch_size must be >= 1, got {threads!r}, {batch_size!r}")
        pin = _pinned()[1]
        want = pin if sha256 is None else (None if str(sha256).lower() == "any" else str(sha256))
        self.model_path = check_model_file(default_model_path() if model is None else model, want)
        self._session = cpu_session(self.model_path, self.threads, what="smart-turn",
                                    hint=f"the default is in the {MODEL_PACKAGE} package; run `make setup`")

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(self.predict_windows(smart_turn_window(audio)[None])[0])

    def predict_batch(self, queries: Sequence) -> np.ndarray:
        out = [np.zeros(0)]
        for i in range(0, len(queries), self.batch_size):  # windows made per batch: 512 KB each
            out.append(self.predict_windows(np.stack([smart_turn_window(q.audio)
                                                      for q in queries[i:i + self.batch_size]])))
        return np.concatenate(out)

    def predict_windows(self, windows: np.ndarray) -> np.ndarray:
        """windows float32 (n, WINDOW_SAMPLES) -> P(complete) float64 (n,) in [0, 1]."""
        out = [np.zeros(0)]
        for i in range(0, len(windows), self.batch_size):
            out.append(self.predict_features(whisper_log_mel(windows[i:i + self.batch_size])))
        return np.concatenate(out)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """features float32 (n, 80, 800) from `whisper_log_mel` -> P(complete) float64 (n,) in [0, 1]."""
        feats = np.ascontiguousarray(features, dtype=np.float32)
        return np.asarray(self._session.run(None, {"input_features": feats})[0], np.float64).reshape(-1)


def feature_noise_spread(detector: SmartTurnDetector, windows: np.ndarray, *, sigma: float = 1e-6,
                         n_draws: int = 8, seed: int = 0) -> np.ndarray:
    """How far gaussian noise of std `sigma` on the features moves the output: per window,
    max over `n_draws` draws of |P(features + noise) - P(features)|. windows float32 (n, WINDOW_SAMPLES)
    -> float64 (n,). Seeded (numpy default_rng(seed)), so the same call gives the same numbers."""
    rng = np.random.default_rng(seed)
    feats = whisper_log_mel(windows)
    p = detector.predict_features(feats)
    spread = np.zeros(len(feats))
    for _ in range(n_draws):
        noisy = feats + rng.normal(0.0, sigma, feats.shape).astype(np.float32)
        spread = np.maximum(spread, np.abs(detector.predict_features(noisy) - p))
    return spread
