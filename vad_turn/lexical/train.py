"""The adapted lexical end-of-turn model: a compact GRU over SmolLM2 tokens, trained from scratch on
Switchboard train turns normalised like ASR output, with timing inputs; exported to ONNX.

    vad-turn train-lexical --max-turns 20000 --epochs 3          # default: a few minutes on 2 cores
    vad-turn train-lexical --transcript-lag-s 0.2 --out runs/lexical-lag0.2   # for a faster STT
    vad-turn evaluate --detector lexical --detector-opts model=runs/<run>/model

Training examples are the harness's causal queries (`vad_turn.harness.examples`): label 1 in the
end-of-turn span, 0 in kept holds, each with the words visible under the transcript lag and the
silence so far; `--transcript-lag-s` sets that lag (recorded in the model folder's lexical.json and
checked by the detector against the harness's). A batch is a bucket of turns of similar length: the
GRU reads each turn once (context, then every word's tokens) and the head scores every example of the turn at the state
after its last visible word. Text encoding and timing features come from `vad_turn.lexical.runtime`
(the same functions inference uses). Model selection: validation loss on Switchboard dev (val).
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np

from vad_turn.core.runs import atomic_write_json
from vad_turn.core.schema import row_messages, row_words
from vad_turn.core.train import default_train_out, fit

from .config import LexicalConfig
from .export import save_model_folder
from .model import build_model
from .runtime import CONTEXT_MAX_TOKENS, DEFAULT_TRANSCRIPT_LAG_S, LexicalTokenizer, context_text, timing_features

# ----------------------------------------------------------------------------- model








# ----------------------------------------------------------------------------- data


def token_vocab(rows: list[dict], tok: LexicalTokenizer, min_count: int,
                extra_counts: Counter | None = None) -> tuple[np.ndarray, int]:
    """id_map (tokenizer vocab,) int64: raw id -> embedding row (0 = UNK) for tokens seen >= min_count
    times in the user words and contexts of `rows` (plus `extra_counts`, e.g. agent-text items);
    returns (id_map, n_emb)."""
    counts: Counter = Counter(extra_counts or {})
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
    tokens, after = tok.turn_ids(context_text(row_messages(row)), [w.word for w in words], context_max_tokens)
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
    from vad_turn.harness.evaluate import EvalConfig
    from vad_turn.harness.examples import build_examples

    ex = build_examples(ds, split, eval_cfg=EvalConfig(transcript_lag_s=transcript_lag_s), max_turns=max_turns, seed=seed,
                        points_per_span=points_per_span, keep_queries=False)
    items = [turn_item(ex.rows[ti], g, tok) for ti, g in ex.table.groupby("turn_index", sort=True)]
    return items, ex.turn_ids, ex.rows


def extra_dataset_items(path: Path, tok: LexicalTokenizer, cfg: LexicalConfig):
    """((items, ids, rows) of the train split, `cfg.extra_repeat` copies each with its own seeded query
    points; (items, ids) of the val split, or dev where there is no val) of one more built dataset."""
    from vad_turn.data.dataset import load_turns

    ds = load_turns(path)
    splits = set(ds.unique("split"))
    val_split = "val" if "val" in splits else "dev"
    if not {"train", val_split} <= splits:
        raise ValueError(f"{path}: --extra-datasets needs train and val (or dev) splits, it has {sorted(splits)}")
    items, ids, rows = [], [], []
    for copy in range(cfg.extra_repeat):
        it, i, r = build_items(ds, "train", tok, max_turns=None, points_per_span=cfg.points_per_span,
                               seed=cfg.seed + 100 * (copy + 1), transcript_lag_s=cfg.transcript_lag_s)
        items, ids, rows = items + it, ids + [f"{path.name}:{x}" for x in i], rows + (r if copy == 0 else [])
    v_items, v_ids, _ = build_items(ds, val_split, tok, max_turns=cfg.val_turns, points_per_span=cfg.points_per_span,
                                    seed=cfg.seed + 1, transcript_lag_s=cfg.transcript_lag_s)
    return (items, ids, rows), (v_items, [f"{path.name}:{x}" for x in v_ids])


# ----------------------------------------------------------------------------- export






# ----------------------------------------------------------------------------- run


def default_tokenizer_path() -> Path:
    from vad_turn.engines.llm.gguf import ensure_smollm2_cache

    return ensure_smollm2_cache() / "tokenizer.json"


def val_auc_fn(val_buckets):
    """evaluate_fn for `fit`: ROC AUC of the model over the validation examples."""

    def evaluate(model) -> dict:
        import torch

        from vad_turn.harness.metrics import roc_auc

        model.eval()
        ps, ys = [], []
        with torch.no_grad():
            for b in val_buckets:
                batch = collate_bucket([b])
                ps.append(batch_logits(model, batch).numpy())
                ys.append(batch["labels"].numpy())
        return {"val_auc": roc_auc(np.concatenate(ys), np.concatenate(ps))}

    return evaluate


def run(cfg: LexicalConfig) -> dict:
    """Train the lexical GRU on `cfg.dataset` train, select on dev (val), export the model folder
    `<out>/model` (torch + ONNX + tokenizer); returns the run's metrics."""
    from vad_turn.core.train import init_distributed, seed_everything
    from vad_turn.data.dataset import load_turns

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
    n_extra = {}
    for name in cfg.extra_datasets:  # more real-timing turn sets (e.g. GetGoing's callers)
        x_train, x_val = extra_dataset_items(Path(cfg.dataset).parent / name, tok, cfg)
        train_items, train_ids, train_rows = train_items + x_train[0], train_ids + x_train[1], train_rows + x_train[2]
        val_items, val_ids = val_items + x_val[0], val_ids + x_val[1]
        n_extra[f"n_{name}_train_items"], n_extra[f"n_{name}_val_turns"] = len(x_train[0]), len(x_val[0])
    extra_counts, n_agent = None, {}
    if cfg.agent_text_turns != 0:  # requests to task agents, every word boundary an example
        from vad_turn.data.corpora.agent_text import TRAIN_SPLITS, VAL_SPLITS

        from .agent_items import agent_items, token_counts

        a_train = agent_items(cfg.agent_text_root, TRAIN_SPLITS, tok, max_turns_per_corpus=cfg.agent_text_turns,
                              seed=cfg.seed, transcript_lag_s=lag, balance=cfg.agent_text_balance,
                              filler_rate=cfg.agent_text_filler_rate, slurp_slot_swaps=cfg.agent_text_slurp_swaps)
        a_val = agent_items(cfg.agent_text_root, VAL_SPLITS, tok, max_turns_per_corpus=cfg.agent_text_val_turns,
                            seed=cfg.seed + 1, transcript_lag_s=lag)
        extra_counts = token_counts(a_train)
        train_items, val_items = train_items + a_train, val_items + a_val
        train_ids, val_ids = train_ids + [a["turn_id"] for a in a_train], val_ids + [a["turn_id"] for a in a_val]
        n_agent = {"n_agent_train_turns": len(a_train), "n_agent_val_turns": len(a_val)}
    id_map, n_emb = token_vocab(train_rows, tok, cfg.min_token_count, extra_counts)
    data_s = time.perf_counter() - t0
    seed_everything(cfg.seed)
    model = build_model(id_map, n_emb, cfg)
    train_b = make_buckets(train_items, cfg.turns_per_batch, cfg.seed)
    val_b = make_buckets(val_items, cfg.turns_per_batch, cfg.seed)
    counts = {"n_train_turns": len(train_items), "n_val_turns": len(val_items),
              "n_train_examples_total": int(sum(len(t["labels"]) for t in train_items)),
              "n_val_examples_total": int(sum(len(t["labels"]) for t in val_items)),
              "train_end_rate": float(np.mean(np.concatenate([t["labels"] for t in train_items]))),
              "n_emb": n_emb, "n_params": int(sum(p.numel() for p in model.parameters())), "data_wall_s": round(data_s, 1),
              **n_agent, **n_extra}
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
