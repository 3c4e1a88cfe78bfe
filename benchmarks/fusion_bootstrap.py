"""Paired conversation bootstrap: does a fused model beat each branch on the same held-out queries?

Reads a branch table (`vad_turn.fusion.branch_table` written to parquet: one row per harness query
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

from vad_turn.acoustic_train import same_silence_auc
from vad_turn.fusion_fit import natural_logit


def bootstrap(table: pd.DataFrame, fused: np.ndarray, branches: dict[str, np.ndarray], *, n_resamples: int = 200,
              seed: int = 0) -> dict:
    """{branch: {"auc_diff": (mean, lo, hi), "same_silence_auc_diff": (mean, lo, hi)}} over conversation resamples."""
    y, sil, convs = table["label"].to_numpy(), table["silence_s"].to_numpy(), table["conversation"].to_numpy()
    for name, p in branches.items():
        if len(p) != len(y):
            raise ValueError(f"{name}: {len(p)} predictions for {len(y)} queries (not the same split?)")
    uc = np.unique(convs)
    idx = {c: np.flatnonzero(convs == c) for c in uc}
    rng = np.random.default_rng(seed)
    diffs = {k: ([], []) for k in branches}
    for _ in range(n_resamples):
        rows = np.concatenate([idx[c] for c in rng.choice(uc, len(uc))])
        af, sf = roc_auc_score(y[rows], fused[rows]), same_silence_auc(fused[rows], sil[rows], y[rows])
        for k, p in branches.items():
            diffs[k][0].append(af - roc_auc_score(y[rows], p[rows]))
            diffs[k][1].append(sf - same_silence_auc(p[rows], sil[rows], y[rows]))

    def ci(v):
        return float(np.mean(v)), float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))

    return {k: {"auc_diff": ci(a), "same_silence_auc_diff": ci(s)} for k, (a, s) in diffs.items()}


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
