"""An adapter with eot-bench's batch contract: `predict_batch(items) -> p_eot per item`.

Each item is one moment of a user's silence, as eot-bench's runner builds it from a row of
eot-bench-data (`vad_turn.data.corpora.eotbench.load_eot_bench` reads that schema):

- `audio`: the user's audio up to the moment, either {"array": samples, "sampling_rate": hz}
  (datasets' decoded Audio; any rate, mono or stereo) or {"bytes": encoded file, "path": name}
  (datasets' `Audio(decode=False)`).
- `messages`: [{"role", "content"}, ...], the conversation so far. When the last message is the
  user's and no `words` are given, it is taken as the current turn's transcript.
- optional `words`: [{"word", "start", "end"}] with times in s from the audio start (preferred:
  the lexical branch uses the last word's duration and the speaking rate).
- optional `silence_s`: seconds of silence so far. Without it: audio duration - last word's end
  (0 when there is no word).

Words from a transcript without times get times spread evenly over the speech part of the audio
(duration - silence_s): an approximation, stated so results on such items are read with it in mind.

    from vad_turn.fusion.eotbench import EotBenchModel
    p = EotBenchModel().predict_batch(items)        # float64 (n,) in [0, 1]
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vad_turn.core.audio import AudioError, decode_audio_bytes, prepare_audio
from vad_turn.core.schema import Word

from .runtime import DEFAULT_TURN_MODEL_DIR, TurnModel, as_messages, as_words

_SR = 16_000


def item_audio(item: dict, index: int) -> np.ndarray:
    """float32 (n,) 16 kHz mono of one item's `audio` ({array, sampling_rate} or {bytes, path})."""
    a = item.get("audio")
    src = f"item {index} audio"
    if not isinstance(a, dict):
        raise AudioError(f"{src}: expected a dict with array + sampling_rate or bytes + path, got {type(a).__name__}")
    if a.get("array") is not None:
        if "sampling_rate" not in a:
            raise AudioError(f"{src}: 'array' given without 'sampling_rate'")
        return prepare_audio(np.asarray(a["array"]), int(a["sampling_rate"]), source=src)
    if a.get("bytes"):
        return decode_audio_bytes(a["bytes"], source=f"{src} ({a.get('path') or 'bytes'})")
    if a.get("path"):
        from vad_turn.core.audio import load_audio

        return load_audio(Path(a["path"]))
    raise AudioError(f"{src}: no 'array', 'bytes' or 'path'")


def item_query(item: dict, index: int) -> tuple[np.ndarray, tuple, tuple, float]:
    """(audio 16 kHz, words, context messages, silence_s) of one item (see the module docstring)."""
    if not isinstance(item, dict):
        raise ValueError(f"item {index}: expected a dict with audio and messages, got {type(item).__name__}")
    audio = item_audio(item, index)
    duration_s = audio.size / _SR
    messages = list(item.get("messages") or [])
    try:
        words = as_words(item.get("words") or ())
        msgs = as_messages(messages)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"item {index}: {e}") from e
    silence = item.get("silence_s")
    if not words and msgs and msgs[-1].role == "user":
        text, msgs = msgs[-1].content.split(), msgs[:-1]
        speech_s = max(duration_s - (float(silence) if silence is not None else 0.0), 0.0)
        step = speech_s / max(len(text), 1)
        words = tuple(Word(w, i * step, (i + 1) * step) for i, w in enumerate(text))
    if silence is None:
        silence = max(duration_s - words[-1].end, 0.0) if words else 0.0
    silence = float(silence)
    if not np.isfinite(silence) or silence < 0:
        raise ValueError(f"item {index}: silence_s must be a finite number >= 0, got {silence!r}")
    return audio, words, msgs, silence


class EotBenchModel:
    """The fused turn model behind eot-bench's batch contract.

    model: a turn model folder (default the shipped one); int8: the int8 acoustic graph.
    """

    def __init__(self, model: str | Path = DEFAULT_TURN_MODEL_DIR, *, int8: bool = False, threads: int = 1):
        self.model = TurnModel(Path(model), int8=int8, threads=threads)
        self.threshold = self.model.threshold

    def predict_batch(self, items: Sequence[dict[str, Any]]) -> np.ndarray:
        """p_eot float64 (len(items),) in [0, 1]."""
        return self.model.p_eot([item_query(it, i) for i, it in enumerate(items)])

    def predict(self, item: dict[str, Any]) -> float:
        return float(self.predict_batch([item])[0])
