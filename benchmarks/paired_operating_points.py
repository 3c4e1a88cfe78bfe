"""Detectors evaluated on the same spans, compared pairwise at every operating point with a paired bootstrap.

For each run folder (`vad-turn evaluate` output: predictions.parquet + config.json, all of one dataset, split and
grid) prints the optimised value at each operating point (FCR at a mean-latency budget, mean latency at an FCR
budget), its ratio to VAD-only on the same spans and the difference to the reference run, with 95% intervals
from resampling whole conversations (GetGoing: calls), every detector under the same resamples
(`vad_turn.harness.ratio_bootstrap.paired_difference_bootstrap`). A difference below 0 is better.

    python benchmarks/paired_operating_points.py --runs runs/eval-a runs/eval-b runs/eval-smart-turn \
        --reference runs/eval-smart-turn --boot 1000 --json runs/paired.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vad_turn.core.runs import atomic_write_json  # noqa: E402


def _fmt(x, scale: float, unit: str) -> str:
    return "n/r" if x is None else f"{scale * x:.{1 if unit == '%' else 2}f}{unit}"


def main(argv=None) -> int:
    import pandas as pd

    from vad_turn.core.config import config_from_dict
    from vad_turn.harness.evaluate import EvalConfig
    from vad_turn.harness.ratio_bootstrap import paired_difference_bootstrap

    ap = argparse.ArgumentParser(prog="paired_operating_points", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders of `vad-turn evaluate`")
    ap.add_argument("--reference", type=Path, required=True, help="the run the others are compared with")
    ap.add_argument("--boot", type=int, default=1000, help="conversation resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--common-turns", action="store_true",
                    help="compare on the turns every run scored (runs of one dataset and grid whose splits or "
                         "samples differ, e.g. a cross-fitted run of all calls and a detector run on a sample)")
    a = ap.parse_args(argv)
    runs = list(dict.fromkeys([*a.runs, a.reference]))
    preds, cfgs = {}, {}
    for run in runs:
        for f in ("predictions.parquet", "config.json"):
            if not (run / f).is_file():
                ap.error(f"{run}: no {f} (not a `vad-turn evaluate` run folder)")
        cfgs[str(run)] = config_from_dict(EvalConfig, json.loads((run / "config.json").read_text()),
                                          ignore_unknown=True)
        # one row order for every run (a cross-fitted run lists its turns fold by fold, a pooled run split by split)
        preds[str(run)] = (pd.read_parquet(run / "predictions.parquet")
                           .sort_values(["id", "span_index", "timestamp"], kind="stable").reset_index(drop=True))
    ref = cfgs[str(a.reference)]
    n_common = None
    if a.common_turns:
        common = set.intersection(*(set(p["id"].unique()) for p in preds.values()))
        if not common:
            ap.error("--common-turns: the runs share no turn")
        n_each = ", ".join(str(p["id"].nunique()) for p in preds.values())
        preds = {r: p[p["id"].isin(common)].reset_index(drop=True) for r, p in preds.items()}
        n_common = len(common)
        print(f"--common-turns: {n_common} turns scored by every run (of {n_each})")
    for run, c in cfgs.items():
        keys = ("dataset", "grid_s") if a.common_turns else ("dataset", "split", "grid_s", "max_turns", "seed")
        same = all(getattr(c, k) == getattr(ref, k) for k in keys)
        if not same:
            ap.error(f"{run} evaluated {c.dataset}:{c.split} (grid {c.grid_s}, max_turns {c.max_turns}) and "
                     f"{a.reference} {ref.dataset}:{ref.split} (grid {ref.grid_s}, max_turns {ref.max_turns}): not the same spans")
    try:
        rep = paired_difference_bootstrap(preds, ref, str(a.reference), n_boot=a.boot, seed=a.seed)
    except ValueError as e:
        ap.error(str(e))
    rep["runs"] = {r: {"detector": c.detector, "dataset": str(c.dataset), "split": c.split} for r, c in cfgs.items()}
    if n_common is not None:
        rep["common_turns"] = n_common
    print(f"{ref.dataset}:{ref.split}, {rep['n_groups']} conversations, {a.boot} paired resamples; "
          f"difference to {cfgs[str(a.reference)].detector} (< 0 is better)")
    # a detector evaluated by several runs (e.g. the shipped fusion and a k-fold refit) is told apart by its folder
    names = [c.detector for c in cfgs.values()]
    label = {r: (c.detector if names.count(c.detector) == 1 else f"{c.detector} ({Path(r).name})") for r, c in cfgs.items()}
    print("| detector | operating point | value | x VAD-only [95% CI] | diff vs reference [95% CI] |")
    print("|---|---|---|---|---|")
    for run, rows in rep["detectors"].items():
        for r in rows:
            pct = r["name"].startswith("fcr")
            s, u = (100.0, "%") if pct else (1.0, " s")
            rc = r["ratio_ci"]
            dc = r["diff_ci"]
            ratio = "n/r" if r["ratio"] is None else f"{r['ratio']:.2f}x" + (f" [{rc[0]:.2f}, {rc[1]:.2f}]" if rc else "")
            diff = ("-" if run == str(a.reference) else
                    "n/r" if r["diff_vs_reference"] is None else
                    f"{s * r['diff_vs_reference']:+.{1 if pct else 2}f}" + (f" [{s * dc[0]:+.{1 if pct else 2}f}, {s * dc[1]:+.{1 if pct else 2}f}]" if dc else ""))
            print(f"| {label[run]} | {r['name']} | {_fmt(r['value'], s, u)} | {ratio} | {diff} |")
    if a.json is not None:
        atomic_write_json(a.json, rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
