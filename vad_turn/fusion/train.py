"""Fusion of the lexical branch, the acoustic branch and timing into one p_eot; its detector "fused".

The fused model is deliberately small: one logistic regression per available-input mode
(`vad_turn.fusion.runtime.MODES`: both branches / lexical only / acoustic only / timing only) over
`vad_turn.fusion.runtime.FUSION_FEATURES` = [lexical logit, acoustic logit, silence so far (s/5 and
ln(s + 0.05)), logit x silence interactions, ln(1 + visible words)], then one calibration
temperature. The branches stay frozen (each still usable alone as "lexical" / "acoustic").

Training examples are the harness's own causal queries (`vad_turn.harness.examples.turn_examples`):
switchboard-rendered train (rendered audio + the real words and timing) and AMI train (real
audio, no words: the lexical input is masked). Every example also trains the modes whose inputs
are a subset of what it has (modality dropout), so the text-only fallback (rows without audio)
and the audio-only mode are trained on the same turns. The regularisation C of each mode is
selected, and the temperature fitted, on switchboard-rendered dev (clean condition) on every
grid point the harness scores; training keeps `points_per_span` points per span, each weighted
by (grid points of its span) / (points kept), so a probability refers to a random 100 ms moment of
silence as the harness sees them (not to a random span).

    vad-turn train-fusion --model-out vad_turn/models/turn
    vad-turn evaluate --dataset data/built/switchboard-rendered --split dev --detector fused
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from vad_turn.core.config import default_built_root, default_runs_root
from vad_turn.core.model_files import CHECKSUMS_FILE, SHIPPED_ACOUSTIC_DIR, SHIPPED_LEXICAL_DIR, write_checksums
from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_json
from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S
from vad_turn.harness.calibration import expected_calibration_error, fit_temperature, nll, reliability_diagram
from vad_turn.harness.metrics import roc_auc

from .detector import FusedDetector
from .fit import fit_cross_validated, fit_mode, mode_design
from .runtime import DEFAULT_TURN_MODEL_DIR, FUSION_FEATURES, MODES, Branches, fused_logits, sigmoid



@dataclass(frozen=True)
class FusionConfig:
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard-rendered",
                          metadata={"help": "rendered-audio turn dataset (train + selection splits)"})
    extra_datasets: tuple[Path, ...] = field(default_factory=lambda: (default_built_root() / "ami",), metadata={
        "help": "more datasets whose train split is added (real audio: AMI, GetGoing; none given: skip)"})
    train_split: str = field(default="train", metadata={"help": "training split of both datasets"})
    select_split: str = field(default="dev", metadata={"help": "selection + calibration split of `dataset`"})
    select_condition: str = field(default="clean", metadata={"help": "audio_condition of the selection rows ('all': every one)"})
    max_train_turns: int | None = field(default=None, metadata={"help": "seeded sample of train turns (none: all)"})
    points_per_span: int = field(default=3, metadata={"help": "grid points kept per silence span"})
    c_grid: tuple[float, ...] = field(default=(0.01, 0.1, 1.0, 10.0), metadata={"help": "inverse L2 strengths tried"})
    lexical_dir: Path = field(default=SHIPPED_LEXICAL_DIR, metadata={"help": "lexical model folder"})
    acoustic_dir: Path = field(default=SHIPPED_ACOUSTIC_DIR, metadata={"help": "acoustic model folder (model.onnx)"})
    threshold: float = field(default=0.5, metadata={"help": "the decision threshold recorded with the model"})
    seed: int = field(default=0, metadata={"help": "seed of the turn sample and grid subsample"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/fusion-<time>)"})
    fit_dataset: Path | None = field(default=None, metadata={
        "help": "held-aside rendered dataset the branches never trained on (its fit_split, every audio condition): "
                "fit the fusion there, choose C and T by conversation-grouped CV, and keep the selection split for "
                "evaluation only ('none': fit on train_split of dataset + extra_datasets, select on select_split)"})
    fit_split: str = field(default="dev", metadata={"help": "split of fit_dataset to fit on"})
    cv_folds: int = field(default=5, metadata={"help": "conversation folds for C and T when fit_dataset is given"})
    standardize: bool = field(default=False, metadata={"help": "L2 penalty on z-scored features (weights still raw)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={"help": "words are visible this long after they end "
                                                                   "(the lag of the queries the fusion is fitted on)"})
    model_out: Path | None = field(default=None, metadata={"help": "also write the model folder here"})


# ----------------------------------------------------------------------------- examples -> branch logits

# the harness prediction columns a branch table carries besides its own (id = turn_id, silence_dur = silence_s)
HARNESS_KEY_COLUMNS = ("span_index", "timestamp", "span_dur", "pause_context", "unit_punct", "source",
                       "backchannel_context", "n_words")


def branch_table(ds, split: str, branches: Branches, *, max_turns: int | None, points_per_span: int | None,
                 seed: int, condition: str | None = None, desc: str = "",
                 transcript_lag_s: float = DEFAULT_TRANSCRIPT_LAG_S) -> pd.DataFrame:
    """One row per harness query of `split` (optionally one audio_condition) with the frozen branches'
    logits: turn_id, conversation ("" when the data has none), silence_s, label, n_seen,
    audio_condition, weight, lex_logit, ac_logit, has_lex, has_ac, and the harness's keys and tags
    (`HARNESS_KEY_COLUMNS`: span_index, timestamp, span_dur, ...). Queries are the harness's with
    words visible `transcript_lag_s` after they end. Turns are scored a few at a time so their
    decoded audio is freed as we go."""
    from vad_turn.harness.evaluate import EvalConfig, n_grid_points, select_turns
    from vad_turn.harness.examples import turn_examples

    if condition is not None and "audio_condition" in ds.column_names:
        keep = [i for i, c in enumerate(ds["audio_condition"]) if c == condition]
        ds = ds.select(keep)
    cfg = dataclasses.replace(EvalConfig(), split=split, max_turns=max_turns, seed=seed,
                              transcript_lag_s=float(transcript_lag_s))
    rows, _ = select_turns(ds, cfg, needs_audio=True)
    frames, items, metas = [], [], []

    def flush():
        if not items:
            return
        b = branches.logits(items)
        m = {k: np.concatenate([x[k] for x in metas]) for k in metas[0]}
        frames.append(pd.DataFrame({**m, **{k: b[k] for k in ("lex_logit", "ac_logit", "has_lex", "has_ac")}}))
        items.clear()
        metas.clear()

    for row in tqdm(rows, desc=f"branches {desc or split}", unit="turn", mininterval=2.0):
        queries, meta = turn_examples(row, cfg, needs_audio=True, needs_words=True,
                                      points_per_span=points_per_span, seed=seed)
        items.extend((q.audio, q.words, q.messages, q.silence_s) for q in queries)
        metas.append({"turn_id": meta["id"], "conversation": np.full(len(queries), str(row.get("conversation") or "")),
                      "silence_s": meta["silence_dur"], "label": meta["label"],
                      "n_seen": meta["n_seen"], "audio_condition": meta["audio_condition"].astype(str),
                      "weight": _grid_weights(meta, cfg, n_grid_points),
                      # the harness's own keys and tags, so a table of every grid point is also a predictions frame
                      **{c: meta[c] for c in HARNESS_KEY_COLUMNS}})
        if len(items) >= 512:
            flush()
    flush()
    if not frames:
        raise ValueError(f"no queries in split {split!r} of {desc or 'the dataset'}")
    return pd.concat(frames, ignore_index=True)


def _grid_weights(meta: dict, cfg, n_grid_points) -> np.ndarray:
    """Per kept query: (grid points of its span) / (kept points of its span), so the weighted examples
    stand for every 100 ms moment of silence the harness scores (1 when nothing was subsampled)."""
    w = np.ones(meta["span_index"].size)
    for s in np.unique(meta["span_index"]):
        idx = meta["span_index"] == s
        is_end = bool(meta["label"][idx][0])
        w[idx] = n_grid_points(float(meta["span_dur"][idx][0]), is_end, cfg) / idx.sum()
    return w










# ----------------------------------------------------------------------------- training entry


def _cached(path: Path, make) -> pd.DataFrame:
    """Read `path` if a previous (interrupted) run wrote it, else make and write it atomically."""
    if path.exists():
        return pd.read_parquet(path)
    df = make()
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return df


def run(cfg: FusionConfig) -> dict:
    """Score the branches, fit the per-mode regressions, choose C, fit the temperature, write the run
    folder (and `cfg.model_out`). Returns the metrics.

    With `cfg.fit_dataset`: fit on its `fit_split` (held-aside turns, every audio condition), C and T by
    conversation-grouped CV there; the selection split is only evaluated (its conversations must not
    occur in the fit set). Without: fit on train turns, C and T on the selection split (the v2 recipe)."""
    from vad_turn.data.dataset import load_turns

    t0 = time.time()
    out = Path(cfg.out or default_runs_root() / f"fusion-{time.strftime('%Y%m%d-%H%M%S')}")
    rf = RunFolder(out, cfg)
    window_s = _acoustic_window_s(cfg.acoustic_dir)
    branches = Branches(cfg.lexical_dir, Path(cfg.acoustic_dir) / "model.onnx", window_s)
    branches.lexical.check_transcript_lag(cfg.transcript_lag_s)  # warns when the lexical branch had another lag
    ds = load_turns(cfg.dataset)
    kw = dict(points_per_span=cfg.points_per_span, seed=cfg.seed, transcript_lag_s=cfg.transcript_lag_s)
    cond = None if cfg.select_condition == "all" else cfg.select_condition
    sel_name = f"{Path(cfg.dataset).name}:{cfg.select_split}:{cfg.select_condition}"
    sel = _cached(out / "branches-select.parquet", lambda: branch_table(  # every grid point, as the harness scores
        ds, cfg.select_split, branches, max_turns=None, condition=cond, points_per_span=None, seed=cfg.seed,
        desc=sel_name, transcript_lag_s=cfg.transcript_lag_s))
    if cfg.fit_dataset is not None:
        fit_name = f"{cfg.fit_dataset}:{cfg.fit_split}:all"
        train = _cached(out / "branches-fit.parquet", lambda: branch_table(
            load_turns(cfg.fit_dataset), cfg.fit_split, branches, max_turns=cfg.max_train_turns, desc=fit_name, **kw))
        shared = (set(train["conversation"]) & set(sel["conversation"])) - {""}
        if shared:
            raise ValueError(f"{cfg.fit_dataset} shares {len(shared)} conversations with {sel_name} "
                             f"(e.g. {sorted(shared)[:3]}): the fit set must be held aside from the evaluation set")
    else:
        fit_name = f"{Path(cfg.dataset).name}:{cfg.train_split}"
        parts = [_cached(out / "branches-train.parquet", lambda: branch_table(
            ds, cfg.train_split, branches, max_turns=cfg.max_train_turns, desc=f"{Path(cfg.dataset).name}:train", **kw))]
        for xi, extra_path in enumerate(cfg.extra_datasets):
            name = Path(extra_path).name
            parts.append(_cached(out / f"branches-train-extra{xi}-{name}.parquet",
                                 lambda p=extra_path, n=name: branch_table(load_turns(p), cfg.train_split, branches,
                                                                           max_turns=None, desc=f"{n}:train", **kw)))
        train = pd.concat(parts, ignore_index=True)
    t_data = time.time() - t0

    y_sel = sel["label"].to_numpy().astype(int)
    if cfg.fit_dataset is not None:

        cv = fit_cross_validated(train, cfg.c_grid, cfg.cv_folds, cfg.seed, standardize=cfg.standardize)
        weights, selection, temperature = cv["weights"], cv["selection"], cv["temperature"]
        fitted_on = f"{fit_name} (out-of-fold logits, {cfg.cv_folds} conversation folds)"
        extra_metrics = {"cv": cv["cv"]}
    else:
        weights, selection = _select_on(train, sel, cfg.c_grid, cfg.standardize)
        temperature = fit_temperature(fused_logits(sel, weights), y_sel)
        fitted_on = f"{sel_name} (natural modes)"
        extra_metrics = {}
    z_sel = fused_logits(sel, weights)
    p_before, p_after = sigmoid(z_sel), sigmoid(z_sel / temperature)
    cal = {"fitted_on": fitted_on, "measured_on": sel_name, "n": int(y_sel.size), "temperature": temperature,
           "nll_before": nll(z_sel, y_sel), "nll_after": nll(z_sel, y_sel, temperature),
           "ece_before": expected_calibration_error(p_before, y_sel),
           "ece_after": expected_calibration_error(p_after, y_sel)}
    reliability_diagram({"fused (T=1)": (p_before, y_sel), f"fused (T={temperature:.2f})": (p_after, y_sel)},
                        out / "reliability.png", title=f"fused p_eot on {sel_name}")
    ab = {"lexical": roc_auc(y_sel[sel["has_lex"].to_numpy()], sigmoid(sel["lex_logit"])[sel["has_lex"]]),
          "acoustic": roc_auc(y_sel[sel["has_ac"].to_numpy()], sigmoid(sel["ac_logit"])[sel["has_ac"]]),
          "fused": roc_auc(y_sel, p_after)}
    both = (sel["has_lex"] & sel["has_ac"]).to_numpy()  # the same rows for all three
    ab_both = {"lexical": roc_auc(y_sel[both], sel["lex_logit"].to_numpy()[both]),
               "acoustic": roc_auc(y_sel[both], sel["ac_logit"].to_numpy()[both]),
               "fused": roc_auc(y_sel[both], z_sel[both])}
    metrics = {"fit_on": fit_name, "selection": selection, "calibration": cal, "select_auc_by_branch": ab,
               "select_auc_rows_with_both": ab_both, **extra_metrics,
               "n_train": int(len(train)), "n_train_turns": int(train["turn_id"].nunique()),
               "n_select": int(len(sel)), "n_select_turns": int(sel["turn_id"].nunique()),
               "transcript_lag_s": cfg.transcript_lag_s, "wall_s": {"branches": t_data, "total": time.time() - t0}}
    rf.write_split_ids({"train": sorted(set(train["turn_id"])), "select": sorted(set(sel["turn_id"])),
                        "train_conversations": sorted(set(train["conversation"]) - {""}),
                        "select_conversations": sorted(set(sel["conversation"]) - {""})})
    rf.write_metrics(metrics)
    model = {"features": list(FUSION_FEATURES), "modes": list(MODES), "weights": weights.tolist(),
             "temperature": temperature, "threshold": cfg.threshold, "acoustic_window_s": window_s,
             "transcript_lag_s": cfg.transcript_lag_s, "train": {"run": str(out), "metrics": metrics}}
    save_turn_model(out / "model", model, cfg.lexical_dir, cfg.acoustic_dir)
    if cfg.model_out is not None:
        save_turn_model(Path(cfg.model_out), model, cfg.lexical_dir, cfg.acoustic_dir)
        (Path(cfg.model_out) / "reliability.png").write_bytes((out / "reliability.png").read_bytes())
    print(f"fusion: {sel_name} AUC lexical {ab['lexical']:.3f} acoustic {ab['acoustic']:.3f} fused {ab['fused']:.3f}; "
          f"T={temperature:.3f} ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}; run folder {out}")
    return metrics


def _select_on(train: pd.DataFrame, sel: pd.DataFrame, c_grid, standardize: bool = False) -> tuple[np.ndarray, dict]:
    """Per mode: fit on `train` for every C, keep the C with the lowest log loss on `sel`."""
    weights = np.zeros((len(MODES), len(FUSION_FEATURES)))
    selection = {}
    for mi, mode in enumerate(MODES):
        Xt, yt, wt = mode_design(train, mode)
        Xs, ys, _ = mode_design(sel, mode)
        tried = {}
        for c in c_grid:
            w = fit_mode(Xt, yt, mode, c, wt, standardize)
            tried[c] = (nll(Xs @ w, ys), w)
        best = min(tried, key=lambda c: tried[c][0])
        weights[mi] = tried[best][1]
        selection[mode] = {"c": best, "select_nll": {str(c): v[0] for c, v in tried.items()},
                           "n_train": int(yt.size), "n_select": int(ys.size),
                           "select_auc": roc_auc(ys, Xs @ weights[mi])}
    return weights, selection


def _acoustic_window_s(acoustic_dir: Path) -> float:
    import json

    path = Path(acoustic_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no acoustic model config")
    return float(json.loads(path.read_text())["model"]["window_s"])


def save_turn_model(folder: Path, model: dict, lexical_dir: Path, acoustic_dir: Path) -> Path:
    """Write `fusion.json` into `folder`, referencing the branch models by paths relative to it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(Path(p).resolve(), folder.resolve())  # noqa: E731
    meta = {**model, "lexical_dir": rel(lexical_dir), "acoustic_onnx": rel(Path(acoustic_dir) / "model.onnx"),
            "acoustic_int8_onnx": rel(Path(acoustic_dir) / "model.int8.onnx")}
    atomic_write_json(folder / "fusion.json", meta)
    (folder / "fusion.json").chmod(0o644)
    if (folder / CHECKSUMS_FILE).exists():  # keep a verified folder's record current
        write_checksums(folder, ["fusion.json"])
    return folder


# ----------------------------------------------------------------------------- detector




# ----------------------------------------------------------------------------- shipped-model check

SUBSETS = {"audio": ("switchboard-rendered", "dev", "clean", 40), "text": ("switchboard", "val", None, 120)}
SUBSET_SEED = 7


def subset_metrics(model: str | Path = DEFAULT_TURN_MODEL_DIR, built_root: Path | None = None) -> dict:
    """Harness metrics of the fused model on fixed seeded subsets of the selection / val turns
    (SUBSETS: dataset, split, audio_condition, n turns; seed SUBSET_SEED): AUC and the
    fcr@lat<=0.6s / lat@fcr<=10% operating points with their VAD-only ratios. About a minute on 2 cores."""
    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.evaluate import EvalConfig, evaluate_detector

    root = Path(built_root or default_built_root())
    det = FusedDetector(model)
    out = {}
    for key, (name, split, condition, n) in SUBSETS.items():
        ds = load_turns(root / name)
        if condition is not None:
            ds = ds.select([i for i, c in enumerate(ds["audio_condition"]) if c == condition])
        cfg = EvalConfig(dataset=root / name, split=split, detector="fused", max_turns=n, seed=SUBSET_SEED)
        m = evaluate_detector(ds, det, cfg)["metrics"]
        ops = {o["name"]: o for o in m["operating_points"]}
        row = {"n_turns": m["counts"]["n_turns"], "n_points": m["counts"]["n_points"], "auc": m["diagnostics"]["auc"]}
        for op, key_ in (("fcr@lat<=0.6s", "false_cutoff_rate"), ("lat@fcr<=10%", "mean_latency_s")):
            row[op] = ops[op].get(key_)
            row[op + "_vad_only"] = ops[op]["vad_only"].get(key_)
            row[op + "_ratio"] = ops[op]["ratio_to_vad_only"]
        out[key] = row
    return out


def record_subset_metrics(model: str | Path = DEFAULT_TURN_MODEL_DIR) -> dict:
    """Compute `subset_metrics` and store them in the model's fusion.json under "subset_check"
    (what tests/test_shipped_model.py asserts)."""
    import json

    path = Path(model) / "fusion.json"
    meta = json.loads(path.read_text())
    meta["subset_check"] = {"subsets": {k: list(v) for k, v in SUBSETS.items()}, "seed": SUBSET_SEED,
                            "metrics": subset_metrics(model)}
    atomic_write_json(path, meta)
    path.chmod(0o644)
    if (path.parent / CHECKSUMS_FILE).exists():  # keep a verified folder's record current
        write_checksums(path.parent, ["fusion.json"])
    return meta["subset_check"]
