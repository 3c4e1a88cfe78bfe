"""Speech regions (Silero VAD) and recognised words with times (faster-whisper) of one call's audio.

- `vad_probs`: Silero VAD (`vad_turn.engines.vad.SileroVAD`, ONNX, 1 thread) over the whole user channel:
  float32 (n_frames,), frame i covering [i * 0.032, (i + 1) * 0.032) s.
- `speech_regions`: frames -> disjoint (start_s, end_s) speech regions with hysteresis (speech from a
  frame >= `threshold` until a frame < `neg_threshold`), gaps shorter than `min_silence_s` merged,
  then regions shorter than `min_speech_s` dropped (clicks). Every silence between two regions is
  therefore >= min_silence_s: a hold inside a turn is exactly such a gap.
- `asr_segments` / `pack_chunks`: regions closer than `merge_gap_s` become one segment (the real audio
  between them kept), padded by `pad_s` of real audio; segments are concatenated with `gap_s` of
  zeros into chunks of at most `max_chunk_s` (Whisper's 30 s window), so the encoder runs on speech
  only (about 5 % of GetGoing's audio) and each short answer is heard with its neighbours.
- `transcribe_regions`: faster-whisper tiny.en (int8, CPU, greedy at temperature 0 so that a rebuild
  gives the same words) with `word_timestamps=True` on each chunk; each word's chunk times are mapped
  back to the call's times through the segment it overlaps most (words falling in the zero gaps go to
  the nearest segment, clipped to it).
- `empty_segments` + `SpeechModels.transcribe_segment`: a second pass over the segments that got no
  word in their chunk, each transcribed alone (`RefillParams`).

Models load in `SpeechModels`, never at import.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, seconds_to_samples
from vad_turn.core.schema import MIN_SILENCE_S


@dataclass(frozen=True)
class VadParams:
    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_silence_s: float = MIN_SILENCE_S
    min_speech_s: float = 0.1


@dataclass(frozen=True)
class AsrParams:
    merge_gap_s: float = 1.0
    pad_s: float = 0.2
    gap_s: float = 0.5
    max_chunk_s: float = 28.0
    beam_size: int = 1
    compute_type: str = "int8"
    temperature: float = 0.0  # greedy only: faster-whisper's fallback samples at T > 0, so reruns would differ


@dataclass(frozen=True)
class RefillParams:
    """The second ASR pass: ASR segments that got no word in their chunk but hold at least
    `min_speech_s` of VAD speech are transcribed alone (Whisper drops some short repeated answers,
    "Yes. Yes. Yes.", when they share a chunk)."""

    enabled: bool = True
    min_speech_s: float = 0.2


FRAME_S = 512 / SAMPLE_RATE_HZ  # Silero's hop at 16 kHz


def speech_regions(probs: np.ndarray, params: VadParams = VadParams(), frame_s: float = FRAME_S,
                   audio_end_s: float | None = None) -> list[tuple[float, float]]:
    """probs: float (n_frames,) in [0, 1] -> sorted disjoint speech regions in seconds (module docstring)."""
    raw: list[list[float]] = []
    on = False
    for i, p in enumerate(np.asarray(probs, dtype=np.float64)):
        if not on and p >= params.threshold:
            on = True
            raw.append([i * frame_s, (i + 1) * frame_s])
        elif on and p < params.neg_threshold:
            on = False
        elif on:
            raw[-1][1] = (i + 1) * frame_s
    merged: list[list[float]] = []
    for a, b in raw:
        if merged and a - merged[-1][1] < params.min_silence_s - 1e-9:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    end = float("inf") if audio_end_s is None else audio_end_s
    return [(round(a, 6), round(min(b, end), 6)) for a, b in merged
            if min(b, end) - a >= params.min_speech_s - 1e-9]


def asr_segments(regions, audio_end_s: float, params: AsrParams = AsrParams()) -> list[tuple[float, float]]:
    """Regions joined across gaps < merge_gap_s, padded by pad_s (not past the neighbours' padding or
    the audio), each at most max_chunk_s long (longer ones cut into equal parts)."""
    groups: list[list[float]] = []
    for a, b in regions:
        if groups and a - groups[-1][1] < params.merge_gap_s:
            groups[-1][1] = b
        else:
            groups.append([a, b])
    out = []
    for k, (a, b) in enumerate(groups):
        lo = max(0.0, a - params.pad_s, (groups[k - 1][1] + a) / 2 if k else 0.0)
        hi = min(audio_end_s, b + params.pad_s, (b + groups[k + 1][0]) / 2 if k + 1 < len(groups) else audio_end_s)
        n = int(np.ceil((hi - lo) / params.max_chunk_s - 1e-9)) or 1
        step = (hi - lo) / n
        out += [(lo + i * step, lo + (i + 1) * step) for i in range(n)]
    return out


def empty_segments(regions, words, audio_end_s: float, asr: AsrParams = AsrParams(),
                   refill: RefillParams = RefillParams()) -> list[tuple[float, float]]:
    """The ASR segments with no recognised word (no word's midpoint inside) and >= refill.min_speech_s of speech."""
    mids = sorted((w[1] + w[2]) / 2 for w in words)
    out = []
    for a, b in asr_segments(regions, audio_end_s, asr):
        k = int(np.searchsorted(mids, a))
        speech = sum(max(0.0, min(rb, b) - max(ra, a)) for ra, rb in regions)
        if (k == len(mids) or mids[k] > b) and speech >= refill.min_speech_s - 1e-9:
            out.append((a, b))
    return out


def pack_chunks(segments, params: AsrParams = AsrParams()) -> list[list[tuple[float, float]]]:
    """Consecutive segments grouped so that each group's length (+ gap_s between segments) <= max_chunk_s."""
    chunks: list[list[tuple[float, float]]] = []
    used = 0.0
    for a, b in segments:
        d = b - a
        if chunks and used + params.gap_s + d <= params.max_chunk_s + 1e-9:
            chunks[-1].append((a, b))
            used += params.gap_s + d
        else:
            chunks.append([(a, b)])
            used = d
    return chunks


def chunk_audio(audio: np.ndarray, chunk, gap_s: float) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """(concatenated audio, [(chunk_start_s, orig_start_s, dur_s)] per segment) of one chunk."""
    parts, where, t = [], [], 0.0
    gap = np.zeros(seconds_to_samples(gap_s), dtype=np.float32)
    for k, (a, b) in enumerate(chunk):
        seg = audio[seconds_to_samples(a): seconds_to_samples(b)]
        if k:
            parts.append(gap)
            t += gap.size / SAMPLE_RATE_HZ
        parts.append(seg)
        where.append((t, a, seg.size / SAMPLE_RATE_HZ))
        t += seg.size / SAMPLE_RATE_HZ
    return np.concatenate(parts).astype(np.float32, copy=False), where


def map_word_time(start_s: float, end_s: float, where) -> tuple[float, float]:
    """A word's chunk times -> call times via the segment it overlaps most (else the nearest), clipped to it."""
    best, best_ov, best_dist = 0, -1.0, float("inf")
    for k, (c0, _, d) in enumerate(where):
        ov = min(end_s, c0 + d) - max(start_s, c0)
        dist = max(c0 - end_s, start_s - (c0 + d), 0.0)
        if ov > best_ov + 1e-9 or (ov <= 0 and best_ov <= 0 and dist < best_dist):
            best, best_ov, best_dist = k, ov, dist
    c0, o0, d = where[best]
    a = min(max(start_s, c0), c0 + d) - c0 + o0
    b = min(max(end_s, c0), c0 + d) - c0 + o0
    return round(a, 3), round(max(a, b), 3)


class SpeechModels:
    """Silero VAD and faster-whisper tiny.en (int8, CPU), loaded once per process."""

    def __init__(self, asr: AsrParams = AsrParams(), n_threads: int = 1):
        from vad_turn.core.onnx import import_onnxruntime
        from vad_turn.engines.vad import SileroVAD

        self.vad = SileroVAD(n_threads=n_threads)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import_onnxruntime()  # before faster_whisper imports it: no telemetry files
        from faster_whisper import WhisperModel

        from vad_turn.engines.stt import whisper_model_path

        self.asr_params = asr
        self.whisper = WhisperModel(str(whisper_model_path()), device="cpu", compute_type=asr.compute_type,
                                    cpu_threads=n_threads)

    def vad_probs(self, audio: np.ndarray) -> np.ndarray:
        """audio: float32 (n_samples,) 16 kHz mono -> float32 (ceil(n_samples / 512),) speech probabilities."""
        from vad_turn.engines.vad import run_vad

        return run_vad(self.vad, audio, SAMPLE_RATE_HZ)[1]

    def transcribe_regions(self, audio: np.ndarray, regions) -> list[tuple[str, float, float, float]]:
        """[(word, start_s, end_s, probability)] in call time, time order, over the speech regions only."""
        p = self.asr_params
        words = []
        for chunk in pack_chunks(asr_segments(regions, audio.size / SAMPLE_RATE_HZ, p), p):
            x, where = chunk_audio(audio, chunk, p.gap_s)
            if x.size < SAMPLE_RATE_HZ // 10:
                continue
            segs, _ = self.whisper.transcribe(x, beam_size=p.beam_size, language="en", vad_filter=False,
                                              condition_on_previous_text=False, word_timestamps=True,
                                              temperature=p.temperature)
            for s in segs:
                for w in s.words or ():
                    text = w.word.strip()
                    if text:
                        a, b = map_word_time(float(w.start), float(w.end), where)
                        words.append((text, a, b, round(float(w.probability), 3)))
        words.sort(key=lambda w: (w[1], w[2]))
        return words

    def transcribe_segment(self, audio: np.ndarray, start_s: float, end_s: float) -> list[tuple[str, float, float, float]]:
        """[(word, start_s, end_s, probability)] of audio[start_s:end_s] transcribed alone, in call time."""
        p = self.asr_params
        x = audio[seconds_to_samples(start_s): seconds_to_samples(end_s)]
        if x.size < SAMPLE_RATE_HZ // 10:
            return []
        segs, _ = self.whisper.transcribe(x, beam_size=p.beam_size, language="en", vad_filter=False,
                                          condition_on_previous_text=False, word_timestamps=True,
                                          temperature=p.temperature)
        where = [(0.0, start_s, x.size / SAMPLE_RATE_HZ)]
        return [(w.word.strip(), *map_word_time(float(w.start), float(w.end), where), round(float(w.probability), 3))
                for s in segs for w in (s.words or ()) if w.word.strip()]
