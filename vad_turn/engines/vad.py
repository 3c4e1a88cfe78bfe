"""Streaming voice activity detectors behind one frame-by-frame interface.

Every VAD is a `FrameVAD`: it declares `frame_samples` (its native hop at 16 kHz),
`gives_probability` (False for binary detectors, whose outputs are exactly 0.0 or 1.0) and
`threshold` (the decision threshold on its output), and offers `reset()` and
`process(frame) -> float` with `frame` float32 `(frame_samples,)`, 16 kHz mono in [-1, 1]
and the result a speech probability in [0, 1]. Frame i of a stream covers samples
`[i * frame_samples, (i + 1) * frame_samples)`; no detector's look-ahead or latency is
compensated here.

`run_vad` runs a detector over a whole file (audio enters through `prepare_audio`, so 8 kHz
and stereo input are converted), and `StreamingVAD` accepts chunks of any size (e.g. 20 ms
from a microphone), buffers them to the native frame and gives exactly the outputs of
`run_vad` on the concatenated audio. `make_vad("energy" | "webrtc" | "silero" | "ten", **kw)`
builds one; model files and native libraries load in constructors, never at import.
"""
from __future__ import annotations

import abc
import math
import time
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, prepare_audio, resample_stream


class FrameVAD(abc.ABC):
    """A streaming VAD: `process` one native frame at a time, `reset` between streams."""

    name: str = "vad"
    frame_samples: int
    gives_probability: bool = True
    threshold: float = 0.5

    @property
    def frame_s(self) -> float:
        return self.frame_samples / SAMPLE_RATE_HZ

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget all state, as at the start of a new stream."""

    def process(self, frame: np.ndarray) -> float:
        """frame: float32 (frame_samples,), 16 kHz mono in [-1, 1] -> speech probability in [0, 1]."""
        if frame.shape != (self.frame_samples,):
            raise ValueError(f"{self.name}: frame must have shape ({self.frame_samples},), got {frame.shape}")
        return self._process(frame)

    @abc.abstractmethod
    def _process(self, frame: np.ndarray) -> float: ...


def _to_int16(frame: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16 PCM (the inverse of prepare_audio's scaling by 32768)."""
    return np.clip(np.rint(frame * 32768.0), -32768, 32767).astype(np.int16)


# ----------------------------------------------------------------------------- energy


class EnergyVAD(FrameVAD):
    """Log-energy above an adaptive noise floor, squashed by a logistic into a probability.

    Per frame of `frame_ms`: `e_db = 10 log10(mean(x^2) + 1e-12)` (dBFS; a full-scale sine is
    -3 dB). The noise floor starts at the first frame's energy and then
    - falls fast when the frame is quieter: `floor += fall_coeff * (e_db - floor)`,
    - rises slowly otherwise, by `rise_db_per_s` dB per second of audio, never above `e_db`,
    - is never below `min_floor_db`, so digital silence does not make faint noise look loud.
    `p = logistic((e_db - floor - margin_db) / slope_db)`: a frame `margin_db` above the floor
    scores 0.5, each further `slope_db` multiplies the odds by e.
    """

    name = "energy"
    gives_probability = True

    def __init__(
        self,
        frame_ms: float = 10.0,
        margin_db: float = 10.0,
        slope_db: float = 2.0,
        rise_db_per_s: float = 3.0,
        fall_coeff: float = 0.5,
        min_floor_db: float = -70.0,
        threshold: float = 0.5,
    ):
        if slope_db <= 0 or not (0.0 < fall_coeff <= 1.0) or rise_db_per_s < 0:
            raise ValueError("energy VAD: need slope_db > 0, 0 < fall_coeff <= 1, rise_db_per_s >= 0")
        self.frame_samples = int(round(frame_ms * SAMPLE_RATE_HZ / 1000))
        if self.frame_samples < 1:
            raise ValueError(f"energy VAD: frame_ms={frame_ms} gives no samples")
        self.margin_db, self.slope_db = float(margin_db), float(slope_db)
        self.rise_db_per_frame = float(rise_db_per_s) * self.frame_samples / SAMPLE_RATE_HZ
        self.fall_coeff, self.min_floor_db, self.threshold = float(fall_coeff), float(min_floor_db), float(threshold)
        self.reset()

    def reset(self) -> None:
        self.floor_db: float | None = None

    def _process(self, frame: np.ndarray) -> float:
        x = frame.astype(np.float64, copy=False)
        e_db = 10.0 * math.log10(float(np.dot(x, x)) / x.size + 1e-12)
        if self.floor_db is None:
            floor = e_db
        elif e_db < self.floor_db:
            floor = self.floor_db + self.fall_coeff * (e_db - self.floor_db)
        else:
            floor = min(self.floor_db + self.rise_db_per_frame, e_db)
        self.floor_db = max(floor, self.min_floor_db)
        z = (e_db - self.floor_db - self.margin_db) / self.slope_db
        return 0.5 * (1.0 + math.tanh(0.5 * z))  # the logistic, without overflow


# ----------------------------------------------------------------------------- webrtc


class WebRTCVAD(FrameVAD):
    """The WebRTC GMM VAD (webrtcvad-wheels). Binary: returns 0.0 or 1.0.

    aggressiveness: 0 (least, most frames called speech) to 3 (most, fewest); frame_ms 10, 20 or 30.
    """

    name = "webrtc"
    gives_probability = False

    def __init__(self, aggressiveness: int = 2, frame_ms: int = 30, threshold: float = 0.5):
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"webrtc VAD: aggressiveness must be 0, 1, 2 or 3, got {aggressiveness!r}")
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"webrtc VAD: frame_ms must be 10, 20 or 30, got {frame_ms!r}")
        import webrtcvad

        self._module = webrtcvad
        self.aggressiveness, self.frame_ms, self.threshold = int(aggressiveness), int(frame_ms), float(threshold)
        self.frame_samples = SAMPLE_RATE_HZ * self.frame_ms // 1000
        self.reset()

    def reset(self) -> None:
        self._vad = self._module.Vad(self.aggressiveness)

    def _process(self, frame: np.ndarray) -> float:
        return 1.0 if self._vad.is_speech(_to_int16(frame).tobytes(), SAMPLE_RATE_HZ) else 0.0


# ----------------------------------------------------------------------------- silero


def silero_model_path() -> Path:
    """The ONNX model shipped inside the `silero-vad` package (found without importing it, so no torch)."""
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("silero VAD: the `silero-vad` package is not installed (pip install silero-vad)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "silero_vad.onnx"


class SileroVAD(FrameVAD):
    """Silero VAD (ONNX, run by onnxruntime on 1 CPU thread), 512-sample frames at 16 kHz.

    The model sees each frame prefixed by the last 64 samples of the previous frame (zeros at
    the start): input float32 (1, 576), recurrent `state` float32 (2, 1, 128) carried from its
    `stateN` output, `sr` int64 scalar 16000; output (1, 1) speech probability.
    """

    name = "silero"
    gives_probability = True
    frame_samples = 512
    context_samples = 64

    def __init__(self, model_path: str | Path | None = None, threshold: float = 0.5, n_threads: int = 1):
        from vad_turn.core.onnx import cpu_session

        self.model_path = Path(model_path) if model_path is not None else silero_model_path()
        self._session = cpu_session(self.model_path, n_threads, what="silero VAD")
        names = {i.name for i in self._session.get_inputs()}
        if names != {"input", "state", "sr"}:
            raise ValueError(f"silero VAD: {self.model_path} has inputs {sorted(names)}, expected input/state/sr")
        self.threshold = float(threshold)
        self._sr = np.array(SAMPLE_RATE_HZ, dtype=np.int64)
        self._input = np.zeros((1, self.context_samples + self.frame_samples), dtype=np.float32)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input[:] = 0.0  # the context of the first frame is silence

    def _process(self, frame: np.ndarray) -> float:
        self._input[0, self.context_samples :] = frame
        out, self._state = self._session.run(None, {"input": self._input, "state": self._state, "sr": self._sr})
        # The next frame's context is this frame's last 64 samples.
        self._input[0, : self.context_samples] = frame[-self.context_samples :]
        return float(out[0, 0])


# ----------------------------------------------------------------------------- ten


class TenVAD(FrameVAD):
    """TEN VAD (the `ten-vad` package's native library, needs libc++1), hop 256 or 160 at 16 kHz."""

    name = "ten"
    gives_probability = True

    def __init__(self, hop_samples: int = 256, threshold: float = 0.5):
        if hop_samples not in (160, 256):
            raise ValueError(f"ten VAD: hop_samples must be 160 or 256, got {hop_samples!r}")
        self.frame_samples, self.threshold = int(hop_samples), float(threshold)
        try:
            from ten_vad import TenVad
        except ImportError as e:
            raise ImportError("ten VAD: the `ten-vad` package is not installed (pip install ten-vad)") from e
        self._cls = TenVad
        self.reset()

    def reset(self) -> None:
        # The library has no reset call: a fresh handle is a fresh stream.
        self._vad = None  # destroy the old handle before creating the new one
        try:
            self._vad = self._cls(self.frame_samples, self.threshold)
        except OSError as e:  # the .so exists but a dependency (libc++.so.1) does not
            raise OSError(f"ten VAD: cannot load libten_vad ({e}); on Debian install libc++1") from e

    def _process(self, frame: np.ndarray) -> float:
        prob, _flag = self._vad.process(_to_int16(frame))
        return float(prob)


# ----------------------------------------------------------------------------- running

VAD_CLASSES: dict[str, type[FrameVAD]] = {"energy": EnergyVAD, "webrtc": WebRTCVAD, "silero": SileroVAD, "ten": TenVAD}


def make_vad(name: str, **kw) -> FrameVAD:
    """Build a VAD by name ("energy", "webrtc", "silero", "ten"); `kw` go to its constructor."""
    try:
        cls = VAD_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown VAD {name!r}; choose one of {sorted(VAD_CLASSES)}") from None
    return cls(**kw)


def frame_audio(vad: FrameVAD, audio_16k: np.ndarray) -> np.ndarray:
    """float32 (n_samples,) -> (n_frames, frame_samples), the last partial frame zero-padded."""
    n = vad.frame_samples
    n_frames = -(-audio_16k.size // n)
    padded = np.zeros(n_frames * n, dtype=np.float32)
    padded[: audio_16k.size] = audio_16k
    return padded.reshape(n_frames, n)


def run_vad_timed(
    vad: FrameVAD, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, source: str = "audio"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like `run_vad`, also returning each `process` call's wall time in seconds, float64 (n_frames,)."""
    audio_16k = prepare_audio(audio, sample_rate_hz, source=source)
    frames = frame_audio(vad, audio_16k)
    vad.reset()
    probs = np.empty(len(frames), dtype=np.float32)
    call_s = np.empty(len(frames), dtype=np.float64)
    clock = time.perf_counter
    for i, frame in enumerate(frames):
        t0 = clock()
        probs[i] = vad.process(frame)
        call_s[i] = clock() - t0
    times_s = np.arange(len(frames), dtype=np.float64) * vad.frame_s
    return times_s, probs, call_s


def run_vad(
    vad: FrameVAD, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ, *, source: str = "audio"
) -> tuple[np.ndarray, np.ndarray]:
    """Run `vad` over a whole file from a fresh state.

    audio: any shape/dtype/rate `prepare_audio` accepts (converted to float32 16 kHz mono;
    empty or non-finite audio raises AudioError naming `source`). Returns `frame_times_s`
    float64 (n_frames,), the start of each frame (frame i covers `[t_i, t_i + vad.frame_s)`),
    and `probs` float32 (n_frames,) in [0, 1]; n_frames = ceil(n_samples_16k / frame_samples),
    the last partial frame zero-padded.
    """
    times_s, probs, _ = run_vad_timed(vad, audio, sample_rate_hz, source=source)
    return times_s, probs


class StreamingVAD:
    """Feeds chunks of any length to a `FrameVAD`, buffering to its native frame.

    `push(chunk)` takes audio chunks at `sample_rate_hz` (float32 (n,); int16 PCM and
    (n, channels) chunks are converted by `prepare_audio`; other rates than 16 kHz go through
    `audio.resample_stream`, the same soxr filter as the offline path, which holds back a few
    ms until later chunks arrive) and returns `(frame_times_s, probs)` for the frames it
    completed, possibly empty. `flush()` zero-pads and processes what remains, ends the stream
    and resets for the next one. push...push + flush gives exactly `run_vad` on the whole audio.
    """

    def __init__(self, vad: FrameVAD, sample_rate_hz: int = SAMPLE_RATE_HZ):
        self.vad = vad
        self.sample_rate_hz = int(sample_rate_hz)
        prepare_audio(np.zeros(0, dtype=np.float32), self.sample_rate_hz, source="StreamingVAD", allow_empty=True)
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        self._buf = np.zeros(0, dtype=np.float32)
        self._n_frames_done = 0
        self._resampler = None if self.sample_rate_hz == SAMPLE_RATE_HZ else resample_stream(self.sample_rate_hz)

    def push(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rate = self.sample_rate_hz
        chunk = prepare_audio(chunk, rate, source="StreamingVAD chunk", target_rate_hz=rate, allow_empty=True)
        if self._resampler is not None:
            chunk = self._resampler.resample_chunk(chunk)
        self._buf = np.concatenate([self._buf, chunk])
        return self._drain()

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.vad.frame_samples
        if self._resampler is not None:
            self._buf = np.concatenate([self._buf, self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
            self._resampler = None
        self._buf = np.concatenate([self._buf, np.zeros(-self._buf.size % n, dtype=np.float32)])
        out = self._drain()
        self.reset()
        return out

    def _drain(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.vad.frame_samples
        n_new = self._buf.size // n
        probs = np.empty(n_new, dtype=np.float32)
        for i in range(n_new):
            probs[i] = self.vad.process(self._buf[i * n : (i + 1) * n])
        self._buf = self._buf[n_new * n :].copy()
        times_s = (self._n_frames_done + np.arange(n_new, dtype=np.float64)) * self.vad.frame_s
        self._n_frames_done += n_new
        return times_s, probs
