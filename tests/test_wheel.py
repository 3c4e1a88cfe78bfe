"""The wheel carries its model and runs end-of-turn inference with the core dependencies alone.

The wheel is built from a copy of the working tree (pyproject.toml, README.md and the packages: no
build/ or egg-info lands in the repo, and no stale build/lib file from an earlier layout can slip into
the wheel). It is installed `--no-deps` into a clean venv (no system site packages, no pip) holding
only the core dependencies and what they require, at requirements.lock's versions and sha256. From a
folder outside the repo, in isolated mode (`python -I`), that venv scores a real clip with
`load_turn_model` / `predict_eot`: p_eot equals the editable install's within 1e-5, torch is neither
imported nor importable, and every model file read comes from the venv's site-packages.
The wheel carries only what inference opens: the files pyproject.toml's exclude-package-data names (torch
checkpoints, the LR floor, split ids, cards) are absent, every other model file is opened by loading the fused
model (fp32 and int8) or reading the shipped operating points, and those points are not refused as stale there.
About 30 s with a warm pip cache (the core wheels are about 40 MB to download once).
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import require_data

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
PIP_TIMEOUT_S = 600
# (words, messages, silence_s, seconds of the clip or None for text only, stereo 44.1 kHz or channel 0)
WORDS = [["i", 0.2, 0.3], ["want", 0.3, 0.6], ["to", 0.6, 0.7], ["go", 0.7, 1.0], ["home", 1.0, 1.4]]
MSGS = [{"role": "assistant", "content": "where do you want to go"}]
CASES = [
    {"words": WORDS, "messages": MSGS, "silence_s": 0.7, "seconds": 3.0, "stereo": True},   # both branches
    {"words": [], "messages": [], "silence_s": 0.3, "seconds": 2.0, "stereo": False},       # acoustic + timing
    {"words": WORDS, "messages": MSGS, "silence_s": 0.8, "seconds": None, "stereo": False},  # lexical + timing
]
# Files the wheel must hold (the fused model's, the prompt variants, the STT engines' measured word lag); every
# other non-.py file of the packages is checked too (test_the_wheel_carries_the_models_and_data_files).
MUST_SHIP = ("vad_turn/models/turn/fusion.json", "vad_turn/models/turn/checksums.json",
             "vad_turn/models/acoustic/model.onnx", "vad_turn/models/acoustic/model.int8.onnx",
             "vad_turn/models/acoustic/model.int8.probe.npz", "vad_turn/models/lexical/lexical_step.onnx",
             "vad_turn/models/lexical/lexical_head.onnx", "vad_turn/models/lexical/tokenizer.json",
             "vad_turn/models/lexical/lexical.json", "prosody/prompts/variants.toml", "vad_turn/engines/stt_lag.json")

# Files the wheel must not hold (inference never opens them): pyproject.toml's one list, as wheel paths.
_CFG = tomllib.loads((REPO / "pyproject.toml").read_text())
EXCLUDED = tuple(f"{pkg}/{pat}" for pkg, pats in _CFG["tool"]["setuptools"].get("exclude-package-data", {}).items()
                 for pat in pats)


def excluded(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pat) for pat in EXCLUDED)


# Runs inside the clean venv: argv[1] is a JSON object {clip, repo, cases}; prints one JSON line.
SCRIPT = r'''
import importlib.util, json, os, sys, sysconfig
opened = []
sys.addaudithook(lambda ev, args: opened.append(os.fsdecode(args[0]))
                 if ev == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)) else None)
import numpy as np
import soundfile as sf
import vad_turn
from vad_turn import load_turn_model, predict_eot

arg = json.loads(sys.argv[1])
clip, sr = sf.read(arg["clip"], dtype="float32", always_2d=True)
m, m8 = load_turn_model(), load_turn_model(int8=True)
from vad_turn.fusion.stacked import shipped_alpha
alpha = shipped_alpha()  # the accuracy-first variant's mix (its detector also needs the [pipecat] extra)
p, p8 = [], []
for c in arg["cases"]:
    a = None if c["seconds"] is None else clip[: int(c["seconds"] * sr)]
    if a is not None and not c["stereo"]:
        a = np.ascontiguousarray(a[:, 0])
    p.append(predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"], model=m))
    p8.append(predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"], model=m8))
model_suffixes = (".onnx", ".json", ".npz")
from pathlib import Path
from vad_turn.fusion.runtime import cached_turn_model
from vad_turn.harness.operating_points import PROFILES, shipped_detectors, shipped_file, shipped_policy
c, a = arg["cases"][0], clip[: 2 * sr]
p_default = [predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"]) for _ in range(2)]
p_default_ref = predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"], model=m)
policies = {f"{d}/{prof}": shipped_policy(d, profile=prof) for d in shipped_detectors() for prof in PROFILES
            if shipped_file(d, profile=prof).is_file()}
print(json.dumps({
    "p_default": p_default, "p_default_ref": p_default_ref,
    "cached_shared": cached_turn_model() is cached_turn_model(),
    "policies": {k: {f: v[f] for f in ("threshold", "action_delay_s", "timeout_s", "model_sha256")}
                 for k, v in policies.items()},
    "models_dir_files": sorted(str(f) for f in (Path(vad_turn.__file__).parent / "models").rglob("*") if f.is_file()),
    "opened_all": sorted(set(opened)),
    "p": p, "p_int8": p8,
    "purelib": sysconfig.get_paths()["purelib"], "vad_turn_file": vad_turn.__file__,
    "model_files_read": sorted({f for f in opened if f.endswith(model_suffixes)}),
    "torch_imported": sorted(k for k in sys.modules if k.split(".")[0] in ("torch", "torchaudio")),
    "torch_importable": importlib.util.find_spec("torch") is not None,
    "third_party_imported": sorted({k.split(".")[0] for k in sys.modules} - set(sys.stdlib_module_names)
                                   - {"__main__", "_distutils_hack"}),
}))
'''


def _run(cmd: list[str], what: str, *, timeout: float = PIP_TIMEOUT_S, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if r.returncode != 0:
        pytest.fail(f"{what} failed (exit {r.returncode}): {' '.join(map(str, cmd))}\n"
                    f"--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-6000:]}", pytrace=False)
    return r


def _source_copy(dest: Path) -> list[str]:
    """Copy the build inputs of the working tree (pyproject.toml, README.md, the packages `packages.find`
    includes), tracked or untracked-but-not-ignored, to `dest`; returns the package files copied."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())
    tops = sorted({p.rstrip("*").rstrip(".") for p in cfg["tool"]["setuptools"]["packages"]["find"]["include"]})
    names = ["pyproject.toml", "README.md", "MANIFEST.in", "setup.py", "setup.cfg", "LICENSE"]
    try:
        out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard", "--", *tops], cwd=REPO,
                             capture_output=True, check=True, timeout=60).stdout.decode()
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: the package folders as they are
        files = [str(p.relative_to(REPO)) for t in tops for p in (REPO / t).rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    copied = []
    for f in names + files:
        src = REPO / f
        if src.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
            copied += [f] if f in files else []
    return copied


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, list[str]]:
    """(the wheel, the package files of the working tree it was built from)."""
    tmp = tmp_path_factory.mktemp("wheel")
    files = _source_copy(tmp / "src")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(tmp / "src")], "building the wheel from the working tree")
    wheels = list((tmp / "dist").glob("vad_turn_workbench-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {tmp / 'dist'}, found {wheels}"
    return wheels[0], files


@pytest.fixture(scope="module")
def wheel(built) -> Path:
    return built[0]


def _wheel_requires(whl: Path) -> list[Requirement]:
    with zipfile.ZipFile(whl) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = Parser().parsestr(z.read(meta).decode())
    return [Requirement(r) for r in msg.get_all("Requires-Dist") or []]


def _applies(req: Requirement, extras: set[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras | {""})


def _read_lock() -> tuple[dict[str, str], str]:
    """{canonical name: lock line} and the lock's python / platform header."""
    lines, header = {}, []
    for line in LOCK.read_text().splitlines():
        if line.startswith(("# python:", "# platform:")):
            header.append(line[2:])
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", line)
        if m:
            lines[canonicalize_name(m[1])] = line.strip()
    return lines, ", ".join(header) or "no python/platform header"


def core_closure(whl: Path) -> dict[str, str]:
    """{canonical name: the package that requires it} for the wheel's core requirements (no extra) and,
    through the installed distributions' metadata (the lock's versions), everything they require."""
    todo = [(r, "vad-turn-workbench") for r in _wheel_requires(whl) if _applies(r, set())]
    seen: dict[str, str] = {}
    extras_of: dict[str, set[str]] = {}
    while todo:
        req, parent = todo.pop()
        name = canonicalize_name(req.name)
        new_extras = set(req.extras) - extras_of.get(name, set())
        if name in seen and not new_extras:
            continue
        seen.setdefault(name, parent)
        extras_of.setdefault(name, set()).update(req.extras)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            pytest.fail(f"core dependency {name} (required by {parent}) is not installed in this venv, so its own "
                        "requirements cannot be read: run `make setup`", pytrace=False)
        todo += [(r, name) for r in map(Requirement, requires) if _applies(r, extras_of[name])]
    return seen


def test_the_wheel_carries_the_models_and_data_files(built):
    wheel, files = built
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
    missing = [n for n in MUST_SHIP if n not in names]
    assert not missing, f"{wheel.name} lacks {missing}: see [tool.setuptools.package-data] in pyproject.toml"
    data = [f for f in files if not f.endswith((".py", ".pyc")) and "__pycache__" not in f]
    assert len(data) >= len(MUST_SHIP), f"too few data files found in the working tree: {data}"
    left_out = [n for n in data if n not in names and not excluded(n)]
    assert not left_out, f"non-Python files of the packages missing from {wheel.name}: {left_out}"
    # what inference never opens stays in the repository (training, export, tests) and out of the wheel
    kept_out = {n for n in data if excluded(n)}
    assert {"vad_turn/models/lexical/model.pt", "vad_turn/models/acoustic/model.pt", "vad_turn/models/lexical/lr.npz",
            "vad_turn/models/acoustic/split_ids.json"} <= kept_out, f"expected in the repo, excluded: {sorted(kept_out)}"
    shipped = sorted(n for n in names if excluded(n))
    assert not shipped, f"{wheel.name} carries files inference never opens: {shipped} (exclude-package-data)"
    assert not [n for n in MUST_SHIP if excluded(n)], "exclude-package-data excludes a file inference needs"
    core = [str(r) for r in _wheel_requires(wheel) if _applies(r, set())]
    assert not [r for r in core if canonicalize_name(Requirement(r).name) in ("torch", "torchaudio", "transformers")], \
        f"the core requirements (no extra) pull in torch / transformers: {core}"


# Runs in the repo's own venv: every file under vad_turn/models that inference opens (the fused model fp32 and
# int8, each shipped detector's runtime, the shipped operating points of every profile); prints a JSON list.
OPENED_BY_INFERENCE = r'''
import json, os, sys
opened = []
sys.addaudithook(lambda ev, args: opened.append(os.fsdecode(args[0]))
                 if ev == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)) else None)
from vad_turn import load_turn_model, make_detector
from vad_turn.core.config import SHIPPED_MODELS_DIR
from vad_turn.harness.operating_points import PROFILES, shipped_detectors, shipped_file, shipped_policy
load_turn_model(), load_turn_model(int8=True)
from vad_turn.fusion.stacked import shipped_alpha
shipped_alpha()
for d in shipped_detectors():
    make_detector(d)
    for prof in PROFILES:
        if shipped_file(d, profile=prof).is_file():
            shipped_policy(d, profile=prof)
root = str(SHIPPED_MODELS_DIR.resolve()) + os.sep
print(json.dumps(sorted({os.path.realpath(f)[len(root):] for f in opened if os.path.realpath(f).startswith(root)})))
'''


def test_every_model_file_the_wheel_carries_is_opened_by_inference(wheel):
    """The wheel's model files are exactly those inference opens in the repo (nothing more, nothing less)."""
    with zipfile.ZipFile(wheel) as z:
        carried = sorted(n[len("vad_turn/models/"):] for n in z.namelist() if n.startswith("vad_turn/models/"))
    r = _run([sys.executable, "-c", OPENED_BY_INFERENCE], "loading every shipped model in the repo", timeout=300,
             cwd=REPO)
    opened = json.loads(r.stdout.strip().splitlines()[-1])
    assert "acoustic/config.json" in opened and "turn/fusion.json" in opened, opened
    assert carried == opened, (f"carried, never opened: {sorted(set(carried) - set(opened))}; "
                               f"opened, not carried: {sorted(set(opened) - set(carried))}")


@pytest.fixture(scope="module")
def core_venv(wheel, tmp_path_factory) -> Path:
    """A venv with the core closure at the lock's versions and hashes, then the wheel (no deps)."""
    tmp = tmp_path_factory.mktemp("corevenv")
    closure = core_closure(wheel)
    lock, header = _read_lock()
    missing = {n: parent for n, parent in closure.items() if n not in lock}
    assert not missing, (f"core packages with no line in requirements.lock ({header}): "
                         + ", ".join(f"{n} (required by {p})" for n, p in sorted(missing.items()))
                         + ": refresh the lock (make lock)")
    subset = tmp / "core.lock"
    subset.write_text("\n".join(lock[n] for n in sorted(closure)) + "\n")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "creating the clean venv", timeout=120)
    py = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", str(py), "--disable-pip-version-check"]
    r = subprocess.run(pip + ["install", "-q", "--no-deps", "--require-hashes", "--only-binary", ":all:",
                              "-r", str(subset)], capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if r.returncode != 0:
        pytest.fail(f"installing the core closure from requirements.lock failed (exit {r.returncode}).\n"
                    f"If pip says no file matches a hash or finds no matching distribution, the lock has no wheel "
                    f"of that package for this interpreter / platform (python "
                    f"{sys.version_info.major}.{sys.version_info.minor}, {sys.platform} {os.uname().machine}; "
                    f"the lock: {header}).\nThe subset ({len(closure)} packages):\n{subset.read_text()}"
                    f"--- stderr ---\n{r.stderr[-6000:]}", pytrace=False)
    _run(pip + ["install", "-q", "--no-deps", "--no-index", str(wheel)], "installing the wheel (--no-deps)", timeout=300)
    _run(pip + ["check"], "pip check in the core venv (the wheel's core requirements must all be met)", timeout=120)
    print(f"\ncore venv: {len(closure)} packages from the lock: {', '.join(sorted(closure))}")
    return py


def _reference(clip: Path) -> tuple[list[float], list[float]]:
    """The same cases through the repo's own (editable) install, in this process."""
    from vad_turn import load_turn_model, predict_eot

    audio, sr = sf.read(clip, dtype="float32", always_2d=True)
    m, m8 = load_turn_model(), load_turn_model(int8=True)
    p, p8 = [], []
    for c in CASES:
        a = None if c["seconds"] is None else audio[: int(c["seconds"] * sr)]
        if a is not None and not c["stereo"]:
            a = np.ascontiguousarray(a[:, 0])
        p.append(predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"], model=m))
        p8.append(predict_eot(a, sr, c["words"], c["messages"], silence_s=c["silence_s"], model=m8))
    return p, p8


def test_the_core_install_scores_a_real_clip_like_the_repo_without_torch(core_venv, tmp_path):
    clip = require_data("clips", "jfk.flac")  # 44.1 kHz stereo: exercises soundfile, soxr and the stereo mix
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", ORT_DISABLE_TELEMETRY="1")
    r = _run([str(core_venv), "-I", "-c", SCRIPT, json.dumps({"clip": str(clip), "cases": CASES})],
             "end-of-turn inference in the core venv", timeout=300, cwd=tmp_path, env=env)
    got = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"core venv: p_eot {got['p']} (int8 graph {got['p_int8']}); imported: {got['third_party_imported']}")

    assert not got["torch_imported"], f"inference imported {got['torch_imported']}"
    assert not got["torch_importable"], "torch is importable in the core venv: it must not be installed"
    purelib = Path(got["purelib"]).resolve()
    assert Path(got["vad_turn_file"]).resolve().is_relative_to(purelib), \
        f"vad_turn came from {got['vad_turn_file']}, not the venv's {purelib}"
    files = [Path(f).resolve() for f in got["model_files_read"]]
    names = {f.name for f in files}
    assert {"fusion.json", "lexical.json", "tokenizer.json", "checksums.json", "model.onnx",
            "lexical_step.onnx"} <= names, f"model files read: {got['model_files_read']}"
    outside = [str(f) for f in files if not f.is_relative_to(purelib) or f.is_relative_to(REPO.resolve())]
    assert not outside, f"model files read from outside the venv's site-packages {purelib}: {outside}"

    # only what inference opens: every model file of the install is opened by loading the model (fp32 and int8)
    # or reading the shipped operating points, and none of the excluded files is there
    models_dir = Path(got["vad_turn_file"]).resolve().parent / "models"
    installed = {Path(f).resolve() for f in got["models_dir_files"]}
    opened = {Path(f).resolve() for f in got["opened_all"]} & installed
    # acoustic/config.json is read by the acoustic detector alone, whose front end needs torch (the [train] extra):
    # test_every_model_file_the_wheel_carries_is_opened_by_inference sees it opened in the repo's venv
    unopened = sorted(str(f.relative_to(models_dir)) for f in installed - opened)
    assert installed and unopened == ["acoustic/config.json"], f"model files installed but never opened: {unopened}"
    assert not [f for f in installed if excluded("vad_turn/models/" + str(f.relative_to(models_dir)))]
    # the shipped operating points verify against the installed model files (not refused as stale), as in the repo
    from vad_turn.harness.operating_points import PROFILES, shipped_detectors, shipped_file, shipped_policy

    want_pol = {f"{d}/{prof}": shipped_policy(d, profile=prof) for d in shipped_detectors() for prof in PROFILES
                if shipped_file(d, profile=prof).is_file()}
    assert "fused/conversation" in want_pol and set(got["policies"]) == set(want_pol), got["policies"]
    for k, pol in got["policies"].items():
        assert pol == {f: want_pol[k][f] for f in pol}, (k, pol, want_pol[k])
    # predict_eot without model= (the shared, once-loaded model) scores like an explicitly loaded one
    assert got["cached_shared"] is True
    assert got["p_default"][0] == got["p_default"][1] == pytest.approx(got["p_default_ref"], abs=1e-12)

    want, want8 = _reference(clip)
    print(f"repo (editable): p_eot {want} (int8 graph {want8})")
    assert np.all((np.array(got["p"]) >= 0) & (np.array(got["p"]) <= 1))
    np.testing.assert_allclose(got["p"], want, atol=1e-5, rtol=0,
                               err_msg="p_eot of the installed wheel differs from the repo's (fp32 graphs)")
    np.testing.assert_allclose(got["p_int8"], want8, atol=1e-5, rtol=0,
                               err_msg="p_eot of the installed wheel differs from the repo's (int8 acoustic graph)")
    assert np.ptp(want) > 0.05, f"the cases should span a range of p_eot, got {want}"
