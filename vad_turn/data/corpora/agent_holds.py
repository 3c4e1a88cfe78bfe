"""agent-holds: user turns to task agents (agent_text train / val splits) spoken with SIMULATED holds.

The agent-text corpora (DSTC2, SGD, MultiWOZ, SLURP: `agent_text.py`) are what people say to task
assistants, but as text: no audio, no pauses. This builder gives each sampled user turn (STT-normalised
words) the pauses a caller would make, drawn from the pause model fitted on real holds
(`vad_turn.data.pause_model`, stored in the recipe by `vad-turn fit-pause-model`): fillers inserted at
the fitted rates, a hold after each word with P(hold | word class, position) x `hold_scale`, and its
duration from the class's log-normal. Word times are seeded durations from each word's length
(`agent_text.word_durations_s`), shifted by the holds. These rows are text rows (no audio);
`vad-turn render --corpora agent-holds --whole-turn` speaks them as one utterance per turn and cuts
at the holds, so the pieces keep the sentence's intonation.

**The holds are simulated, not observed**: this set trains models; real sets (GetGoing, AMI,
Switchboard) judge them. `hold_scale` > 1 makes holds more frequent than the fitted rate per word boundary
(GetGoing's callers pause inside 6.6% of their short turns; at 1.0, 31% of the longer agent-text turns get
a hold); where they fall (after which words, how long) stays the fitted distribution. build_info's notes
give the realised rates.

Splits: train from `agent_text.TRAIN_SPLITS`, dev from `agent_text.VAL_SPLITS`; the test splits that
`vad-turn agent-text` reports on are never read.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from vad_turn.core.schema import MIN_SILENCE_S, Message, Span, TurnRecord, Word, normalize_text
from vad_turn.core.seeds import seeded_sample, stable_seed

from ..pause_model import PauseModel
from . import CorpusError
from .agent_text import READERS, TRAIN_SPLITS, VAL_SPLITS, sample_turns, turn_words, word_durations_s

SOURCE = "agent-holds"
SPLITS = {"train": TRAIN_SPLITS, "dev": VAL_SPLITS}
# sources the output depends on besides this module (vad_turn/data-relative), for the build's recipe hash
EXTRA_SOURCES = ("pause_model.py", "corpora/agent_text.py")


def simulated_turn(turn_id: str, words: list[str], messages: list[Message], model: PauseModel, *, split: str,
                   corpus: str, seed: int, hold_scale: float, filler_scale: float, end_span_s: float) -> TurnRecord:
    """One agent-directed turn with simulated fillers and holds (a function of (seed, turn_id) only)."""
    rng = np.random.default_rng([seed, stable_seed("agent-holds", turn_id)])
    spoken, holds = model.sample(words, rng, hold_scale=hold_scale, filler_scale=filler_scale)
    dur = word_durations_s(spoken, rng)
    gap_after = np.zeros(len(spoken))
    for k, d in holds:
        gap_after[k] = d
    t, out_words, spans = 0.0, [], []
    for i, (w, d) in enumerate(zip(spoken, dur)):
        out_words.append(Word(w, t, t + float(d)))
        t += float(d)
        if gap_after[i] > 0:
            spans.append(Span(t, t + float(gap_after[i])))
            t += float(gap_after[i])
    spans.append(Span(t, t + end_span_s))
    return TurnRecord(id=turn_id, source=SOURCE, split=split, words=out_words, silence_spans=spans,
                      messages=messages, audio=None, audio_condition="text", word_timing="interpolated",
                      conversation=turn_id.rsplit("#", 1)[0], speaker="user")


def build(data_root: Path, recipe: dict, *, max_conversations: int | None = None,
          min_silence_s: float = MIN_SILENCE_S) -> tuple[dict[str, list], dict]:
    """({"train": [...], "dev": [...]}, notes). `max_conversations` caps the turns per corpus and split
    (tiny builds); `min_silence_s` is the shortest hold the pause model may draw."""
    root = Path(data_root) / recipe.get("folder", "agent_text")
    if not root.is_dir():
        raise CorpusError(f"{root}: the agent-directed text corpora are not there (see ../shared/data/agent_text)")
    if "pause_model" not in recipe:
        raise CorpusError("agent-holds recipe has no pause_model: fit one with `vad-turn fit-pause-model`")
    model = PauseModel.from_json(recipe["pause_model"])
    if model.min_hold_s < min_silence_s:
        model = dataclasses.replace(model, min_hold_s=min_silence_s)
    seed, hold_scale = int(recipe.get("seed", 0)), float(recipe.get("hold_scale", 1.0))
    filler_scale, end_span_s = float(recipe.get("filler_scale", 1.0)), float(recipe.get("end_span_s", 5.0))
    lo, hi = int(recipe.get("min_words", 1)), int(recipe.get("max_words", 40))
    by_split: dict[str, list] = {}
    notes = {"holds_simulated": True, "pause_model_target": model.fitted.get("target_set"),
             "pause_model_prior": model.fitted.get("prior_set"), "hold_scale": hold_scale,
             "filler_scale": filler_scale, "per_split": {}}
    for split, sources in SPLITS.items():
        n_per_corpus = recipe.get("turns_per_corpus", {}).get(split)
        if max_conversations is not None:
            n_per_corpus = min(n_per_corpus or max_conversations, max_conversations)
        recs = []
        for corpus, corpus_split in sorted(sources.items()):
            dialogues = READERS[corpus](root, corpus_split)
            # every user turn (sample_turns with no cap), then the word-count filter, then a seeded sample
            turns = [(di, ti) for di, ti in sample_turns(dialogues, None, seed)
                     if lo <= len(turn_words(dialogues[di].turns[ti][1])) <= hi]
            turns = [turns[i] for i in seeded_sample(len(turns), n_per_corpus,
                                                     [seed, stable_seed("agent-holds-pick", corpus, split)])]
            for di, ti in turns:
                d = dialogues[di]
                words = [n for _, n in turn_words(d.turns[ti][1])]
                messages = [Message(r, normalize_text(t.split()) if r == "user" else t) for r, t in d.turns[:ti]]
                recs.append(simulated_turn(f"{SOURCE}:{corpus}:{d.dialogue_id}#{ti}", words, messages, model,
                                           split=split, corpus=corpus, seed=seed, hold_scale=hold_scale,
                                           filler_scale=filler_scale, end_span_s=end_span_s))
        by_split[split] = recs
        n_holds = [len(r.silence_spans) - 1 for r in recs]
        hold_s = [s.end - s.start for r in recs for s in r.silence_spans[:-1]]
        n_fill = sum(w.word in model.filler_words for r in recs for w in r.words)
        notes["per_split"][split] = {
            "turns": len(recs), "turns_with_a_hold": int(sum(n > 0 for n in n_holds)),
            "holds": int(sum(n_holds)), "hold_median_s": float(np.median(hold_s)) if hold_s else None,
            "fillers_inserted": int(n_fill), "words": int(sum(len(r.words) for r in recs)),
            "after_filler": int(sum(c == "filler" for r in recs for c in r.pause_context[:-1])),
        }
    return by_split, notes
