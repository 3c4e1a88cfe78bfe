"""GetGoing: real callers answering a phone dialogue system's prompts, as turn-span rows with real audio.

Inputs (read in place, see data/recipes/getgoing.json and the corpus README): `calls/<uuid>/user.ogg`
(the caller's channel, Opus, 16 kHz mono, telephone band) and `log.json` (`history`: `TTS ...` prompts
and `USER ...` Google ASR lines, no times). Per call (`process_call`):

0. the log: `getgoing_log.parse_history`; USER lines the system inserted itself are dropped (the
   recipe's `inserted_user_lines`: every USER line after "Just a minute. Let me look up the
   directions." or "Hold on. I'll look up the directions." is exactly "yes", 368 times; in dev + test
   50 of 68 have no recognised word nearby);
1. speech regions: Silero VAD over the whole channel (`getgoing_speech.speech_regions`), cached;
2. recognised words: faster-whisper tiny.en on the speech regions only, with word times, and a second
   pass over the segments that got no word, each alone (`getgoing_speech`), cached;
3. `locate_turns`: the user turns of the log (consecutive USER lines joined: a `joined_split`, the
   pause between them a hold) aligned to the recognised words (`getgoing_log.align_words`: order and
   text similarity). A turn is the VAD regions its matched words overlap plus the regions between
   them, extended to neighbouring regions within `join_gap_s` that hold recognised words of no turn
   (a leading "um"). Words are snapped into the turn's regions. A turn is aligned when the log text
   and the recognised text of its words have `text_similarity` >= `min_similarity`, at least
   `min_token_coverage` of its log tokens are matched in its regions, and every USER line of a
   joined split has a matched word (else the pause after the part found would be labelled an end).
   A region claimed by two turns goes to the one whose matched words overlap it most.
4. records: holds = the silences between the turn's regions (all >= min_silence_s), end of turn =
   end of its last region, end span to the next speech region (any), at most `tail_s` (2 s) and the
   recording end; audio = the channel from `pre_s` (1 s) before the turn (or the recording start) to
   the end span's end; times from the clip start; `messages` = the earlier log turns (TTS prompts with
   SSML stripped as "assistant", USER lines as "user", normalised), the last `history_turns`.

Calls are dropped, with the reason counted: `no_user_lines` (hang-ups), `spam` (recorded school
announcements played into the line, the corpus's machine speech: a USER line matches one of the
recipe's `spam_patterns`), `no_speech` (the VAD finds none), `unalignable` (fewer than
`min_call_aligned_share` of its user turns align). Splits by call:
`split_of(uuid)` (sha256, 80/10/10), listed in the recipe (`write_recipe_splits`).
"""
from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, encode_wav_bytes, seconds_to_samples
from vad_turn.core.config import REPO_ROOT
from vad_turn.core.runs import atomic_write_text
from vad_turn.core.schema import Message, Span, TurnRecord, Word, normalize_text, silence_spans_from_words
from vad_turn.core.seeds import stable_hash

from . import RECIPES_DIR, CorpusError
from .getgoing_log import (
    AlignParams,
    LogTurn,
    align_tokens,
    align_words,
    drop_inserted_lines,
    hyp_tokens,
    log_turns,
    parse_history,
    text_similarity,
)
from .getgoing_inputs import missing_inputs, read_call_audio
from .getgoing_speech import AsrParams, RefillParams, VadParams

SOURCE = "getgoing"
SPLIT_SHARES = (("train", 80), ("dev", 10), ("test", 10))
SPLIT_SALT = "getgoing"  # hashed as "getgoing:<uuid>"; unsalted sha256 gave 575/61/92 calls (79/8/13 %); salted 582/75/71
DEFAULT_CACHE = REPO_ROOT / "data" / "cache" / "getgoing"


def split_of(uuid: str) -> str:
    """The call's split: int(sha256("getgoing:" + uuid)[:8], 16) % 100 < 80 -> train, < 90 -> dev, else test."""
    bucket = (stable_hash(uuid, SPLIT_SALT) >> 32) % 100  # the digest's first 4 bytes
    edge = 0
    for name, share in SPLIT_SHARES:
        edge += share
        if bucket < edge:
            return name
    raise AssertionError("split shares must sum to 100")


def write_recipe_splits(data_root: Path, recipes_dir: Path = RECIPES_DIR) -> dict[str, list[str]]:
    """(Re)write the `splits` of data/recipes/getgoing.json from the calls present, by `split_of`."""
    path = Path(recipes_dir) / "getgoing.json"
    recipe = json.loads(path.read_text())
    calls = Path(data_root) / recipe["folder"]
    uuids = sorted(p.name for p in calls.iterdir() if p.is_dir() and not missing_inputs(p))  # usable calls only
    splits = {name: [u for u in uuids if split_of(u) == name] for name, _ in SPLIT_SHARES}
    atomic_write_text(path, recipe_text({**recipe, "splits": splits}))
    return splits


def recipe_text(recipe: dict) -> str:
    """The recipe as JSON: one line per parameter block, one call id per line in `splits`."""
    lines = ["{"] + [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in recipe.items() if k != "splits"]
    lines.append(' "splits": {')
    splits = list(recipe.get("splits", {}).items())
    for i, (name, uuids) in enumerate(splits):
        lines.append(f"  {json.dumps(name)}: [")
        lines += [f"   {json.dumps(u)}" + ("," if j < len(uuids) - 1 else "") for j, u in enumerate(uuids)]
        lines.append("  ]" + ("," if i < len(splits) - 1 else ""))
    return "\n".join(lines + [" }", "}"]) + "\n"


@dataclass(frozen=True)
class TurnParams:
    """How turns are cut (the recipe's `turns` block)."""

    join_gap_s: float = 1.0
    min_similarity: float = 0.5
    min_token_coverage: float = 0.5
    pre_s: float = 1.0
    tail_s: float = 2.0
    min_tail_s: float = 0.3
    history_turns: int = 6
    min_call_aligned_share: float = 0.5


@dataclass(frozen=True)
class Recipe:
    folder: str
    splits: dict
    spam_patterns: tuple[str, ...]
    inserted_user_lines: tuple[tuple[str, str], ...] = ()
    vad: VadParams = VadParams()
    asr: AsrParams = AsrParams()
    refill: RefillParams = RefillParams()
    align: AlignParams = AlignParams()
    turns: TurnParams = TurnParams()
    raw: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        try:
            inserted = tuple((r["after_tts_containing"], r["text"]) for r in d.get("inserted_user_lines", ()))
            return cls(folder=d["folder"], splits=d["splits"], spam_patterns=tuple(d.get("spam_patterns", ())),
                       inserted_user_lines=inserted, vad=VadParams(**d.get("vad", {})), asr=AsrParams(**d.get("asr", {})),
                       refill=RefillParams(**d.get("refill", {})), align=AlignParams(**d.get("align", {})),
                       turns=TurnParams(**d.get("turns", {})), raw=d)
        except (KeyError, TypeError) as e:
            raise CorpusError(f"getgoing recipe: {e}") from e


@dataclass(frozen=True)
class LocatedTurn:
    """A user turn of the log found in the audio (absolute seconds), or why not (`status`)."""

    index: int
    log: LogTurn
    status: str  # "aligned", "no_match", "low_similarity", "partial", "region_conflict", "cut_by_recording_end"
    regions: tuple[tuple[float, float], ...] = ()
    words: tuple[Word, ...] = ()
    similarity: float = 0.0
    end_span_end_s: float = 0.0
    # joined splits: (end of the last matched word of a USER line, start of the first of the next line)
    endpointer_cuts_s: tuple[tuple[float, float], ...] = ()
    prompt_words_before: int = 0  # words of the TTS prompts since the previous user turn


def _region_of(a: float, b: float, regions, starts) -> int:
    """Index of the region overlapping [a, b] most, else the nearest one."""
    k = bisect.bisect_right(starts, b)
    best, best_key = 0, None
    for r in range(max(0, k - 3), min(len(regions), k + 2)):
        ra, rb = regions[r]
        ov = min(b, rb) - max(a, ra)
        key = (ov > 0, ov if ov > 0 else -max(ra - b, a - rb))
        if best_key is None or key > best_key:
            best, best_key = r, key
    return best


def _snap(words, regions, keep_regions: set[int], word_region: list[int], matched: set[int]) -> tuple[Word, ...]:
    """The words assigned to `keep_regions`, clipped into their region, starts made non-decreasing.

    A word matched to no log token that does not overlap its region at all is left out: Whisper put
    it in the silence beside the region (often a copy of a word of a neighbouring segment)."""
    out, prev = [], -np.inf
    for j, ((w, a, b, *_), r) in enumerate(zip(words, word_region)):
        if r not in keep_regions:
            continue
        ra, rb = regions[r]
        if j not in matched and min(b, rb) - max(a, ra) <= 0:
            continue
        s = max(min(max(a, ra), rb), prev)
        out.append(Word(w, s, max(s, min(max(b, ra), rb))))
        prev = s
    return tuple(out)


def locate_turns(turns: list[LogTurn], regions, words, audio_end_s: float, recipe: Recipe) -> list[LocatedTurn]:
    """Find each user turn of `turns` in the audio (module docstring, step 3).

    regions: sorted disjoint (start_s, end_s) speech regions; words: (text, start_s, end_s, ...) in time
    order. Returns one LocatedTurn per user turn, in log order.
    """
    tp = recipe.turns
    users = [t for t in turns if t.role == "user"]
    if not users:
        return []
    prompt_words, n = [], 0
    for t in turns:
        if t.role == "user":
            prompt_words.append(n)
            n = 0
        else:
            n += len(t.text.split())
    ref = [(tok, k) for k, t in enumerate(users) for tok in align_tokens(t.text)]
    line_of = [li for t in users for li, txt in enumerate(t.texts) for _ in align_tokens(txt)]
    toks, costs, owner = hyp_tokens([(w[0], w[1], w[2]) for w in words], recipe.align)
    pairs = align_words(ref, toks, recipe.align, costs) if regions else []
    matched: list[list[tuple[int, int]]] = [[] for _ in users]  # (word index, line index) per turn
    for ri, hj in pairs:
        matched[ref[ri][1]].append((owner[hj], line_of[ri]))
    starts = [a for a, _ in regions]
    # each word's region, made non-decreasing (words are in start order), so snapped words stay in order
    word_region = [int(r) for r in np.maximum.accumulate([_region_of(w[1], w[2], regions, starts) for w in words])] if (
        regions and words) else []
    core: list[set[int]] = []
    for m in matched:
        rs = [word_region[j] for j in range(m[0][0], m[-1][0] + 1)] if m else []
        core.append(set(range(min(rs), max(rs) + 1)) if rs else set())
    # A region claimed by several turns (a TTS prompt lies between two user turns, so that is a misplaced
    # word) goes to the turn whose matched words overlap it most; the others lose it.
    claims: dict[int, list[int]] = {}
    for k, rs in enumerate(core):
        for r in rs:
            claims.setdefault(r, []).append(k)
    for r, ks in claims.items():
        if len(ks) > 1:
            ra, rb = regions[r]

            def weight(k, ra=ra, rb=rb, r=r):
                ws = {j for j, _ in matched[k] if word_region[j] == r}
                return (sum(max(0.0, min(words[j][2], rb) - max(words[j][1], ra)) for j in ws), len(ws))

            win = max(ks, key=weight)
            for k in ks:
                if k != win:
                    core[k].discard(r)
    owner_of = {r: k for k, rs in enumerate(core) for r in rs}
    # regions (of no turn) holding a recognised word that overlaps them: speech a turn may extend over
    has_free_words = {r for (_, a, b, *_), r in zip(words, word_region)
                      if min(b, regions[r][1]) - max(a, regions[r][0]) > 0} - set(owner_of)
    out = []
    for k, t in enumerate(users):
        if not core[k]:
            out.append(LocatedTurn(k, t, "region_conflict" if matched[k] else "no_match",
                                   prompt_words_before=prompt_words[k]))
            continue
        rs = set(core[k])
        for step in (-1, 1):  # extend to neighbouring regions holding words of no turn
            edge = min(rs) if step < 0 else max(rs)
            nxt = edge + step
            while 0 <= nxt < len(regions) and nxt not in owner_of and nxt in has_free_words and (
                    (regions[edge][0] - regions[nxt][1]) if step < 0 else (regions[nxt][0] - regions[edge][1])
            ) < tp.join_gap_s:
                rs.add(nxt)
                owner_of[nxt] = k
                edge, nxt = nxt, nxt + step
        idx = sorted(rs)
        regs = tuple(regions[r] for r in idx)
        ws = _snap(words, regions, rs, word_region, {j for j, _ in matched[k]})
        sim = text_similarity(t.text, " ".join(w.word for w in ws))
        kept = [(j, li) for j, li in matched[k] if word_region[j] in rs]
        n_ref = sum(1 for _, kk in ref if kk == k)
        need_lines = {li for li, txt in enumerate(t.texts) if align_tokens(txt)}
        end = regs[-1][1]
        nxt_start = regions[idx[-1] + 1][0] if idx[-1] + 1 < len(regions) else np.inf
        span_end = min(nxt_start, end + tp.tail_s, audio_end_s)
        status = "aligned" if ws and sim >= tp.min_similarity else "low_similarity"
        if status == "aligned" and (len(kept) < tp.min_token_coverage * n_ref or {li for _, li in kept} < need_lines):
            status = "partial"  # a joined split whose later line was not found, or most of the log words missing
        if status == "aligned" and nxt_start == np.inf and audio_end_s - end < tp.min_tail_s:
            status = "cut_by_recording_end"
        cuts = tuple((words[mp[0]][2], words[mn[0]][1]) for mp, mn in zip(matched[k], matched[k][1:]) if mn[1] != mp[1])
        out.append(LocatedTurn(k, t, status, regs, ws, round(sim, 4), round(float(span_end), 6), cuts, prompt_words[k]))
    return out


def endpointer_holds(spans: list[Span], cuts, tolerance_s: float = 0.3) -> list[int]:
    """Indices of the holds (all spans but the last) where the 2019 endpointer split a joined turn:
    per cut (a, b), the longest hold lying within [a - tolerance_s, b + tolerance_s], if any."""
    out = []
    for a, b in cuts:
        inside = [i for i, s in enumerate(spans[:-1]) if s.start >= a - tolerance_s and s.end <= b + tolerance_s]
        if inside:
            out.append(max(inside, key=lambda i: spans[i].duration_s))
    return sorted(set(out))


def turn_record(lt: LocatedTurn, *, uuid: str, split: str, audio: np.ndarray, messages: list[Message],
                recipe: Recipe, min_silence_s: float) -> tuple[TurnRecord, dict]:
    """The row of an aligned turn, times relative to its audio clip (module docstring, step 4), and its
    extra tags for the sidecar (joined_split, the endpointer holds, the log and recognised texts)."""
    start = lt.regions[0][0]
    t0 = max(0.0, start - recipe.turns.pre_s)
    t0 = seconds_to_samples(t0) / SAMPLE_RATE_HZ  # the clip starts on a sample
    spans = silence_spans_from_words([Word("", a, b) for a, b in lt.regions], lt.end_span_end_s, min_silence_s)
    rel = lambda t: round(t - t0, 6)  # noqa: E731
    clip = audio[seconds_to_samples(t0): seconds_to_samples(lt.end_span_end_s)]
    rid = f"{uuid}-{lt.index:03d}-caller"
    info = {"id": rid, "split": split, "joined_split": lt.log.joined_split, "n_log_lines": len(lt.log.texts),
            "endpointer_holds": endpointer_holds(spans, lt.endpointer_cuts_s), "log_text": lt.log.text,
            "recognised_text": " ".join(w.word for w in lt.words), "similarity": lt.similarity}
    return TurnRecord(
        id=rid,
        source=SOURCE,
        split=split,
        words=[Word(w.word, rel(w.start), rel(w.end)) for w in lt.words],
        silence_spans=[Span(rel(s.start), rel(s.end)) for s in spans],
        messages=messages,
        audio={"bytes": encode_wav_bytes(clip), "path": f"{uuid}_{t0:.3f}-{lt.end_span_end_s:.3f}.wav"},
        audio_condition="real",
        word_timing="aligned",
        conversation=uuid,
        speaker="caller",
    ), info


def history_messages(turns: list[LogTurn], n: int) -> list[list[Message]]:
    """Per user turn (in order): the last `n` log turns before it (TTS text as is, USER text normalised)."""
    out = []
    for i, t in enumerate(turns):
        if t.role == "user":
            prev = turns[max(0, i - n): i]
            out.append([Message(p.role, p.text if p.role == "assistant" else normalize_text(p.text.split()))
                        for p in prev])
    return out


def call_drop_reason(turns: list[LogTurn], recipe: Recipe) -> str | None:
    """"no_user_lines" or "spam" from the log alone, else None."""
    users = [t for t in turns if t.role == "user"]
    if not users:
        return "no_user_lines"
    pats = [re.compile(p, re.I) for p in recipe.spam_patterns]
    if any(p.search(txt) for t in users for txt in t.texts for p in pats):
        return "spam"
    return None


@dataclass
class CallResult:
    """What one call gives: its records, its located turns (aligned or not), why it was dropped."""

    uuid: str
    split: str
    audio_s: float
    records: list[TurnRecord]
    infos: list[dict]  # one per record: the sidecar tags (`turn_record`)
    located: list[LocatedTurn]
    drop_reason: str | None
    n_user_lines: int  # USER lines said by the caller (the system's own inserted lines excluded)
    n_inserted_lines: int
    n_other_lines: int
    cache_hit: bool
    inputs: dict = field(default_factory=dict)  # {file name: sha256 hex or None} (`getgoing_inputs.HASHED`)
    problem: str | None = None  # "user.ogg ..." when the recording decodes short or not at all


def read_log(call_dir: Path) -> list[str]:
    path = call_dir / "log.json"
    try:
        history = json.loads(path.read_text())["history"]
    except (OSError, ValueError, KeyError) as e:
        raise CorpusError(f"{path}: cannot read the call log ({type(e).__name__}: {e})") from e
    if not isinstance(history, list):
        raise CorpusError(f"{path}: `history` is not a list")
    return history


def process_call(call_dir: Path, split: str, recipe: Recipe, cache, *, min_silence_s: float) -> CallResult:
    """Everything for one call; `cache` (`getgoing_cache.SpeechCache`) gives the regions and words."""
    uuid = call_dir.name
    lines, n_other = parse_history(read_log(call_dir))
    lines, n_inserted = drop_inserted_lines(lines, recipe.inserted_user_lines)
    turns = log_turns(lines)
    n_user = sum(ln.kind == "USER" for ln in lines)
    audio, inputs, problem = read_call_audio(call_dir)
    if audio is None:
        return CallResult(uuid, split, 0.0, [], [], [], "undecodable", n_user, n_inserted, n_other, True, inputs, problem)
    audio_s = audio.size / SAMPLE_RATE_HZ
    reason = call_drop_reason(turns, recipe)
    if reason is not None:
        return CallResult(uuid, split, audio_s, [], [], [], reason, n_user, n_inserted, n_other, True, inputs, problem)
    regions, words, hit = cache.regions_and_words(uuid, audio, inputs["user.ogg"])
    located = locate_turns(turns, regions, words, audio_s, recipe)
    n_ok = sum(lt.status == "aligned" for lt in located)
    if not regions:
        reason = "no_speech"
    elif n_ok < recipe.turns.min_call_aligned_share * len(located):
        reason = "unalignable"
    made = []
    if reason is None:
        msgs = history_messages(turns, recipe.turns.history_turns)
        made = [turn_record(lt, uuid=uuid, split=split, audio=audio, messages=msgs[lt.index], recipe=recipe,
                            min_silence_s=min_silence_s) for lt in located if lt.status == "aligned"]
    return CallResult(uuid, split, audio_s, [r for r, _ in made], [i for _, i in made], located, reason, n_user,
                      n_inserted, n_other, hit, inputs, problem)
