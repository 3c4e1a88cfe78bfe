"""Fitting the fusion on held-aside turns: conversation-grouped folds, C chosen by cross-validation,
the temperature fitted on out-of-fold logits, and the conversation split of a selection set.

Why: the branches were trained on Switchboard train turns, so their logits there are in-sample
(over-confident) and fusion weights fitted on them do not transfer. Turns the branches never saw
(Switchboard val conversations outside the evaluation set) give logits distributed as at run time;
with only a few hundred such turns, C and T are chosen by K-fold cross-validation over whole
conversations inside the fit set, so the evaluation set stays untouched by every fitted number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.seeds import stable_unit
from vad_turn.harness.calibration import fit_temperature, nll

from vad_turn.core.schema import MAX_SILENCE_S

from .runtime import FUSION_FEATURES, MODE_INPUTS, MODE_MASKS, MODES, fusion_features, fusion_logit, mode_index


def conversation_folds(conversations: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """(n,) int fold in [0, k) per row; every row of a conversation gets the same fold.

    Conversations are ordered by a seeded hash and dealt round-robin, so folds hold about the same
    number of conversations. Rows without a conversation id ("") raise: turns of one unknown
    conversation could straddle folds.
    """
    conv = np.asarray(conversations).astype(str)
    if k < 2:
        raise ValueError(f"need k >= 2 folds, got {k}")
    if (conv == "").any():
        raise ValueError("rows without a conversation id cannot be grouped into folds")
    uniq = sorted(set(conv), key=lambda c: stable_unit(c, seed))
    if len(uniq) < k:
        raise ValueError(f"{len(uniq)} conversations cannot make {k} folds")
    fold_of = {c: i % k for i, c in enumerate(uniq)}
    return np.array([fold_of[c] for c in conv], dtype=np.int64)


def split_conversations(conversations, fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """(first, second): the distinct conversation ids, split by a seeded hash so that about
    `fraction` (in (0, 1)) of them are in `first`. Sorted lists."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    uniq = sorted(set(map(str, conversations)))
    first = [c for c in uniq if stable_unit(c, seed) < fraction]
    return first, [c for c in uniq if c not in set(first)]


def extra_columns(t: pd.DataFrame, extra: tuple[str, ...], mode: str | np.ndarray) -> np.ndarray:
    """(n, 2 * len(extra)) features of extra inputs (logits of other detectors that read audio, e.g. Smart
    Turn's, columns `extra` of `t`): per input its logit and logit x silence/5, zero where the mode (a name, or
    per-row mode indices) has no audio. Appended after `FUSION_FEATURES` in the stacked (accuracy-first) fusion."""
    if not extra:
        return np.zeros((len(t), 0))
    has_ac = (np.full(len(t), MODE_INPUTS[mode][1]) if isinstance(mode, str)
              else np.array([MODE_INPUTS[MODES[m]][1] for m in np.asarray(mode)], dtype=bool))
    sn = np.clip(t["silence_s"].to_numpy(dtype=np.float64), 0.0, MAX_SILENCE_S) / MAX_SILENCE_S
    cols = []
    for name in extra:
        z = np.where(has_ac, t[name].to_numpy(dtype=np.float64), 0.0)
        cols += [z, z * sn]
    return np.stack(cols, axis=1)


def design(t: pd.DataFrame, mode: str, extra: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X (n, F), labels (n,), weights (n,), row mask (len(t),)) of the rows of `t` that have the inputs
    of `mode` (`runtime.MODE_INPUTS`), cast to it (modality dropout: a row with both branches also
    serves the others). With `extra` (column names of other detectors' logits), F grows by
    2 * len(extra) (`extra_columns`)."""
    need_lex, need_ac = MODE_INPUTS[mode]
    ok = (t["has_lex"].to_numpy() | (not need_lex)) & (t["has_ac"].to_numpy() | (not need_ac))
    s = t[ok]
    n = len(s)
    X, m = fusion_features(s["lex_logit"].to_numpy(), s["ac_logit"].to_numpy(), s["silence_s"].to_numpy(),
                           s["n_seen"].to_numpy(), np.full(n, need_lex), np.full(n, need_ac))
    assert (m == MODES.index(mode)).all()
    X = np.concatenate([X, extra_columns(s, extra, mode)], axis=1)
    return X, s["label"].to_numpy().astype(int), s["weight"].to_numpy(dtype=np.float64), ok


def mode_design(t: pd.DataFrame, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`design` without the row mask: (X (n, F), labels (n,), weights (n,))."""
    return design(t, mode)[:3]


def fit_mode(X: np.ndarray, y: np.ndarray, mode: str, c: float, sample_weight: np.ndarray | None = None,
             standardize: bool = False) -> np.ndarray:
    """L2 logistic regression on the features `mode` uses -> weights (F,) on the raw features (columns of X
    after `FUSION_FEATURES` are extra inputs, used by the modes with audio).
    sample_weight is normalised to mean 1 so C means the same with and without weights. With
    `standardize`, the penalty applies to weights of z-scored features (so it shrinks every input
    alike whatever its scale); the weights returned still apply to the raw features."""
    from sklearn.linear_model import LogisticRegression

    n_base = len(FUSION_FEATURES)
    cols = [j for j, f in enumerate(FUSION_FEATURES) if MODE_MASKS[MODES.index(mode), j] and f != "bias"]
    if MODE_INPUTS[mode][1]:  # extra inputs (columns after FUSION_FEATURES) read audio
        cols += list(range(n_base, X.shape[1]))
    Z = X[:, cols]
    mu, sd = (Z.mean(0), Z.std(0)) if standardize else (np.zeros(len(cols)), np.ones(len(cols)))
    sd = np.where(sd > 1e-12, sd, 1.0)
    lr = LogisticRegression(C=c, max_iter=2000)
    sw = None if sample_weight is None else np.asarray(sample_weight, np.float64) / np.mean(sample_weight)
    lr.fit((Z - mu) / sd, y, sample_weight=sw)
    w = np.zeros(X.shape[1])
    w[cols] = lr.coef_[0] / sd
    w[FUSION_FEATURES.index("bias")] = lr.intercept_[0] - float(np.sum(lr.coef_[0] * mu / sd))
    return w


def fit_cross_validated(t: pd.DataFrame, c_grid: tuple[float, ...], k: int, seed: int = 0,
                        standardize: bool = False, extra: tuple[str, ...] = ()) -> dict:
    """Fit every mode's regression on the held-aside table `t` (a `fusion.branch_table` with a
    `conversation` column), C per mode by weighted log loss over `k` conversation folds.

    `extra`: columns of `t` holding other detectors' logits, stacked as more inputs (`extra_columns`).

    Returns {"weights": (len(MODES), F) fitted on all of `t` with the chosen C, "selection": per mode
    {c, cv_nll per C, n_fit}, "oof_logit": (len(t),) out-of-fold fused logits of each row in its
    natural mode with the chosen C, "temperature": T fitted (weighted NLL) on those, "cv": summary}.
    """

    folds = conversation_folds(t["conversation"].to_numpy(), k, seed)
    natural = mode_index(t["has_lex"].to_numpy(), t["has_ac"].to_numpy())
    weights = np.zeros((len(MODES), len(FUSION_FEATURES) + 2 * len(extra)))
    oof = np.zeros(len(t))
    selection = {}
    for mi, mode in enumerate(MODES):
        X, y, w, ok = design(t, mode, extra)
        f = folds[ok]
        tried, oof_by_c = {}, {}
        for c in c_grid:
            z = np.zeros(len(y))
            for j in range(k):
                tr = f != j
                z[~tr] = X[~tr] @ fit_mode(X[tr], y[tr], mode, c, w[tr], standardize)
            tried[c], oof_by_c[c] = weighted_nll(z, y, w), z
        best = min(tried, key=lambda c: tried[c])
        weights[mi] = fit_mode(X, y, mode, best, w, standardize)
        rows = np.flatnonzero(ok)
        nat = natural[ok] == mi  # rows whose natural mode is this one
        oof[rows[nat]] = oof_by_c[best][nat]
        selection[mode] = {"c": best, "cv_nll": {str(c): v for c, v in tried.items()}, "n_fit": int(y.size)}
    y_all, w_all = t["label"].to_numpy().astype(int), t["weight"].to_numpy(dtype=np.float64)
    temperature = fit_temperature(oof, y_all, sample_weight=w_all)
    return {"weights": weights, "selection": selection, "oof_logit": oof, "temperature": temperature,
            "cv": {"k": int(k), "n_conversations": int(t["conversation"].nunique()),
                   "oof_nll": weighted_nll(oof, y_all, w_all),
                   "oof_nll_calibrated": weighted_nll(oof / temperature, y_all, w_all)}}


def stacked_logits(t: pd.DataFrame, weights: np.ndarray, extra: tuple[str, ...] = ()) -> np.ndarray:
    """Uncalibrated fused logits (n,) of the rows of `t` (a branch table, plus the `extra` logit columns) in
    their natural mode, from weights (len(MODES), len(FUSION_FEATURES) + 2 * len(extra)) as
    `fit_cross_validated` returns them; with no extra inputs, `runtime.fused_logits`."""
    X, mode = fusion_features(t["lex_logit"], t["ac_logit"], t["silence_s"], t["n_seen"], t["has_lex"], t["has_ac"])
    return fusion_logit(np.concatenate([X, extra_columns(t, extra, mode)], axis=1), mode, weights)


def weighted_nll(z: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """Mean binary NLL (nats) of sigmoid(z) against y, weighted by w (None: unweighted)."""
    return nll(z, y, 1.0, w)


def write_fit_source(source: Path, exclude: Path, out: Path, split: str = "dev") -> dict:
    """Write the text turns of `split` of the turn dataset `source` whose conversation does not occur
    in `split` of the dataset `exclude` (e.g. the rendered evaluation set) to `out`, for `vad-turn
    render --built-root <out's parent>`. Returns the build info (counts, excluded conversations).

        python -m vad_turn.fusion.fit --source data/built/switchboard \\
            --exclude data/built/switchboard-rendered --out data/built/fusion-fit/source/switchboard
    """
    from vad_turn.core.runs import atomic_dir, atomic_write_json
    from vad_turn.data.dataset import load_turns

    src, ex = load_turns(source), load_turns(exclude)
    for path, d in ((source, src), (exclude, ex)):
        if not {"split", "conversation"} <= set(d.column_names):
            raise ValueError(f"{path}: needs `split` and `conversation` columns to hold conversations aside")
    held = {c for c, s in zip(ex["conversation"], ex["split"]) if s == split}
    keep = [i for i, (c, s) in enumerate(zip(src["conversation"], src["split"])) if s == split and c not in held]
    if not keep:
        raise ValueError(f"{source}: no {split} turn outside the {len(held)} conversations of {exclude}")
    info = {"source": str(source), "split": split, "excluded_from": str(exclude), "n_turns": len(keep),
            "n_conversations": len({src["conversation"][i] for i in keep}), "excluded_conversations": sorted(held)}
    with atomic_dir(Path(out)) as tmp:
        src.select(keep).save_to_disk(str(tmp / "data"))
        atomic_write_json(tmp / "build_info.json", info)
    return info


@dataclass(frozen=True)
class FitSourceConfig:
    """Write the held-aside text turns the fusion is fitted on (`write_fit_source`)."""

    source: Path = field(metadata={"help": "text turn dataset (e.g. data/built/switchboard)"})
    exclude: Path = field(metadata={"help": "dataset whose split's conversations are held out"})
    out: Path = field(metadata={"help": "output dataset folder (<root>/switchboard)"})
    split: str = field(default="dev", metadata={"help": "split of both datasets: the turns kept, the conversations held out"})


def run_fit_source(cfg: FitSourceConfig) -> dict:
    info = write_fit_source(cfg.source, cfg.exclude, cfg.out, cfg.split)
    print(f"{info['n_turns']} turns of {info['n_conversations']} conversations; "
          f"{len(info['excluded_conversations'])} conversations excluded")
    return info


def main(argv: list[str] | None = None) -> int:
    from vad_turn.core.config import config_main

    return config_main(FitSourceConfig, run_fit_source, argv, FitSourceConfig.__doc__, prog="python -m vad_turn.fusion.fit")


if __name__ == "__main__":
    raise SystemExit(main())
