"""The adapted lexical end-of-turn model: a compact GRU over SmolLM2 tokens, trained from scratch on
Switchboard train turns normalised like ASR output, with timing inputs; exported to ONNX.

    vad-turn train-lexical --max-turns 20000 --epochs 3          # default: a few minutes on 2 cores
    vad-turn train-lexical --transcript-lag-s 0.2 --out runs/lexical-lag0.2   # for a faster STT
    vad-turn evaluate --detector lexical --detector-opts model=runs/<run>/model

Training examples are the harness's causal queries (`vad_turn.examples`): label 1 in the
end-of-turn span, 0 in kept holds, each with the words visible under the transcript lag and the
silence so far; `--transcript-lag-s` sets that lag (recorded in the model folder's lexical.json and
checked by the detector against the harness's). A batch is a bucket of turns of similar length: the
GRU reads each turn once (context, then every word's tokens) and the head scores every example of the turn at the state
after its last visible word. Text encoding and timing features come from `vad_turn.lexical_runtime`
(the same functions inference uses). Model selection: validation loss on Switchboard dev (val).
"""
from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .config import atomic_write_json, default_built_root
from .lexical_runtime import (CONTEXT_MAX_TOKENS, DEFAULT_TRANSCRIPT_LAG_S, TIMING_FEATURES, LexicalTokenizer, context_text,
                              timing_features)
from .schema import row_messages, row_words
from .train import TrainConfig, default_train_out, fit


@dataclass(frozen=True)
class LexicalConfig(TrainConfig):
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                          metadata={"help": "turn-span dataset with 'train' and 'dev' (val) splits"})
    max_turns: int | None = field(default=20000, metadata={"help": "seeded sample of train turns (none: all 51,987)"})
    val_turns: int = field(default=3000, metadata={"help": "seeded sample of val turns for the validation loss"})
    points_per_span: int = field(default=4, metadata={"help": "grid points kept per silence span (seeded)"})
    min_token_count: int = field(default=5, metadata={"help": "SmolLM2 tokens seen fewer times in train map to UNK"})
    emb_dim: int = field(default=48, metadata={"help": "token embedding size"})
    hidden: int = field(default=128, metadata={"help": "GRU state size"})
    head_hidden: int = field(default=64, metadata={"help": "MLP head width"})
    dropout: float = field(default=0.1, metadata={"help": "dropout on embeddings and the head"})
    turns_per_batch: int = field(default=32, metadata={"help": "turns of similar length per bucket"})
    batch_size: int = field(default=1, metadata={"help": "buckets per optimiser step (keep 1)"})
    lr: float = field(default=3e-3, metadata={"help": "AdamW learning rate"})
    epochs: int = field(default=3, metadata={"help": "passes over the training buckets"})
    tokenizer: Path | None = field(default=None, metadata={"help": "SmolLM2 tokenizer.json (default: the local cache)"})
    transcript_lag_s: float = field(default=DEFAULT_TRANSCRIPT_LAG_S, metadata={
        "help": "words become visible this long after they end, in the training and validation examples (the "
                "harness's --transcript-lag-s; match the STT the model will serve, recorded in lexical.json)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.transcript_lag_s >= 0:
            raise ValueError(f"transcript_lag_s must be >= 0, got {self.transcript_lag_s}")


# ----------------------------------------------------------------------------- model


def _torch_model_class():
    import torch
    from torch import nn

    class LexicalGRU(nn.Module):
        """Embedding (raw SmolLM2 id -> id_map -> E) -> GRU (H) -> MLP head on [state, timing] -> logit."""

        def __init__(self, id_map: torch.Tensor, n_emb: int, emb_dim: int, hidden: int, head_hidden: int,
                     dropout: float, n_timing: int = len(TIMING_FEATURES)):
            super().__init__()
            self.register_buffer("id_map", id_map.to(torch.int64))
            self.emb = nn.Embedding(n_emb, emb_dim)
            self.drop = nn.Dropout(dropout)
            self.gru = nn.GRU(emb_dim, hidden, batch_first=True)
            self.head = nn.Sequential(nn.Linear(hidden + n_timing, head_hidden), nn.GELU(), nn.Dropout(dropout),
                                      nn.Linear(head_hidden, 1))
            self.register_buffer("timing_scale", torch.tensor([1.0, 0.3, 1.0, 2.0, 1.0, 0.25])[:n_timing])

        def forward(self, tokens, turn, pos, timing):
            """Training forward: tokens (B, T); example e is turn[e] at state index pos[e] -> logits (N,)."""
            out, _ = self.encode(tokens)
            return self.logits(out[turn, pos], timing)

        def encode(self, token_ids, h0=None):
            """token_ids (B, T) raw SmolLM2 ids -> outputs (B, T, H), last state (1, B, H)."""
            x = self.drop(self.emb(self.id_map[token_ids]))
            return self.gru(x, h0)

        def step(self, token_ids, h0):
            """(1, T) ids + state (1, 1, H) -> state (1, 1, H): the incremental update."""
            return self.encode(token_ids, h0)[1]

        def logits(self, h, timing):
            """h (N, H), timing (N, F) -> logits (N,)."""
            return self.head(torch.cat([h, timing * self.timing_scale], dim=-1)).squeeze(-1)

        def head_prob(self, h, timing):
            return torch.sigmoid(self.logits(h, timing))

    return LexicalGRU


def build_model(id_map: np.ndarray, n_emb: int, cfg: LexicalConfig):
    import torch

    return _torch_model_class()(torch.from_numpy(id_map), n_emb, cfg.emb_dim, cfg.hidden, cfg.head_hidden, cfg.dropout)


def load_torch_model(model_dir: Path):
    """The torch model of a model folder (lexical.json + model.pt), in eval mode."""
    import torch

    meta = json.loads((Path(model_dir) / "lexical.json").read_text())
    state = torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True)
    model = _torch_model_class()(state["id_map"], meta["n_emb"], meta["emb_dim"], meta["hidden"], meta["head_hidden"],
                                 0.0)
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------- data


def token_vocab(rows: list[dict], tok: LexicalTokenizer, min_count: int) -> tuple[np.ndarray, int]:
    """id_map (tokenizer vocab,) int64: raw id -> embedding row (0 = UNK) for tokens seen >= min_count
    times in the user words and contexts of `rows`; returns (id_map, n_emb)."""
    counts: Counter = Counter()
    for r in rows:
        for w in r["words"]:
            counts.update(tok.word_ids(w["word"]))
        counts.update(tok.context_ids(context_text(row_messages(r))))
    keep = sorted(i for i, c in counts.items() if c >= min_count)
    id_map = np.zeros(tok.vocab_size, dtype=np.int64)
    id_map[keep] = np.arange(1, len(keep) + 1)
    return id_map, len(keep) + 1


def turn_item(row: dict, table, tok: LexicalTokenizer, context_max_tokens: int = CONTEXT_MAX_TOKENS) -> dict:
    """One turn's tensors: tokens (T,) raw ids; for its k examples the position of the state after the
    last visible word (k,), timing features (k, F) and labels (k,)."""
    words = row_words(row)
    ctx = tok.context_ids(context_text(row_messages(row)), context_max_tokens)
    per_word = [tok.word_ids(w.word) for w in words]
    tokens = np.array(ctx + [i for ids in per_word for i in ids], dtype=np.int64)
    after = len(ctx) - 1 + np.concatenate([[0], np.cumsum([len(ids) for ids in per_word])])  # state index after n words
    n_seen = table["n_seen"].to_numpy()
    feats = np.stack([timing_features(words[:n], s) for n, s in zip(n_seen, table["silence_s"].to_numpy())])
    return {"tokens": tokens, "pos": after[n_seen], "timing": feats.astype(np.float32),
            "labels": table["label"].to_numpy().astype(np.float32)}


def make_buckets(items: list[dict], turns_per_batch: int, seed: int) -> list[list[dict]]:
    """Buckets of turns of similar token length (sorted, chunked, in a seeded order)."""
    order = sorted(range(len(items)), key=lambda i: len(items[i]["tokens"]))
    buckets = [[items[i] for i in order[j:j + turns_per_batch]] for j in range(0, len(order), turns_per_batch)]
    rng = np.random.default_rng(seed)
    return [buckets[i] for i in rng.permutation(len(buckets))]


def collate_bucket(batch: list[list[dict]]) -> dict:
    """A list of buckets (use batch_size 1) -> padded tokens (B, T), per-example batch index and position,
    timing (N, F) and labels (N,)."""
    import torch

    turns = [t for bucket in batch for t in bucket]
    tmax = max(len(t["tokens"]) for t in turns)
    tokens = np.zeros((len(turns), tmax), dtype=np.int64)
    for i, t in enumerate(turns):
        tokens[i, : len(t["tokens"])] = t["tokens"]
    return {
        "labels": torch.from_numpy(np.concatenate([t["labels"] for t in turns])),
        "tokens": torch.from_numpy(tokens),
        "turn": torch.from_numpy(np.concatenate([np.full(len(t["labels"]), i) for i, t in enumerate(turns)])),
        "pos": torch.from_numpy(np.concatenate([t["pos"] for t in turns]).astype(np.int64)),
        "timing": torch.from_numpy(np.concatenate([t["timing"] for t in turns])),
    }


def batch_logits(model, batch: dict):
    """Logits (N,) of every example of a collated batch (model may be DDP-wrapped: one forward call)."""
    return model(batch["tokens"], batch["turn"], batch["pos"], batch["timing"])


def bce_loss(model, batch: dict):
    import torch

    return torch.nn.functional.binary_cross_entropy_with_logits(batch_logits(model, batch), batch["labels"])


def build_items(ds, split: str, tok: LexicalTokenizer, *, max_turns: int | None, points_per_span: int,
                seed: int, transcript_lag_s: float = DEFAULT_TRANSCRIPT_LAG_S) -> tuple[list[dict], list[str], list[dict]]:
    """(turn items, turn ids, rows) of `split` through `build_examples` (harness queries, words visible
    `transcript_lag_s` after they end, every other setting the harness default)."""
    from .evaluate import EvalConfig
    from .examples import build_examples

    ex = build_examples(ds, split, eval_cfg=EvalConfig(transcript_lag_s=transcript_lag_s), max_turns=max_turns, seed=seed,
                        points_per_span=points_per_span, keep_queries=False)
    items = [turn_item(ex.rows[ti], g, tok) for ti, g in ex.table.groupby("turn_index", sort=True)]
    return items, ex.turn_ids, ex.rows


# ----------------------------------------------------------------------------- export


def export_onnx(model, out_dir: Path, *, atol: float = 1e-4) -> dict:
    """Write lexical_step.onnx and lexical_head.onnx (opset 17) of `model` into `out_dir` and check
    them against torch on random inputs; raises RuntimeError when they disagree by more than `atol`."""
    import torch
    from torch import nn

    from .onnx import import_onnxruntime

    ort = import_onnxruntime()
    model = model.eval()
    out_dir = Path(out_dir)
    hidden = model.gru.hidden_size

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, token_ids, h0):
            return self.m.step(token_ids, h0)

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, h, timing):
            return self.m.head_prob(h, timing)

    ids = torch.tensor([[1, 905, 2]], dtype=torch.int64)
    h0 = torch.zeros(1, 1, hidden)
    timing = torch.zeros(2, len(TIMING_FEATURES))
    with torch.no_grad():  # eval-mode wrappers: exporting restores each module's training flag afterwards
        torch.onnx.export(Step().eval(), (ids, h0), str(out_dir / "lexical_step.onnx"), input_names=["token_ids", "h0"],
                          output_names=["h"], dynamic_axes={"token_ids": {1: "n_tokens"}}, opset_version=17,
                          dynamo=False)
        torch.onnx.export(Head().eval(), (torch.zeros(2, hidden), timing), str(out_dir / "lexical_head.onnx"),
                          input_names=["h", "timing"], output_names=["p_eot"],
                          dynamic_axes={"h": {0: "n"}, "timing": {0: "n"}, "p_eot": {0: "n"}}, opset_version=17,
                          dynamo=False)
    g = torch.Generator().manual_seed(0)
    step = ort.InferenceSession(str(out_dir / "lexical_step.onnx"), providers=["CPUExecutionProvider"])
    head = ort.InferenceSession(str(out_dir / "lexical_head.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randint(0, model.id_map.numel(), (1, 7), generator=g)
    h = torch.randn(1, 1, hidden, generator=g) * 0.5
    hs, tm = torch.randn(16, hidden, generator=g) * 0.5, torch.rand(16, len(TIMING_FEATURES), generator=g) * 2
    with torch.no_grad():
        d_step = float(np.abs(step.run(None, {"token_ids": x.numpy(), "h0": h.numpy()})[0] - model.step(x, h).numpy()).max())
        d_head = float(np.abs(head.run(None, {"h": hs.numpy(), "timing": tm.numpy()})[0]
                              - model.head_prob(hs, tm).numpy()).max())
    if not (d_step <= atol and d_head <= atol):
        raise RuntimeError(f"ONNX export of the lexical model disagrees with torch: step {d_step:.2e}, "
                           f"head {d_head:.2e} (tolerance {atol:g})")
    return {"max_abs_diff_step": d_step, "max_abs_diff_head": d_head}


def save_model_folder(model, cfg: LexicalConfig, tok: LexicalTokenizer, n_emb: int, out_dir: Path,
                      metrics: dict) -> Path:
    """model.pt + lexical.json + tokenizer.json + the two ONNX files, written to a temporary folder
    and renamed into place."""
    import tempfile

    import torch

    from .config import atomic_replace_dir

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        tmp.chmod(0o755)
        torch.save(model.state_dict(), tmp / "model.pt")
        shutil.copyfile(tok.path, tmp / "tokenizer.json")
        parity = export_onnx(model, tmp)
        atomic_write_json(tmp / "lexical.json", {
            "n_emb": n_emb, "emb_dim": cfg.emb_dim, "hidden": cfg.hidden, "head_hidden": cfg.head_hidden,
            "context_max_tokens": CONTEXT_MAX_TOKENS, "timing_features": list(TIMING_FEATURES),
            "special_ids": {"bos": tok.bos_id, "sep": tok.sep_id}, "transcript_lag_s": cfg.transcript_lag_s,
            "onnx_parity": parity, **metrics})
        (tmp / "lexical.json").chmod(0o644)
        atomic_replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ----------------------------------------------------------------------------- run


def default_tokenizer_path() -> Path:
    from pipeline.llm import ensure_smollm2_cache

    return ensure_smollm2_cache() / "tokenizer.json"


def val_auc_fn(val_buckets):
    """evaluate_fn for `fit`: ROC AUC of the model over the validation examples."""

    def evaluate(model) -> dict:
        import torch
        from sklearn.metrics import roc_auc_score

        model.eval()
        ps, ys = [], []
        with torch.no_grad():
            for b in val_buckets:
                batch = collate_bucket([b])
                ps.append(batch_logits(model, batch).numpy())
                ys.append(batch["labels"].numpy())
        return {"val_auc": float(roc_auc_score(np.concatenate(ys), np.concatenate(ps)))}

    return evaluate


def run(cfg: LexicalConfig) -> dict:
    """Train the lexical GRU on `cfg.dataset` train, select on dev (val), export the model folder
    `<out>/model` (torch + ONNX + tokenizer); returns the run's metrics."""
    from .dataset import load_turns
    from .train import init_distributed, seed_everything

    t0 = time.perf_counter()
    di = init_distributed()
    if cfg.out is None and not di.enabled:  # under DDP `fit` shares rank 0's default folder
        cfg = replace(cfg, out=default_train_out("lexical"))
    tok = LexicalTokenizer(cfg.tokenizer or default_tokenizer_path())
    ds = load_turns(cfg.dataset)
    lag = cfg.transcript_lag_s
    train_items, train_ids, train_rows = build_items(ds, "train", tok, max_turns=cfg.max_turns,
                                                     points_per_span=cfg.points_per_span, seed=cfg.seed,
                                                     transcript_lag_s=lag)
    val_items, val_ids, _ = build_items(ds, "val", tok, max_turns=cfg.val_turns, points_per_span=cfg.points_per_span,
                                        seed=cfg.seed + 1, transcript_lag_s=lag)
    id_map, n_emb = token_vocab(train_rows, tok, cfg.min_token_count)
    data_s = time.perf_counter() - t0
    seed_everything(cfg.seed)
    model = build_model(id_map, n_emb, cfg)
    train_b = make_buckets(train_items, cfg.turns_per_batch, cfg.seed)
    val_b = make_buckets(val_items, cfg.turns_per_batch, cfg.seed)
    counts = {"n_train_turns": len(train_items), "n_val_turns": len(val_items),
              "n_train_examples_total": int(sum(len(t["labels"]) for t in train_items)),
              "n_val_examples_total": int(sum(len(t["labels"]) for t in val_items)),
              "train_end_rate": float(np.mean(np.concatenate([t["labels"] for t in train_items]))),
              "n_emb": n_emb, "n_params": int(sum(p.numel() for p in model.parameters())), "data_wall_s": round(data_s, 1)}
    res = fit(model, train_b, val_b, cfg, loss_fn=bce_loss, collate_fn=collate_bucket,
              evaluate_fn=val_auc_fn(val_b), split_ids={"train": train_ids, "dev": val_ids}, extra_metrics=counts)
    metrics = {**counts, "best_epoch": res.best_epoch, "best": res.best, "train_wall_s": round(res.wall_s, 1),
               "total_wall_s": round(time.perf_counter() - t0, 1)}
    if di.is_main:
        save_model_folder(model.eval(), cfg, tok, n_emb, Path(res.out) / "model", {"train": metrics})
        atomic_write_json(Path(res.out) / "metrics.json", {**json.loads((Path(res.out) / "metrics.json").read_text()),
                                                            **metrics})
        print(json.dumps(metrics, indent=1))
        print(f"model folder: {Path(res.out) / 'model'}")
    return metrics
