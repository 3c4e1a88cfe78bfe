"""Paired conversation bootstrap: does a fused model beat each branch on the same held-out queries?

Reads a branch table (`vad_turn.fusion.train.branch_table` written to parquet: one row per harness query
with label, silence_s, conversation and the branch logits, in the harness's prediction order), a
fusion.json, and the evaluation runs of the branches on the same split (their predictions.parquet
rows are in the same order). Resamples conversations with replacement and reports the mean and 95%
interval of AUC(fused) - AUC(branch) and of the same-silence AUC difference.

    python benchmarks/fusion_bootstrap.py --branches runs/fusion-v3-work/branches-swbr-dev.parquet \
        --fusion runs/fusion-v3/model/fusion.json \
        --branch-run lexical=runs/eval-lexical-swbr-dev --branch-run acoustic=runs/eval-acoustic-swbr-dev
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from vad_turn.fusion.fit import natural_logit
from vad_turn.harness.metrics import paired_auc_bootstrap


def bootstrap(table: pd.DataFrame, fused: np.ndarray, branches: dict[str, np.ndarray], *, n_resamples: int = 200,
              seed: int = 0) -> dict:
    """{branch: {"auc_diff": (mean, lo, hi), "same_silence_auc_diff": (mean, lo, hi)}} over conversation resamples
    (`vad_turn.harness.metrics.paired_auc_bootstrap`; every branch sees the same resamples)."""
    y, sil, convs = table["label"].to_numpy(), table["silence_s"].to_numpy(), table["conversation"].to_numpy()
    out = {}
    for name, p in branches.items():
        res = paired_auc_bootstrap(fused, p, y, sil, convs, n_resamples=n_resamples, seed=seed)
        out[name] = {k: tuple(v) for k, v in res.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--branches", type=Path, required=True, help="branch table parquet (fusion.branch_table)")
    ap.add_argument("--fusion", type=Path, required=True, help="fusion.json of the fused model")
    ap.add_argument("--branch-run", action="append", default=[], help="NAME=RUN_DIR (evaluation run of a branch)")
    ap.add_argument("--n-resamples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.branches)
    model = json.loads(args.fusion.read_text())
    fused = natural_logit(table, np.array(model["weights"])) / model["temperature"]
    branches = {}
    for spec in args.branch_run:
        name, _, run = spec.partition("=")
        if not run:
            raise SystemExit(f"--branch-run wants NAME=RUN_DIR, got {spec!r}")
        branches[name] = pd.read_parquet(Path(run) / "predictions.parquet")["p_eot"].to_numpy()
    print({"fused": round(roc_auc_score(table["label"], fused), 4),
           **{k: round(roc_auc_score(table["label"], v), 4) for k, v in branches.items()}})
    res = bootstrap(table, fused, branches, n_resamples=args.n_resamples, seed=args.seed)
    for k, r in res.items():
        (a, alo, ahi), (s, slo, shi) = r["auc_diff"], r["same_silence_auc_diff"]
        print(f"fused - {k}: AUC {a:+.4f} [{alo:+.4f}, {ahi:+.4f}]  same-silence AUC {s:+.4f} [{slo:+.4f}, {shi:+.4f}]")
    return res


if __name__ == "__main__":
    main()
