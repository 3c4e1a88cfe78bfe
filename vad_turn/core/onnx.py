"""The one way the workbench opens an ONNX model: a CPU onnxruntime session (numpy only, no torch).

int8 graphs are opened through `int8_session`, which first runs the graph's parity probe on this CPU.
onnxruntime's dynamic-int8 kernels are not the same on every x86 CPU: with VNNI / AMX the u8 x s8
products accumulate exactly in int32, while plain AVX2 adds pairs of them in saturating int16
(vpmaddubsw), so a graph that matches fp32 on one machine can be off by 0.05 on another. The export
quantizes with 7-bit weights (`reduce_range`, which keeps every pair sum inside int16) so that the
integer arithmetic is exact everywhere, and writes `<name>.probe.npz` beside the graph: a few real
inputs (float16), the fp32 graph's outputs on them and the tolerance. `int8_session` opens the int8
graph only when its outputs on the probe are within that tolerance here; otherwise it warns (naming
the CPU's int8 instructions and the measured difference) and opens the fp32 graph instead.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

# x86 instructions that decide which int8 GEMM kernel onnxruntime's MLAS uses
INT8_ISA_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "amx_tile")
_VERDICTS: dict[tuple, tuple[bool, float]] = {}


class Int8ParityWarning(RuntimeWarning):
    """An int8 graph does not reproduce its fp32 graph on this CPU; the fp32 graph is used instead."""


def import_onnxruntime():
    """onnxruntime, imported with its telemetry store off: without ORT_DISABLE_TELEMETRY set before the
    import, onnxruntime 1.32 writes a device id and a database under ~/.cache/Microsoft/DeveloperTools
    on every first load. (A value the user set is kept.) Every onnxruntime import here goes through this."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def cpu_session(path: str | Path, threads: int = 1, *, what: str = "ONNX model", hint: str = ""):
    """An onnxruntime CPU session with `threads` intra-op threads and 1 inter-op thread.

    Raises FileNotFoundError naming `what`, the path and `hint` (how to make the file) when it is missing.
    """
    ort = import_onnxruntime()

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: model file not found: {path}" + (f" ({hint})" if hint else ""))
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def cpu_isa() -> dict:
    """This CPU's model name and the int8-relevant instruction flags present, e.g.
    {"model": "AMD EPYC", "flags": ["avx2", "avx512f", "avx512bw", "avx512_vnni"], "int8_dot": "vnni"}.

    The flags come from CPUID as numpy reads it (so an emulated CPU reports its own), with AVX-VNNI and
    AMX, which numpy does not name, from /proc/cpuinfo when it agrees with CPUID on the flags numpy names
    (under qemu-user it is the host's, not the emulated CPU's). int8_dot: "amx" | "vnni" (AVX512-VNNI or
    AVX-VNNI: exact int32 dot products) | "avx2" (saturating int16 pair sums) | "unknown"."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as np_features
    except ImportError:  # numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as np_features
    names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512VNNI": "avx512_vnni"}
    flags = {flag for key, flag in names.items() if np_features.get(key)}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name":
                model = val.strip()
            elif key.strip() == "flags":
                listed = set(val.split())
                # /proc/cpuinfo is the host's even under an emulator (qemu-user -cpu Haswell): its extensions
                # count only when it agrees with CPUID on the flags numpy reads
                agrees = listed & set(names.values()) == flags
                if "avx2" in flags and agrees:  # extensions numpy does not report
                    flags |= listed & {"avx_vnni", "amx_int8", "amx_tile"}
                break
    except OSError:
        pass
    present = [f for f in INT8_ISA_FLAGS if f in flags]
    kind = ("amx" if "amx_int8" in flags else "vnni" if {"avx512_vnni", "avx_vnni"} & flags
            else "avx2" if "avx2" in flags else "unknown")
    return {"model": model, "flags": present, "int8_dot": kind}


def probe_path(onnx_path: str | Path) -> Path:
    """`model.int8.onnx` -> `model.int8.probe.npz` (the parity probe written beside an int8 graph)."""
    p = Path(onnx_path)
    return p.with_name(p.name[: -len(".onnx")] + ".probe.npz" if p.name.endswith(".onnx") else p.name + ".probe.npz")


def write_probe(path: str | Path, inputs: dict[str, np.ndarray], fp32_session, tol: float) -> dict:
    """Write the parity probe of an int8 graph: `inputs` (float arrays stored as float16, the rest as
    they are), the fp32 session's first output on exactly those stored values, and `tol`. Written
    atomically; returns {"path", "n", "tol", "size_bytes"}."""
    stored = {k: (np.asarray(v).astype(np.float16) if np.asarray(v).dtype.kind == "f" else np.asarray(v))
              for k, v in inputs.items()}
    feed = {k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in stored.items()}
    expected = np.asarray(fp32_session.run(None, feed)[0], np.float32)
    from .runs import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **{f"input__{k}": v for k, v in stored.items()}, expected=expected,
                            tol=np.float32(tol))
    return {"path": str(path), "n": int(expected.shape[0]), "tol": float(tol), "size_bytes": path.stat().st_size}


def probe_diff(session, probe: str | Path) -> tuple[float, float]:
    """(max |session output - fp32 output| on the probe inputs, the probe's tolerance)."""
    with np.load(probe) as z:
        feed = {k[len("input__"):]: (z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k])
                for k in z.files if k.startswith("input__")}
        expected, tol = z["expected"].astype(np.float64), float(z["tol"])
    got = np.asarray(session.run(None, feed)[0], np.float64).reshape(expected.shape)
    diff = float(np.max(np.abs(got - expected))) if expected.size else float("inf")
    return (diff if np.isfinite(diff) else float("inf")), tol


def int8_session(int8_path: str | Path, fp32_path: str | Path, threads: int = 1, *, what: str = "ONNX model",
                 hint: str = "") -> tuple[object, Path]:
    """(session, path used): the int8 graph when its parity probe holds on this CPU, else (with an
    Int8ParityWarning naming the CPU's int8 flags, the difference and the tolerance) the fp32 graph.

    A missing or unreadable probe counts as a failed check. Raises FileNotFoundError when the graph
    that is to be used is missing. Verdicts are cached per file (path, size, mtime) in this process."""
    int8_path, fp32_path = Path(int8_path), Path(fp32_path)
    session = cpu_session(int8_path, threads, what=what, hint=hint)
    probe = probe_path(int8_path)
    key = (str(int8_path.resolve()), *_stamp(int8_path), *_stamp(probe))
    if key not in _VERDICTS:
        try:
            diff, tol = probe_diff(session, probe)
            _VERDICTS[key] = (diff <= tol, diff, tol, "")
        except (OSError, KeyError, ValueError) as e:
            _VERDICTS[key] = (False, float("inf"), float("nan"), f"parity probe {probe} unreadable or missing ({e})")
    ok, diff, tol, why = _VERDICTS[key]
    if ok:
        return session, int8_path
    isa = cpu_isa()
    warnings.warn(f"{what}: the int8 graph {int8_path.name} does not reproduce fp32 on this CPU "
                  f"({isa['model']}; int8 dot products: {isa['int8_dot']}, flags {isa['flags']}): "
                  + (why or f"max |p_int8 - p_fp32| = {diff:.4f} > {tol:g} on its parity probe")
                  + f"; using the fp32 graph {fp32_path.name} instead", Int8ParityWarning, stacklevel=3)
    return cpu_session(fp32_path, threads, what=what, hint=hint), fp32_path


def _stamp(path: Path) -> tuple:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1
