"""SBCSAE turns over intonation units (IUs), the cross-corpus test set (split "test").

Inputs (read in place, see data/recipes/sbcsae.json): `ASR/aligned_for_asr.stm.gz`, one IU a
line `SBCnnn 1 SPEAKER start_s end_s text`, and `Diarization/scored.uem` (`SBCnnn 1 start_s end_s`).

- Words: the IU's tokens with the transcription markup removed (`~Mae` -> `Mae`, `#I'm` -> `I'm`,
  `$at` -> `at`, final `,` `.` `?` `--` stripped); tokens that normalize to nothing (`<UNK>`,
  `<LAUGH>`, `<YELL>`) are dropped. There are no word timings: each IU's time is spread over its
  words in proportion to their characters (word_timing "interpolated"), so the words of an IU
  touch and the holds are exactly the gaps between the speaker's consecutive IUs in the turn.
- An IU with no readable word (only laughter or unintelligible markup) is dropped, like vocal noise
  in Switchboard: it neither takes the floor nor joins a turn.
- An IU that starts before the same speaker's previous IU ends (realignment overlap) is moved to
  start at that end, so a speaker's words stay in time order.
- Floor: any other speaker starting a non-backchannel IU takes the floor (multi-party); an IU made
  only of backchannel words (`schema.is_backchannel_text`) does not. Group pseudo-speakers
  (`SBCnnn_ALL`, `_MANY`, `_AUD`, `_BOTH`) take the floor but get no rows of their own.
- unit_punct: per span, the unit-final mark of the IU just before it: "," continuing, "."
  final, "?" appeal, "-" truncated (`-` or `--`), "" none.
- Scored regions: a turn is a row only if it lies inside one scored.uem region from its first word
  to the end of its end-of-turn span (the unscored gaps are the anonymised, low-pass-filtered
  stretches whose timing is unreliable); dropped turns still count as context in `messages`.
  The last turn's end span runs to the end of the last scored region.
"""
from __future__ import annotations

import gzip
import re
import zlib
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from vad_turn.core.schema import MIN_SILENCE_S, Word, is_backchannel_text, normalize_word

from . import CorpusError, parse_float, read_uem, require_file
from .turns import Turn, Unit, build_turns, turn_spans, turns_to_records

SOURCE = "sbcsae"
GROUP_SPEAKERS = ("ALL", "MANY", "AUD", "BOTH")


def readable_word(token: str) -> str | None:
    """A token without SBCSAE markup (~ # $ and unit-final , . ? --), or None if nothing readable."""
    if not normalize_word(token):
        return None
    w = re.sub(r"[~#$]", "", token)
    w = re.sub(r"(--|[,.?])+$", "", w)
    return w or None


def unit_final_mark(text: str) -> str:
    """The IU's transitional-continuity mark: "," "." "?" "-" (for - and --) or ""."""
    tokens = [t for t in text.split() if not re.fullmatch(r"<[^>]*>", t)]
    if not tokens:
        return ""
    last = tokens[-1]
    if last.endswith("-"):
        return "-"
    return last[-1] if last[-1] in ",.?" else ""


def interpolate_words(words: list[str], start_s: float, end_s: float) -> list[Word]:
    """Spread [start_s, end_s] over `words` in proportion to their characters (contiguous words)."""
    weights = [max(1, len(normalize_word(w))) for w in words]
    total = float(sum(weights))
    out, t = [], start_s
    for w, n in zip(words, weights):
        t_next = t + (end_s - start_s) * n / total
        out.append(Word(w, round(t, 6), round(t_next, 6)))
        t = t_next
    return out


def read_stm(path: Path) -> dict[str, list[tuple[str, float, float, str]]]:
    """{conversation: [(speaker, start_s, end_s, text)]} in file order."""
    out: dict[str, list] = defaultdict(list)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip() or line.startswith(";;"):
                    continue
                parts = line.rstrip("\n").split(None, 5)
                where = f"{path}:{lineno}"
                if len(parts) < 6:
                    raise CorpusError(f"{where}: expected 'SBCnnn 1 SPEAKER start end text', got {line.rstrip()!r}")
                conv, _, spk, a, b, text = parts
                start, end = parse_float(a, where, "start"), parse_float(b, where, "end")
                if end < start:
                    raise CorpusError(f"{where}: unit ends ({end}) before it starts ({start})")
                out[conv].append((spk, start, end, text))
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: truncated or corrupt file ({type(e).__name__}: {e})") from e
    if not out:
        raise CorpusError(f"{path}: no intonation units")
    return dict(out)


def conversation_units(ius: list[tuple[str, float, float, str]]) -> list[Unit]:
    """The conversation's IUs as Units (interpolated words, backchannel flag, final mark)."""
    units, last_end = [], {}
    for spk, start, end, text in sorted(ius, key=lambda x: (x[1], x[2])):
        words = [w for w in (readable_word(t) for t in text.split()) if w]
        if not words:
            continue
        start = max(start, last_end.get(spk, start))
        end = max(end, start)
        last_end[spk] = end
        ws = interpolate_words(words, start, end)
        units.append(
            Unit(spk, tuple((w.start, w.end) for w in ws), tuple(ws),
                 backchannel=is_backchannel_text(words), punct=unit_final_mark(text))
        )
    return units


def is_group_speaker(speaker: str, groups=GROUP_SPEAKERS) -> bool:
    return speaker.rsplit("_", 1)[-1] in groups and speaker.upper().startswith("SBC")


def _inside(turn: Turn, end_span_end_s: float, regions: list[tuple[float, float]]) -> bool:
    return any(a - 1e-6 <= turn.start_s and end_span_end_s <= b + 1e-6 for a, b in regions)


def build(
    data_root: Path, recipe: dict, *, max_conversations: int | None = None, min_silence_s: float = MIN_SILENCE_S
) -> tuple[dict[str, list], dict]:
    """({"test": [TurnRecord]}, notes) for SBCSAE (text rows, word_timing "interpolated")."""
    stm = read_stm(require_file(data_root, recipe["stm"]))
    uem_path = require_file(data_root, recipe["uem"])
    uem = read_uem(uem_path)
    groups = tuple(recipe.get("group_speakers", GROUP_SPEAKERS))
    convs = sorted(stm)[:max_conversations] if max_conversations is not None else sorted(stm)
    split = recipe.get("split", "test")
    records, notes = [], {"turns_outside_scored_regions": 0, "turns_of_group_speakers": 0}
    for conv in tqdm(convs, desc="sbcsae", unit="conv"):
        if conv not in uem:
            raise CorpusError(f"{uem_path}: no scored region for conversation {conv}")
        turns = build_turns(conversation_units(stm[conv]))
        end_s = max(max(e for _, _, e, _ in stm[conv]), uem[conv][-1][1])  # the recording's scored end

        def keep(i: int, turn: Turn, regions=uem[conv], end_s=end_s) -> bool:
            if is_group_speaker(turn.speaker, groups):
                notes["turns_of_group_speakers"] += 1
                return False
            spans, _ = turn_spans(turn, end_s=end_s, min_silence_s=min_silence_s)
            if not _inside(turn, spans[-1].end, regions):
                notes["turns_outside_scored_regions"] += 1
                return False
            return True

        records += turns_to_records(
            turns, conversation=conv, source=SOURCE, split=split, end_s=end_s,
            word_timing="interpolated", min_silence_s=min_silence_s, keep=keep,
        )
    return {split: records}, notes
