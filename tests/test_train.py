"""The generic trainer: run folder contents, selection on validation, resume == uninterrupted, and DDP on
gloo with two real CPU processes under torchrun (this file is also the torchrun worker script)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from vad_turn.core.train import FitResult, TrainConfig, fit  # noqa: E402


def toy_data(n: int, seed: int) -> TensorDataset:
    """y = 1 when 2 x0 - x1 + 0.5 x2 > 0 (a learnable rule), 8 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = ((2 * x[:, 0] - x[:, 1] + 0.5 * x[:, 2]) > 0).float()
    return TensorDataset(x, y)


def toy_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))


def bce(model, batch):
    x, y = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x).squeeze(-1), y)


def params(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_fit_writes_the_run_folder_and_selects_the_best_validation_epoch(tmp_path):
    cfg = TrainConfig(seed=1, epochs=3, batch_size=32, lr=1e-2, threads=1, out=tmp_path / "run")
    model = toy_model(0)
    res = fit(model, toy_data(512, 0), toy_data(256, 1), cfg, loss_fn=bce, split_ids={"train": ["b", "a"]},
              evaluate_fn=lambda m: {"val_accuracy": float(((m(toy_data(256, 1).tensors[0]).squeeze(-1) > 0).float()
                                                             == toy_data(256, 1).tensors[1]).float().mean())})
    assert isinstance(res, FitResult) and len(res.history) == 3
    for name in ("config.json", "commit.txt", "split_ids.json", "metrics.json", "checkpoint.pt", "best.pt"):
        assert (tmp_path / "run" / name).exists(), name
    assert json.loads((tmp_path / "run" / "split_ids.json").read_text()) == {"train": ["a", "b"]}
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    vals = [h["val_loss"] for h in m["history"]]
    assert m["best_epoch"] == vals.index(min(vals)) == res.best_epoch
    assert m["n_train_examples"] == 512 and m["n_val_examples"] == 256 and m["world_size"] == 1
    assert vals[-1] < 0.5 and m["history"][-1]["val_accuracy"] > 0.85  # the rule is learnt (chance: 0.69 / 0.5)
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=True)
    assert torch.equal(params(model), torch.cat([v.flatten() for v in best.values()]))  # ends on the best epoch
    with pytest.raises(ValueError, match="different config"):
        fit(toy_model(0), toy_data(512, 0), toy_data(256, 1), TrainConfig(seed=2, epochs=3, out=tmp_path / "run"),
            loss_fn=bce)
    with pytest.raises(KeyError, match="select_metric"):
        fit(toy_model(0), toy_data(64, 0), toy_data(32, 1), TrainConfig(epochs=1, select_metric="auc",
                                                                        out=tmp_path / "r2"), loss_fn=bce)


class Interrupted(Exception):
    pass


def test_resume_after_an_interruption_equals_the_uninterrupted_run(tmp_path):
    train, val = toy_data(400, 0), toy_data(200, 1)
    kw = dict(seed=3, epochs=4, batch_size=16, lr=5e-3, threads=1, max_examples=300)
    full = toy_model(0)
    res_full = fit(full, train, val, TrainConfig(**kw, out=tmp_path / "a"), loss_fn=bce)

    def stop(epoch, record):
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(toy_model(0), train, val, TrainConfig(**kw, out=tmp_path / "b"), loss_fn=bce, on_epoch_end=stop)
    assert len(json.loads((tmp_path / "b" / "metrics.json").read_text())["history"]) == 2
    resumed = toy_model(99)  # another init: the checkpoint must replace it
    res = fit(resumed, train, val, TrainConfig(**kw, out=tmp_path / "b"), loss_fn=bce)
    assert [h["val_loss"] for h in res.history] == pytest.approx([h["val_loss"] for h in res_full.history], abs=1e-7)
    assert torch.allclose(params(resumed), params(full), atol=1e-7)
    assert res.best_epoch == res_full.best_epoch and res.history[0]["val_loss"] > res.history[-1]["val_loss"]


@pytest.mark.slow  # ~22 s: two torchrun processes; the single-process training tests above run in make test
def test_ddp_on_gloo_with_two_cpu_processes_keeps_ranks_identical_and_learns(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node=2", __file__, str(tmp_path / "ddp")],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = (torch.load(tmp_path / "ddp" / f"params-rank{r}.pt") for r in (0, 1))
    init1 = params(toy_model(1))  # rank 1 started from other weights: DDP broadcast rank 0's
    assert torch.equal(p0, p1) and not torch.allclose(p1, init1)
    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["n_train_examples"] == 512
    assert m["history"][-1]["train_loss"] < 0.7 * m["history"][0]["train_loss"]
    assert m["history"][-1]["val_loss"] < 0.5
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir() if p.suffix == ".json") == [
        "config.json", "metrics.json"]  # no split ids given; rank 1 wrote nothing of its own


def _ddp_worker(out: str) -> None:
    rank = int(os.environ["RANK"])
    model = toy_model(rank)  # rank-dependent init on purpose
    cfg = TrainConfig(seed=0, epochs=3, batch_size=32, lr=1e-2, threads=1, out=Path(out))
    fit(model, toy_data(512, 0), toy_data(256, 1), cfg, loss_fn=bce)
    torch.save(params(model), Path(out) / f"params-rank{rank}.pt")
    import torch.distributed as dist

    dist.destroy_process_group()


if __name__ == "__main__":
    _ddp_worker(sys.argv[1])
