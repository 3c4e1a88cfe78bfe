"""Every call of a real-call corpus scored by a turn model that never trained on it: the parts of the shipped
recipe fitted on that corpus, retrained k-fold by call.

The shipped turn model trains on GetGoing's train calls (the lexical branch on their transcripts, the fusion on
their branch logits, the acoustic branch on their audio), so only the dev and test calls (about 40 of the 230
holds) can measure it. Here the train calls are dealt into `k` folds (`fit.conversation_folds`); for fold j

1. a copy of the dataset with fold j's train calls relabelled split "heldout" (no training step reads that split;
   dev stays the selection set, test is untouched);
2. the lexical branch retrained with the shipped recipe (`LEXICAL_RECIPE`, the Makefile's v2 target) on it;
3. the fusion refitted with the shipped recipe (`vad-turn train-fusion --extra-datasets ami <copy>`) on the new
   lexical branch;
4. fold j's calls scored at every grid point with fold j's branches and fusion.

The dev and test calls are scored by the shipped model (`dev_test_tables`: the branch tables `vad-turn
kfold-fusion` wrote, or computed here). By default the acoustic branch is NOT retrained: on train calls it is the
shipped one, which trained on them (target 0.5 x label + 0.5 x Smart Turn); `metrics.json` reports its AUC on
train calls against dev + test calls, so the size of that in-sample advantage is stated, not assumed. With
`--acoustic` it is retrained per fold too, before the fusion, with the shipped v2 recipe (`ACOUSTIC_RECIPE`, the
Makefile's target of vad_turn/models/acoustic) on the fold's copy, so no branch has trained on the call it
scores. Its distillation teacher (Smart Turn, ~0.05-0.3 s per query) is read from `--teacher-runs`: finished
`vad-turn evaluate --detector smart-turn` runs over the corpus (`TeacherCache.add_from_run`); queries they lack
are computed.

The result is three `vad-turn evaluate`-style run folders over every call (split "none"): `fused`, `acoustic`
and `lexical` (the lexical branch's p where a word is visible, 0.5 before), for `benchmarks/paired_operating_points.py`.
Steps are resumable (each fold's outputs are kept), and `folds` runs a subset (e.g. two processes on two cores).

    vad-turn crossfit-calls --dataset runs/gg-full/getgoing --out runs/crossfit-gg \\
        --dev-test-tables runs/kfold-fusion/branches-dev.parquet runs/kfold-fusion/branches-test.parquet
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.config import default_built_root
from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR, SHIPPED_TURN_DIR
from vad_turn.core.runs import RunFolder, atomic_dir, atomic_path, atomic_write_json

from .fit import conversation_folds

HELDOUT = "heldout"
DEV_TEST_FUSION = "dev-test-fusion.json"  # the shipped fusion.json that scored the dev and test calls, as it was
# the shipped lexical v2 recipe (Makefile, target of vad_turn/models/lexical), the GetGoing dataset swapped per fold
LEXICAL_RECIPE = dict(max_turns=20000, agent_text_turns=30000, agent_text_filler_rate=0.3, extra_repeat=3, epochs=4)
# the shipped acoustic v2 recipe (Makefile, target of vad_turn/models/acoustic): these sets + the fold's train calls
ACOUSTIC_OTHER_SETS = ("switchboard-rendered:train", "ami:train")
ACOUSTIC_RECIPE = dict(teacher="smart-turn", teacher_weight=0.5, real_repeat=2, select_metric="val_auc_same_silence",
                       select_mode="max", epochs=8)


@dataclass(frozen=True)
class CrossFitConfig:
    dataset: Path | None = field(default=None, metadata={"help": "real-call turn dataset (train/dev/test, `conversation`)"})
    k: int = field(default=5, metadata={"help": "folds of the train calls"})
    folds: tuple[int, ...] = field(default=(), metadata={"help": "run only these folds (default: all), then stop"})
    seed: int = field(default=0, metadata={"help": "seed of the fold assignment"})
    lexical_dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                                  metadata={"help": "the lexical recipe's main dataset"})
    fusion_dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard-rendered",
                                 metadata={"help": "the fusion recipe's rendered dataset (train + selection)"})
    fusion_extra: tuple[Path, ...] = field(default_factory=lambda: (default_built_root() / "ami",), metadata={
        "help": "the fusion recipe's other real-audio datasets (the fold's copy of `dataset` is added)"})
    lexical_max_turns: int | None = field(default=LEXICAL_RECIPE["max_turns"], metadata={
        "help": "Switchboard train turns of the lexical recipe (none: all 51,987, the v3b candidate)"})
    acoustic: bool = field(default=False, metadata={
        "help": "retrain the acoustic branch per fold too (ACOUSTIC_RECIPE); default: the shipped one on every call"})
    teacher_runs: tuple[Path, ...] = field(default=(), metadata={
        "help": "with --acoustic: `vad-turn evaluate --detector smart-turn` runs over the dataset whose answers "
                "seed each fold's teacher cache"})
    acoustic_sets: tuple[str, ...] = field(default=ACOUSTIC_OTHER_SETS, metadata={
        "help": "with --acoustic: the acoustic training sets (dataset:split) besides the fold's GetGoing train calls; "
                "the default is the shipped recipe's, others make a candidate recipe (e.g. whole-turn renders)"})
    threads: int = field(default=1, metadata={"help": "torch threads of the acoustic training"})
    shipped_model: Path = field(default=SHIPPED_TURN_DIR, metadata={"help": "the turn model that scores dev and test"})
    dev_test_tables: tuple[Path, ...] = field(default=(), metadata={
        "help": "branch tables of the dev and test calls by the shipped branches (kfold-fusion's branches-*.parquet)"})
    out: Path | None = field(default=None, metadata={"help": "run folder"})

    def __post_init__(self) -> None:
        if self.dataset is None or self.out is None:
            raise ValueError("--dataset and --out are required")
        if self.k < 2:
            raise ValueError(f"--k must be >= 2, got {self.k}")
        if self.lexical_max_turns is not None and self.lexical_max_turns < 1:
            raise ValueError(f"--lexical-max-turns must be >= 1 (or none: all), got {self.lexical_max_turns}")
        if (self.teacher_runs or tuple(self.acoustic_sets) != ACOUSTIC_OTHER_SETS) and not self.acoustic:
            raise ValueError("--teacher-runs and --acoustic-sets only serve --acoustic (the acoustic branch "
                             "retrained per fold)")
        bad = [f for f in self.folds if not 0 <= f < self.k]
        if bad:
            raise ValueError(f"--folds {bad} are outside 0..{self.k - 1}")


def train_calls(ds) -> np.ndarray:
    """The distinct conversation ids of the train split, sorted."""
    return np.array(sorted({c for c, s in zip(ds["conversation"], ds["split"]) if s == "train"}))


def fold_of_calls(calls: np.ndarray, k: int, seed: int) -> dict[str, int]:
    return dict(zip(calls.tolist(), conversation_folds(calls, k, seed).tolist()))


def write_fold_dataset(ds, held_calls: set[str], path: Path) -> Path:
    """`ds` with the train rows of `held_calls` relabelled split HELDOUT, saved to `path`/data (atomically)."""
    if path.exists():
        return path
    relabelled = ds.map(lambda s, c: {"split": HELDOUT if (s == "train" and c in held_calls) else s},
                        input_columns=["split", "conversation"], desc=f"fold copy {path.name}")
    with atomic_dir(path) as tmp:
        relabelled.save_to_disk(str(tmp / "data"))
        atomic_write_json(tmp / "build_info.json", {"derived_from": "k-fold copy", "heldout_calls": sorted(held_calls)})
    return path


def _train_acoustic_fold(cfg: CrossFitConfig, fold_ds: Path, fold_dir: Path) -> Path:
    """The acoustic model folder of fold j (ACOUSTIC_RECIPE on the fold's copy), trained unless already there."""
    from vad_turn.acoustic.teacher import TeacherCache
    from vad_turn.acoustic.train import AcousticTrainConfig
    from vad_turn.acoustic.train import run as train_acoustic

    model = fold_dir / "acoustic" / "model"
    if (model / "model.onnx").exists():
        return model
    spec, cache_dir = f"{fold_ds.resolve()}:train", fold_dir / "acoustic" / "teacher-cache"
    cache = TeacherCache(ACOUSTIC_RECIPE["teacher"], spec, cache_dir)
    for run in cfg.teacher_runs:
        print(f"teacher cache {cache.path.name}: {cache.add_from_run(Path(run))} answers from {run}")
    train_acoustic(AcousticTrainConfig(train_sets=(*cfg.acoustic_sets, spec),
                                       teacher_sources=(spec,),
                                       val_set=f"{fold_ds.resolve()}:dev", teacher_cache_dir=cache_dir,
                                       threads=cfg.threads, out=fold_dir / "acoustic" / "run", model_out=model,
                                       export_int8=False, **ACOUSTIC_RECIPE))  # scored in fp32, never shipped
    return model


def _train_fold(cfg: CrossFitConfig, fold_ds: Path, fold_dir: Path) -> tuple[Path, Path, Path]:
    """(lexical model folder, acoustic model folder, turn model folder) of fold j, trained unless already there."""
    from vad_turn.lexical.config import LexicalConfig
    from vad_turn.lexical.train import run as train_lexical

    from .train import FusionConfig
    from .train import run as train_fusion

    lex_model = fold_dir / "lexical" / "model"
    if not (lex_model / "lexical_head.onnx").exists():
        train_lexical(LexicalConfig(dataset=Path(cfg.lexical_dataset), extra_datasets=(str(fold_ds.resolve()),),
                                    out=fold_dir / "lexical", **{**LEXICAL_RECIPE, "max_turns": cfg.lexical_max_turns}))
    ac_model = _train_acoustic_fold(cfg, fold_ds, fold_dir) if cfg.acoustic else SHIPPED_ACOUSTIC_DIR
    turn_model = fold_dir / "fusion" / "model"
    if not (turn_model / "fusion.json").exists():
        train_fusion(FusionConfig(dataset=Path(cfg.fusion_dataset), extra_datasets=(*map(Path, cfg.fusion_extra), fold_ds),
                                  lexical_dir=lex_model, acoustic_dir=ac_model, out=fold_dir / "fusion"))
    return lex_model, ac_model, turn_model


def _score(ds_path: Path, split: str, lexical_dir: Path, turn_model: Path, path: Path,
           table: pd.DataFrame | None = None, acoustic_dir: Path = SHIPPED_ACOUSTIC_DIR) -> pd.DataFrame:
    """Branch table of `split` (every grid point) with p_fused / p_lexical / p_acoustic from `turn_model`'s
    weights and temperature, cached at `path`."""
    from vad_turn.data.dataset import load_turns

    from .runtime import Branches, fused_logits, sigmoid
    from .train import _acoustic_window_s, branch_table

    if path.exists():
        return pd.read_parquet(path)
    meta = json.loads((Path(turn_model) / "fusion.json").read_text())
    if table is None:
        branches = Branches(lexical_dir, Path(acoustic_dir) / "model.onnx", _acoustic_window_s(acoustic_dir))
        table = branch_table(load_turns(ds_path), split, branches, max_turns=None, points_per_span=None, seed=0,
                             desc=f"{Path(path).stem}", transcript_lag_s=float(meta["transcript_lag_s"]))
    z = fused_logits(table, np.asarray(meta["weights"], dtype=np.float64)) / float(meta["temperature"])
    out = table.assign(p_fused=sigmoid(z), p_acoustic=sigmoid(table["ac_logit"]),
                       p_lexical=np.where(table["has_lex"], sigmoid(table["lex_logit"]), 0.5))
    with atomic_path(path) as tmp:
        out.to_parquet(tmp, index=False)
    return out


def run(cfg: CrossFitConfig) -> dict:
    """Train and score the folds (all, or `cfg.folds`), then, once every fold is scored, write the run folders."""
    from vad_turn.data.dataset import load_turns

    t0 = time.time()
    out = Path(cfg.out)
    RunFolder(out, cfg)  # config.json and commit.txt first: the fold caches below resume under it
    ds = load_turns(cfg.dataset)
    if "conversation" not in ds.column_names:
        raise ValueError(f"{cfg.dataset}: no `conversation` column, so calls cannot be dealt into folds")
    folds = fold_of_calls(train_calls(ds), cfg.k, cfg.seed)
    atomic_write_json(out / "fold_of_call.json", folds)
    for j in (cfg.folds or range(cfg.k)):
        fold_dir = out / f"fold{j}"
        held = {c for c, f in folds.items() if f == j}
        fold_ds = write_fold_dataset(ds, held, fold_dir / "getgoing")
        lex_model, ac_model, turn_model = _train_fold(cfg, fold_ds, fold_dir)
        _score(fold_ds, HELDOUT, lex_model, turn_model, fold_dir / "heldout-scored.parquet", acoustic_dir=ac_model)
        print(f"fold {j}: {len(held)} calls scored ({time.time() - t0:.0f} s)")
    scored = [out / f"fold{j}" / "heldout-scored.parquet" for j in range(cfg.k)]
    if not all(p.exists() for p in scored):
        print(f"folds still to run: {[j for j, p in enumerate(scored) if not p.exists()]}")
        return {}
    return assemble(cfg, ds, [pd.read_parquet(p) for p in scored])


def assemble(cfg: CrossFitConfig, ds, fold_tables: list[pd.DataFrame]) -> dict:
    """Write the `fused`, `acoustic` and `lexical` run folders over every call (train calls from their folds,
    dev and test calls by the shipped model) and the in-sample check of the acoustic branch."""
    from vad_turn.harness.evaluate import EvalConfig, write_scored_run
    from vad_turn.harness.metrics import roc_auc

    from .kfold import predictions_frame

    out = Path(cfg.out)
    shipped_lex = Path(json.loads((Path(cfg.shipped_model) / "fusion.json").read_text())["lexical_dir"])
    shipped_lex = shipped_lex if shipped_lex.is_absolute() else (Path(cfg.shipped_model) / shipped_lex).resolve()
    dev_test = []
    for split in ("dev", "test"):
        # a given table is the split's whose file name ends with it (kfold-fusion's branches-<split>.parquet)
        table = next((pd.read_parquet(p) for p in cfg.dev_test_tables if Path(p).stem.endswith(split)), None)
        dev_test.append(_score(Path(cfg.dataset), split, shipped_lex, Path(cfg.shipped_model),
                               out / f"{split}-shipped-scored.parquet", table).assign(split=split))
    # the fusion that scored dev and test, kept: the shipped model may be re-shipped later
    atomic_write_json(out / DEV_TEST_FUSION, json.loads((Path(cfg.shipped_model) / "fusion.json").read_text()))
    train = pd.concat(fold_tables, ignore_index=True).assign(split="train")
    table = pd.concat([train, *dev_test], ignore_index=True)
    n_rows = len(ds)
    if table["turn_id"].nunique() != n_rows:
        raise ValueError(f"scored {table['turn_id'].nunique()} turns of {n_rows}: a fold or split is missing")
    y = table["label"].to_numpy().astype(int)
    in_train = (table["split"] == "train").to_numpy()
    insample = {"acoustic_auc_train_calls": roc_auc(y[in_train], table["ac_logit"].to_numpy()[in_train]),
                "acoustic_auc_dev_test_calls": roc_auc(y[~in_train], table["ac_logit"].to_numpy()[~in_train]),
                "lexical_auc_train_calls_crossfitted": roc_auc(y[in_train & table["has_lex"].to_numpy()],
                                                               table["lex_logit"].to_numpy()[in_train & table["has_lex"].to_numpy()]),
                "lexical_auc_dev_test_calls": roc_auc(y[~in_train & table["has_lex"].to_numpy()],
                                                      table["lex_logit"].to_numpy()[~in_train & table["has_lex"].to_numpy()])}
    runs = {}
    for name, col in (("fused", "p_fused"), ("acoustic", "p_acoustic"), ("lexical", "p_lexical")):
        ecfg = EvalConfig(dataset=Path(cfg.dataset), split="none", detector=name, detector_opts=(f"crossfit={cfg.k}",),
                          out=out / name)
        write_scored_run(out / name, ecfg, predictions_frame(table, table[col].to_numpy()), f"{name}-crossfit", "all",
                         span_rows=ds.select_columns(["silence_spans"]))
        runs[name] = str(out / name)
    metrics = {"runs": runs, "acoustic_crossfitted": bool(cfg.acoustic), "in_sample_check": insample,
               "n_turns": int(table["turn_id"].nunique()),
               "n_calls": int(table["conversation"].nunique()),
               "turns_by_split": table.groupby("split")["turn_id"].nunique().to_dict()}
    RunFolder(out).write_metrics(metrics)
    print(json.dumps(metrics, indent=1))
    return metrics


# ----------------------------------------------------------------------------- a fusion fitted on real calls


@dataclass(frozen=True)
class RefitConfig:
    crossfit: Path | None = field(default=None, metadata={"help": "a finished `vad-turn crossfit-calls` run folder"})
    k: int = field(default=5, metadata={"help": "call folds for the train calls' out-of-fold predictions"})
    inner_k: int = field(default=5, metadata={"help": "call folds inside each fit (C and temperature)"})
    c_grid: tuple[float, ...] = field(default=(0.01, 0.1, 1.0, 10.0), metadata={"help": "inverse L2 strengths tried"})
    standardize: bool = field(default=False, metadata={"help": "L2 penalty on z-scored features"})
    span_weights: bool = field(default=False, metadata={
        "help": "weight each silence span 1 in all (default: each grid point 1, as the harness counts)"})
    seed: int = field(default=0, metadata={"help": "seed of the folds"})
    out: Path | None = field(default=None, metadata={"help": "run folder"})

    def __post_init__(self) -> None:
        if self.crossfit is None or self.out is None:
            raise ValueError("--crossfit and --out are required")
        if self.k < 2 or self.inner_k < 2:
            raise ValueError(f"--k and --inner-k must be >= 2, got {self.k}, {self.inner_k}")


def span_balanced(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with weight = 1 / (grid points of its span): every silence span (a hold or an end) weighs 1."""
    n = table.groupby(["turn_id", "span_index"])["label"].transform("size").to_numpy(dtype=np.float64)
    return table.assign(weight=1.0 / n)


def refit(cfg: RefitConfig) -> dict:
    """Fit the fusion on the train calls of a crossfit run (lexical logits out of fold, i.e. as on unseen
    calls; acoustic logits the shipped branch's) and write run folders: `train-oof` (each train call scored by
    a fusion fitted k-fold without it), `dev` and `test` (the fusion fitted on every train call, on the shipped
    branches' logits), `all` (the three together, every call once: the crossfit run's spans) and `model` (a turn
    model folder over the shipped branches)."""
    from vad_turn.harness.evaluate import EvalConfig, write_scored_run

    from .fit import fit_cross_validated, stacked_logits
    from .kfold import KFoldFusionConfig, cross_fit, predictions_frame
    from .runtime import FUSION_FEATURES, MODES, sigmoid
    from .train import save_turn_model

    src, out = Path(cfg.crossfit), Path(cfg.out)
    ccfg = json.loads((src / "config.json").read_text())
    k_src = int(ccfg["k"])
    paths = [src / f"fold{j}" / "heldout-scored.parquet" for j in range(k_src)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise ValueError(f"{src}: folds not scored yet: {missing}")
    train = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    held = {s: pd.read_parquet(src / f"{s}-shipped-scored.parquet") for s in ("dev", "test")}
    if cfg.span_weights:
        train = span_balanced(train)
    rf = RunFolder(out, cfg)
    kcfg = KFoldFusionConfig(dataset=Path(ccfg["dataset"]), k=cfg.k, inner_k=cfg.inner_k, c_grid=cfg.c_grid,
                             standardize=cfg.standardize, seed=cfg.seed, out=out)
    p_oof, folds = cross_fit(train, kcfg)
    fit = fit_cross_validated(train, cfg.c_grid, cfg.inner_k, cfg.seed, standardize=cfg.standardize)
    scored = {"train-oof": (train, p_oof)}
    for s, t in held.items():
        scored[s] = (t, sigmoid(stacked_logits(t, fit["weights"]) / fit["temperature"]))
    # every call once: train calls out of fold, dev and test by the full fit (the crossfit run's split "none")
    scored["all"] = (pd.concat([t for t, _ in scored.values()], ignore_index=True),
                     np.concatenate([p for _, p in scored.values()]))
    runs = {}
    for name, (t, p) in scored.items():
        split = {"train-oof": "train", "all": "none"}.get(name, name)
        ecfg = EvalConfig(dataset=Path(ccfg["dataset"]), split=split, detector="fused",
                          detector_opts=(f"refit={out.name}",), out=out / name)
        write_scored_run(out / name, ecfg, predictions_frame(t, p), "fused-real", split)
        runs[name] = str(out / name)
    shipped = json.loads((SHIPPED_TURN_DIR / "fusion.json").read_text())
    metrics = {"fit_on": f"{src}: train calls, lexical out of fold", "selection": fit["selection"], "cv": fit["cv"],
               "temperature": fit["temperature"], "folds": folds, "runs": runs,
               "n_train_turns": int(train["turn_id"].nunique()), "n_train_calls": int(train["conversation"].nunique())}
    model = {"features": list(FUSION_FEATURES), "modes": list(MODES), "weights": np.asarray(fit["weights"]).tolist(),
             "temperature": float(fit["temperature"]), "threshold": shipped["threshold"],
             "acoustic_window_s": shipped["acoustic_window_s"], "transcript_lag_s": shipped["transcript_lag_s"],
             "train": {"run": str(out), "metrics": {k: v for k, v in metrics.items() if k != "folds"}}}
    save_turn_model(out / "model", model, SHIPPED_TURN_DIR / shipped["lexical_dir"],
                    (SHIPPED_TURN_DIR / shipped["acoustic_onnx"]).parent)
    rf.write_metrics(metrics)
    print(json.dumps({k: v for k, v in metrics.items() if k != "folds"}, indent=1))
    return metrics
