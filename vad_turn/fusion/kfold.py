"""Cross-fitted fusion on real calls: every turn scored by a fusion fitted without its call.

The shipped fusion is fitted mostly on rendered Switchboard; on real speech it can trail its own
branches. Here it is fitted on real calls the branches never trained on (GetGoing dev + test: the
lexical and acoustic branches trained on GetGoing train) and still evaluated on every one of them:
the calls are dealt into `k` folds (`fit.conversation_folds`), and for each fold the fusion is fitted on
the others with the `train-fusion --fit-dataset` recipe (`fit.fit_cross_validated`: C per mode and
the temperature by conversation-grouped CV inside the training folds), then predicts the fold. The
out-of-fold predictions of each split become a `vad-turn evaluate`-style run folder (config.json,
predictions.parquet with the harness's columns, metrics.json, report.md), so `vad-turn
pool-evaluations` and `benchmarks/paired_operating_points.py` compare them with every other detector on
the same spans, paired by call.

`extra_runs`: `vad-turn evaluate` run folders of other audio detectors on the same spans (e.g. Smart Turn
v3.2 on GetGoing dev and test); their p_eot, as logits, become fusion inputs (`fit.extra_columns`): the
accuracy-first variant, which costs that detector's CPU per decision.

    vad-turn kfold-fusion --dataset runs/gg-full/getgoing --splits dev test --out runs/kfold-fusion
    vad-turn kfold-fusion --dataset runs/gg-full/getgoing --splits dev test --out runs/kfold-fusion-st \\
        --extra-runs runs/gg-full-eval/dev-smart-turn runs/gg-full-eval/test-smart-turn
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR, SHIPPED_LEXICAL_DIR
from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_json
from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S

from .fit import conversation_folds, fit_cross_validated, stacked_logits, weighted_nll
from .runtime import logit, sigmoid

_KEY = ("id", "span_index", "timestamp_ms")


@dataclass(frozen=True)
class KFoldFusionConfig:
    dataset: Path | None = field(default=None, metadata={"help": "turn dataset of real calls with a `conversation` column"})
    splits: tuple[str, ...] = field(default=("dev", "test"), metadata={
        "help": "splits scored out of fold, pooled for the folds (none of them may have trained a branch)"})
    k: int = field(default=5, metadata={"help": "call folds"})
    inner_k: int = field(default=5, metadata={"help": "call folds inside each training part (C and temperature)"})
    c_grid: tuple[float, ...] = field(default=(0.01, 0.1, 1.0, 10.0), metadata={"help": "inverse L2 strengths tried"})
    standardize: bool = field(default=True, metadata={"help": "L2 penalty on z-scored features (weights still raw)"})
    extra_runs: tuple[Path, ...] = field(default=(), metadata={
        "help": "`vad-turn evaluate` run folders of one more audio detector on these splits (its p_eot becomes an input)"})
    lexical_dir: Path = field(default=SHIPPED_LEXICAL_DIR, metadata={"help": "lexical model folder"})
    acoustic_dir: Path = field(default=SHIPPED_ACOUSTIC_DIR, metadata={"help": "acoustic model folder (model.onnx)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={"help": "words visible this long after they end"})
    seed: int = field(default=0, metadata={"help": "seed of the fold assignment"})
    out: Path | None = field(default=None, metadata={"help": "run folder"})

    def __post_init__(self) -> None:
        if self.dataset is None or self.out is None:
            raise ValueError("--dataset and --out are required")
        if self.k < 2 or self.inner_k < 2:
            raise ValueError(f"--k and --inner-k must be >= 2, got {self.k}, {self.inner_k}")
        if not self.splits:
            raise ValueError("--splits needs at least one split")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ValueError(f"--c-grid must be positive numbers, got {self.c_grid}")


def _key_frame(df: pd.DataFrame, id_col: str) -> pd.DataFrame:
    return pd.DataFrame({"id": df[id_col].astype(str).to_numpy(), "span_index": df["span_index"].astype(np.int64).to_numpy(),
                         "timestamp_ms": np.round(df["timestamp"].to_numpy(dtype=np.float64) * 1000).astype(np.int64)})


def attach_extra(table: pd.DataFrame, runs: tuple[Path, ...], column: str) -> tuple[pd.DataFrame, str]:
    """`table` (a branch table) with `column` = logit of the p_eot the evaluation runs `runs` gave at each of
    its queries; (table, the detector those runs evaluated). Raises ValueError naming the runs when they
    evaluated different detectors, or when a query of `table` is missing from them (not the same spans)."""
    frames, detectors = [], set()
    for run in runs:
        run = Path(run)
        for name in ("config.json", "predictions.parquet"):
            if not (run / name).is_file():
                raise ValueError(f"{run}: no {name} (not a finished `vad-turn evaluate` run)")
        detectors.add(json.loads((run / "config.json").read_text()).get("detector"))
        p = pd.read_parquet(run / "predictions.parquet", columns=["id", "span_index", "timestamp", "p_eot"])
        frames.append(_key_frame(p, "id").assign(**{column: logit(p["p_eot"].to_numpy())}))
    if len(detectors) != 1:
        raise ValueError(f"--extra-runs evaluated {len(detectors)} detectors ({sorted(map(str, detectors))}); give the "
                         "runs of one detector, one per split")
    extra = pd.concat(frames, ignore_index=True).drop_duplicates(list(_KEY))
    keyed = pd.concat([table.reset_index(drop=True), _key_frame(table, "turn_id")[["timestamp_ms"]]], axis=1)
    merged = keyed.merge(extra, left_on=["turn_id", "span_index", "timestamp_ms"], right_on=list(_KEY),
                         how="left", validate="one_to_one")
    missing = merged[column].isna()
    if missing.any():
        ex = merged.loc[missing, ["turn_id", "span_index", "timestamp"]].head(3).to_dict("records")
        raise ValueError(f"--extra-runs {[str(r) for r in runs]} miss {int(missing.sum())} of {len(merged)} queries "
                         f"(e.g. {ex}): they must evaluate the same turns with the same grid")
    return merged.drop(columns=["id", "timestamp_ms"]), next(iter(detectors))


def cross_fit(table: pd.DataFrame, cfg: KFoldFusionConfig, extra: tuple[str, ...] = ()) -> tuple[np.ndarray, list[dict]]:
    """Out-of-fold p_eot (len(table),) and one record per fold (calls, chosen C, temperature, weights,
    held-out NLL). Folds are by `conversation`; each fold's fusion never saw a query of its calls."""
    folds = conversation_folds(table["conversation"].to_numpy(), cfg.k, cfg.seed)
    p = np.full(len(table), np.nan)
    records = []
    for j in range(cfg.k):
        test = folds == j
        fit = fit_cross_validated(table[~test].reset_index(drop=True), cfg.c_grid, cfg.inner_k, cfg.seed,
                                  standardize=cfg.standardize, extra=extra)
        z = stacked_logits(table[test], fit["weights"], extra) / fit["temperature"]
        p[test] = sigmoid(z)
        y, w = table["label"].to_numpy()[test].astype(int), table["weight"].to_numpy(dtype=np.float64)[test]
        records.append({"fold": j, "n_calls": int(table.loc[test, "conversation"].nunique()),
                        "n_turns": int(table.loc[test, "turn_id"].nunique()), "n_queries": int(test.sum()),
                        "temperature": float(fit["temperature"]),
                        "c": {m: s["c"] for m, s in fit["selection"].items()},
                        "weights": np.asarray(fit["weights"]).tolist(), "heldout_nll": weighted_nll(z, y, w)})
    return p, records


def predictions_frame(table: pd.DataFrame, p: np.ndarray) -> pd.DataFrame:
    """A harness predictions frame (`evaluate.PREDICTION_COLUMNS`) from a branch table and its p_eot."""
    from vad_turn.harness.evaluate import PREDICTION_COLUMNS

    df = table.rename(columns={"turn_id": "id", "silence_s": "silence_dur"}).assign(p_eot=p)
    df["backchannel_context"] = df["backchannel_context"].astype(bool)
    df["label"] = df["label"].astype(np.int64)
    return df[list(PREDICTION_COLUMNS)].reset_index(drop=True)


def run(cfg: KFoldFusionConfig) -> dict:
    """Score the branches on every split (cached in the run folder), cross-fit, write one evaluation run
    folder per split under `cfg.out` and the fold records in `cfg.out`/metrics.json. Returns the metrics."""
    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.evaluate import EvalConfig, write_scored_run
    from vad_turn.harness.report import format_table

    from .runtime import Branches
    from .train import _acoustic_window_s, branch_table

    t0 = time.time()
    out = Path(cfg.out)
    rf = RunFolder(out, cfg)
    ds = load_turns(cfg.dataset)
    if "conversation" not in ds.column_names:
        raise ValueError(f"{cfg.dataset}: no `conversation` column, so turns cannot be grouped into call folds")
    branches = Branches(cfg.lexical_dir, Path(cfg.acoustic_dir) / "model.onnx", _acoustic_window_s(cfg.acoustic_dir))
    branches.lexical.check_transcript_lag(cfg.transcript_lag_s)
    tables = []
    for split in cfg.splits:
        path = out / f"branches-{split}.parquet"
        if path.exists():
            t = pd.read_parquet(path)
        else:
            t = branch_table(ds, split, branches, max_turns=None, points_per_span=None, seed=cfg.seed, desc=split,
                             transcript_lag_s=cfg.transcript_lag_s)
            with atomic_path(path) as tmp:
                t.to_parquet(tmp, index=False)
        tables.append(t.assign(split=split))
    table = pd.concat(tables, ignore_index=True)
    extra, extra_detector = (), None
    if cfg.extra_runs:
        table, extra_detector = attach_extra(table, tuple(cfg.extra_runs), "extra_logit")
        extra = ("extra_logit",)
    t_branches = time.time() - t0
    p, folds = cross_fit(table, cfg, extra)
    opts = (f"kfold={cfg.k}",) + ((f"extra={extra_detector}",) if extra_detector else ())
    per_split = {}
    for split in cfg.splits:
        rows = (table["split"] == split).to_numpy()
        ecfg = EvalConfig(dataset=Path(cfg.dataset), split=split, detector="fused", detector_opts=opts,
                          transcript_lag_s=cfg.transcript_lag_s, out=out / split)
        preds = predictions_frame(table[rows], p[rows])
        split_rows = ds.filter(lambda s: s == split, input_columns="split").select_columns(["silence_spans"])
        metrics = write_scored_run(out / split, ecfg, preds, "fused-kfold" + (f"+{extra_detector}" if extra_detector else ""),
                                   split, span_rows=split_rows)
        per_split[split] = {"run": str(out / split), "n_turns": int(preds["id"].nunique()),
                            "n_calls": int(table.loc[rows, "conversation"].nunique())}
        print(format_table(metrics))
    y, w = table["label"].to_numpy().astype(int), table["weight"].to_numpy(dtype=np.float64)
    metrics = {"folds": folds, "splits": per_split, "extra_detector": extra_detector,
               "oof_nll": weighted_nll(logit(p), y, w),
               "n_queries": int(len(table)), "n_calls": int(table["conversation"].nunique()),
               "wall_s": {"branches": t_branches, "total": time.time() - t0}}
    rf.write_split_ids({s: sorted(set(table.loc[table["split"] == s, "turn_id"])) for s in cfg.splits})
    rf.write_metrics(metrics)
    atomic_write_json(out / "fold_of_call.json", dict(sorted(zip(
        table["conversation"], conversation_folds(table["conversation"].to_numpy(), cfg.k, cfg.seed).tolist()))))
    print(f"k-fold fusion ({cfg.k} call folds, {metrics['n_calls']} calls): out-of-fold NLL {metrics['oof_nll']:.4f}; "
          f"run folders {', '.join(str(out / s) for s in cfg.splits)}")
    return metrics
