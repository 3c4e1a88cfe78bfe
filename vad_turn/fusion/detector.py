"""The fused turn model as a harness detector (`FusedDetector`, registered as "fused")."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.harness.detectors import require_bool

from .runtime import DEFAULT_TURN_MODEL_DIR, TurnModel


class FusedDetector:
    """The fused model as a harness `Detector` ("fused"). Rows without audio use the lexical + timing
    mode; queries with no visible word the acoustic + timing mode.

    model: a turn model folder (default the shipped vad_turn/models/turn); int8: the int8 acoustic graph.
    """

    needs_audio = True
    needs_words = True

    def __init__(self, model: str | Path = DEFAULT_TURN_MODEL_DIR, int8: bool = False, threads: int | str = 1,
                 name: str = "fused"):
        self.model = TurnModel(Path(model), threads=int(threads), int8=require_bool("int8", int8))
        self.name = name

    def check_transcript_lag(self, lag_s: float) -> bool:
        """Called by the harness with its transcript lag: warns (the lexical branch's
        `TranscriptLagMismatch`) when it differs from the lag its lexical branch was trained for, and
        when it differs from the lag the fusion was fitted with (p_eot is calibrated for that one)."""
        import warnings

        ok = self.model.branches.lexical.check_transcript_lag(lag_s)
        if abs(float(lag_s) - self.model.transcript_lag_s) > 1e-6:
            warnings.warn(f"{self.model.path}: fusion fitted with transcript lag {self.model.transcript_lag_s:g} s, "
                          f"queried with {float(lag_s):g} s; its p_eot is not calibrated for that", stacklevel=2)
            ok = False
        return ok

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(self.model.p_eot([(audio, tuple(words), tuple(messages), float(silence_s))])[0])

    def predict_batch(self, queries: Sequence) -> np.ndarray:
        return self.model.p_eot([(q.audio, q.words, q.messages, q.silence_s) for q in queries])
