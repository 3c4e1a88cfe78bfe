"""Wheel size and the cost of `predict_eot`'s first and second call, before and after issue 25 #6, in one run.

Wheel: built twice from a copy of the working tree's packages, once with the pyproject.toml of `--before`
(a git revision: every model file shipped) and once with the working tree's (only what inference opens).
predict_eot: each mode runs in `--repeats` fresh processes (imports done before the clock starts) on one
second of audio with three words:
- before: every call without `model=` loads and verifies the shipped model, as predict_eot did at `--before`
  (`predict_eot(..., model=load_turn_model())` does exactly that work);
- after: `predict_eot(...)` as it is now (the model loaded once per process per folder, then shared).

    python benchmarks/predict_eot_cost.py --repeats 5 --json runs/predict-eot-cost.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("vad_turn", "prosody", "pipeline")

CALLS = r'''
import json, sys, time
import numpy as np
from vad_turn import load_turn_model, predict_eot
audio = (0.1 * np.sin(np.arange(16000) / 16000 * 2 * np.pi * 200)).astype(np.float32)
words = [("i", 0.1, 0.3), ("want", 0.3, 0.6), ("to", 0.6, 0.8)]
ms = []
for _ in range(2):
    t0 = time.perf_counter()
    if sys.argv[1] == "before":
        predict_eot(audio, 16000, words, silence_s=0.4, model=load_turn_model())
    else:
        predict_eot(audio, 16000, words, silence_s=0.4)
    ms.append(1e3 * (time.perf_counter() - t0))
print(json.dumps(ms))
'''


def build_wheel(pyproject: str, out: Path) -> Path:
    """The wheel of the working tree's packages with the given pyproject.toml text."""
    src = out / "src"
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard", "--", *PACKAGES], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    (src / "pyproject.toml").write_text(pyproject)
    shutil.copy2(REPO / "README.md", src / "README.md")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out / "dist"), str(src)], check=True, capture_output=True)
    return next((out / "dist").glob("*.whl"))


def wheel_stats(whl: Path) -> dict:
    with zipfile.ZipFile(whl) as z:
        models = [i for i in z.infolist() if "/models/" in i.filename]
    return {"wheel_mb": whl.stat().st_size / 1e6, "n_model_files": len(models),
            "model_files_mb_uncompressed": sum(i.file_size for i in models) / 1e6,
            "model_files": sorted(i.filename.split("/models/")[1] for i in models)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="HEAD", help="git revision whose pyproject.toml is 'before'")
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per mode")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    res: dict = {"before_revision": args.before}
    old = subprocess.run(["git", "show", f"{args.before}:pyproject.toml"], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("before", old), ("after", (REPO / "pyproject.toml").read_text())):
            res[f"wheel_{name}"] = wheel_stats(build_wheel(text, Path(tmp) / name))
    for mode in ("before", "after"):
        runs = [json.loads(subprocess.run([sys.executable, "-c", CALLS, mode], cwd=REPO, capture_output=True,
                                          text=True, check=True).stdout.strip().splitlines()[-1])
                for _ in range(args.repeats)]
        res[f"predict_eot_{mode}_ms"] = {"first_median": statistics.median(r[0] for r in runs),
                                         "second_median": statistics.median(r[1] for r in runs),
                                         "first": [round(r[0], 1) for r in runs],
                                         "second": [round(r[1], 1) for r in runs]}
    for name in ("before", "after"):
        w, t = res[f"wheel_{name}"], res[f"predict_eot_{name}_ms"]
        print(f"{name:6s} wheel {w['wheel_mb']:.2f} MB ({w['n_model_files']} model files, "
              f"{w['model_files_mb_uncompressed']:.2f} MB uncompressed); predict_eot first call "
              f"{t['first_median']:.1f} ms, second {t['second_median']:.2f} ms (medians of {args.repeats} processes)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
