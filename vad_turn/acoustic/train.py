"""Train the acoustic end-of-turn model: harness examples -> augmented windows -> features -> `train.fit`.

Examples are the harness's own causal queries (`vad_turn.harness.examples.build_examples`: same grid,
hold filtering and audio prefix as evaluation), label 1 in the end-of-turn span, 0 in holds.
Each training window gets one seeded augmentation (random gain; 8 kHz telephone channel and/or
noise at a random SNR through `vad_turn.core.audio`), so the model sees the evaluation's "8k" and
"noisy" conditions without their turns. The front end has no weights, so features are computed
once per example (fp16 in memory) and the network trains on them; validation is the full query
grid of `val_set` (clean rendered Switchboard dev by default), scored with the harness metrics.

`vad-turn train-acoustic --epochs 6 --model-out vad_turn/models/acoustic` (architecture and front end: the
`--model.*` and `--model.features.*` options, e.g. `--model.features.window-s 2.0 --model.conv-channels 32`)
"""
from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from vad_turn.core.audio import add_noise, telephony_8k
from vad_turn.core.config import REPO_ROOT, default_built_root
from vad_turn.core.runs import atomic_write_json
from vad_turn.core.train import TrainConfig, default_train_out, fit
from vad_turn.harness.metrics import roc_auc, same_silence_auc

from .features import AcousticFrontEnd, window_audio
from .model import AcousticModelConfig, AcousticNet, save_model
from .teacher import TeacherCache, soft_target

_AUG_KINDS = ("clean", "8k", "noisy", "8k+noisy")


@dataclass(frozen=True)
class AcousticTrainConfig(TrainConfig):
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "folder of the built datasets"})
    train_sets: tuple[str, ...] = field(default=("switchboard-rendered:train", "ami:train"),
                                        metadata={"help": "dataset:split[:condition] sources of training examples"})
    val_set: str = field(default="switchboard-rendered:dev:clean", metadata={"help": "dataset:split[:condition]"})
    points_per_span: int = field(default=3, metadata={"help": "grid points kept per span in training"})
    max_train_turns: int | None = field(default=None, metadata={"help": "seeded sample of turns per training source"})
    max_val_turns: int | None = field(default=None, metadata={"help": "seeded sample of validation turns"})
    real_repeat: int = field(default=4, metadata={"help": "copies (each with its own augmentation) of real-audio turns"})
    aug_probs: tuple[float, ...] = field(default=(0.4, 0.25, 0.25, 0.1),
                                         metadata={"help": "probabilities of clean, 8k, noisy, 8k+noisy"})
    snr_db_range: tuple[float, ...] = field(default=(5.0, 20.0), metadata={"help": "noise SNR range (dB)"})
    gain_db_range: tuple[float, ...] = field(default=(-20.0, 6.0), metadata={"help": "random gain range (dB)"})
    model: AcousticModelConfig = field(default_factory=AcousticModelConfig, metadata={
        "help": "architecture and front end (the model folder's config.json \"model\")"})
    model_out: Path | None = field(default=None, metadata={"help": "also save the selected model (and ONNX) here"})
    export: bool = field(default=True, metadata={"help": "export fp32 + int8 ONNX into model_out"})
    export_int8: bool = field(default=True, metadata={
        "help": "with export: the int8 graph too (off: fp32 only, for a model that is scored but not shipped, e.g. a "
                "cross-fit fold's, whose int8 parity check need not hold)"})
    teacher: str | None = field(default=None, metadata={
        "help": "a registered detector (e.g. smart-turn) whose p_eot on the training queries is mixed into the "
                "target (vad_turn.acoustic.teacher; cached under --teacher-cache-dir)"})
    teacher_weight: float = field(default=0.5, metadata={"help": "target = (1 - w) * label + w * p_teacher"})
    teacher_sources: tuple[str, ...] = field(default=(), metadata={
        "help": "the --train-sets sources the teacher labels (empty: all of them); the others train on the label"})
    teacher_cache_dir: Path = field(default_factory=lambda: REPO_ROOT / "runs" / "cache" / "teacher",
                                    metadata={"help": "folder of the teacher's cached answers"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.aug_probs) != len(_AUG_KINDS) or abs(sum(self.aug_probs) - 1) > 1e-6 or min(self.aug_probs) < 0:
            raise ValueError(f"aug_probs needs {len(_AUG_KINDS)} probabilities summing to 1 ({_AUG_KINDS})")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"--teacher-weight must be in [0, 1], got {self.teacher_weight}")
        if unknown := set(self.teacher_sources) - set(self.train_sets):
            raise ValueError(f"--teacher-sources {sorted(unknown)} are not among --train-sets {list(self.train_sets)}")
        if len(self.snr_db_range) != 2 or len(self.gain_db_range) != 2:
            raise ValueError("snr_db_range and gain_db_range take two values (low high)")


def parse_source(spec: str) -> tuple[str, str, str | None]:
    """"name:split[:condition]" -> (name, split, condition or None)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"data source {spec!r} must look like dataset:split or dataset:split:condition")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None


def load_source(built_root: Path, spec: str):
    """The rows of one source (a `load_turns` dataset restricted to its audio condition)."""
    from vad_turn.data.dataset import load_turns

    name, _, cond = parse_source(spec)
    ds = load_turns(Path(built_root) / name)
    if cond is not None:
        keep = [i for i, c in enumerate(ds["audio_condition"]) if c == cond]
        if not keep:
            raise ValueError(f"{spec}: no rows with audio_condition {cond!r}")
        ds = ds.select(keep)
    return ds


def augment_window(window: np.ndarray, kind: str, rng: np.random.Generator, snr_db_range, gain_db_range) -> np.ndarray:
    """One augmented copy of a float32 window: gain, then the `kind` channel ("clean", "8k", "noisy", "8k+noisy")."""
    if kind not in _AUG_KINDS:
        raise ValueError(f"unknown augmentation {kind!r}")
    w = window * np.float32(10 ** (rng.uniform(*gain_db_range) / 20))
    if "8k" in kind:
        w = telephony_8k(w)
    if "noisy" in kind and np.any(w):
        w = add_noise(w, float(rng.uniform(*snr_db_range)), seed=int(rng.integers(2**31)))
    return np.clip(w, -1.0, 1.0).astype(np.float32)


@dataclass
class FeatureSet:
    """Cached model inputs: feats fp16 (n, channels, frames), silence_s, label, the training target
    (the label, or mixed with a teacher's p_eot), and the example table."""

    feats: torch.Tensor
    silence_s: torch.Tensor
    label: torch.Tensor
    table: object
    turn_ids: list[str]
    target: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, i):
        return self.feats[i], self.silence_s[i], (self.label if self.target is None else self.target)[i]


def build_feature_set(sources: list[tuple[str, object]], cfg: AcousticTrainConfig, *, train: bool,
                      batch: int = 32, chunk_turns: int = 100) -> FeatureSet:
    """Examples of each (spec, rows) source -> windows (augmented when `train`) -> cached features.

    Turns are selected as the harness selects them (split, then a seeded sample of max_*_turns) and
    decoded `chunk_turns` at a time, so memory holds one chunk of audio plus the fp16 features.
    """
    import pandas as pd

    from vad_turn.harness.evaluate import EvalConfig, select_turns
    from vad_turn.harness.examples import build_examples

    front = AcousticFrontEnd(cfg.model.features).eval()
    feats, sil, lab, tgt, tables, ids = [], [], [], [], [], []
    for si, (spec, ds) in enumerate(sources):
        teacher = TeacherCache(cfg.teacher, spec, cfg.teacher_cache_dir, threads=cfg.threads) if (
            train and cfg.teacher and (not cfg.teacher_sources or spec in cfg.teacher_sources)) else None
        _, split, _ = parse_source(spec)
        rows, turn_ids = select_turns(ds, EvalConfig(split=split, max_turns=cfg.max_train_turns if train else
                                                     cfg.max_val_turns, seed=cfg.seed))
        ids += turn_ids
        repeats = cfg.real_repeat if (train and "rendered" not in spec.split(":")[0]) else 1
        rng = np.random.default_rng([cfg.seed, si])
        bar = tqdm(total=len(turn_ids) * repeats, desc=f"features {spec}", unit="turn", mininterval=5.0)
        for rep in range(repeats):
            for c0 in range(0, len(turn_ids), chunk_turns):
                chunk = rows.select(range(c0, min(c0 + chunk_turns, len(turn_ids)))) if hasattr(rows, "select") \
                    else rows[c0:c0 + chunk_turns]
                ex = build_examples(chunk, None, seed=cfg.seed + rep, points_per_span=cfg.points_per_span if train else None,
                                    needs_audio=True, needs_words=False, progress=False)
                kinds = rng.choice(len(_AUG_KINDS), size=len(ex), p=cfg.aug_probs) if train else np.zeros(len(ex), int)
                for i0 in range(0, len(ex), batch):
                    wins = [window_audio(q.audio, front.cfg) for q in ex.queries[i0:i0 + batch]]
                    if train:
                        wins = [augment_window(w, _AUG_KINDS[k], rng, cfg.snr_db_range, cfg.gain_db_range)
                                for w, k in zip(wins, kinds[i0:i0 + batch])]
                    with torch.no_grad():
                        feats.append(front(torch.from_numpy(np.stack(wins))).half())
                sil.append(torch.tensor(ex.table["silence_s"].to_numpy(), dtype=torch.float32))
                lab.append(torch.tensor(ex.labels, dtype=torch.float32))
                p_teacher = teacher.p_eot(ex.table, ex.queries) if teacher is not None else None
                tgt.append(torch.tensor(soft_target(ex.labels, p_teacher, cfg.teacher_weight), dtype=torch.float32))
                tables.append(ex.table.assign(source_spec=spec, repeat=rep, augmentation=[_AUG_KINDS[k] for k in kinds],
                                              p_teacher=np.nan if p_teacher is None else p_teacher))
                bar.update(len(ex.turn_ids))
        bar.close()
        if teacher is not None:
            print(f"teacher {cfg.teacher} on {spec}: {teacher.n_computed} queries computed, {len(teacher)} cached "
                  f"({teacher.path})")
    return FeatureSet(torch.cat(feats), torch.cat(sil), torch.cat(lab), pd.concat(tables, ignore_index=True), ids,
                      torch.cat(tgt))


def bce_loss(model, batch) -> torch.Tensor:
    x, s, y = batch
    return torch.nn.functional.binary_cross_entropy_with_logits(model(x.float(), s), y)


def predict_features(model: AcousticNet, fs: FeatureSet, batch: int = 256) -> np.ndarray:
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(fs), batch):
            out.append(torch.sigmoid(model(fs.feats[i:i + batch].float(), fs.silence_s[i:i + batch])).numpy())
    return np.concatenate(out).astype(np.float64)






def harness_metrics(p_eot: np.ndarray, table) -> dict:
    """Harness operating points of full-grid predictions (the example table of `build_examples`)."""
    import pandas as pd

    from vad_turn.harness.evaluate import EvalConfig, compute_metrics

    preds = pd.DataFrame({"id": table["turn_id"], "span_index": table["span_index"], "timestamp": table["timestamp"],
                          "silence_dur": table["silence_s"], "p_eot": p_eot, "label": table["label"],
                          "span_dur": table["span_dur"], "pause_context": table["pause_context"],
                          "unit_punct": table["unit_punct"], "source": table["source"],
                          "audio_condition": table["audio_condition"],
                          "backchannel_context": table["backchannel_context"].astype(bool), "n_words": table["n_words"]})
    m, _ = compute_metrics(preds, EvalConfig(), "acoustic")
    out = {"val_auc": roc_auc(table["label"], p_eot),
           "val_auc_same_silence": same_silence_auc(p_eot, table["silence_s"], table["label"])}
    for op in m["operating_points"]:
        key = op["name"]
        if op["reachable"]:
            out[f"val_{key}"] = op["false_cutoff_rate"] if op["kind"] == "min_fcr_at_latency" else op["mean_latency_s"]
        out[f"val_{key}_vad_only"] = (op["vad_only"]["false_cutoff_rate"] if op["kind"] == "min_fcr_at_latency"
                                      else op["vad_only"]["mean_latency_s"]) if op["vad_only"]["reachable"] else None
        ratio = op.get("ratio_to_vad_only")
        out[f"val_{key}_ratio"] = ratio if isinstance(ratio, (int, float)) else None
    return out


def teacher_summary(fs: FeatureSet) -> dict:
    """How many training examples carry a teacher's p_eot, and how well it separates their labels (ROC AUC)."""
    has = fs.table["p_teacher"].notna().to_numpy()
    if not has.any():
        return {}
    return {"n_teacher_examples": int(has.sum()),
            "teacher_train_auc": roc_auc(fs.label.numpy()[has], fs.table["p_teacher"].to_numpy()[has])}


def run(cfg: AcousticTrainConfig) -> dict:
    """Build features, train with `train.fit`, report harness metrics on validation, save + export the model."""
    torch.set_num_threads(cfg.threads)
    t0 = time.perf_counter()
    out = Path(cfg.out) if cfg.out is not None else default_train_out("train-acoustic")
    cfg = dataclasses.replace(cfg, out=out)
    train_sources = [(s, load_source(cfg.built_root, s)) for s in cfg.train_sets]
    train = build_feature_set(train_sources, cfg, train=True)
    val = build_feature_set([(cfg.val_set, load_source(cfg.built_root, cfg.val_set))], cfg, train=False)
    feature_wall_s = time.perf_counter() - t0
    print(f"{len(train)} training examples ({int(train.label.sum())} end), {len(val)} validation "
          f"({int(val.label.sum())} end); features in {feature_wall_s:.0f} s")
    torch.manual_seed(cfg.seed)
    net = AcousticNet(cfg.model)
    res = fit(net, train, val, cfg, loss_fn=bce_loss, evaluate_fn=lambda m: harness_metrics(predict_features(m, val), val.table),
              split_ids={"train": train.turn_ids, "val": val.turn_ids},
              extra_metrics={"n_parameters": net.n_parameters(), "feature_wall_s": round(feature_wall_s, 1),
                             "train_augmentation": train.table["augmentation"].value_counts().to_dict(),
                             **teacher_summary(train)})
    summary = {"run": str(res.out), "best_epoch": res.best_epoch, "best": res.best, "train_wall_s": round(res.wall_s, 1),
               "feature_wall_s": round(feature_wall_s, 1), "n_train_examples": len(train), "n_val_examples": len(val),
               "n_parameters": net.n_parameters()}
    if cfg.model_out is not None:
        summary["export"] = save_trained(net, cfg, summary)
        shutil.copyfile(res.out / "split_ids.json", Path(cfg.model_out) / "split_ids.json")
    atomic_write_json(res.out / "summary.json", summary)
    print(summary)
    return summary


def save_trained(net: AcousticNet, cfg: AcousticTrainConfig, summary: dict) -> dict:
    """Save the model folder (config.json with the training config and summary, weights) and, with
    cfg.export, the checked fp32 + int8 ONNX files; returns the export checks (also in config.json)."""
    from vad_turn.core.config import config_to_dict

    from .export import export_onnx, quantize_int8

    folder = Path(cfg.model_out)
    save_model(net, folder, {"train_config": config_to_dict(cfg), "summary": summary})
    if not cfg.export:
        return {}
    probe = probe_windows(cfg, n=64)
    checks = {"fp32": export_onnx(net, folder / "model.onnx", *probe)}
    if cfg.export_int8:
        checks["int8"] = quantize_int8(folder / "model.onnx", folder / "model.int8.onnx", net, *probe)
    save_model(net, folder, {"train_config": config_to_dict(cfg), "summary": {**summary, "export": checks}})
    return checks


def probe_windows(cfg: AcousticTrainConfig, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """n real validation windows (seeded) and their silence times, for export parity checks."""
    from vad_turn.harness.examples import build_examples

    spec = cfg.val_set
    ex = build_examples(load_source(cfg.built_root, spec), parse_source(spec)[1], max_turns=max(4, n // 4),
                        seed=cfg.seed + 1, points_per_span=2, needs_audio=True, needs_words=False, progress=False)
    idx = np.random.default_rng(cfg.seed).permutation(len(ex))[:n]
    wins = np.stack([window_audio(ex.queries[i].audio, cfg.model.features) for i in idx])
    return wins, ex.table["silence_s"].to_numpy()[idx].astype(np.float32)




