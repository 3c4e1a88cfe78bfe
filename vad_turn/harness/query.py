"""What a detector is shown at one moment of a user's silence: the one definition of a detector query.

Both the evaluation harness (`evaluate.turn_queries`, and through it the training examples) and the
live pipeline (`pipeline.runtime.processors.turn.TurnProcessor`) build their queries with `detector_query`,
so the operating points measured offline are used on the same input distribution live:

- audio: the turn's audio from its origin up to the query time t only (round(t * 16 kHz) samples);
- words: those that ended at least `transcript_lag_s` before t (`visible_words`). The lag is a
  property of the STT that produces the words (`vad_turn.engines.stt.stt_word_lag`): the harness
  simulates it, and the pipeline applies the same rule to the words its STT has delivered, so a
  word the STT delivered early is not shown sooner than the evaluation assumed;
- messages: the earlier turns, oldest first; silence_s: the silence so far in this span;
- when: every `QUERY_GRID_S` (0.1 s) of silence, in the harness and live alike.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, seconds_to_samples
from vad_turn.core.schema import Message, Word

from .detectors import Query

# A detector is asked every QUERY_GRID_S seconds of silence (t = span start + k * QUERY_GRID_S): the harness's
# evaluation grid, the live pipeline's and the Pipecat analyzer's, so operating points transfer.
QUERY_GRID_S = 0.1


def visible_words(words: Sequence[Word], t_s: float, transcript_lag_s: float,
                  ends: np.ndarray | None = None) -> tuple[Word, ...]:
    """The words of `words` (times in s from the audio origin) whose end is <= t_s - transcript_lag_s.

    `ends` (float64 (n_words,), the words' ends, non-decreasing) makes it a bisection: the visible words
    are then a prefix. Without it (or with ends out of order) the words are filtered one by one."""
    limit = float(t_s) - float(transcript_lag_s) + 1e-9
    if ends is not None:
        return tuple(words[: int(np.searchsorted(ends, limit, side="right"))])
    return tuple(w for w in words if w.end <= limit)


def detector_query(audio: np.ndarray | None, words: Sequence[Word], messages: Sequence[Message], t_s: float,
                   silence_s: float, *, transcript_lag_s: float, needs_audio: bool = True, needs_words: bool = True,
                   word_ends: np.ndarray | None = None) -> Query:
    """The query at time `t_s` (s from the audio origin) after `silence_s` of silence.

    audio: float32 (n,) 16 kHz mono from the origin, at least up to t_s (a longer buffer is cut at t_s: the
    harness passes the whole turn, padded with silence), or None. words: every word known, with times from the
    same origin; only the visible ones are shown (`visible_words`). A detector that does not need audio
    (words) gets None (no words)."""
    view = None
    if needs_audio and audio is not None:
        view = audio[: seconds_to_samples(t_s, SAMPLE_RATE_HZ)]
    seen = visible_words(words, t_s, transcript_lag_s, word_ends) if needs_words else ()
    return Query(view, seen, tuple(messages), float(silence_s))
