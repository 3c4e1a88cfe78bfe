"""Same-silence AUC of every run folder of one or more headline roots: does p_eot separate turn ends from
holds at equal silence? (`vad_turn.harness.metrics.same_silence_auc`: the mean over grid times t <= 1 s of
the AUC of end-of-turn vs hold queries at silence t; 0.5 = the detector knows no more than the silence.)

Timing alone cannot score above 0.5 here, so this is the part of a detector that VAD-only lacks. Reads
each run folder's predictions.parquet; writes a JSON report and prints a table (a row per set, a column
per root:detector).

    python benchmarks/same_silence.py --roots runs/headline-full runs/headline-v2 --json runs/same-silence.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vad_turn.core.runs import atomic_write_json  # noqa: E402
from vad_turn.harness.metrics import same_silence_auc  # noqa: E402


def run_auc(run_dir: Path) -> dict:
    """{"same_silence_auc", "n_turns", "n_hold_points"} of one evaluation run folder."""
    p = pd.read_parquet(run_dir / "predictions.parquet", columns=["id", "p_eot", "silence_dur", "label"])
    return {"same_silence_auc": same_silence_auc(p["p_eot"].to_numpy(), p["silence_dur"].to_numpy(),
                                                 p["label"].to_numpy()),
            "n_turns": int(p["id"].nunique()), "n_hold_points": int((p["label"] == 0).sum())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--roots", nargs="+", type=Path, required=True, help="headline run roots (vad-turn headline --out)")
    ap.add_argument("--detectors", nargs="+", default=["smart-turn", "lexical", "acoustic", "fused"])
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    a = ap.parse_args(argv)
    rows = []
    for root in a.roots:
        if not root.is_dir():
            ap.error(f"{root}: no such run root")
        for d in sorted(root.iterdir()):
            names = [x for x in a.detectors if d.name.endswith("-" + x)]
            if not names or not (d / "predictions.parquet").exists():
                continue
            det = max(names, key=len)  # the longest matching name ("lexical-lr" is not "lexical")
            rows.append({"root": str(root), "set": d.name[: -len(det) - 1], "detector": det, **run_auc(d)})
    if not rows:
        print("no run folders with predictions found", file=sys.stderr)
        return 1
    df = pd.DataFrame(rows)
    df["column"] = df["root"].map(lambda r: Path(r).name) + ":" + df["detector"]
    table = df.pivot_table(index="set", columns="column", values="same_silence_auc", aggfunc="first")
    print("| set | " + " | ".join(table.columns) + " |\n|" + "---|" * (len(table.columns) + 1))
    for name, r in table.iterrows():
        print(f"| {name} | " + " | ".join("-" if pd.isna(v) else f"{v:.3f}" for v in r) + " |")
    if a.json:
        atomic_write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
