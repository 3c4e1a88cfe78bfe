"""Switchboard turns from the MS98 word alignments and, where present, SWDA dialog acts.

Inputs (read in place, see data/recipes/switchboard.json):
- MS98 archive, members `swb_ms98_transcriptions/NN/NNNN/swNNNN{A,B}-ms98-a-word.text`, lines
  `uttid start_s end_s word`.
- SWDA archive, members `dialog_acts/swNNNN{A,B}-word-da.csv`, lines
  `uttid,start,end,word,B/I,da_tag,turn-utt`, the same words as MS98 (matched on uttid and times).
- split lists (conversation numbers, e.g. 4637 -> sw4637); `val.txt` becomes split "dev".

Units: with SWDA for a side (and the recipe's `use_swda`, default true), a unit is one dialog-act unit (a new unit at every `B` word or new
turn-utt id); it is a backchannel when its tag is `b` or `bh` after dropping modifiers (`b^r`,
`b^m`, `b@`, `bh^m`, ... ; `ba` appreciation, `bk` acknowledgement, `bf`, `br`, `bd` are not
backchannels). Without SWDA, a unit is one MS98 utterance (uttid) and is a backchannel when it is
made only of backchannel words (`schema.is_backchannel_text`).
The shipped SWDA covers exactly the `val` (dev) conversations, so by default dev and train are
segmented by different rules; `"use_swda": false` in the recipe applies the word rule to both
(see data/README.md for how much the two rules differ).

Words: `[silence]`, `[noise]`, `[laughter]`, `[vocalized-noise]` and the `<b_aside>`/`<e_aside>`
markers are dropped; vocal noise inside a turn therefore counts as silence (a hold may contain
laughter), matching what a word-timing (ASR) view and a TTS rendering of the turn give.
Kept words are written with MS98's variant markup resolved: `them_1` -> `them`, `{alrighty}` ->
`alrighty`, `[tranged/changed]` -> `changed` (the intended word); partial words keep MS98's
spelling (`i[t]-`), which `schema.normalize_word` reads.
"""
from __future__ import annotations

import csv
import functools
import io
import re
from pathlib import Path

from tqdm import tqdm

from vad_turn.core.schema import MIN_SILENCE_S, Word, is_backchannel_text, is_nonspeech_token

from . import CorpusError, iter_tar_texts, parse_float, read_id_list, require_file
from .turns import Unit, build_turns, turns_to_records

SOURCE = "switchboard"
_MS98_MEMBER = re.compile(r"(?:^|/)sw(\d{4})([AB])-ms98-a-word\.text$")
_SWDA_MEMBER = re.compile(r"(?:^|/)sw(\d{4})([AB])-word-da\.csv$")
_MARKER = re.compile(r"^<[^>]*>$")


@functools.lru_cache(maxsize=1 << 17)
def clean_ms98_token(token: str) -> str | None:
    """The word to keep for an MS98 token, or None for non-speech tokens and markers."""
    if is_nonspeech_token(token) or _MARKER.match(token):
        return None
    w = re.sub(r"_\d+", "", token)  # pronunciation variants: them_1, [laughter-because_1]
    w = re.sub(r"\{([^}]*)\}", r"\1", w)  # coinages: {alrighty}
    w = re.sub(r"\[[^\]/]*/([^\]]*)\]", r"\1", w)  # mispronunciations: [tranged/changed] -> changed
    return w or None


def swda_is_backchannel(tag: str, backchannel_tags: frozenset[str] = frozenset({"b", "bh"})) -> bool:
    """True for SWDA tags whose base (before ^ ( @ * and any second tag after a comma) is a backchannel."""
    base = re.split(r"[\^(@*,]", tag.strip(), maxsplit=1)[0]
    return base in backchannel_tags


def parse_ms98(text: str, source: str) -> tuple[list[tuple[str, float, float, str]], float]:
    """MS98 lines -> ([(uttid, start_s, end_s, word)] without non-speech, last end time in s)."""
    rows, end_s = [], 0.0
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        where = f"{source}:{lineno}"
        if len(parts) != 4:
            raise CorpusError(f"{where}: expected 'uttid start end word', got {line!r}")
        uttid, a, b, token = parts
        start, end = parse_float(a, where, "start"), parse_float(b, where, "end")
        if end < start - 1e-6:
            raise CorpusError(f"{where}: word ends ({end}) before it starts ({start})")
        end_s = max(end_s, end)
        word = clean_ms98_token(token)
        if word is not None:
            rows.append((uttid, start, end, word))
    if end_s == 0.0:
        raise CorpusError(f"{source}: no timed lines")
    return rows, end_s


def parse_swda(text: str, source: str) -> dict[tuple[str, float, float], tuple[str, str, str]]:
    """SWDA word-da CSV -> {(uttid, start_s, end_s): (B/I/O, da_tag, turn-utt)} (times as MS98 writes them)."""
    out = {}
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row:
            continue
        where = f"{source}:{lineno}"
        if len(row) != 7:
            raise CorpusError(f"{where}: expected 7 fields 'uttid,start,end,word,B/I,da_tag,turn-utt', got {row!r}")
        uttid, a, b, _, bi, tag, uttkey = row
        if bi not in ("B", "I", "O"):
            raise CorpusError(f"{where}: B/I field is {bi!r}, expected B, I or O")
        key = (uttid, parse_float(a, where, "start"), parse_float(b, where, "end"))
        out[key] = (bi, tag, uttkey)
    return out


def side_units(
    speaker: str,
    rows: list[tuple[str, float, float, str]],
    swda: dict[tuple[str, float, float], tuple[str, str, str]] | None,
    backchannel_tags: frozenset[str],
) -> list[Unit]:
    """One side's words grouped into dialog-act units (with SWDA) or MS98 utterances (without)."""
    groups: list[tuple[list[Word], str | None]] = []  # (words, da_tag or None)
    cur_key: tuple[str, str] | None = None
    last_uttid = None
    for uttid, start, end, word in rows:
        da = swda.get((uttid, start, end)) if swda is not None else None
        if da is not None and da[0] != "O":
            bi, tag, uttkey = da
            key: tuple[str, str] = ("da", uttkey)
            new = bi == "B" or key != cur_key
        elif swda is not None and cur_key is not None and uttid == last_uttid:
            key, tag, new = cur_key, groups[-1][1], False  # untagged word inside an utterance joins its unit
        else:
            key, tag = ("utt", uttid), None
            new = key != cur_key
        if new or not groups:
            groups.append(([], tag))
        groups[-1][0].append(Word(word, start, end))
        cur_key, last_uttid = key, uttid
    units = []
    for words, tag in groups:
        bc = swda_is_backchannel(tag, backchannel_tags) if tag is not None else is_backchannel_text([w.word for w in words])
        units.append(Unit(speaker, tuple((w.start, w.end) for w in words), tuple(words), backchannel=bc))
    return units


def split_conversations(data_root: Path, recipe: dict, max_conversations: int | None = None) -> dict[str, list[str]]:
    """{split: ["sw4637", ...]} from the recipe's id lists (the first `max_conversations` of each).

    Ids in the recipe's `absent_conversations` (listed but not in the shipped MS98 archive) are left
    out; any other listed conversation missing from the archive is an error.
    """
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    absent = {f"sw{int(c):04d}" for c in recipe.get("absent_conversations", [])}
    for split, rel in recipe["splits"].items():
        path = require_file(data_root, rel)
        convs = []
        for cid in read_id_list(path, pattern=r"\d{1,4}"):
            conv = f"sw{int(cid):04d}"
            if conv in owner:
                raise CorpusError(f"{path}: conversation {cid} is also in split {owner[conv]!r}")
            owner[conv] = split
            if conv not in absent:
                convs.append(conv)
        out[split] = convs[:max_conversations] if max_conversations is not None else convs
    return out


def read_archives(data_root: Path, recipe: dict, conversations: set[str]) -> tuple[dict, dict]:
    """({(conv, side): (ms98 rows, end_s)}, {(conv, side): swda map}) for the wanted conversations.

    Every wanted conversation needs both MS98 sides (CorpusError otherwise); SWDA is optional, and
    not read at all when the recipe says `"use_swda": false`.
    """
    ms98_path = require_file(data_root, recipe["word_alignments"])
    use_swda = recipe.get("use_swda", True)
    swda_path = require_file(data_root, recipe["dialog_acts"]) if use_swda else None
    wanted = {(c, s) for c in conversations for s in "AB"}

    def pick(pattern):
        def want(name):
            m = pattern.search(name)
            return bool(m) and (f"sw{m.group(1)}", m.group(2)) in wanted
        return want

    ms98: dict = {}
    with tqdm(total=len(wanted), desc="switchboard: MS98 sides", unit="side", leave=False) as bar:
        for name, text in iter_tar_texts(ms98_path, pick(_MS98_MEMBER)):
            m = _MS98_MEMBER.search(name)
            ms98[(f"sw{m.group(1)}", m.group(2))] = parse_ms98(text, f"{ms98_path}:{name}")
            bar.update(1)
            if len(ms98) == len(wanted):
                break
    missing = sorted(wanted - set(ms98))
    if missing:
        conv, side = missing[0]
        raise CorpusError(
            f"{ms98_path}: no member .../{conv}{side}-ms98-a-word.text for conversation {conv} "
            f"({len(missing)} sides missing in all)"
        )
    swda: dict = {}
    if swda_path is None:
        return ms98, swda
    for name, text in tqdm(iter_tar_texts(swda_path, pick(_SWDA_MEMBER)), desc="switchboard: SWDA sides", leave=False):
        m = _SWDA_MEMBER.search(name)
        swda[(f"sw{m.group(1)}", m.group(2))] = parse_swda(text, f"{swda_path}:{name}")
    return ms98, swda


def build(
    data_root: Path, recipe: dict, *, max_conversations: int | None = None, min_silence_s: float = MIN_SILENCE_S
) -> tuple[dict[str, list], dict]:
    """({split: [TurnRecord]}, notes) for Switchboard (text rows: audio None, word_timing "aligned")."""
    splits = split_conversations(data_root, recipe, max_conversations)
    ms98, swda = read_archives(data_root, recipe, {c for convs in splits.values() for c in convs})
    bc_tags = frozenset(recipe.get("backchannel_tags", ("b", "bh")))
    out: dict[str, list] = {}
    stats = {"conversations_with_swda": 0, "conversations": {split: len(convs) for split, convs in splits.items()}}
    for split, convs in splits.items():
        records = []
        for conv in tqdm(convs, desc=f"switchboard {split}", unit="conv"):
            units, end_s = [], 0.0
            for side in "AB":
                rows, side_end = ms98[(conv, side)]
                units += side_units(side, rows, swda.get((conv, side)), bc_tags)
                end_s = max(end_s, side_end)
            stats["conversations_with_swda"] += all((conv, s) in swda for s in "AB")
            turns = build_turns(units)
            records += turns_to_records(
                turns, conversation=conv, source=SOURCE, split=split, end_s=end_s,
                word_timing="aligned", min_silence_s=min_silence_s,
            )
        out[split] = records
    return out, stats
