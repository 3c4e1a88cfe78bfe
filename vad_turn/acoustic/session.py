"""The exported acoustic graph at inference, torch-free (numpy + onnxruntime): opening it and the one call.

The graph (written by `vad_turn.acoustic.export`): inputs `audio` float32 (batch, n_samples) -- the raw
16 kHz window of `features.window_audio` -- and `silence_s` float32 (batch,); output `p_eot` float32
(batch,) in [0, 1]. `run_session` is the only place that feeds it: the acoustic detector, the fused
model's acoustic branch, the export's parity checks and the latency benchmark all call it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EXPORT_HINT = "export it with `vad-turn train-acoustic` or `vad-turn export-acoustic`"


def make_session(path: Path, threads: int = 1):
    """An onnxruntime CPU session with `threads` intra-op threads (1 inter-op thread)."""
    from vad_turn.core.onnx import cpu_session

    return cpu_session(path, threads, what="acoustic model", hint=EXPORT_HINT)


def make_int8_session(int8_path: Path, fp32_path: Path, threads: int = 1):
    """(session, path used): the int8 graph if its parity probe holds on this CPU, else the fp32 graph
    with a warning (`vad_turn.core.onnx.int8_session`)."""
    from vad_turn.core.onnx import int8_session

    return int8_session(int8_path, fp32_path, threads, what="acoustic model", hint=EXPORT_HINT)


def run_session(session, windows: np.ndarray, silence_s: np.ndarray, batch_size: int | None = None) -> np.ndarray:
    """p_eot float64 (n,) in [0, 1] from an exported acoustic graph.

    windows: float32 (n, n_samples) 16 kHz windows; silence_s: (n,) seconds of silence so far.
    batch_size: windows per onnxruntime call (None: all in one call).
    """
    step = len(windows) if batch_size is None else int(batch_size)
    out = [np.zeros(0, np.float32)]
    for i in range(0, len(windows), max(step, 1)):
        out.append(np.asarray(session.run(None, {
            "audio": np.ascontiguousarray(windows[i:i + step], np.float32),
            "silence_s": np.ascontiguousarray(silence_s[i:i + step], np.float32)})[0]).reshape(-1))
    return np.concatenate(out).astype(np.float64)
