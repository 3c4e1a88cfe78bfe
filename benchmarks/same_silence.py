"""Same-silence AUC of every run folder of one or more headline roots: does p_eot separate turn ends from
holds at equal silence? (`vad_turn.harness.metrics.same_silence_auc`: the mean over grid times t <= 1 s of
the AUC of end-of-turn vs hold queries at silence t; 0.5 = the detector knows no more than the silence.)

Timing alone cannot score above 0.5 here, so this is the part of a detector that VAD-only lacks. Reads
each run folder's predictions.parquet; writes a JSON report and prints a table (a row per set, a column
per root:detector).

    python benchmarks/same_silence.py --roots runs/headline-full runs/headline-v2 runs/headline-v3 --json runs/same-silence.json
    python benchmarks/same_silence.py --roots runs/a runs/b --paired-vs runs/a --boot 1000   # b - a, 95% CI

`--paired-vs ROOT` adds, for every (set, detector) folder that ROOT shares with another root, the paired
difference (other - ROOT) with a 95% interval from resampling whole conversations (calls for GetGoing) of
the queries both scored (`vad_turn.harness.metrics.paired_auc_bootstrap`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vad_turn.core.runs import atomic_write_json  # noqa: E402
from vad_turn.harness.metrics import paired_auc_bootstrap, same_silence_auc  # noqa: E402
from vad_turn.harness.ratio_bootstrap import conversation_of  # noqa: E402

KEY = ["id", "span_index", "timestamp"]


def run_auc(run_dir: Path) -> dict:
    """{"same_silence_auc", "n_turns", "n_hold_points"} of one evaluation run folder."""
    p = pd.read_parquet(run_dir / "predictions.parquet", columns=["id", "p_eot", "silence_dur", "label"])
    return {"same_silence_auc": same_silence_auc(p["p_eot"].to_numpy(), p["silence_dur"].to_numpy(),
                                                 p["label"].to_numpy()),
            "n_turns": int(p["id"].nunique()), "n_hold_points": int((p["label"] == 0).sum())}


def paired_diff(ref_dir: Path, other_dir: Path, n_boot: int, seed: int = 0) -> dict:
    """Same-silence AUC of other minus ref on the queries both scored, with its conversation-bootstrap 95% CI."""
    cols = KEY + ["p_eot", "silence_dur", "label"]
    a = pd.read_parquet(ref_dir / "predictions.parquet", columns=cols)
    b = pd.read_parquet(other_dir / "predictions.parquet", columns=cols)
    m = a.merge(b, on=KEY, suffixes=("_ref", ""))
    if m.empty:
        raise ValueError(f"{ref_dir} and {other_dir} share no query")
    if not (m["label_ref"] == m["label"]).all() or not (m["silence_dur_ref"] == m["silence_dur"]).all():
        raise ValueError(f"{ref_dir} and {other_dir}: the same query has different labels or silences")
    res = paired_auc_bootstrap(m["p_eot"].to_numpy(), m["p_eot_ref"].to_numpy(), m["label"].to_numpy(),
                               m["silence_dur"].to_numpy(), m["id"].map(conversation_of).to_numpy(),
                               n_resamples=n_boot, seed=seed)
    return {"n_shared_queries": len(m), "n_conversations": int(m["id"].map(conversation_of).nunique()),
            "same_silence_auc_diff": res["same_silence_auc_diff"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--roots", nargs="+", type=Path, required=True, help="headline run roots (vad-turn headline --out)")
    ap.add_argument("--detectors", nargs="+", default=["smart-turn", "lexical", "acoustic", "fused"])
    ap.add_argument("--json", type=Path, default=None, help="write the report here")
    ap.add_argument("--paired-vs", type=Path, default=None, help="a root: report the others' paired difference to it")
    ap.add_argument("--boot", type=int, default=1000, help="conversation resamples of the paired difference")
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
    if a.paired_vs is not None:
        ref = str(a.paired_vs)
        print(f"\npaired same-silence AUC difference to {Path(ref).name} (95% CI, {a.boot} conversation resamples):")
        for r in rows:
            if r["root"] == ref:
                continue
            d = Path(r["root"]) / f"{r['set']}-{r['detector']}"
            ref_dir = Path(ref) / d.name
            if not (ref_dir / "predictions.parquet").exists():
                continue
            r["paired_vs"] = {"root": ref, **paired_diff(ref_dir, d, a.boot)}
            mean, lo, hi = r["paired_vs"]["same_silence_auc_diff"]
            print(f"  {r['set']:32s} {Path(r['root']).name}:{r['detector']} {mean:+.3f} [{lo:+.3f}, {hi:+.3f}] "
                  f"({r['paired_vs']['n_conversations']} conversations)")
    if a.json:
        atomic_write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
