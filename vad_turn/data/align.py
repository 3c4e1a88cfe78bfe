"""Cut a whole-turn TTS utterance at the turn's holds, by forced alignment of its words.

Rendering each inter-pausal unit on its own makes every unit end with final intonation, so a hold
sounds like an end (issue 14 part 1). The whole-turn mode of `vad_turn.data.render` synthesises the
turn as one utterance instead; this module finds where its words are (faster-whisper tiny.en word
times on the synthesised audio, `WhisperAligner`), matches the recognised words to the turn's words
(`difflib` on normalised spellings), and cuts between the word before each hold and the word after it,
at the quietest 10 ms frame of that gap (`hold_cut_s`). The pieces keep the intonation the synthesiser
gave the whole sentence: a continuation rise or level before a hold, the final fall at the end.

When a word next to a hold was not recognised (a filler such as "uh" often is not), the cut goes to the
quietest frame between the nearest recognised words on each side, at most MAX_UNMATCHED words away; a hold
with no recognised word that near cannot be placed: the turn is skipped and counted (`split_at_holds`
returns None).
"""
from __future__ import annotations

import difflib
import os
from collections.abc import Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, seconds_to_samples
from vad_turn.core.schema import normalize_word

CUT_MARGIN_S = 0.08  # how far around the aligned gap the cut may move to the quietest frame
MAX_UNMATCHED = 2  # unrecognised words allowed between a hold and the nearest recognised word on each side
FRAME_S = 0.01


class WhisperAligner:
    """Word times of 16 kHz speech by faster-whisper tiny.en (int8, CPU), loaded on first use."""

    def __init__(self, n_threads: int = 1):
        self.n_threads = n_threads
        self._model = None

    def words(self, audio: np.ndarray) -> list[tuple[str, float, float]]:
        """audio: float32 (n_samples,) 16 kHz mono -> [(word, start_s, end_s)] in time order."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from vad_turn.core.onnx import import_onnxruntime

            import_onnxruntime()  # before faster_whisper imports it
            from faster_whisper import WhisperModel

            from vad_turn.engines.stt import whisper_model_path

            self._model = WhisperModel(str(whisper_model_path()), device="cpu", compute_type="int8",
                                       cpu_threads=self.n_threads)
        segs, _ = self._model.transcribe(audio.astype(np.float32), beam_size=1, language="en", vad_filter=False,
                                         condition_on_previous_text=False, word_timestamps=True, temperature=0.0)
        out = [(w.word.strip(), float(w.start), float(w.end)) for s in segs for w in (s.words or ()) if w.word.strip()]
        return sorted(out, key=lambda w: (w[1], w[2]))


def match_words(target: Sequence[str], recognized: Sequence[str]) -> dict[int, int]:
    """{target index: recognised index} for the words equal after `normalize_word`, in order (difflib blocks)."""
    a = [normalize_word(w) for w in target]
    b = [normalize_word(w) for w in recognized]
    out = {}
    for blk in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for k in range(blk.size):
            out[blk.a + k] = blk.b + k
    return out


def hold_cut_s(audio: np.ndarray, before_end_s: float, after_start_s: float, margin_s: float = CUT_MARGIN_S) -> float:
    """The cut time (s) between a word ending at `before_end_s` and the next starting at `after_start_s`:
    the centre of the quietest FRAME_S frame in [before_end_s - margin_s, after_start_s + margin_s]."""
    lo = max(0.0, min(before_end_s, after_start_s) - margin_s)
    hi = min(audio.size / SAMPLE_RATE_HZ, max(before_end_s, after_start_s) + margin_s)
    n = seconds_to_samples(FRAME_S)
    i0, i1 = seconds_to_samples(lo), seconds_to_samples(hi)
    if i1 - i0 < n:
        return (lo + hi) / 2
    seg = audio[i0:i1 - (i1 - i0) % n].reshape(-1, n).astype(np.float64)
    k = int(np.argmin(np.sqrt(np.mean(seg ** 2, axis=1))))
    return lo + (k + 0.5) * FRAME_S


def split_at_holds(audio: np.ndarray, target: Sequence[str], groups: Sequence[Sequence[int]],
                   recognized: Sequence[tuple[str, float, float]]) -> list[np.ndarray] | None:
    """Cut `audio` (the whole turn synthesised as one utterance) into one piece per inter-pausal unit.

    target: the turn's words; groups: word indices of each unit (`vad_turn.data.render.ipus`);
    recognized: `WhisperAligner.words(audio)`. Returns len(groups) float32 pieces, or None when a hold's
    neighbouring words are not both matched (or the cuts would not increase)."""
    if len(groups) == 1:
        return [audio]
    m = match_words(target, [w for w, _, _ in recognized])
    cuts = []
    for g_prev, g_next in zip(groups[:-1], groups[1:]):
        # the nearest recognised words on each side, at most MAX_UNMATCHED words away (fillers such as "uh"
        # are often not transcribed): the cut goes to the quietest frame between them
        # (the turn's start or end stands in for a recognised word when the unit there is that short)
        before = next((k for k in range(g_prev[-1], g_prev[-1] - MAX_UNMATCHED - 1, -1) if k in m or k < 0), None)
        after = next((k for k in range(g_next[0], g_next[0] + MAX_UNMATCHED + 1) if k in m or k >= len(target)), None)
        if before is None or after is None:
            return None
        a_s = recognized[m[before]][2] if before >= 0 else 0.0
        b_s = recognized[m[after]][1] if after < len(target) else audio.size / SAMPLE_RATE_HZ
        exact = before == g_prev[-1] and after == g_next[0]
        cuts.append(hold_cut_s(audio, a_s, b_s) if exact else hold_cut_s(audio, a_s, b_s, margin_s=0.0))
    if any(b <= a for a, b in zip([0.0, *cuts], [*cuts, audio.size / SAMPLE_RATE_HZ])):
        return None
    edges = [0, *(seconds_to_samples(c) for c in cuts), audio.size]
    return [audio[a:b] for a, b in zip(edges[:-1], edges[1:])]
