"""The acoustic model as a harness detector (`AcousticDetector`, registered as "acoustic").

It runs the model folder's ONNX graph (fp32, or int8 where its parity probe holds on this CPU)
or, with backend="torch", the torch module of `vad_turn.acoustic.model`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, prepare_audio
from vad_turn.harness.detectors import require_bool

from .features import FeatureConfig, window_audio
from .model import DEFAULT_MODEL_DIR, load_model, load_model_config
from .session import run_session


def query_window(audio: np.ndarray | None, cfg: FeatureConfig, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One query's model input: any-rate mono/stereo audio (through `prepare_audio`) -> (n_samples,) window.

    Empty audio (turn start) gives an all-zero window; None or non-finite audio raises AudioError.
    """
    if audio is None:
        raise AudioError("the acoustic detector needs audio (this query has none: a text-only row?)")
    a = np.asarray(audio)
    if a.ndim == 1 and sample_rate_hz == SAMPLE_RATE_HZ:
        a = a[-cfg.n_samples:]  # only the window is needed (and checked)
    return window_audio(prepare_audio(a, sample_rate_hz, source="acoustic query", allow_empty=True), cfg)



class AcousticDetector:
    """The harness `Detector` for the acoustic model.

    model: a model folder (default vad_turn/models/acoustic), or a .onnx / .pt file in one.
    backend: "onnx" (default; the folder's `model.int8.onnx` when int8, else `model.onnx`) or "torch".
        An int8 graph is used only where its parity probe holds on this CPU (`vad_turn.core.onnx.int8_session`);
        elsewhere the detector warns and runs `model.onnx` (`onnx_path` says which file runs).
    threads: onnxruntime / torch intra-op threads. batch_size: windows per inference call.
    """

    needs_audio = True
    needs_words = False

    def __init__(self, model: str | Path = DEFAULT_MODEL_DIR, backend: str = "onnx", int8: bool = False,
                 threads: int | str = 1, batch_size: int | str = 64, name: str = "acoustic"):
        path = Path(model)
        folder = path if path.is_dir() else path.parent
        int8 = require_bool("int8", int8)
        self.name, self.threads, self.batch_size = name, int(threads), int(batch_size)
        self.cfg = load_model_config(folder)
        self.features = self.cfg.features
        if path.suffix == ".pt":
            backend = "torch"
        elif path.suffix == ".onnx":
            backend = "onnx"
        if backend == "torch":
            self._net, self._session = load_model(folder), None
        elif backend == "onnx":
            from .session import make_int8_session, make_session

            onnx_path = path if path.suffix == ".onnx" else folder / ("model.int8.onnx" if int8 else "model.onnx")
            if onnx_path.name.endswith(".int8.onnx"):  # checked on this CPU; fp32 (with a warning) if it fails
                self._session, onnx_path = make_int8_session(onnx_path, folder / "model.onnx", threads=self.threads)
            else:
                self._session = make_session(onnx_path, threads=self.threads)
            self._net, self.onnx_path = None, onnx_path
        else:
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")
        self.backend = backend

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(self.predict_windows(query_window(audio, self.features)[None], np.array([silence_s]))[0])

    def predict_batch(self, queries: Sequence) -> np.ndarray:
        windows = np.stack([query_window(q.audio, self.features) for q in queries]) if queries else \
            np.zeros((0, self.features.n_samples), np.float32)
        return self.predict_windows(windows, np.array([q.silence_s for q in queries], dtype=np.float32))

    def predict_windows(self, windows: np.ndarray, silence_s: np.ndarray) -> np.ndarray:
        """windows float32 (n, n_samples), silence_s (n,) -> p_eot float64 (n,) in [0, 1]."""
        if self._session is not None:
            return run_session(self._session, windows, silence_s, self.batch_size)
        import torch

        torch.set_num_threads(self.threads)
        out = []
        for i in range(0, len(windows), self.batch_size):
            w = np.ascontiguousarray(windows[i:i + self.batch_size], dtype=np.float32)
            s = np.ascontiguousarray(silence_s[i:i + self.batch_size], dtype=np.float32)
            with torch.no_grad():
                out.append(torch.sigmoid(self._net(torch.from_numpy(w), torch.from_numpy(s))).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)
