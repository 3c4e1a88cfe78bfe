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

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from vad_turn.fusion.runtime import fused_logits as natural_logit  # (main() is the config helper's to edit)
from vad_turn.core.config import config_main
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


@dataclass(frozen=True)
class FusionBootstrapConfig:
    branches: Path = field(metadata={"help": "branch table parquet (fusion.branch_table)"})
    fusion: Path = field(metadata={"help": "fusion.json of the fused model"})
    branch_run: tuple[str, ...] = field(default=(), metadata={
        "help": "NAME=RUN_DIR (evaluation run of a branch); repeat the flag or give several"})
    n_resamples: int = field(default=200, metadata={"help": "conversation resamples"})
    seed: int = field(default=0, metadata={"help": "seed of the resamples"})

    def __post_init__(self) -> None:
        bad = [s for s in self.branch_run if not s.partition("=")[2]]
        if bad:
            raise ValueError(f"--branch-run wants NAME=RUN_DIR, got {bad[0]!r}")
        if self.n_resamples < 1:
            raise ValueError(f"--n-resamples must be >= 1, got {self.n_resamples}")


def run(args: FusionBootstrapConfig) -> dict:
    """Print the AUCs and the paired differences; returns `bootstrap`'s result."""
    table = pd.read_parquet(args.branches)
    model = json.loads(Path(args.fusion).read_text())
    fused = natural_logit(table, np.array(model["weights"])) / model["temperature"]
    branches = {}
    for spec in args.branch_run:
        name, _, run_dir = spec.partition("=")
        branches[name] = pd.read_parquet(Path(run_dir) / "predictions.parquet")["p_eot"].to_numpy()
    print({"fused": round(roc_auc_score(table["label"], fused), 4),
           **{k: round(roc_auc_score(table["label"], v), 4) for k, v in branches.items()}})
    res = bootstrap(table, fused, branches, n_resamples=args.n_resamples, seed=args.seed)
    for k, r in res.items():
        (a, alo, ahi), (s, slo, shi) = r["auc_diff"], r["same_silence_auc_diff"]
        print(f"fused - {k}: AUC {a:+.4f} [{alo:+.4f}, {ahi:+.4f}]  same-silence AUC {s:+.4f} [{slo:+.4f}, {shi:+.4f}]")
    return res


def main(argv: list[str] | None = None) -> int:
    return config_main(FusionBootstrapConfig, run, argv, __doc__.split("\n")[0], prog="python benchmarks/fusion_bootstrap.py")


if __name__ == "__main__":
    raise SystemExit(main())
