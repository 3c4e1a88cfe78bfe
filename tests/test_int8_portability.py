"""int8 that holds on every x86 CPU: the shipped int8 acoustic graph matches fp32 on its parity probe here
and on an emulated AVX2-only CPU (qemu-user, Haswell: no VNNI), where a graph quantized without
reduce_range does not; and where an int8 graph misses its probe, inference warns and runs fp32."""
from __future__ import annotations

import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from vad_turn.acoustic.model import DEFAULT_MODEL_DIR
from vad_turn.acoustic.runtime import AcousticDetector
from vad_turn.core.onnx import Int8ParityWarning, cpu_isa, cpu_session, probe_diff, probe_path
from vad_turn.fusion.runtime import DEFAULT_TURN_MODEL_DIR, load_turn_model

INT8 = DEFAULT_MODEL_DIR / "model.int8.onnx"
PROBE = probe_path(INT8)

# Runs under qemu-x86_64: the int8 dot-product kind the emulated CPU reports, then each graph's probe diff.
_EMULATED = """
import sys
sys.path.insert(0, sys.argv[1])
from vad_turn.core.onnx import cpu_isa, cpu_session, probe_diff
print(cpu_isa()["int8_dot"])
for graph in sys.argv[3:]:
    d, tol = probe_diff(cpu_session(graph), sys.argv[2])
    print(f"{d:.6f} {tol:g}")
"""


def test_shipped_int8_graph_records_how_it_was_made():
    import json

    q = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())["summary"]["export"]["int8"]
    assert q["reduce_range"] is True and q["max_abs_diff"] <= 0.02 and q["decision_agreement"] >= 0.99
    assert q["cpu"]["int8_dot"] in ("vnni", "amx", "avx2") and "avx2" in q["cpu"]["flags"]
    assert q["probe"]["n"] == 8 + 3 and q["probe"]["tol"] == 0.02 and PROBE.name == q["probe"]["path"]


def test_shipped_int8_probe_holds_on_this_cpu():
    diff, tol = probe_diff(cpu_session(INT8), PROBE)
    assert tol == pytest.approx(0.02) and diff <= tol, (diff, cpu_isa())
    fp32_diff, _ = probe_diff(cpu_session(DEFAULT_MODEL_DIR / "model.onnx"), PROBE)
    assert fp32_diff <= 1e-5  # the probe's expected outputs are the fp32 graph's
    assert 0 < diff  # and the int8 graph is really quantized


# Real far-field speech where 8-bit weights saturate on AVX2 (AMI excerpts, read in place): (file, window end s)
AMI_WINDOWS = (("trn01.wav", 6.0), ("trn01.wav", 18.0), ("trn02.wav", 29.5))


def _ami_probe(data_root: Path, out: Path) -> Path:
    """A parity probe (same format as the shipped one) of AMI windows at silences 0 / 0.5 / 2 s."""
    from vad_turn.acoustic.features import window_audio
    from vad_turn.acoustic.model import load_model_config
    from vad_turn.core.audio import load_audio
    from vad_turn.core.onnx import write_probe

    cfg = load_model_config(DEFAULT_MODEL_DIR).features
    wins, sil = [], []
    for name, end_s in AMI_WINDOWS:
        clip = load_audio(data_root / "ami_excerpts" / name)
        for s in (0.0, 0.5, 2.0):
            wins.append(window_audio(clip[: int(end_s * 16000)], cfg))
            sil.append(s)
    write_probe(out, {"audio": np.stack(wins).astype(np.float32), "silence_s": np.array(sil, np.float32)},
                cpu_session(DEFAULT_MODEL_DIR / "model.onnx"), 0.02)
    return out


@pytest.mark.slow  # the graphs under qemu-user emulation (~1.5-3 min); the probe on this CPU and the fp32 fallback stay unmarked
@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86 int8 kernels: emulated on x86_64 only")
def test_int8_parity_on_an_avx2_only_cpu(tmp_path, data_root):
    """qemu-user with a Haswell CPU model (AVX2, no VNNI) makes onnxruntime pick its saturating AVX2
    int8 kernel. The shipped graph (7-bit weights) stays within tolerance there, on its own probe and
    on real AMI speech, with the same outputs as natively; the same network quantized with 8-bit
    weights is further off on the AMI windows there than natively (so the emulation is real: 0.051 vs
    0.003 for the v1 acoustic model, 0.024 vs 0.003 for v2), while it passes natively on a VNNI CPU.
    (The 8-bit graph can pass the shipped probe there and still be off on real speech, which is why the
    export uses 7-bit weights rather than relying on the probe.)"""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from vad_turn.acoustic.export import QUANT_OP_SETS, network_nodes

    qemu = shutil.which("qemu-x86_64")
    assert qemu, "qemu-x86_64 not found: install the Debian package qemu-user (make system-deps)"
    import onnx

    nodes = [n for n in network_nodes(onnx.load(str(DEFAULT_MODEL_DIR / "model.onnx")))
             if any(n.endswith(f"/{op}") or f"/{op}_" in n for op in QUANT_OP_SETS[0])]
    full_range = tmp_path / "full_range.int8.onnx"
    quantize_dynamic(str(DEFAULT_MODEL_DIR / "model.onnx"), str(full_range), weight_type=QuantType.QInt8,
                     nodes_to_quantize=nodes, op_types_to_quantize=list(QUANT_OP_SETS[0]), per_channel=True,
                     reduce_range=False)
    ami = _ami_probe(data_root, tmp_path / "ami.probe.npz")
    repo = str(Path(__file__).resolve().parent.parent)
    diffs = {}
    for probe in (PROBE, ami):
        out = subprocess.run([qemu, "-cpu", "Haswell", sys.executable, "-c", _EMULATED, repo, str(probe), str(INT8),
                              str(full_range)], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        kind, shipped, full = out.stdout.split("\n")[:3]
        assert kind == "avx2"  # the emulated CPU has no VNNI / AMX
        diffs[probe.name] = (float(shipped.split()[0]), float(full.split()[0]))
    native_full = probe_diff(cpu_session(full_range), ami)[0]
    print("AVX2-only (emulated) max |p_int8 - p_fp32|: shipped, 8-bit weights:", diffs,
          f"| natively ({cpu_isa()['int8_dot']}), 8-bit weights on the AMI windows: {native_full:.6f}")
    (ship_own, full_own), (ship_ami, full_ami) = diffs[PROBE.name], diffs[ami.name]
    assert ship_own <= 0.02 and ship_ami <= 0.02, diffs
    if cpu_isa()["int8_dot"] in ("vnni", "amx"):  # natively both are fine: only the AVX2 kernel breaks 8-bit weights
        assert native_full <= 0.02
        # the emulation is real: 8-bit weights saturate the AVX2 kernel's int16 pair sums, so the emulated
        # graph is further off fp32 than the same graph natively
        assert full_ami > native_full + 0.005, (diffs, native_full)
        # 7-bit weights: exact int32 sums on both kernels, so the emulated AVX2 outputs are the native ones
        assert probe_diff(cpu_session(INT8), ami)[0] == pytest.approx(ship_ami, abs=2e-6)
        assert probe_diff(cpu_session(INT8), PROBE)[0] == pytest.approx(ship_own, abs=2e-6)


def _copy_models(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    shutil.copytree(DEFAULT_MODEL_DIR.parent, root, ignore=shutil.ignore_patterns("*.pt", "*.png"))
    return root


def _tamper_probe(probe: Path, shift: float = 0.5) -> None:
    with np.load(probe) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["expected"] = np.clip(arrays["expected"] + shift, 0, 1).astype(np.float32)
    with open(probe, "wb") as f:  # same name: the int8 graph now "misses" its probe on every CPU
        np.savez_compressed(f, **arrays)


def test_acoustic_detector_falls_back_to_fp32_with_a_warning(tmp_path, data_root):
    from vad_turn.core.audio import load_audio

    root = _copy_models(tmp_path)
    folder = root / "acoustic"
    clip = load_audio(data_root / "clips" / "jfk.flac")[:5 * 16000]
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8ParityWarning)
        det8 = AcousticDetector(folder, int8=True)
    assert det8.onnx_path.name == "model.int8.onnx"
    det32 = AcousticDetector(folder)
    p32, p8 = det32.predict(clip, (), (), 0.4), det8.predict(clip, (), (), 0.4)
    assert abs(p8 - p32) <= 0.02 and p8 != p32

    _tamper_probe(probe_path(folder / "model.int8.onnx"))
    with pytest.warns(Int8ParityWarning, match=r"does not reproduce fp32 on this CPU .*int8 dot products: \w+.*"
                                               r"max \|p_int8 - p_fp32\| = 0\.\d+ > 0\.02.*using the fp32 graph model\.onnx"):
        det = AcousticDetector(folder, int8=True)
    assert det.onnx_path.name == "model.onnx" and det.predict(clip, (), (), 0.4) == p32

    probe_path(folder / "model.int8.onnx").unlink()
    with pytest.warns(Int8ParityWarning, match="parity probe .*model.int8.probe.npz unreadable or missing"):
        det = AcousticDetector(folder, int8=True)
    assert det.onnx_path.name == "model.onnx"


def test_turn_model_int8_falls_back_to_fp32_with_a_warning(tmp_path):
    root = _copy_models(tmp_path)
    turn = root / "turn"
    m8 = load_turn_model(turn, int8=True)
    assert m8.branches.acoustic_path.name == "model.int8.onnx"
    _tamper_probe(probe_path(root / "acoustic" / "model.int8.onnx"), shift=-0.5)
    with pytest.warns(Int8ParityWarning, match="turn model: the int8 graph model.int8.onnx does not reproduce fp32"):
        m = load_turn_model(turn, int8=True)
    assert m.branches.acoustic_path.name == "model.onnx"
    items = [(np.zeros(48000, np.float32) + 0.01 * np.sin(np.arange(48000) / 7).astype(np.float32), (), (), 0.5)]
    assert m.p_eot(items)[0] == pytest.approx(load_turn_model(turn).p_eot(items)[0], abs=1e-12)
    assert DEFAULT_TURN_MODEL_DIR.exists()


def test_cpu_isa_names_the_int8_kernel_family():
    isa = cpu_isa()
    assert set(isa) == {"model", "flags", "int8_dot"} and isa["model"]
    if platform.machine() == "x86_64":
        assert "avx2" in isa["flags"] and isa["int8_dot"] in ("avx2", "vnni", "amx")
        assert (isa["int8_dot"] == "vnni") == bool({"avx512_vnni", "avx_vnni"} & set(isa["flags"])) or isa["int8_dot"] == "amx"
