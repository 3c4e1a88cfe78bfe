"""The fused turn model as an eot-bench batch adapter (LiveKit's open end-of-turn benchmark).

eot-bench's harness loads an adapter by its import path (`--adapter vad_turn.fusion.eotbench:EotBenchModel`),
builds it with no arguments and, for each language of the dataset, asks `supports_language(code)`; then for
every 0.1 s grid point of every silence span it calls `predict_batch(items)` and wants one p_eot per item.
The run's folder is `<adapter name>__<hash>`, the hash of the prediction-affecting model options it records:
the adapter's `adapter_id`, `display_name` (and `max_audio_sec` when set), with the harness's own inference
interval and transcript lag. So every option of this adapter that changes a prediction is in `adapter_id`:
the model's fingerprint (sha256 of its files), the int8 graph, the silence estimator.

Each item is one moment of a user's silence, as the harness builds it from a dataset row:

- `audio`: the turn's audio up to the moment, {"array", "sampling_rate"} (any rate, mono or stereo) or
  {"bytes", "path"} (datasets' `Audio(decode=False)`);
- `messages`: [{"role", "content"}] the conversation so far; when the row has words, the harness appends a
  user message with the words that ended at least its transcript lag (0.5 s) before the moment. A last
  message from the user is taken as the current turn's transcript; its words get times spread evenly over
  the speech part of the audio (an approximation: the harness passes no word times);
- `language`: the row's language code.

The harness passes no silence duration: the adapter measures it on the audio, as a live agent's VAD does
(`trailing_silence_s`: the time since the last frame the VAD calls speech). `silence_vad="silero"` (default;
the `silero-vad` package's ONNX graph, onnxruntime only) or "energy" (numpy only, for a core install).
Two optional item fields beyond eot-bench's contract, for callers that have them: `words` ([{"word", "start",
"end"}], seconds from the audio start) and `silence_s` (the silence so far).

    from vad_turn.fusion.eotbench import EotBenchModel
    p = EotBenchModel().predict_batch(items)        # float64 (n,) in [0, 1]

`python -m vad_turn.fusion.eotbench_run` scores it on any dataset in eot-bench's schema with output in the
harness's artifact layout.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, decode_audio_bytes, prepare_audio
from vad_turn.core.schema import Word

from .runtime import DEFAULT_TURN_MODEL_DIR, TurnModel, as_messages, as_words

_SR = SAMPLE_RATE_HZ
SILENCE_VADS = ("silero", "energy")
MAX_SILENCE_SCAN_S = 8.0  # the trailing silence is measured over at most this much audio (it saturates there)
LANGUAGES = ("en",)  # the lexical branch and the fusion were trained on English only


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


def trailing_silence_s(audio: np.ndarray, vad) -> float:
    """Seconds from the end of the last frame `vad` (a `vad_turn.engines.vad.FrameVAD`) calls speech (p >= its
    threshold) to the end of `audio` (float32 16 kHz), measured over its last MAX_SILENCE_SCAN_S (no speech
    there: that whole span)."""
    from vad_turn.engines.vad import frame_audio

    tail = audio[-int(MAX_SILENCE_SCAN_S * _SR):]
    vad.reset()
    frames = frame_audio(vad, tail)
    speech = np.flatnonzero(np.array([vad.process(f) for f in frames]) >= vad.threshold)
    if speech.size == 0:
        return tail.size / _SR
    return max(tail.size - (int(speech[-1]) + 1) * vad.frame_samples, 0) / _SR


def _clean_messages(messages, index: int) -> tuple:
    """The dataset's messages ({role, content}; eot-bench-data's non-English rows carry content None)."""
    try:
        return as_messages([{"role": m.get("role") or "user", "content": m.get("content") or ""}
                            if isinstance(m, dict) else m for m in messages or ()])
    except (ValueError, TypeError, AttributeError) as e:
        raise ValueError(f"item {index}: {e}") from e


class EotBenchModel:
    """The fused turn model behind eot-bench's batch adapter contract (see the module docstring).

    model: a turn model folder (default the shipped one); int8: the int8 acoustic graph; silence_vad: "silero"
    or "energy", the VAD that measures the silence so far; threads: onnxruntime threads (no effect on p_eot).
    """

    display_name = "vad-turn fused (audio + transcript)"

    def __init__(self, model: str | Path = DEFAULT_TURN_MODEL_DIR, *, int8: bool = False, threads: int = 1,
                 silence_vad: str = "silero"):
        if silence_vad not in SILENCE_VADS:
            raise ValueError(f"silence_vad must be one of {', '.join(SILENCE_VADS)}, got {silence_vad!r}")
        from vad_turn.engines.vad import make_vad

        self.model = TurnModel(Path(model), int8=int8, threads=threads)
        self.threshold = self.model.threshold
        self.int8, self.silence_vad = bool(int8), silence_vad
        self._vad = make_vad(silence_vad)

    @property
    def adapter_id(self) -> str:
        """Names everything that changes a prediction: the model's files, the int8 graph, the silence VAD."""
        from vad_turn.core.model_files import sha256_file

        from .runtime import turn_model_files

        files = [f for f in turn_model_files(self.model.path) if self.int8 or "int8" not in f.name]
        digest = hashlib.sha256("".join(sha256_file(f) for f in files).encode()).hexdigest()[:12]
        return f"vad-turn/fused-{digest}{'-int8' if self.int8 else ''}-silence-{self.silence_vad}"

    def supports_language(self, lang_code: str) -> bool:
        """English only (the lexical branch's training data); region tags (en-US) count as English."""
        return str(lang_code).strip().lower().replace("_", "-").split("-")[0] in LANGUAGES

    def item_query(self, item: dict, index: int) -> tuple[np.ndarray, tuple, tuple, float]:
        """(audio 16 kHz, words, context messages, silence_s) of one item (see the module docstring)."""
        if not isinstance(item, dict):
            raise ValueError(f"item {index}: expected a dict with audio and messages, got {type(item).__name__}")
        audio = item_audio(item, index)
        duration_s = audio.size / _SR
        try:
            words = as_words(item.get("words") or ())
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"item {index}: {e}") from e
        msgs = _clean_messages(item.get("messages"), index)
        silence = item.get("silence_s")
        if silence is None:
            silence = trailing_silence_s(audio, self._vad)
        try:
            silence = float(silence)
        except (TypeError, ValueError):
            silence = float("nan")
        if not np.isfinite(silence) or silence < 0:
            raise ValueError(f"item {index}: silence_s must be a finite number >= 0, got {item.get('silence_s')!r}")
        if not words and msgs and msgs[-1].role == "user":
            text, msgs = msgs[-1].content.split(), msgs[:-1]
            step = max(duration_s - silence, 0.0) / max(len(text), 1)
            words = tuple(Word(w, i * step, (i + 1) * step) for i, w in enumerate(text))
        return audio, words, msgs, silence

    def predict_batch(self, items: Sequence[dict[str, Any]]) -> np.ndarray:
        """p_eot float64 (len(items),) in [0, 1], one per item."""
        return self.model.p_eot([self.item_query(it, i) for i, it in enumerate(items)])

    def predict(self, item: dict[str, Any]) -> float:
        return float(self.predict_batch([item])[0])

