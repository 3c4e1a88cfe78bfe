"""The one floor/turn construction shared by every corpus builder.

A corpus builder turns its transcript into `Unit`s (a Switchboard dialog-act unit or MS98
utterance, an SBCSAE intonation unit, an AMI RTTM segment), each with its speaker, its sound
intervals (absolute seconds), its words (maybe none) and whether it is a backchannel. Then:

- `build_turns`: walk the units in start order. The first unit takes the floor. A unit of the
  floor holder joins the holder's turn. A backchannel unit of anyone else does not take the floor;
  it only marks the holder's turn `backchannel_context`. A non-backchannel unit of anyone else takes
  the floor at its start: the holder's turn ends and a new turn begins.
- Overlap: a unit that started before the floor passed is kept whole in its turn, so the holder's
  words that continue after another speaker took the floor stay in the holder's turn; its
  end-of-turn span then starts at its last word's end and has zero length (the next speaker's
  start is before it). Units of the former holder that start after the floor passed are a new
  turn if they are not backchannels.
- `turn_spans`: holds are the gaps >= `min_silence_s` between the turn's sound intervals (merged
  where they overlap); the end-of-turn span starts at the end of the last interval and ends at
  `min(next floor-taker's start (or the recording end), last end + tail_s, recording end)`, never
  before its start.
- `turns_to_records`: TurnRecords with times relative to the turn's first sound, `messages` =
  the previous turns (role "user" for this row's speaker, else "assistant"), the last
  `history_turns` of them.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from vad_turn.core.schema import (
    MIN_SILENCE_S,
    Message,
    Span,
    TurnRecord,
    Word,
    normalize_text,
    silence_spans_from_words,
)

HISTORY_TURNS = 6


@dataclass(frozen=True)
class Unit:
    """A stretch of one speaker's speech, the building block of turns.

    intervals: sound intervals, absolute seconds, sorted by start, non-empty.
    words: the unit's words with absolute times (empty for corpora without words).
    punct: the unit-final transcription mark ("," "." "?" "-" or "").
    """

    speaker: str
    intervals: tuple[tuple[float, float], ...]
    words: tuple[Word, ...] = ()
    backchannel: bool = False
    punct: str = ""
    start_s: float = field(init=False)
    end_s: float = field(init=False)

    def __post_init__(self) -> None:
        if not self.intervals:
            raise ValueError(f"a unit of speaker {self.speaker!r} needs at least one sound interval")
        object.__setattr__(self, "start_s", self.intervals[0][0])
        object.__setattr__(self, "end_s", max(b for _, b in self.intervals))


@dataclass
class Turn:
    """A maximal stretch in which `speaker` holds the floor."""

    speaker: str
    units: list[Unit] = field(default_factory=list)
    next_start_s: float | None = None  # start of the unit that took the floor from this turn
    backchannel_context: bool = False  # another speaker backchannelled while this turn held the floor

    @property
    def start_s(self) -> float:
        return self.units[0].start_s

    @property
    def last_end_s(self) -> float:
        return max(u.end_s for u in self.units)

    @property
    def words(self) -> list[Word]:
        return sorted((w for u in self.units for w in u.words), key=lambda w: (w.start, w.end))

    @property
    def text(self) -> str:
        return normalize_text(w.word for w in self.words)


def build_turns(units: Iterable[Unit]) -> list[Turn]:
    """Group `units` (any order, any number of speakers) into turns, in floor order."""
    turns: list[Turn] = []
    for u in sorted(units, key=lambda u: (u.start_s, u.end_s, u.speaker)):
        if not turns:
            turns.append(Turn(u.speaker, [u]))
            continue
        cur = turns[-1]
        if u.speaker == cur.speaker:
            cur.units.append(u)
        elif u.backchannel:
            cur.backchannel_context = True
        else:
            cur.next_start_s = u.start_s
            turns.append(Turn(u.speaker, [u]))
    return turns


def merge_intervals(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, overlapping or touching intervals merged into disjoint ones."""
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def turn_spans(
    turn: Turn, *, end_s: float, tail_s: float | None = None, min_silence_s: float = MIN_SILENCE_S
) -> tuple[list[Span], list[str]]:
    """Absolute silence spans of `turn` (holds, then the end-of-turn span) and each one's unit mark.

    end_s: the end of the recording (or scored region); the last turn's end span runs to it.
    tail_s: if set, the end span is at most this long (an audio clip's tail after the end of turn).
    Returns (spans, puncts): puncts[i] is the `punct` of the last unit that ended at or before
    spans[i].start.
    """
    merged = merge_intervals(iv for u in turn.units for iv in u.intervals)
    last_end = merged[-1][1]
    stop = turn.next_start_s if turn.next_start_s is not None else end_s
    stop = min(stop, end_s)
    if tail_s is not None:
        stop = min(stop, last_end + tail_s)
    spans = silence_spans_from_words([Word("", a, b) for a, b in merged], stop, min_silence_s)
    by_end = sorted(turn.units, key=lambda u: u.end_s)
    ends = [u.end_s for u in by_end]
    puncts = []
    for s in spans:
        k = bisect.bisect_right(ends, s.start + 1e-6)
        puncts.append(by_end[k - 1].punct if k else "")
    return spans, puncts


def turns_to_records(
    turns: Sequence[Turn],
    *,
    conversation: str,
    source: str,
    split: str,
    end_s: float,
    word_timing: str,
    audio_condition: str = "text",
    tail_s: float | None = None,
    min_silence_s: float = MIN_SILENCE_S,
    history_turns: int = HISTORY_TURNS,
    keep: Callable[[int, Turn], bool] | None = None,
    audio: Callable[[Turn], dict] | None = None,
    with_messages: bool = True,
) -> list[TurnRecord]:
    """One TurnRecord per turn (those `keep(index, turn)` accepts), times relative to the turn start.

    audio(turn) -> {"bytes", "path"} gives the row's audio clip, which must start at the turn's
    first sound (the rows' time origin).
    Messages come from all previous turns, kept rows or not.
    """
    records = []
    words_of = [t.words for t in turns]
    texts = [normalize_text(w.word for w in ws) for ws in words_of] if with_messages else []
    for i, turn in enumerate(turns):
        if keep is not None and not keep(i, turn):
            continue
        t0 = turn.start_s
        spans, puncts = turn_spans(turn, end_s=end_s, tail_s=tail_s, min_silence_s=min_silence_s)
        history = range(max(0, i - history_turns), i) if with_messages else range(0)
        messages = [
            Message("user" if turns[j].speaker == turn.speaker else "assistant", texts[j])
            for j in history
        ]
        rel_spans = [Span(_rel(s.start, t0), _rel(s.end, t0)) for s in spans]
        words = [Word(w.word, _rel(w.start, t0), _rel(w.end, t0)) for w in words_of[i]]
        records.append(
            TurnRecord(
                id=f"{conversation}-{i:04d}-{turn.speaker}",
                source=source,
                split=split,
                words=words,
                silence_spans=rel_spans,
                messages=messages,
                audio=audio(turn) if audio is not None else None,
                unit_punct=puncts,
                backchannel_context=turn.backchannel_context,
                audio_condition=audio_condition,
                word_timing=word_timing,
                conversation=conversation,
                speaker=turn.speaker,
            )
        )
    return records


def _rel(t_s: float, origin_s: float) -> float:
    """Time relative to the row origin, rounded to the microsecond (no float noise in the dataset)."""
    return round(t_s - origin_s, 6)


def span_counts(records: Iterable[TurnRecord], keep_range_s: tuple[float, float] = (0.2, 5.0)) -> dict:
    """Counts for build_info: turns, holds, ends, holds with duration in `keep_range_s` (inclusive)."""
    lo, hi = keep_range_s
    n_turns = n_holds = n_kept = 0
    for r in records:
        n_turns += 1
        holds = r.silence_spans[:-1]
        n_holds += len(holds)
        n_kept += sum(lo - 1e-9 <= s.duration_s <= hi + 1e-9 for s in holds)
    return {"turns": n_turns, "holds": n_holds, "ends": n_turns, f"holds_{lo:g}-{hi:g}s": n_kept}
