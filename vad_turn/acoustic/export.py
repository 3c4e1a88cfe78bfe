"""ONNX export of the acoustic model (front end included) and its int8 quantization, with parity checks.

The exported graph: inputs `audio` float32 (batch, n_samples) -- the raw 16 kHz window from
`features.window_audio` -- and `silence_s` float32 (batch,); output `p_eot` float32 (batch,) in [0, 1].

`export_onnx` checks the file with onnx.checker and compares onnxruntime against torch on the given
probe windows; `quantize_int8` applies onnxruntime dynamic quantization to the network's Conv /
MatMul / LSTM weights (or, when that misses the tolerance, to its MatMul / LSTM weights only), with
7-bit weights (`reduce_range`) so that the int8 arithmetic is exact on AVX2-only CPUs as on VNNI / AMX
ones, and writes the graph's parity probe (`vad_turn.core.onnx`: inference falls back to fp32 with a
warning on a CPU where the int8 graph misses it).
The front end's fixed DFT and filterbank constants stay fp32: quantizing them would change the
features, not just the network. Both raise `ExportError` on any failure.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.runs import atomic_path

from .model import AcousticNet, ProbabilityNet
from .session import make_session, run_session  # noqa: F401  (the graph's one call, torch-free)

OPSET = 17
FP32_TOL = 1e-4
QUANT_OP_SETS = (("Conv", "MatMul", "LSTM"), ("MatMul", "LSTM"))
PROBE_WINDOWS = 8  # real windows in an int8 graph's parity probe (+ 3 `stress_windows`; float16)


class ExportError(RuntimeError):
    """The ONNX export or quantization failed or does not reproduce the torch model."""


def torch_probabilities(net: AcousticNet, windows: np.ndarray, silence_s: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ProbabilityNet(net.eval())(torch.from_numpy(np.asarray(windows, np.float32)),
                                          torch.from_numpy(np.asarray(silence_s, np.float32))).double().numpy()


def export_onnx(net: AcousticNet, path: Path, probe_windows: np.ndarray, probe_silence_s: np.ndarray,
                *, tol: float = FP32_TOL) -> dict:
    """Export `net` (front end included) to `path` and check it against torch on the probes.

    probe_windows: float32 (n, n_samples) real windows; probe_silence_s: (n,). Returns
    {"path", "max_abs_diff", "size_bytes"}. Raises ExportError when the export, the ONNX checker or
    the parity (max |p_onnx - p_torch| <= tol) fails; a failed export leaves no file at `path`.
    """
    import onnx

    path = Path(path)
    net = net.eval()
    n = net.cfg.features.n_samples
    example = (torch.zeros(2, n), torch.zeros(2))
    buf = io.BytesIO()
    try:
        torch.onnx.export(ProbabilityNet(net), example, buf, opset_version=OPSET, input_names=["audio", "silence_s"],
                          output_names=["p_eot"], dynamic_axes={"audio": {0: "batch"}, "silence_s": {0: "batch"},
                                                                "p_eot": {0: "batch"}}, dynamo=False)
        model = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - every exporter failure must surface as ExportError
        raise ExportError(f"ONNX export of the acoustic model failed: {e}") from e
    with atomic_path(path) as tmp:  # in place only once parity holds
        tmp.write_bytes(buf.getvalue())
        diff = _parity(net, make_session(tmp), probe_windows, probe_silence_s)
        if not diff <= tol:
            raise ExportError(f"{path}: ONNX and torch disagree, max |p_onnx - p_torch| = {diff:.2e} > {tol:.0e}")
    return {"path": str(path), "max_abs_diff": diff, "size_bytes": path.stat().st_size}


def _parity(net: AcousticNet, session, windows: np.ndarray, silence_s: np.ndarray) -> float:
    if len(windows) == 0:
        raise ExportError("parity needs at least one probe window")
    return float(np.max(np.abs(run_session(session, windows, silence_s) - torch_probabilities(net, windows, silence_s))))


def stress_windows(features) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic windows for an int8 graph's parity probe, beside real ones: signals whose activations
    stress int8 arithmetic (a 1 kHz tone at half scale, white noise, a noise burst then silence), each
    at 0.5 s of silence. Deterministic (seeded); float32 (3, n_samples), silence_s (3,).

    A probe is a check, not a proof: under qemu-user emulating an AVX2-only CPU (Haswell), a graph of
    this network quantized with 8-bit weights is 0.051 off fp32 on real AMI speech but only 0.015 on
    the shipped probe (tests/test_int8_portability.py). The AVX2 saturation itself is prevented by
    `reduce_range` (7-bit weights: 0.003 there, the same integers as on a VNNI CPU)."""
    from .features import window_audio

    n = features.n_samples
    rng = np.random.default_rng(20261201)
    t = np.arange(n) / SAMPLE_RATE_HZ
    sigs = [0.5 * np.sin(2 * np.pi * 1000.0 * t), rng.normal(0.0, 0.3, n),
            np.concatenate([rng.normal(0.0, 0.3, n // 2), np.zeros(n - n // 2)])]
    wins = np.stack([window_audio(np.clip(x, -1, 1).astype(np.float32), features) for x in sigs])
    return wins.astype(np.float32), np.full(len(sigs), 0.5, np.float32)


def network_nodes(model) -> list[str]:
    """Names of the quantizable nodes outside the front end (the torch exporter scopes them by module)."""
    return [nd.name for nd in model.graph.node
            if nd.op_type in ("Conv", "MatMul", "Gemm", "LSTM") and not nd.name.startswith("/net/frontend/")]


def quantize_int8(fp32_path: Path, int8_path: Path, net: AcousticNet, probe_windows: np.ndarray,
                  probe_silence_s: np.ndarray, *, tol: float = 0.02, threshold: float = 0.5,
                  min_agreement: float = 0.99, op_sets: tuple[tuple[str, ...], ...] = QUANT_OP_SETS,
                  reduce_range: bool = True, n_probe: int = PROBE_WINDOWS) -> dict:
    """Dynamic int8 quantization (per-channel weights) of the network, checked against torch on the probes.

    reduce_range: 7-bit weights. Without it, a u8 x s8 pair sum can exceed int16 and saturate in
    onnxruntime's AVX2 kernel (CPUs without VNNI): on real AMI speech this network with 8-bit weights
    is 0.051 off fp32 under an emulated AVX2-only CPU and 0.003 on VNNI; with 7-bit weights both give
    the same integers (`pytest tests/test_int8_portability.py -k avx2 -s` prints the figures).

    Tries each op set of `op_sets` in order (default: Conv + MatMul + LSTM, then MatMul + LSTM only)
    and keeps the first whose max |p_int8 - p_torch| <= tol with at least `min_agreement` of the probes
    getting the same decision (p >= threshold) as torch, then writes its parity probe (`n_probe`
    evenly spaced probe windows + `stress_windows`, fp32 outputs, `tol`) beside it and checks the
    graph against it here. Returns {"path", "max_abs_diff",
    "decision_agreement", "size_bytes", "quantized_ops", "quantized_nodes", "reduce_range", "cpu",
    "probe", "attempts"} ("cpu": the exporting CPU's int8 flags, `vad_turn.core.onnx.cpu_isa`); raises
    ExportError (listing every attempt) when none passes.
    """
    import onnx

    from vad_turn.core.onnx import cpu_isa, import_onnxruntime, probe_diff, probe_path, write_probe

    import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    model = onnx.load(str(fp32_path))
    p_t = torch_probabilities(net, probe_windows, probe_silence_s)
    attempts, result = [], None
    try:
        # both files land only once the graph passes its own probe (the probe first, then the graph)
        with atomic_path(int8_path) as tmp, atomic_path(probe_path(int8_path), suffix=".npz") as tmp_probe:
            for ops in op_sets:
                nodes = [n for n in network_nodes(model) if any(n.endswith(f"/{op}") or f"/{op}_" in n for op in ops)]
                if not nodes:
                    attempts.append({"ops": list(ops), "error": "no such nodes"})
                    continue
                quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, nodes_to_quantize=nodes,
                                 op_types_to_quantize=list(ops), per_channel=True, reduce_range=bool(reduce_range))
                p_q = run_session(make_session(tmp), probe_windows, probe_silence_s)
                diff = float(np.max(np.abs(p_q - p_t)))
                agree = float(np.mean((p_q >= threshold) == (p_t >= threshold)))
                attempts.append({"ops": list(ops), "n_nodes": len(nodes), "max_abs_diff": diff,
                                 "decision_agreement": agree})
                if diff <= tol and agree >= min_agreement:
                    idx = np.unique(np.linspace(0, len(probe_windows) - 1, min(n_probe, len(probe_windows))).astype(int))
                    sw, ss = stress_windows(net.cfg.features)
                    probe = write_probe(tmp_probe, {"audio": np.concatenate([probe_windows[idx], sw]).astype(np.float32),
                                                    "silence_s": np.concatenate([probe_silence_s[idx], ss]).astype(np.float32)},
                                        make_session(fp32_path), tol)
                    own, _ = probe_diff(make_session(tmp), tmp_probe)
                    attempts[-1]["own_probe_max_abs_diff"] = float(own)
                    if not own <= tol:  # off on the probe's stress windows: try the next op set
                        attempts[-1]["error"] = f"misses its own parity probe on this CPU: {own:.4f} > {tol}"
                        continue
                    probe["path"] = str(probe_path(int8_path))
                    result = {"path": str(int8_path), "max_abs_diff": diff, "decision_agreement": agree,
                              "size_bytes": None, "quantized_ops": list(ops), "quantized_nodes": len(nodes),
                              "reduce_range": bool(reduce_range), "cpu": cpu_isa(), "probe": probe, "attempts": attempts}
                    break
            if result is None:
                raise _NoInt8Fits
    except _NoInt8Fits:
        raise ExportError(f"{int8_path}: no int8 model within tol {tol} and decision agreement {min_agreement} at "
                          f"threshold {threshold}: {attempts}") from None
    except Exception as e:  # noqa: BLE001 - every quantizer failure must surface as ExportError
        raise ExportError(f"int8 quantization of {fp32_path} failed: {e}") from e
    result["size_bytes"] = int8_path.stat().st_size
    return result


class _NoInt8Fits(Exception):
    """No op set of `quantize_int8` met the tolerance (its temporary files are removed)."""
