"""Real conversational speech as the reference for the prosody measures.

- AMI (`ami_excerpts/`): for each listed excerpt (the `debug.*.lst` files; `empty.wav` is never
  read), the parts of RTTM speaker segments that no other speaker's segment overlaps (with
  `margin_s` on both sides), when at least `min_utterance_s` long, cut from the 16 kHz float WAV. RTTM parsing is
  `vad_turn.data.corpora.ami.read_rttm`, audio loading `vad_turn.core.audio.load_audio`. AMI is a
  far-field meeting mix, so background talk and room noise are part of the reference.
- clips (`clips/`): `jfk.flac` (a speech, not conversation) and `silero_test.wav`, each whole.

Utterances are ordered by (excerpt, start) and the first `max_utterances` are kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, load_audio, seconds_to_samples

AMI_DIR = "ami_excerpts"
AMI_LISTS = ("debug.train", "debug.development", "debug.test")
CLIPS = ("clips/jfk.flac", "clips/silero_test.wav")


@dataclass(frozen=True)
class Utterance:
    id: str  # "ami:trn00:3.168" or "clips:jfk.flac"
    source: str  # "ami" | "clips"
    audio: np.ndarray  # float32 (n_samples,), 16 kHz mono


def clean_segments(segments: list[tuple[str, float, float]], *, min_utterance_s: float = 1.0,
                   margin_s: float = 0.1) -> list[tuple[str, float, float]]:
    """Single-speaker stretches (speaker, start_s, end_s) of at least `min_utterance_s`.

    Each segment minus every other speaker's segments (widened by `margin_s` on both sides);
    the remaining pieces long enough are kept, in start order.
    """
    out = []
    for spk, a, b in segments:
        pieces = [(a, b)]
        for s, s_a, s_b in segments:
            if s == spk:
                continue
            lo, hi = s_a - margin_s, s_b + margin_s
            pieces = [q for p_a, p_b in pieces for q in ((p_a, min(p_b, lo)), (max(p_a, hi), p_b)) if q[1] > q[0]]
        out += [(spk, p_a, p_b) for p_a, p_b in pieces if p_b - p_a >= min_utterance_s]
    return sorted(out, key=lambda s: s[1])


def ami_utterances(data_root: Path, *, min_utterance_s: float = 1.0, margin_s: float = 0.1) -> Iterator[Utterance]:
    """Single-speaker AMI segments cut from the excerpts (see module docstring)."""
    from vad_turn.data.corpora import read_id_list, require_file
    from vad_turn.data.corpora.ami import read_rttm

    root = Path(data_root) / AMI_DIR
    for prefix in AMI_LISTS:
        uris = read_id_list(require_file(root, f"{prefix}.lst"))
        rttm = read_rttm(require_file(root, f"{prefix}.rttm"))
        for uri in uris:
            segs = clean_segments(rttm.get(uri, []), min_utterance_s=min_utterance_s, margin_s=margin_s)
            if not segs:
                continue
            audio = load_audio(require_file(root, f"{uri}.wav"))
            for spk, a, b in segs:
                cut = audio[seconds_to_samples(a): seconds_to_samples(b)]
                if cut.size >= int(min_utterance_s * SAMPLE_RATE_HZ * 0.9):
                    yield Utterance(f"ami:{uri}:{a:.3f}:{spk}", "ami", cut)


def clip_utterances(data_root: Path) -> Iterator[Utterance]:
    for rel in CLIPS:
        yield Utterance(f"clips:{Path(rel).name}", "clips", load_audio(Path(data_root) / rel))


def reference_utterances(data_root: Path, sources: tuple[str, ...] = ("ami", "clips"), *,
                         max_utterances: int = 60, min_utterance_s: float = 1.0) -> list[Utterance]:
    """The first `max_utterances` AMI utterances plus the clips, for the requested sources."""
    out: list[Utterance] = []
    unknown = set(sources) - {"ami", "clips"}
    if unknown:
        raise ValueError(f"unknown reference sources {sorted(unknown)} (known: ami, clips)")
    if "ami" in sources:
        for u in ami_utterances(data_root, min_utterance_s=min_utterance_s):
            if len(out) >= max_utterances:
                break
            out.append(u)
    if "clips" in sources:
        out += list(clip_utterances(data_root))
    return out
