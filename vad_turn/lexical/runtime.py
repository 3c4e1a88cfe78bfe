"""The lexical end-of-turn model at inference: text encoding, timing features, incremental state, detector.

Needs only numpy, onnxruntime and `tokenizers` (torch only for the optional torch backend). The
text encoding and timing features defined here are the very functions training uses
(`vad_turn.lexical.train` imports them), so training, torch inference and ONNX inference see the same inputs.

Input of one decision: the previous turns (`messages`, the last "assistant" = other-party message
is the context), the user's words visible so far (ASR-normalised with `schema.normalize_word`:
lowercase, no punctuation) and the silence so far. The GRU reads
`<|im_start|> context-tokens <|im_end|>` then each word's SmolLM2 tokens (" " + word); its state
after the last visible word, with the timing features, goes to a small MLP head -> p_eot.

Incremental: the state after each visible word is cached (keyed by the context and the word
prefix), so a new word costs one GRU step over its 1-3 tokens, and a new silence step only the head.

A model folder holds `tokenizer.json` (SmolLM2's), `lexical_step.onnx` (raw token ids (T,) int64 +
state (1, 1, H) -> state), `lexical_head.onnx` (states (N, H) + timing (N, F) -> p_eot (N,)),
`lexical.json` (sizes, special ids, feature names, the `transcript_lag_s` the training examples
used (absent in older folders: 0.5 s), metrics) and `model.pt` (torch weights). `lexical.json` may name
the tokenizer with `"tokenizer": "<path relative to the folder>"` instead of holding a copy.

Transcript lag: a model trained with words visible 0.5 s after they end learns that the last word is
missing early in a pause; served by an STT that shows it after 0.1-0.2 s, its inputs differ from its
training inputs (and vice versa). `LexicalModel.check_transcript_lag(lag_s)` warns
(`TranscriptLagMismatch`) when they differ; the harness calls it with its `--transcript-lag-s`. It
warns rather than refuses because scoring a model at another lag is a legitimate ablation (how much
a lag-0.5 model loses or gains under a faster STT); pass `strict_lag=true` to the detector to refuse.

Bad input raises: `WordError` for words that are not a transcript (`schema.check_words`), ValueError
for a non-finite or negative silence, `ModelFileError` / `ChecksumMismatch` naming a truncated, corrupt
or altered model file (verified against the folder's checksums.json where there is one; see
`vad_turn.core.model_files`).
"""
from __future__ import annotations

import json
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.model_files import SHIPPED_LEXICAL_DIR, ModelFileError, onnx_session, read_model_json, verify_model_file
from vad_turn.core.schema import Message, Word, check_silence_s, check_words, normalize_word

from .inputs import (  # noqa: F401
    CONTEXT_MAX_TOKENS,
    DEFAULT_TRANSCRIPT_LAG_S,
    RATE_WINDOW_WORDS,
    TIMING_FEATURES,
    context_text,
    timing_features,
)

DEFAULT_MODEL_DIR = SHIPPED_LEXICAL_DIR
LAG_TOLERANCE_S = 0.05  # lags closer than this count as the same


class TranscriptLagMismatch(UserWarning):
    """A lexical model is queried under a transcript lag other than the one it was trained for."""






def tokenizer_path(model_dir: Path, meta: dict) -> Path:
    """The tokenizer.json of a model folder: `meta["tokenizer"]` (relative to the folder) when set, else
    the folder's own tokenizer.json."""
    rel = meta.get("tokenizer")
    return (Path(model_dir) / rel).resolve() if rel else Path(model_dir) / "tokenizer.json"


def lexical_model_files(model_dir: Path) -> list[Path]:
    """The files the ONNX runtime loads from a lexical model folder: lexical.json, the tokenizer and
    the two graphs (what its checksums.json records)."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "lexical.json").read_text())
    return [model_dir / "lexical.json", tokenizer_path(model_dir, meta), model_dir / "lexical_step.onnx",
            model_dir / "lexical_head.onnx"]


class LexicalTokenizer:
    """SmolLM2's tokenizer (tokenizers' tokenizer.json) with the encodings of the lexical model."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path}: tokenizer.json not found (SmolLM2's, saved next to the model)")
        self.path = path
        verify_model_file(path)
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises a bare Exception for truncated / invalid JSON
            raise ModelFileError(f"{path}: not a valid tokenizer.json, truncated or corrupt ({e})") from e
        self.bos_id = self._tok.token_to_id("<|im_start|>")
        self.sep_id = self._tok.token_to_id("<|im_end|>")
        if self.bos_id is None or self.sep_id is None:
            raise ModelFileError(f"{path}: not SmolLM2's tokenizer (no <|im_start|> / <|im_end|> tokens)")
        self.vocab_size = self._tok.get_vocab_size()
        self._words: dict[str, tuple[int, ...]] = {}

    def word_ids(self, word: str) -> tuple[int, ...]:
        """Token ids of one word, normalised, with its leading space (empty for words that normalise away)."""
        ids = self._words.get(word)
        if ids is None:
            w = normalize_word(word)
            ids = tuple(self._tok.encode(" " + w, add_special_tokens=False).ids) if w else ()
            self._words[word] = ids
        return ids

    def context_ids(self, text: str, max_tokens: int = CONTEXT_MAX_TOKENS) -> list[int]:
        """`<|im_start|>` + the last `max_tokens` tokens of the normalised context + `<|im_end|>`."""
        ids = self._tok.encode(" " + text, add_special_tokens=False).ids if text else []
        return [self.bos_id, *(ids[-max_tokens:] if max_tokens > 0 else []), self.sep_id]

    def turn_ids(self, context: str, words: Sequence[str], max_tokens: int = CONTEXT_MAX_TOKENS
                 ) -> tuple[np.ndarray, np.ndarray]:
        """A whole turn as the GRU reads it in training: tokens (T,) int64 = context ids then every word's
        ids, and after (n + 1,): the state index after 0..n words."""
        ctx = self.context_ids(context, max_tokens)
        per_word = [self.word_ids(w) for w in words]
        tokens = np.array(ctx + [i for ids in per_word for i in ids], dtype=np.int64)
        return tokens, len(ctx) - 1 + np.concatenate([[0], np.cumsum([len(ids) for ids in per_word])]).astype(np.int64)


class LexicalModel:
    """The lexical model for inference: ONNX (default) or torch backend, incremental per visible word.

    `p_eot(queries)` -> float64 (n,) in [0, 1] for (words, messages, silence_s) triples.
    """

    def __init__(self, model_dir: Path = DEFAULT_MODEL_DIR, *, backend: str = "onnx", threads: int = 1,
                 cache_size: int = 8192):
        model_dir = Path(model_dir)
        meta_path = model_dir / "lexical.json"
        self.meta = read_model_json(meta_path, what="lexical model", hint="train one with `vad-turn train-lexical`")
        try:
            if tuple(self.meta["timing_features"]) != TIMING_FEATURES:
                raise ModelFileError(f"{meta_path}: trained with timing features {self.meta['timing_features']}, "
                                     f"this code computes {list(TIMING_FEATURES)}")
            self.transcript_lag_s = float(self.meta.get("transcript_lag_s", DEFAULT_TRANSCRIPT_LAG_S))
            self.hidden = int(self.meta["hidden"])
            self.context_max_tokens = int(self.meta["context_max_tokens"])
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{meta_path}: not a lexical model file ({type(e).__name__}: {e})") from e
        if not (np.isfinite(self.transcript_lag_s) and self.transcript_lag_s >= 0):
            raise ModelFileError(f"{meta_path}: field 'transcript_lag_s' must be a finite number >= 0, "
                                 f"got {self.meta.get('transcript_lag_s')!r}")
        self.model_dir, self.backend = model_dir, backend
        self.tok = LexicalTokenizer(tokenizer_path(model_dir, self.meta))
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        if backend == "onnx":
            hint = "export with vad_turn.lexical.export.export_onnx"
            self._step_sess = onnx_session(model_dir / "lexical_step.onnx", threads, what="lexical model", hint=hint)
            self._head_sess = onnx_session(model_dir / "lexical_head.onnx", threads, what="lexical model", hint=hint)
        elif backend == "torch":
            import torch

            from .model import load_torch_model

            torch.set_num_threads(threads)
            self._torch = load_torch_model(model_dir)
        else:
            raise ValueError(f"backend must be 'onnx' or 'torch', got {backend!r}")

    def check_transcript_lag(self, lag_s: float, *, strict: bool = False, stacklevel: int = 2) -> bool:
        """True when `lag_s` (the lag of the words this model will be given) is within LAG_TOLERANCE_S of
        the lag it was trained for; otherwise warn `TranscriptLagMismatch` (raise ValueError if `strict`)."""
        if abs(float(lag_s) - self.transcript_lag_s) <= LAG_TOLERANCE_S + 1e-9:
            return True
        msg = (f"{self.model_dir}: lexical model trained with transcript lag {self.transcript_lag_s:g} s, "
               f"queried with {float(lag_s):g} s; its p_eot is not calibrated for that (train one with "
               f"`vad-turn train-lexical --transcript-lag-s {float(lag_s):g}`)")
        if strict:
            raise ValueError(msg)
        warnings.warn(msg, TranscriptLagMismatch, stacklevel=stacklevel)
        return False

    # -- the two network pieces
    def step(self, ids: Sequence[int], h: np.ndarray) -> np.ndarray:
        """GRU over token ids (T >= 1,) from state h (1, 1, H) float32 -> new state (1, 1, H)."""
        x = np.asarray(ids, dtype=np.int64).reshape(1, -1)
        if self.backend == "onnx":
            return self._step_sess.run(None, {"token_ids": x, "h0": h})[0]
        import torch

        with torch.inference_mode():
            return self._torch.step(torch.from_numpy(x), torch.from_numpy(h)).numpy()

    def head(self, states: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """p_eot (N,) float32 from states (N, H) and timing features (N, F)."""
        states = np.ascontiguousarray(states, dtype=np.float32)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if self.backend == "onnx":
            return self._head_sess.run(None, {"h": states, "timing": feats})[0]
        import torch

        with torch.inference_mode():
            return self._torch.head_prob(torch.from_numpy(states), torch.from_numpy(feats)).numpy()

    # -- incremental state
    def _remember(self, key, h: np.ndarray) -> None:
        self._cache[key] = h
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def state(self, words: Sequence[Word], messages: Sequence[Message]) -> np.ndarray:
        """The GRU state (1, 1, H) after the context and `words`, reusing cached prefix states."""
        ctx = context_text(messages)
        keys = [("ctx", ctx)]
        for w in words:  # key of each prefix, built incrementally (O(n))
            keys.append(hash((keys[-1], w.word, round(w.start, 4))))
        m = len(words)
        while m >= 0 and keys[m] not in self._cache:
            m -= 1
        if m < 0:
            h = self.step(self.tok.context_ids(ctx, self.context_max_tokens), np.zeros((1, 1, self.hidden), np.float32))
            self._remember(keys[0], h)
            m = 0
        else:
            h = self._cache[keys[m]]
            self._cache.move_to_end(keys[m])
        for i in range(m, len(words)):
            ids = self.tok.word_ids(words[i].word)
            if ids:
                h = self.step(ids, h)
            self._remember(keys[i + 1], h)
        return h

    def p_eot(self, queries: Sequence[tuple[Sequence[Word], Sequence[Message], float]]) -> np.ndarray:
        """float64 (n,) p_eot in [0, 1] for (words, messages, silence_s) triples; one head call for all.

        words: `Word`s in start order (WordError otherwise, see `schema.check_words`); silence_s:
        finite, >= 0 (ValueError otherwise)."""
        if not queries:
            return np.zeros(0, dtype=np.float64)
        for i, (w, _, s) in enumerate(queries):
            check_words(w, source=f"query {i} words")
            check_silence_s(s, source=f"query {i}")
        states = np.concatenate([self.state(w, m).reshape(1, -1) for w, m, _ in queries])
        feats = np.stack([timing_features(w, s) for w, _, s in queries])
        return self.head(states, feats).astype(np.float64).reshape(-1)


class LexicalDetector:
    """The trained lexical model as a harness `Detector` ("lexical"): words + context + silence -> p_eot.

    model: a model folder (default the shipped vad_turn/models/lexical); backend: "onnx" or "torch";
    strict_lag: refuse (ValueError) instead of warning when `check_transcript_lag` sees another lag.
    """

    needs_audio = False
    needs_words = True

    def __init__(self, model: str | Path = DEFAULT_MODEL_DIR, backend: str = "onnx", threads: int | str = 1,
                 strict_lag: bool = False):
        from vad_turn.harness.detectors import require_bool

        self.model = LexicalModel(Path(model), backend=backend, threads=int(threads))
        self.strict_lag = require_bool("strict_lag", strict_lag)
        self.name = "lexical" if backend == "onnx" else f"lexical-{backend}"

    @property
    def transcript_lag_s(self) -> float:
        """The transcript lag (s) the model was trained for."""
        return self.model.transcript_lag_s

    def check_transcript_lag(self, lag_s: float) -> bool:
        """Called by the harness with its transcript lag: see `LexicalModel.check_transcript_lag`."""
        return self.model.check_transcript_lag(lag_s, strict=self.strict_lag, stacklevel=3)

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(self.model.p_eot([(words, messages, silence_s)])[0])

    def predict_batch(self, queries) -> np.ndarray:
        return self.model.p_eot([(q.words, q.messages, q.silence_s) for q in queries])
