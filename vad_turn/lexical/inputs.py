"""The lexical model's inputs, one definition for training, torch and ONNX inference: the timing
features of the visible words, the context text, the context length and the transcript lag the
shipped model was trained with."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vad_turn.core.schema import DEFAULT_TRANSCRIPT_LAG_S, Message, Word, normalize_text  # noqa: F401  (re-exported)

TIMING_FEATURES = ("silence_s", "log1p_n_seen", "no_words", "last_dur_s", "gap_before_last_s", "rate_wps")



RATE_WINDOW_WORDS = 5



CONTEXT_MAX_TOKENS = 24






def timing_features(words: Sequence[Word], silence_s: float) -> np.ndarray:
    """float32 (len(TIMING_FEATURES),): silence so far (s, clipped to [0, 3]), log(1 + n visible
    words), 1 if no word is visible, the last visible word's duration (s, <= 2), the pause before
    it (s, <= 2) and the speaking rate over the last <= 5 visible words (words/s, <= 8)."""
    n = len(words)
    f = np.zeros(len(TIMING_FEATURES), dtype=np.float32)
    f[0] = min(max(float(silence_s), 0.0), 3.0)
    f[1] = np.log1p(n)
    f[2] = float(n == 0)
    if n:
        last = words[-1]
        f[3] = min(max(last.end - last.start, 0.0), 2.0)
        f[4] = min(max(last.start - words[-2].end, 0.0), 2.0) if n > 1 else 0.0
        first = words[max(n - RATE_WINDOW_WORDS, 0)]
        span = last.end - first.start
        f[5] = min(min(n, RATE_WINDOW_WORDS) / span, 8.0) if span > 0 else 0.0
    return f



def context_text(messages: Sequence[Message]) -> str:
    """The context of a decision: the last other-party ("assistant") message, ASR-normalised ("" if none)."""
    for m in reversed(messages):
        role, content = (m.role, m.content) if isinstance(m, Message) else (m["role"], m["content"])
        if role == "assistant":
            return normalize_text(content.split())
    return ""
