"""Lexical training items from agent-directed text: every word boundary of a user turn addressed to a
task agent is an example (label 1 after the last word, 0 after every shorter prefix).

The human-to-human Switchboard turns the shipped GRU learned from pause at complete sentences and
go on; a request to an agent ("i want a cheap restaurant in the ... north") ends when its slot is
given. These items teach the GRU that, from ~200,000 real user turns to task agents
(`../shared/data/agent_text`: DSTC2, SLURP, MultiWOZ, SGD, read in place by
`vad_turn.harness.agent_text`), in the text form the pipeline's STT emits (lower case, no
punctuation). The corpora carry no timing: each word gets a duration from its length with seeded
jitter, words follow each other without pause, and each example is asked at a seeded silence in
[`transcript_lag_s`, `max_silence_s`] so every word of its prefix is visible, as in
`vad-turn agent-text`. The timing inputs therefore carry no information here; the label is in the
text, and the real-timing Switchboard items trained beside them keep the timing inputs meaningful.

The splits used for training are never the ones `vad-turn agent-text` reports on (its test splits):
TRAIN_SPLITS for training, VAL_SPLITS for model selection.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from vad_turn.data.corpora.agent_text import READERS, Dialogue, sample_turns, timed_words
from vad_turn.data.corpora.agent_text import slurp_slot_swaps as slot_swaps
from vad_turn.harness.agent_text import turn_queries

from .inputs import CONTEXT_MAX_TOKENS, context_text, timing_features
from .runtime import LexicalTokenizer


SPOKEN_FILLERS = ("um", "uh")


def with_filler(words: list[str], rng: np.random.Generator) -> list[str]:
    """`words` with one filler ("um" / "uh") after a seeded random word that is not the last (unchanged for a
    one-word turn): written requests carry no hesitations, spoken ones do, and a prefix ending in a filler is
    not a finished request."""
    if len(words) < 2:
        return list(words)
    k = int(rng.integers(1, len(words)))  # the filler goes before words[k]
    return [*words[:k], SPOKEN_FILLERS[int(rng.integers(len(SPOKEN_FILLERS)))], *words[k:]]


def agent_turn_item(dialogue: Dialogue, turn_index: int, tok: LexicalTokenizer, rng: np.random.Generator, *,
                    transcript_lag_s: float, max_silence_s: float = 1.5,
                    context_max_tokens: int = CONTEXT_MAX_TOKENS, filler_rng: np.random.Generator | None = None,
                    filler_rate: float = 0.0) -> dict | None:
    """One user turn as a training item (the layout of `vad_turn.lexical.train.turn_item`): tokens (T,),
    for its n examples the state index after k words (k = 1..n), timing (n, F) and labels (n,), and its
    turn_id "<corpus>:<dialogue>#<turn>". None when no word of the turn has a token. With probability
    `filler_rate` (drawn from `filler_rng`) one filler is inserted (`with_filler`); only the whole turn is an end."""
    tq = turn_queries(dialogue, turn_index, "asr")
    spoken = [w.word for w in tq.queries[-1].words]
    if filler_rng is not None and filler_rate > 0 and filler_rng.random() < filler_rate:
        spoken = with_filler(spoken, filler_rng)
    words = timed_words(spoken, rng)
    tokens, after = tok.turn_ids(context_text(tq.queries[-1].messages), [w.word for w in words], context_max_tokens)
    if after[-1] == after[0]:  # no word of the turn has a token
        return None
    n = len(words)
    silence_s = rng.uniform(transcript_lag_s, max(max_silence_s, transcript_lag_s), size=n)
    timing = np.stack([timing_features(words[:k], s) for k, s in zip(range(1, n + 1), silence_s)])
    labels = np.zeros(n, np.float32)
    labels[-1] = 1.0  # only the whole turn is an end (turn_queries' labels, whose words may lack the filler)
    return {"tokens": tokens, "pos": after[1:n + 1], "timing": timing.astype(np.float32),
            "labels": labels, "turn_id": f"{dialogue.corpus}:{tq.turn_id}"}


MAX_BALANCE_COPIES = 8


def agent_items(data_root: Path, splits: dict[str, str], tok: LexicalTokenizer, *, max_turns_per_corpus: int | None,
                seed: int, transcript_lag_s: float, max_silence_s: float = 1.5, balance: bool = False,
                filler_rate: float = 0.0, slurp_slot_swaps: int = 0) -> list[dict]:
    """Items of a seeded sample of `max_turns_per_corpus` user turns (None: all) of each corpus's split.

    filler_rate: share of turns given one spoken filler (`with_filler`), from a seeded stream of its own.

    slurp_slot_swaps: SLURP's utterances with entities rewritten this many times each with other values of the
    same entity types (`agent_text.slurp_slot_swaps`), added to SLURP's turns before the sample is drawn.

    balance: a corpus with fewer turns than the largest is repeated, each copy with its own seeded word
    timing and query silences, up to round(largest / its count) copies (at most MAX_BALANCE_COPIES)."""
    root = Path(data_root) / "agent_text"
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the agent-directed text corpora are not there (see ../shared/data/agent_text)")
    per_corpus = []
    for ci, (corpus, split) in enumerate(sorted(splits.items())):
        if corpus not in READERS:
            raise ValueError(f"unknown agent-text corpus {corpus!r} (one of {sorted(READERS)})")
        dialogues = READERS[corpus](root, split)
        if corpus == "slurp" and slurp_slot_swaps:
            dialogues = dialogues + slot_swaps(root, split, slurp_slot_swaps, seed)
        per_corpus.append((ci, dialogues, sample_turns(dialogues, max_turns_per_corpus, seed)))
    largest = max((len(turns) for _, _, turns in per_corpus), default=0)
    items = []
    for ci, dialogues, turns in per_corpus:
        copies = min(MAX_BALANCE_COPIES, max(1, round(largest / max(len(turns), 1)))) if balance else 1
        for copy in range(copies):
            rng = np.random.default_rng([seed, ci] + ([copy] if copy else []))
            filler_rng = np.random.default_rng([seed, ci, copy, 7])  # its own stream: timing draws do not move
            for di, ti in turns:
                item = agent_turn_item(dialogues[di], ti, tok, rng, transcript_lag_s=transcript_lag_s,
                                       max_silence_s=max_silence_s, filler_rng=filler_rng, filler_rate=filler_rate)
                if item is not None:
                    items.append(item)
    if not items:
        raise ValueError(f"no agent-text turns in {splits}")
    return items


def token_counts(items: Iterable[dict]) -> Counter:
    """How often each raw token id occurs in the items' token sequences (for the embedding vocabulary)."""
    counts: Counter = Counter()
    for it in items:
        counts.update(it["tokens"].tolist())
    return counts
