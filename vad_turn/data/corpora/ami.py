"""AMI turns with real audio from RTTM speaker segments (the `ami_excerpts` debug protocol).

Inputs (read in place, see data/recipes/ami.json): per split `<prefix>.lst` (uris), `<prefix>.rttm`
(`SPEAKER uri 1 start_s duration_s <NA> <NA> speaker <NA> <NA>`), `<prefix>.uem` and `<uri>.wav`
(16 kHz float WAV). Files not listed (e.g. `empty.wav`) are never read.

- Units are RTTM segments; there are no words (words empty, word_timing "none", no messages).
- Backchannels: a segment shorter than `backchannel_max_s` (1.0 s) of a speaker other than the
  floor holder does not take the floor (it sets `backchannel_context`) unless the next segment to
  start after it is by the same speaker (then it opens that speaker's turn).
- Holds are the gaps >= min_silence_s between the holder's (merged) segments in the turn.
- Audio: the clip from the turn's first segment start to min(last segment end + tail_s (3.0 s),
  end of the annotated region/file), 16-bit WAV via `vad_turn.core.audio.encode_wav_bytes`; times are
  relative to the clip start; audio_condition "real". The end-of-turn span ends at the next
  floor-taker's start, or the clip end if sooner.
- AMI audio is a far-field mix: the audio after the end of turn may hold other speakers (the next
  speaker, backchannels, overlapping talk), and holds may contain other speakers' backchannels.
- A turn whose last segment runs into the excerpt end (within 0.05 s) has an unknown end and is
  not a row.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from vad_turn.core.audio import SAMPLE_RATE_HZ, encode_wav_bytes, load_audio, seconds_to_samples
from vad_turn.core.schema import MIN_SILENCE_S

from . import CorpusError, parse_float, read_id_list, read_uem, require_file
from .turns import Turn, Unit, build_turns, turns_to_records

SOURCE = "ami"
CUT_TOLERANCE_S = 0.05


def read_rttm(path: Path) -> dict[str, list[tuple[str, float, float]]]:
    """{uri: [(speaker, start_s, end_s)]} from an RTTM file (SPEAKER lines only)."""
    out: dict[str, list] = defaultdict(list)
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith(";") or parts[0] == "#":
            continue
        where = f"{path}:{lineno}"
        if parts[0] != "SPEAKER" or len(parts) < 8:
            raise CorpusError(f"{where}: expected 'SPEAKER uri channel start duration <NA> <NA> speaker ...', got {line!r}")
        start, dur = parse_float(parts[3], where, "start"), parse_float(parts[4], where, "duration")
        if dur < 0:
            raise CorpusError(f"{where}: negative duration {dur}")
        out[parts[1]].append((parts[7], start, start + dur))
    return dict(out)


def read_uem_ends(path: Path) -> dict[str, tuple[float, float]]:
    """{uri: (start_s, end_s)} of the annotated region (the union's extent when there are several)."""
    return {uri: (regions[0][0], max(b for _, b in regions)) for uri, regions in read_uem(path).items()}


def segment_units(segments: list[tuple[str, float, float]], backchannel_max_s: float = 1.0) -> list[Unit]:
    """RTTM segments -> Units; short segments are backchannels unless their speaker speaks next."""
    segs = sorted(segments, key=lambda s: (s[1], s[2], s[0]))
    units = []
    for i, (spk, a, b) in enumerate(segs):
        nxt = next((s for s in segs[i + 1 :] if s[1] > a), None)
        short = (b - a) < backchannel_max_s
        units.append(Unit(spk, ((a, b),), backchannel=short and (nxt is None or nxt[0] != spk)))
    return units


def _clip(audio, turn: Turn, uri: str, end_s: float, tail_s: float) -> dict:
    a_s, b_s = turn.start_s, min(turn.last_end_s + tail_s, end_s)
    clip = audio[seconds_to_samples(a_s) : seconds_to_samples(b_s)]
    return {"bytes": encode_wav_bytes(clip, SAMPLE_RATE_HZ), "path": f"{uri}_{a_s:.3f}-{b_s:.3f}.wav"}


def build(
    data_root: Path, recipe: dict, *, max_conversations: int | None = None, min_silence_s: float = MIN_SILENCE_S
) -> tuple[dict[str, list], dict]:
    """({"train"|"dev"|"test": [TurnRecord]}, notes) for the AMI excerpts (real audio rows)."""
    folder = recipe["folder"]
    tail_s = float(recipe.get("tail_s", 3.0))
    bc_max_s = float(recipe.get("backchannel_max_s", 1.0))
    out: dict[str, list] = {}
    notes = {"turns_cut_by_excerpt_end": 0}
    for split, prefix in recipe["splits"].items():
        uris = read_id_list(require_file(data_root, f"{folder}/{prefix}.lst"))
        rttm_path = require_file(data_root, f"{folder}/{prefix}.rttm")
        uem_path = require_file(data_root, f"{folder}/{prefix}.uem")
        rttm, uem = read_rttm(rttm_path), read_uem_ends(uem_path)
        uris = uris[:max_conversations] if max_conversations is not None else uris
        records = []
        for uri in tqdm(uris, desc=f"ami {split}", unit="file"):
            if uri not in rttm:
                raise CorpusError(f"{rttm_path}: no segments for {uri} (listed in {prefix}.lst)")
            if uri not in uem:
                raise CorpusError(f"{uem_path}: no annotated region for {uri} (listed in {prefix}.lst)")
            audio = load_audio(require_file(data_root, f"{folder}/{uri}.wav"))
            end_s = min(audio.size / SAMPLE_RATE_HZ, uem[uri][1])
            turns = build_turns(segment_units(rttm[uri], bc_max_s))

            def keep(i: int, turn: Turn, end_s=end_s) -> bool:
                cut = turn.last_end_s >= end_s - CUT_TOLERANCE_S
                notes["turns_cut_by_excerpt_end"] += cut
                return not cut

            records += turns_to_records(
                turns, conversation=uri, source=SOURCE, split=split, end_s=end_s, word_timing="none",
                audio_condition="real", tail_s=tail_s, min_silence_s=min_silence_s, keep=keep,
                audio=lambda t, audio=audio, uri=uri, end_s=end_s: _clip(audio, t, uri, end_s, tail_s),
                with_messages=False,
            )
        out[split] = records
    return out, notes
