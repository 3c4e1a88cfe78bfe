"""Are two evaluation roots the same, run folder by run folder? (predictions and metrics, exactly)

For a change that must not move any number (a refactor, a dependency bump), evaluate the same sets
before and after into two roots (e.g. `vad-turn headline ... --out runs/before` at the old commit and
`--out runs/after` at the new one) and compare: every run folder present in both is reported with the
largest absolute p_eot difference and whether its metrics.json is identical (metrics.json holds no
commit or wall time; config.json and commit.txt, which do, are not compared). Exit status 1 if any
folder differs.

    python benchmarks/same_predictions.py --before runs/headline-full --after runs/headline-after-move
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.config import config_main

@dataclass(frozen=True)
class SamePredictionsConfig:
    before: Path = field(default=Path("runs/before"), metadata={"help": "evaluation root (run folders) before"})
    after: Path = field(default=Path("runs/after"), metadata={"help": "evaluation root (run folders) after"})


def compare(before: Path, after: Path) -> list[dict]:
    rows = []
    for d in sorted(p for p in Path(after).iterdir() if (p / "predictions.parquet").exists()):
        old = Path(before) / d.name
        if not (old / "predictions.parquet").exists():
            continue
        a, b = pd.read_parquet(old / "predictions.parquet"), pd.read_parquet(d / "predictions.parquet")
        same_shape = a.shape == b.shape and list(a.columns) == list(b.columns)
        diff = float(np.abs(a["p_eot"].to_numpy() - b["p_eot"].to_numpy()).max()) if same_shape and len(a) else None
        rows.append({"run": d.name, "queries": len(b), "same_shape": same_shape, "max_abs_diff_p_eot": diff,
                     "metrics_identical": json.loads((old / "metrics.json").read_text())
                     == json.loads((d / "metrics.json").read_text())})
    if not rows:
        raise ValueError(f"no run folder with predictions.parquet in both {before} and {after}")
    return rows


def run(cfg: SamePredictionsConfig) -> int:
    rows = compare(cfg.before, cfg.after)
    for r in rows:
        print(f"{r['run']:40s} {r['queries']:7d} queries  max |dp| {r['max_abs_diff_p_eot']}  "
              f"metrics {'identical' if r['metrics_identical'] else 'DIFFER'}")
    bad = [r for r in rows if not (r["same_shape"] and r["max_abs_diff_p_eot"] == 0.0 and r["metrics_identical"])]
    print(f"{len(rows) - len(bad)} of {len(rows)} run folders identical")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(config_main(SamePredictionsConfig, run, description=__doc__.splitlines()[0], prog="same_predictions.py"))
