"""The one way the workbench opens an ONNX model: a CPU onnxruntime session (numpy only, no torch)."""
from __future__ import annotations

from pathlib import Path


def cpu_session(path: str | Path, threads: int = 1, *, what: str = "ONNX model", hint: str = ""):
    """An onnxruntime CPU session with `threads` intra-op threads and 1 inter-op thread.

    Raises FileNotFoundError naming `what`, the path and `hint` (how to make the file) when it is missing.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: model file not found: {path}" + (f" ({hint})" if hint else ""))
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
