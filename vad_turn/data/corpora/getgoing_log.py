"""GetGoing call logs and the ordered alignment of recognised words to the log's USER lines.

Pure text functions (no audio, no models), used by the `getgoing` builder:

- `parse_history`: a call's `log.json` `history` -> `LogLine`s. `TTS ...` lines are the system's
  prompts, stripped of their SSML-ish markup (`<break time='800ms'/>`, `<speak>`, the `!b` flag);
  `USER ...` lines are the 2019 system's Google ASR transcripts, one per endpointed user utterance.
  Other lines (one call has `dummy message`) are counted and skipped. `drop_inserted_lines` removes
  USER lines the system logged itself.
- `log_turns`: consecutive lines of one kind are one turn. Consecutive USER lines with no TTS line
  between are one user turn that the 2019 endpointer split: joined, `joined_split` True.
- `align_tokens`: the one normalisation for matching log text to recognised words:
  `schema.normalize_word` per token (lower case, no punctuation), hyphens and colons split,
  numbers 0-9999 spelled out ("12" -> "twelve"; "9:30" -> "nine thirty"; "5th" -> "fifth").
- `align_words`: Needleman-Wunsch on order and text similarity between the log's user-turn tokens
  (all user turns of the call, in order) and the recognised words (in time order). See its docstring.
"""
from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vad_turn.core.schema import edit_distance, normalize_word

_TAG = re.compile(r"<[^>]*>")
_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


@dataclass(frozen=True)
class LogLine:
    """One `history` line: kind "TTS" or "USER", its text (SSML stripped for TTS), its index in history."""

    kind: str
    text: str
    index: int


@dataclass(frozen=True)
class LogTurn:
    """Consecutive log lines of one kind: role "assistant" (TTS) or "user" (USER)."""

    role: str
    texts: tuple[str, ...]
    line_indices: tuple[int, ...]

    @property
    def text(self) -> str:
        return " ".join(self.texts)

    @property
    def joined_split(self) -> bool:
        """A user turn made of several USER lines (split by the 2019 endpointer)."""
        return self.role == "user" and len(self.texts) > 1


def strip_ssml(text: str) -> str:
    """TTS prompt text without markup: tags removed, the leading `!b` flag dropped, whitespace collapsed."""
    t = _TAG.sub(" ", text)
    t = re.sub(r"^\s*!\w+\s", " ", t)
    t = re.sub(r"\s+([.,!?;:])", r"\1", t)  # "GetGoing <break time='1s'/>." -> "GetGoing."
    return re.sub(r"\s+", " ", t).strip()


def parse_history(history: Sequence[str]) -> tuple[list[LogLine], int]:
    """(TTS/USER lines in order, number of other lines skipped). Empty TTS/USER lines are skipped too."""
    lines, other = [], 0
    for i, raw in enumerate(history):
        kind, _, rest = str(raw).partition(" ")
        if kind == "TTS":
            text = strip_ssml(rest)
        elif kind == "USER":
            text = re.sub(r"\s+", " ", rest).strip()
        else:
            other += 1
            continue
        if text:
            lines.append(LogLine(kind, text, i))
        else:
            other += 1
    return lines, other


def drop_inserted_lines(lines: Sequence[LogLine], rules: Sequence[tuple[str, str]]) -> tuple[list[LogLine], int]:
    """(lines without the USER lines the system inserted itself, how many were dropped).

    rules: (TTS substring, USER text) pairs: a USER line whose text is exactly USER text, right after a
    TTS line containing the substring (case-insensitive), is the system's own (GetGoing logs a "yes"
    after every "... look up the directions." prompt).
    """
    out: list[LogLine] = []
    for i, ln in enumerate(lines):
        prev = lines[i - 1] if i else None
        if ln.kind == "USER" and prev is not None and prev.kind == "TTS" and any(
                ln.text == text and sub.lower() in prev.text.lower() for sub, text in rules):
            continue
        out.append(ln)
    return out, len(lines) - len(out)


def log_turns(lines: Sequence[LogLine]) -> list[LogTurn]:
    """Consecutive lines of the same kind joined into one turn (USER+USER = a joined split)."""
    turns: list[LogTurn] = []
    for ln in lines:
        role = "user" if ln.kind == "USER" else "assistant"
        if turns and turns[-1].role == role:
            last = turns[-1]
            turns[-1] = LogTurn(role, last.texts + (ln.text,), last.line_indices + (ln.index,))
        else:
            turns.append(LogTurn(role, (ln.text,), (ln.index,)))
    return turns


# ----------------------------------------------------------------------------- tokens


def number_words(n: int) -> list[str]:
    """0 <= n <= 9999 spelled out: 12 -> [twelve], 405 -> [four, hundred, five], 2019 -> [twenty, nineteen]."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_words: {n} is outside 0-9999")
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if 1100 <= n <= 9999 and n % 100 and n // 100 % 10:  # years and bus numbers are said in pairs
        return number_words(n // 100) + number_words(n % 100)
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    return number_words(n // 1000) + ["thousand"] + (number_words(n % 1000) if n % 1000 else [])


def ordinal_word(word: str) -> str:
    """A spelled cardinal -> its ordinal: five -> fifth, twenty -> twentieth, hundred -> hundredth."""
    special = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
               "nine": "ninth", "twelve": "twelfth"}
    if word in special:
        return special[word]
    return word[:-1] + "ieth" if word.endswith("y") else word + "th"


def align_tokens(text: str) -> list[str]:
    """Text -> the tokens the alignment compares (see the module docstring)."""
    out: list[str] = []
    text = re.sub(r"\b([ap]) ?\. ?m\b\.?", r"\1m", text, flags=re.I)  # a.m., "a .m." (Whisper) -> am
    text = re.sub(r"(\d)([ap])\.?m\b\.?", r"\1 \2m", text, flags=re.I)  # 7pm, 7p.m. -> 7 pm
    for raw in re.split(r"[\s\-:/]+", text):
        w = normalize_word(raw.replace(".", "") if re.fullmatch(r"([a-zA-Z]\.)+", raw.strip(",?!")) else raw)
        if not w:
            continue
        m = re.fullmatch(r"(\d+)(st|nd|rd|th|s)?", w)
        if m and len(m.group(1)) <= 4:
            spoken = number_words(int(m.group(1)))
            if m.group(2) in ("st", "nd", "rd", "th"):
                spoken[-1] = ordinal_word(spoken[-1])
            out += spoken
        elif re.fullmatch(r"[\d,]+", w) and w.replace(",", "").isdigit() and len(w.replace(",", "")) <= 4:
            out += number_words(int(w.replace(",", "")))
        else:
            out.append(w)
    return out


@functools.lru_cache(maxsize=1 << 16)
def token_similarity(a: str, b: str) -> float:
    """Character similarity of two tokens in [0, 1] (difflib ratio; 1 for equal tokens)."""
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def text_similarity(ref: str, hyp: str) -> float:
    """Character similarity in [0, 1] of two texts after `align_tokens` (joined by single spaces)."""
    a, b = " ".join(align_tokens(ref)), " ".join(align_tokens(hyp))
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


# ----------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class AlignParams:
    """Scores of `align_words`. A pair of tokens with similarity s > min_token_similarity gains
    (s - min_token_similarity) / (1 - min_token_similarity) (1 for equal tokens); less similar pairs
    never match. A recognised word left unmatched between two tokens of the same user turn costs
    inside_insert_cost; one between turns (noise, speech the log lacks) costs nothing; a log token
    left unmatched costs delete_cost. A pause between recognised words longer than free_pause_s is a
    pause token (it never matches) that costs pause_cost_per_s per second beyond free_pause_s when it
    falls inside a user turn, so a turn is not stretched over distant words (a 19 s gap costs 9)."""

    min_token_similarity: float = 0.5
    inside_insert_cost: float = 0.25
    delete_cost: float = 0.0
    free_pause_s: float = 1.0
    pause_cost_per_s: float = 0.5


def hyp_tokens(words: Sequence[tuple[str, float, float]], params: AlignParams = AlignParams()
               ) -> tuple[list[str], list[float], list[int]]:
    """Recognised (word, start_s, end_s) in time order -> (tokens, inside costs, owning word index).

    Each word gives its `align_tokens` (cost inside_insert_cost each); a pause longer than
    free_pause_s between two words gives a pause token "" (owner -1) costing
    pause_cost_per_s * (pause - free_pause_s).
    """
    toks, costs, owner = [], [], []
    prev_end = None
    for k, (w, a, b) in enumerate(words):
        if prev_end is not None and a - prev_end > params.free_pause_s:
            toks.append("")
            costs.append(params.pause_cost_per_s * (a - prev_end - params.free_pause_s))
            owner.append(-1)
        for t in align_tokens(w):
            toks.append(t)
            costs.append(params.inside_insert_cost)
            owner.append(k)
        prev_end = b if prev_end is None else max(prev_end, b)
    return toks, costs, owner


def align_words(ref: Sequence[tuple[str, int]], hyp: Sequence[str], params: AlignParams = AlignParams(),
                inside_costs: Sequence[float] | None = None) -> list[tuple[int, int]]:
    """Monotone alignment of log tokens to recognised tokens maximising the total score.

    ref: (token, user-turn index) per log token, in log order (turn indices non-decreasing).
    hyp: recognised tokens in time order (already `align_tokens`-normalised, one token each; ""
    is a pause token, which never matches). inside_costs: the cost of leaving hyp token j unmatched
    inside a user turn (default inside_insert_cost each; see `hyp_tokens`).
    Returns the matched pairs (ref index, hyp index), both increasing. A user turn with no speech
    simply has none of its tokens matched; recognised words of no turn are unmatched.
    """
    n, m = len(ref), len(hyp)
    if n == 0 or m == 0:
        return []
    lo = params.min_token_similarity
    gain = np.full((n, m), -np.inf)
    for i, (r, _) in enumerate(ref):
        for j, h in enumerate(hyp):
            s = token_similarity(r, h) if h else 0.0
            if h and s > lo:
                gain[i, j] = (s - lo) / (1.0 - lo) if lo < 1.0 else 1.0
    costs = [params.inside_insert_cost] * m if inside_costs is None else list(inside_costs)
    if len(costs) != m:
        raise ValueError(f"align_words: {len(costs)} inside costs for {m} recognised tokens")
    # A hyp token consumed after i ref tokens is inside a turn iff ref tokens i-1 and i share it.
    inside = [0 < i < n and ref[i - 1][1] == ref[i][1] for i in range(n + 1)]
    score = np.full((n + 1, m + 1), -np.inf)
    move = np.zeros((n + 1, m + 1), dtype=np.int8)  # 1 match, 2 delete (ref), 3 insert (hyp)
    score[0, 0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if i == 0 and j == 0:
                continue
            best, how = -np.inf, 0
            if i and j and gain[i - 1, j - 1] > -np.inf:
                best, how = score[i - 1, j - 1] + gain[i - 1, j - 1], 1
            if i and score[i - 1, j] - params.delete_cost > best:
                best, how = score[i - 1, j] - params.delete_cost, 2
            if j:
                c = costs[j - 1] if inside[i] else 0.0
                if score[i, j - 1] - c > best:
                    best, how = score[i, j - 1] - c, 3
            score[i, j], move[i, j] = best, how
    pairs = []
    i, j = n, m
    while i or j:
        how = move[i, j]
        if how == 1:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif how == 2:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def turn_hulls(pairs: Sequence[tuple[int, int]], ref: Sequence[tuple[str, int]], n_turns: int
               ) -> list[tuple[int, int, int] | None]:
    """Per user turn: (first matched hyp index, last matched hyp index, n matched tokens), or None."""
    out: list[list[int] | None] = [None] * n_turns
    for ri, hj in pairs:
        k = ref[ri][1]
        if out[k] is None:
            out[k] = [hj, hj, 1]
        else:
            out[k][1] = hj
            out[k][2] += 1
    return [tuple(h) if h is not None else None for h in out]  # type: ignore[misc]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(edit distance in `align_tokens` tokens, number of reference tokens) of hyp against ref."""
    r = align_tokens(ref)
    return edit_distance(r, align_tokens(hyp)), len(r)
