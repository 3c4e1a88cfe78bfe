"""One generic trainer for the project's torch models: seeded, resumable, selected on validation, DDP-ready.

`fit(model, train_set, val_set, cfg, loss_fn=...)` trains `model` on a torch Dataset with AdamW and
writes a run folder (rank 0 only):

    config.json  commit.txt  split_ids.json   (vad_turn.core.runs.RunFolder)
    checkpoint.pt   model, optimizer, epoch, best score and history after the last finished epoch
    best.pt         the model state with the best validation score so far (`cfg.select_metric`)
    metrics.json    per-epoch history, the selected epoch, counts and wall time (atomic)

Rerunning with the same `out` and config resumes after the last finished epoch and gives the same
result as an uninterrupted run: the data order and the dropout RNG of epoch e depend only on
(seed, e, rank). Under `torchrun --nproc_per_node=N` or `accelerate launch` (environment variables
WORLD_SIZE / RANK / LOCAL_RANK / MASTER_ADDR / MASTER_PORT) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on GPU), each rank reads its DistributedSampler shard,
validation losses are summed over ranks, and only rank 0 writes files. Checked on CPU with
`torchrun --standalone --nproc_per_node=2 SCRIPT` and `accelerate launch --multi_gpu --num_processes 2
SCRIPT` (accelerate's `--cpu` with several processes needs mpirun instead).

Model configs subclass `TrainConfig` (frozen dataclass inheritance), so one CLI carries both.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import config_to_dict, default_runs_root
from .runs import RunFolder, atomic_path, atomic_write_json


@dataclass(frozen=True)
class TrainConfig:
    seed: int = field(default=0, metadata={"help": "seed of initialisation, data order and subsampling"})
    lr: float = field(default=2e-3, metadata={"help": "AdamW learning rate"})
    epochs: int = field(default=4, metadata={"help": "passes over the training examples"})
    batch_size: int = field(default=64, metadata={"help": "examples per optimiser step (per rank under DDP)"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    grad_clip: float = field(default=1.0, metadata={"help": "max gradient norm (0: no clipping)"})
    threads: int = field(default=1, metadata={"help": "torch CPU threads per process (1: the CPU is shared)"})
    max_examples: int | None = field(default=None, metadata={"help": "train on a seeded subset of this many examples"})
    select_metric: str = field(default="val_loss", metadata={"help": "validation metric that selects the epoch"})
    select_mode: str = field(default="min", metadata={"help": "min or max of select_metric is best"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/train-<time>); reuse to resume"})

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.threads < 1 or self.lr <= 0:
            raise ValueError("epochs, batch_size and threads must be >= 1 and lr > 0")
        if self.select_mode not in ("min", "max"):
            raise ValueError(f"select_mode must be 'min' or 'max', got {self.select_mode!r}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ValueError(f"max_examples must be >= 1 or None, got {self.max_examples}")


@dataclass
class FitResult:
    """What `fit` returns: the run folder, per-epoch history, the selected epoch and its metrics."""

    out: Path
    history: list[dict]
    best_epoch: int
    best: dict
    wall_s: float


# ----------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistInfo:
    """Join the process group set up by torchrun / accelerate (env WORLD_SIZE > 1); no-op otherwise."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, 0)
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA) RNGs."""
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 1_000_003 + epoch * 7919 + rank) % (2**31)


# ----------------------------------------------------------------------------- files


def _atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def default_train_out(prefix: str = "train") -> Path:
    return default_runs_root() / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_resume(out: Path, cfg: Any) -> None:
    old_path = out / "config.json"
    if not old_path.exists():
        return
    old = json.loads(old_path.read_text())
    new = json.loads(json.dumps({"type": type(cfg).__name__, **config_to_dict(cfg)}))
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise ValueError(f"{out}: holds a run with a different config (fields {diff}); use another --out")


# ----------------------------------------------------------------------------- training


def _subset(ds, n: int | None, seed: int):
    import torch
    from torch.utils.data import Subset

    if n is None or n >= len(ds):
        return ds
    g = torch.Generator().manual_seed(seed)
    return Subset(ds, torch.randperm(len(ds), generator=g)[:n].tolist())


def _loader(ds, cfg: TrainConfig, dist_info: DistInfo, epoch: int, *, shuffle: bool, collate_fn):
    import torch
    from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

    if dist_info.enabled:
        sampler = DistributedSampler(ds, num_replicas=dist_info.world_size, rank=dist_info.rank, shuffle=shuffle,
                                     seed=cfg.seed, drop_last=False)
        sampler.set_epoch(epoch)
    elif shuffle:
        sampler = RandomSampler(ds, generator=torch.Generator().manual_seed(_epoch_seed(cfg.seed, epoch, 0)))
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, batch_size=cfg.batch_size, sampler=sampler, collate_fn=collate_fn, num_workers=0)


def _batch_size(batch) -> int:
    import torch

    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else len(batch)


def validation_loss(model, val_set, cfg: TrainConfig, loss_fn, dist_info: DistInfo, collate_fn=None) -> float:
    """Mean per-example `loss_fn` over `val_set` (summed over ranks under DDP)."""
    import torch
    import torch.distributed as dist

    model.eval()
    tot = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for batch in _loader(val_set, cfg, dist_info, 0, shuffle=False, collate_fn=collate_fn):
            n = _batch_size(batch)
            tot += torch.tensor([float(loss_fn(model, batch)) * n, n], dtype=torch.float64)
    if dist_info.enabled:
        dist.all_reduce(tot)
    return float(tot[0] / max(tot[1], 1.0))


def fit(model, train_set, val_set, cfg: TrainConfig, *, loss_fn: Callable, collate_fn: Callable | None = None,
        evaluate_fn: Callable[[Any], dict] | None = None, split_ids: dict[str, Iterable[str]] | None = None,
        extra_metrics: dict | None = None, on_epoch_end: Callable[[int, dict], None] | None = None) -> FitResult:
    """Train `model` (a torch nn.Module) and select the epoch with the best validation score.

    loss_fn(model, batch) -> scalar tensor, the mean loss of the batch (the same function gives the
    validation loss). collate_fn: builds batches from dataset items. evaluate_fn(model) -> dict of
    extra validation metrics (rank 0 computes, all ranks receive), e.g. an AUC; `cfg.select_metric`
    may name one of them. split_ids: the turn ids per split (split_ids.json). on_epoch_end(epoch,
    record) runs after the checkpoint is written. The model ends with the weights of the best epoch.
    """
    import torch
    import torch.distributed as dist
    from tqdm import tqdm

    di = init_distributed()
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out) if cfg.out is not None else default_train_out()
    if di.enabled:  # every rank must use rank 0's default folder name
        box = [str(out)]
        dist.broadcast_object_list(box, src=0)
        out = Path(box[0])
    if di.is_main:
        _check_resume(out, cfg)
        rf = RunFolder(out, cfg)
        if split_ids is not None:
            rf.write_split_ids(split_ids)
    if di.enabled:
        dist.barrier()
    train_set = _subset(train_set, cfg.max_examples, cfg.seed)
    net = model
    if di.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model)  # broadcasts rank 0's initial weights
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    history: list[dict] = []
    best_score, best_epoch, start = math.inf, -1, 0
    ckpt_path = out / "checkpoint.pt"
    prior_wall_s = 0.0
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best_score, best_epoch, start = ck["history"], ck["best_score"], ck["best_epoch"], ck["epoch"] + 1
        prior_wall_s = ck.get("wall_s", 0.0)
        if di.is_main:
            print(f"resuming {out} after epoch {ck['epoch']}")
    sign = 1.0 if cfg.select_mode == "min" else -1.0
    t0 = time.perf_counter()
    for epoch in range(start, cfg.epochs):
        te = time.perf_counter()
        torch.manual_seed(_epoch_seed(cfg.seed, epoch, di.rank))  # dropout etc. depend on (seed, epoch, rank) only
        net.train()
        loader = _loader(train_set, cfg, di, epoch, shuffle=True, collate_fn=collate_fn)
        tot, n_tot = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not di.is_main,
                   mininterval=2.0)
        for batch in bar:
            loss = loss_fn(net, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            n = _batch_size(batch)
            tot, n_tot = tot + float(loss.detach()) * n, n_tot + n
            bar.set_postfix(loss=f"{tot / max(n_tot, 1):.4f}", refresh=False)
        sums = torch.tensor([tot, n_tot], dtype=torch.float64)
        if di.enabled:
            dist.all_reduce(sums)
        record = {"epoch": epoch, "train_loss": float(sums[0] / max(sums[1], 1.0)),
                  "val_loss": validation_loss(model, val_set, cfg, loss_fn, di, collate_fn)}
        extra = evaluate_fn(model) if (evaluate_fn is not None and di.is_main) else {}
        if di.enabled:
            box = [extra]
            dist.broadcast_object_list(box, src=0)
            extra = box[0]
        record.update(extra)
        record["epoch_wall_s"] = round(time.perf_counter() - te, 2)
        if cfg.select_metric not in record:
            raise KeyError(f"select_metric {cfg.select_metric!r} is not among the validation metrics {sorted(record)}")
        history.append(record)
        score = sign * float(record[cfg.select_metric])
        improved = score < best_score
        if improved:
            best_score, best_epoch = score, epoch
        if di.is_main:
            if improved:
                _atomic_torch_save(model.state_dict(), out / "best.pt")
            _atomic_torch_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                                "history": history, "best_score": best_score, "best_epoch": best_epoch,
                                "wall_s": prior_wall_s + time.perf_counter() - t0}, ckpt_path)
            _write_metrics(out, cfg, history, best_epoch, prior_wall_s + time.perf_counter() - t0, train_set,
                           val_set, di, extra_metrics)
        if di.enabled:
            dist.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    if di.enabled:
        dist.barrier()
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu", weights_only=True))
    wall = prior_wall_s + time.perf_counter() - t0
    if di.is_main:
        _write_metrics(out, cfg, history, best_epoch, wall, train_set, val_set, di, extra_metrics)
    return FitResult(out=out, history=history, best_epoch=best_epoch, best=history[best_epoch], wall_s=wall)


def _write_metrics(out: Path, cfg: TrainConfig, history: list[dict], best_epoch: int, wall_s: float, train_set,
                   val_set, di: DistInfo, extra: dict | None) -> None:
    atomic_write_json(out / "metrics.json", {
        "history": history, "best_epoch": best_epoch, "best": history[best_epoch] if best_epoch >= 0 else None,
        "select_metric": cfg.select_metric, "select_mode": cfg.select_mode,
        "n_train_examples": len(train_set), "n_val_examples": len(val_set), "world_size": di.world_size,
        "train_wall_s": round(wall_s, 2), **(extra or {}),
    })
