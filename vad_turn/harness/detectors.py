"""The end-of-turn detector protocol, the VAD-only baseline and the detector registry.

A detector is a plain synchronous function of what a streaming system has at one moment of a
user's silence: `predict(audio, words, messages, silence_s) -> p_eot`. VAD-only, lexical,
acoustic and fused models and external adapters (e.g. Smart Turn) all implement it, so the
evaluation harness, the pipeline and the demo treat them alike.

Register a detector with `register_detector("name", "package.module:Factory")` (lazy: nothing is
imported until `make_detector("name")`), or pass a "package.module:Factory" spec directly.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from vad_turn.core.schema import Message, Word


@dataclass(frozen=True)
class Query:
    """One moment of a user's silence, as a streaming system sees it.

    audio: float32 (n_samples,), 16 kHz mono in [-1, 1], the row's audio from its origin up to
        the query time only (n_samples = round(t_s * 16000)); None for text-only rows or when the
        detector does not need audio.
    words: the words whose end is at least the transcript lag before the query time, in order
        (empty when the detector does not need words).
    messages: the previous turns, oldest first.
    silence_s: seconds of silence so far in the current span (>= 0).
    """

    audio: np.ndarray | None
    words: tuple[Word, ...]
    messages: tuple[Message, ...]
    silence_s: float


@runtime_checkable
class Detector(Protocol):
    """What the harness needs from an end-of-turn detector.

    `predict` returns p_eot in [0, 1]: the probability that the user has finished their turn.
    `needs_audio` / `needs_words` let the harness skip decoding audio or collecting words. A
    detector may also define `predict_batch(queries: Sequence[Query]) -> array (n_queries,)`
    giving the same values as calling `predict` on each query, only faster.
    """

    name: str
    needs_audio: bool
    needs_words: bool

    def predict(
        self,
        audio: np.ndarray | None,
        words: Sequence[Word],
        messages: Sequence[Message],
        silence_s: float,
    ) -> float: ...


class VADOnlyDetector:
    """The VAD-only baseline: p_eot = 1 whenever the user is silent.

    The harness only queries inside silence spans, so this detector always answers 1 and the
    policy reduces to "end the turn after `action_delay_s` of silence" (or at the timeout).
    """

    name = "vad-only"
    needs_audio = False
    needs_words = False

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return 1.0

    def predict_batch(self, queries: Sequence[Query]) -> np.ndarray:
        return np.ones(len(queries), dtype=np.float64)


def predict_many(detector: Detector, queries: Sequence[Query]) -> np.ndarray:
    """p_eot (n_queries,) float64 in [0, 1], through `predict_batch` when the detector has one.

    Raises ValueError (naming the detector) for a wrong number of outputs or values outside
    [0, 1] / non-finite, instead of letting a broken model produce silently wrong metrics.
    """
    if not queries:
        return np.zeros(0, dtype=np.float64)
    batch = getattr(detector, "predict_batch", None)
    if callable(batch):
        p = np.asarray(batch(queries), dtype=np.float64).reshape(-1)
    else:
        p = np.array([float(detector.predict(q.audio, q.words, q.messages, q.silence_s)) for q in queries])
    name = getattr(detector, "name", type(detector).__name__)
    if p.shape != (len(queries),):
        raise ValueError(f"detector {name!r} returned {p.shape[0]} scores for {len(queries)} queries")
    bad = ~np.isfinite(p) | (p < 0.0) | (p > 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"detector {name!r} returned p_eot={float(p[i])} (query {i}, silence {queries[i].silence_s} s); "
                         "p_eot must be a finite probability in [0, 1]")
    return p


# ----------------------------------------------------------------------------- registry

# name -> "module:factory". Add a line here or call `register_detector` from your own code.
DETECTORS: dict[str, str | Callable[..., Any]] = {
    "vad-only": "vad_turn.harness.detectors:VADOnlyDetector",
    "acoustic": "vad_turn.acoustic.runtime:AcousticDetector",
    "lexical": "vad_turn.lexical.runtime:LexicalDetector",
    "lexical-lr": "vad_turn.lexical.baselines:LogRegDetector",
    "lexical-zeroshot": "vad_turn.lexical.baselines:ZeroShotDetector",
    "fused": "vad_turn.fusion.detector:FusedDetector",
    "smart-turn": "vad_turn.peers.smart_turn:SmartTurnDetector",
}


def register_detector(name: str, factory: str | Callable[..., Any]) -> None:
    """Make `make_detector(name, **opts)` build a detector with `factory(**opts)`.

    `factory` is a callable or a lazy "package.module:attribute" spec (imported on first use).
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"detector name must be a non-empty string, got {name!r}")
    DETECTORS[name] = factory


def available_detectors() -> list[str]:
    return sorted(DETECTORS)


def _resolve(spec: str) -> Callable[..., Any]:
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"detector spec {spec!r} must look like 'package.module:Factory'")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"detector spec {spec!r}: cannot import {module} ({e})") from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"detector spec {spec!r}: {module} has no attribute {attr}")
        obj = getattr(obj, part)
    return obj


def make_detector(name: str, **opts: Any) -> Detector:
    """Build a registered detector by name (or from a "package.module:Factory" spec).

    `opts` go to the factory (e.g. a checkpoint path). The result is checked against `Detector`.
    """
    if name in DETECTORS:
        factory = DETECTORS[name]
    elif ":" in name:
        factory = name
    else:
        raise ValueError(f"unknown detector {name!r}; registered: {', '.join(available_detectors())} "
                         "(or pass 'package.module:Factory')")
    if isinstance(factory, str):
        factory = _resolve(factory)
    det = factory(**opts)
    missing = [a for a in ("name", "needs_audio", "needs_words", "predict") if not hasattr(det, a)]
    if missing:
        raise TypeError(f"detector {name!r} ({type(det).__name__}) lacks {', '.join(missing)} of the Detector protocol")
    return det


def parse_detector_opts(opts: Sequence[str]) -> dict[str, str | bool]:
    """["checkpoint=runs/x", "int8=true"] -> {"checkpoint": "runs/x", "int8": True}.

    true/false/yes/no (any case) become booleans; every other value stays a string.
    """
    flags = {"true": True, "yes": True, "false": False, "no": False}
    out: dict[str, str | bool] = {}
    for o in opts:
        key, sep, value = o.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"detector option {o!r} must look like key=value")
        out[key.strip().replace("-", "_")] = flags.get(value.strip().lower(), value)
    return out


def require_bool(name: str, value) -> bool:
    """A detector's boolean option, refusing strings such as "0" that would silently read as true."""
    if not isinstance(value, bool):
        raise TypeError(f"detector option {name} must be true or false, got {value!r}")
    return value
