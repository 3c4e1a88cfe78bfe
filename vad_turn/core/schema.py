"""The turn-span dataset schema (compatible with LiveKit's eot-bench) and its one text normalisation.

A row is one user turn:

- `id` (str), `language` (str, BCP-47 such as "en"), `source` (corpus name), `split`.
- `audio`: {bytes, path} (16 kHz mono WAV bytes) or None for text-only corpora. Stored as
  `datasets.Audio(decode=False)`; decode with `vad_turn.core.audio.decode_audio_bytes`.
- `silence_spans`: list of {start, end} in seconds from the row's time origin (the start of
  its audio, or for text-only rows the start of the turn's first word). Every silence of at
  least `MIN_SILENCE_S` inside the turn, in time order, plus the final one: the LAST span is the
  end of turn (its start is the end of the last word), every earlier span is a hold.
- `words`: list of {word, start, end} in seconds, same origin; `word` is the corpus spelling.
- `messages`: the previous turns as {role, content}; role "user" for this speaker, "assistant"
  for the other party(ies), oldest first.
- Slice tags: `pause_context` (one per span: "filler", "conjunction" or "none": what the last word
  before the pause is), `unit_punct` (one per span: the SBCSAE intonation-unit-final mark before
  the pause, "," "." "?" "-" or "" where the corpus has none), `backchannel_context` (the other
  party backchannelled during this turn), `n_words`, `audio_condition` ("text", "clean", "noisy",
  "8k", "real"), `voice` (the TTS voice for rendered rows, else ""), `word_timing` ("aligned",
  "interpolated" or "none"), `conversation`, `speaker`.
"""
from __future__ import annotations

import functools
import math
import numbers
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable, Sequence

MIN_SILENCE_S = 0.1

FILLERS = frozenset({"uh", "um", "uhm", "umm", "er", "erm", "ah", "eh", "hm", "hmm", "mm", "huh"})
CONJUNCTIONS = frozenset(
    {
        "and", "but", "or", "so", "because", "cause", "'cause", "then", "if", "that", "which", "who",
        "when", "while", "although", "though", "since", "until", "unless", "whereas", "than", "nor",
        "plus", "as", "where", "whether", "before", "after", "like",
    }
)
# Words that make up a backchannel when an utterance consists of nothing else: the one list (used where a
# corpus has no dialog-act tags, and, with the two sets below, for "uh-huh"-style barge-in filtering).
BACKCHANNEL_WORDS = frozenset(
    {
        "uh-huh", "um-hum", "mm-hmm", "mhm", "mm-hm", "hm-mm", "uh-hum", "yeah", "yes", "yep", "yup", "right",
        "okay", "ok", "oh", "sure", "really", "hm", "hmm", "huh", "mm", "wow", "true", "exactly", "alright",
        "i", "see", "gosh", "cool", "nice", "great",
    }
)
MAX_BACKCHANNEL_WORDS = 3
# How streaming recognisers spell backchannels that the corpora's transcripts spell otherwise (PocketSphinx hears
# espeak's "uh-huh" as "aha"). They count only where the words come from an STT (barge-in): adding them to
# BACKCHANNEL_WORDS would change which corpus turns `is_backchannel_text` tags (a Switchboard turn holds "aha").
STT_BACKCHANNEL_SPELLINGS = frozenset({"aha", "uhhuh", "mhmm"})
# Speech over the agent made only of these words is a backchannel, not an interruption (the pipeline's turn
# processor): backchannel words, fillers, and their STT spellings.
BARGE_IN_BACKCHANNEL_WORDS = BACKCHANNEL_WORDS | FILLERS | STT_BACKCHANNEL_SPELLINGS
TURN_LENGTH_BINS = ((1, 10, "1-10"), (11, 30, "11-30"), (31, 10**9, ">30"))

_NONSPEECH = re.compile(r"^\[(silence|noise|laughter|vocalized-noise)\]$", re.I)


@dataclass(frozen=True)
class Word:
    """A word with times in seconds from the row's origin."""

    word: str
    start: float
    end: float


class WordError(ValueError):
    """Words that cannot be a recogniser's output, naming the word's index and value: a missing word,
    non-string text, non-finite times, a word that ends before it starts, words out of start order,
    or (with audio) a word that ends after the audio does."""


WORD_END_TOLERANCE_S = 0.05  # word ends may pass the audio's end by this much (10-20 ms ASR frame rounding)
# A query sees the words that ended at least this long before it (a streaming recogniser's lag): the
# harness default, and the lag of model folders written before they recorded theirs.
DEFAULT_TRANSCRIPT_LAG_S = 0.5


def check_words(words: Sequence[Word], *, audio_end_s: float | None = None, source: str = "") -> None:
    """Raise WordError (naming `source`, the word's index and value) unless `words` is a transcript.

    Each entry is a `Word` with `str` text and finite times, start_s <= end_s (1e-9 s slack); starts
    never decrease (words may overlap: recognisers' word boundaries do). With `audio_end_s` (the
    duration of the audio the words come with, n_samples / sample_rate_hz, times from its first
    sample): every word ends at most `WORD_END_TOLERANCE_S` after it. The rule is deliberately no
    stricter (not "end <= audio_end_s - silence_s" or "- transcript lag"): VAD silence onsets and
    recogniser word ends disagree by 0.1-0.2 s, and a recogniser faster than the lag a model was
    fitted with is a legitimate (if uncalibrated) input; only words nobody could have heard yet are
    refused. Start times before 0 are allowed (audio trimmed after the turn began).
    """
    pre = f"{source}: " if source else ""
    prev_start = -math.inf
    for i, w in enumerate(words):
        if not isinstance(w, Word):
            raise WordError(f"{pre}word {i} is {w!r}, not a Word")
        if not isinstance(w.word, str):
            raise WordError(f"{pre}word {i} ({w!r}) has text of type {type(w.word).__name__}, not str")
        try:
            finite = math.isfinite(w.start) and math.isfinite(w.end)
        except TypeError:
            raise WordError(f"{pre}word {i} ({w!r}) has non-numeric times") from None
        if not finite:
            raise WordError(f"{pre}word {i} ({w!r}) has a NaN or infinite time")
        if w.end < w.start - 1e-9:
            raise WordError(f"{pre}word {i} ({w!r}) ends before it starts")
        if w.start < prev_start - 1e-9:
            raise WordError(f"{pre}word {i} ({w!r}) starts at {w.start:g} s, before word {i - 1} "
                            f"({prev_start:g} s): words must be in time order")
        if audio_end_s is not None and w.end > audio_end_s + WORD_END_TOLERANCE_S:
            raise WordError(f"{pre}word {i} ({w!r}) ends at {w.end:g} s, after the audio's end at "
                            f"{audio_end_s:g} s (+{WORD_END_TOLERANCE_S:g} s): word times must be seconds "
                            "from the audio's first sample")
        prev_start = w.start


def check_silence_s(silence_s, *, source: str = "") -> float:
    """silence_s as a float; ValueError (naming `source`) unless it is a real number (int, float, a numpy integer
    or floating scalar - not a bool, not a string) that is finite and >= 0."""
    pre = f"{source}: " if source else ""
    if isinstance(silence_s, bool) or not isinstance(silence_s, numbers.Real):  # np.bool_ is not Real either
        raise ValueError(f"{pre}silence_s must be a real number of seconds (int or float), got "
                         f"{type(silence_s).__name__} {silence_s!r}"[:300])
    s = float(silence_s)
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"{pre}silence_s must be a finite number >= 0, got {silence_s!r}")
    return s


# The silence so far (s) that the acoustic model's and the fusion's silence inputs are clipped to.
MAX_SILENCE_S = 5.0


@dataclass(frozen=True)
class Span:
    """A silence in seconds from the row's origin."""

    start: float
    end: float

    @property
    def duration_s(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


@dataclass
class TurnRecord:
    """One row of the turn-span dataset (see module docstring for field meanings)."""

    id: str
    source: str
    split: str
    words: list[Word]
    silence_spans: list[Span]
    messages: list[Message] = field(default_factory=list)
    language: str = "en"
    audio: dict | None = None  # {"bytes": wav bytes, "path": name}
    pause_context: list[str] | None = None
    unit_punct: list[str] | None = None
    backchannel_context: bool = False
    audio_condition: str = "text"
    voice: str = ""
    word_timing: str = "aligned"
    conversation: str = ""
    speaker: str = ""

    def __post_init__(self) -> None:
        if self.pause_context is None:
            self.pause_context = pause_contexts(self.words, self.silence_spans)
        if self.unit_punct is None:
            self.unit_punct = [""] * len(self.silence_spans)
        check_turn(self)

    @property
    def n_words(self) -> int:
        return len(self.words)

    def to_row(self) -> dict:
        return {
            "id": self.id,
            "language": self.language,
            "audio": self.audio,
            "silence_spans": [{"start": float(s.start), "end": float(s.end)} for s in self.silence_spans],
            "words": [{"word": w.word, "start": float(w.start), "end": float(w.end)} for w in self.words],
            "messages": [{"role": m.role, "content": m.content} for m in self.messages],
            "source": self.source,
            "split": self.split,
            "pause_context": list(self.pause_context or []),
            "unit_punct": list(self.unit_punct or []),
            "backchannel_context": bool(self.backchannel_context),
            "n_words": self.n_words,
            "audio_condition": self.audio_condition,
            "voice": self.voice,
            "word_timing": self.word_timing,
            "conversation": self.conversation,
            "speaker": self.speaker,
        }


def features():
    """The `datasets.Features` of a turn-span dataset (audio undecoded: {bytes, path})."""
    from datasets import Audio, Features, List, Value

    from .audio import SAMPLE_RATE_HZ

    span = {"start": Value("float64"), "end": Value("float64")}
    return Features(
        {
            "id": Value("string"),
            "language": Value("string"),
            "audio": Audio(sampling_rate=SAMPLE_RATE_HZ, decode=False),
            "silence_spans": List(span),
            "words": List({"word": Value("string"), "start": Value("float64"), "end": Value("float64")}),
            "messages": List({"role": Value("string"), "content": Value("string")}),
            "source": Value("string"),
            "split": Value("string"),
            "pause_context": List(Value("string")),
            "unit_punct": List(Value("string")),
            "backchannel_context": Value("bool"),
            "n_words": Value("int32"),
            "audio_condition": Value("string"),
            "voice": Value("string"),
            "word_timing": Value("string"),
            "conversation": Value("string"),
            "speaker": Value("string"),
        }
    )


# ----------------------------------------------------------------------------- text


def is_nonspeech_token(token: str) -> bool:
    """True for transcript tokens that are not words ([silence], [noise], [laughter], ...)."""
    return bool(_NONSPEECH.match(token.strip()))


@functools.lru_cache(maxsize=1 << 17)  # pure; corpus vocabularies are small, builders call it millions of times
def normalize_word(word: str) -> str:
    """The one text normalisation, ASR style: lowercase, no punctuation or markup.

    "thi[s]-" -> "this", "Bridgette," -> "bridgette", "[laughter-yeah]" -> "yeah", "~Mae" -> "mae",
    "<UNK>" -> "". Hyphens inside words and apostrophes stay ("uh-huh", "don't").
    """
    w = unicodedata.normalize("NFKD", word.strip().lower())
    w = "".join(c for c in w if not unicodedata.combining(c))  # José -> jose
    m = re.match(r"^\[laughter-(.+)\]$", w)
    if m:
        w = m.group(1)
    w = re.sub(r"<[^>]*>", "", w)  # <UNK>, <VOX> ...
    w = re.sub(r"\[([^\]]*)\]", r"\1", w)  # restored letters of partial words: thi[s]- -> this-
    w = re.sub(r"\{[^}]*\}", "", w)
    w = re.sub(r"[^a-z0-9'\- ]", "", w)
    w = w.strip("-' ")
    return w


def normalize_words(words: Iterable[str]) -> list[str]:
    """`normalize_word` of each word, the words that normalise to nothing dropped. A transcript line's
    words are `normalize_words(line.split())`."""
    return [n for n in (normalize_word(w) for w in words) if n]


def normalize_text(words: Iterable[str]) -> str:
    """Words -> one lowercase, unpunctuated string like streaming ASR output."""
    return " ".join(normalize_words(words))


def is_backchannel_text(words: Sequence[str]) -> bool:
    """A short utterance made only of backchannel words ("uh-huh", "yeah right", "oh okay")."""
    norm = normalize_words(words)
    return 0 < len(norm) <= MAX_BACKCHANNEL_WORDS and all(w in BACKCHANNEL_WORDS for w in norm)


def pause_context_of(word: str | None) -> str:
    """Slice tag for a pause after `word`: "filler", "conjunction" or "none"."""
    if word is None:
        return "none"
    w = normalize_word(word)
    if w in FILLERS:
        return "filler"
    if w in CONJUNCTIONS:
        return "conjunction"
    return "none"


def words_before_spans(words: Sequence[Word], spans: Sequence[Span]) -> list[int | None]:
    """Per span (in time order): the index of the last word that ended at or before its start, else None."""
    out: list[int | None] = []
    i = 0
    last: int | None = None
    for s in spans:
        while i < len(words) and words[i].end <= s.start + 1e-6:
            last = i
            i += 1
        out.append(last)
    return out


def pause_contexts(words: Sequence[Word], spans: Sequence[Span]) -> list[str]:
    """One pause-context tag per span: the tag of the last word that ended at or before it."""
    return [pause_context_of(None if k is None else words[k].word) for k in words_before_spans(words, spans)]


def turn_length_bin(n_words: int) -> str:
    for lo, hi, name in TURN_LENGTH_BINS:
        if lo <= n_words <= hi:
            return name
    return "0"


# ----------------------------------------------------------------------------- spans


def silence_spans_from_words(
    words: Sequence[Word], end_span_end_s: float, min_silence_s: float = MIN_SILENCE_S
) -> list[Span]:
    """Holds (gaps >= `min_silence_s` between consecutive words) plus the final end-of-turn span.

    The end span runs from the last word's end to `end_span_end_s` (clamped so it is never
    negative: overlapping next speakers give a zero-length end span).
    """
    spans = [
        Span(a.end, b.start)
        for a, b in zip(words[:-1], words[1:])
        if b.start - a.end >= min_silence_s - 1e-9
    ]
    last_end = words[-1].end
    spans.append(Span(last_end, max(last_end, end_span_end_s)))
    return spans


def check_turn(rec: TurnRecord) -> None:
    """Raise ValueError if a record breaks the schema's invariants (names the record id)."""
    if not rec.silence_spans:
        raise ValueError(f"{rec.id}: a turn needs at least its end-of-turn silence span")
    prev_end = -1e-9
    for s in rec.silence_spans:
        if s.end < s.start - 1e-9 or s.start < prev_end - 1e-6:
            raise ValueError(f"{rec.id}: silence spans must be ordered and non-overlapping, got {rec.silence_spans}")
        prev_end = s.end
    for w in rec.words:
        if w.end < w.start - 1e-9:
            raise ValueError(f"{rec.id}: word {w} ends before it starts")
    if rec.words and rec.silence_spans[-1].start + 1e-6 < rec.words[-1].end:
        raise ValueError(f"{rec.id}: the end-of-turn span must start at or after the last word's end")
    if len(rec.pause_context or []) != len(rec.silence_spans) or len(rec.unit_punct or []) != len(rec.silence_spans):
        raise ValueError(f"{rec.id}: pause_context and unit_punct need one entry per silence span")
    for m in rec.messages:
        if m.role not in ("user", "assistant", "system"):
            raise ValueError(f"{rec.id}: message role {m.role!r} is not user/assistant/system")


def row_words(row: dict) -> list[Word]:
    return [Word(w["word"], w["start"], w["end"]) for w in row["words"] or []]


def row_spans(row: dict) -> list[Span]:
    return [Span(s["start"], s["end"]) for s in row["silence_spans"]]


def row_messages(row: dict) -> list[Message]:
    return [Message(m["role"], m["content"]) for m in row["messages"] or []]


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between token lists (substitutions, insertions, deletions cost 1)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]
