"""The agent-directed text corpora (`../shared/data/agent_text`: DSTC2, SLURP, MultiWOZ, SGD), read in place.

User turns addressed to task assistants, as written (no audio, no timing). Readers return `Dialogue`s;
`turn_words` splits a turn into (as written, normalised) words and `sample_turns` draws a seeded sample of
user turns. `TRAIN_SPLITS` / `VAL_SPLITS` are the splits models may learn from and be selected on; the test
splits are what `vad-turn agent-text` (`vad_turn.harness.agent_text`) reports on, never trained on.
"""
from __future__ import annotations

import gzip
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.schema import Word, normalize_word
from vad_turn.core.seeds import seeded_sample

DSTC2_TAGS = frozenset({"sil", "noise", "unintelligible", "breath", "cough", "laugh", "sigh", "static", "tv_noise",
                        "background_speech"})
# corpus -> split (SLURP ships no train split and MultiWOZ here only val / test: their non-test split trains)
TRAIN_SPLITS = {"dstc2": "train", "sgd": "train", "multiwoz": "val", "slurp": "devel"}
VAL_SPLITS = {"dstc2": "val", "sgd": "dev"}


@dataclass(frozen=True)
class Dialogue:
    """One dialogue: turns (role "user" | "assistant", text as written, never empty), oldest first."""

    corpus: str
    dialogue_id: str
    split: str
    turns: tuple[tuple[str, str], ...]


def _dialogue(corpus: str, dialogue_id: str, split: str, turns) -> Dialogue:
    """A Dialogue of (role, text) pairs, whitespace collapsed, empty turns dropped (SGD has two empty system turns)."""
    return Dialogue(corpus, dialogue_id, split, tuple((r, " ".join(t.split())) for r, t in turns if t.strip()))


def read_dstc2(root: Path, split: str = "test") -> list[Dialogue]:
    """DSTC2 (dstc2/data.json.zip; splits train / val / test): user text = the human transcription
    without its DSTC2_TAGS (user turns left empty are dropped)."""
    with zipfile.ZipFile(Path(root) / "dstc2" / "data.json.zip") as z:
        data = json.loads(z.read("data.json"))
    out = []
    for d in data:
        if d["data_split"] != split:
            continue
        turns = [("user", " ".join(w for w in t["utterance"].split() if w.lower() not in DSTC2_TAGS))
                 if t["speaker"] == "user" else ("assistant", t["utterance"]) for t in d["turns"]]
        out.append(_dialogue("dstc2", d["dialogue_id"], split, turns))
    return out


def read_slurp(root: Path, split: str = "test") -> list[Dialogue]:
    """SLURP (slurp/{devel,test}.jsonl.gz): one single-turn dialogue per utterance, id "slurp-<slurp_id>"."""
    with gzip.open(Path(root) / "slurp" / f"{split}.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [_dialogue("slurp", f"slurp-{r['slurp_id']}", split, [("user", r["sentence"])]) for r in rows]


SLURP_ENTITY = re.compile(r"\[\s*([^\]:]+?)\s*:\s*([^\]]+?)\s*\]")


def slurp_slot_swaps(root: Path, split: str, copies: int, seed: int) -> list[Dialogue]:
    """New SLURP commands from `split`'s own: each annotated utterance with entities ("wake me up at [time : five
    am]") is rewritten `copies` times, every entity replaced by a seeded draw from the values of its type found
    in the same split ("... at [time : noon]"). The carrier phrases stay the corpus's; the slot values and where
    a command ends after them vary. Variants equal to an original sentence (or to an earlier variant) are
    dropped. Ids "slurp-<slurp_id>-swap<k>". Raises ValueError for copies < 0."""
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}")
    with gzip.open(Path(root) / "slurp" / f"{split}.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    values: dict[str, list[str]] = {}
    for r in rows:
        for etype, value in SLURP_ENTITY.findall(r.get("sentence_annotation", "")):
            values.setdefault(etype, []).append(value)
    values = {t: sorted(set(v)) for t, v in values.items()}
    seen = {" ".join(r["sentence"].split()) for r in rows}
    rng = np.random.default_rng([seed, 3])
    out = []
    for r in rows:
        ann = r.get("sentence_annotation", "")
        if not SLURP_ENTITY.search(ann):
            continue
        for k in range(copies):
            text = " ".join(SLURP_ENTITY.sub(lambda m: values[m.group(1)][int(rng.integers(len(values[m.group(1)])))],
                                             ann).split())
            if text not in seen:
                seen.add(text)
                out.append(_dialogue("slurp", f"slurp-{r['slurp_id']}-swap{k}", split, [("user", text)]))
    return out


def detokenize(text: str) -> str:
    """MultiWOZ's tokenised text back to typed text: "I 'm here ." -> "I'm here."."""
    text = " ".join(text.split())
    text = re.sub(r" ([.,!?;:%)])", r"\1", text)
    text = re.sub(r"\( ", "(", text)
    return re.sub(r" (n't|'s|'m|'re|'ve|'ll|'d)\b", r"\1", text, flags=re.I)


def read_multiwoz(root: Path, split: str = "test") -> list[Dialogue]:
    """MultiWOZ (multiwoz/{val,test}.json.zip): `log` alternates user / system, user first; detokenised."""
    with zipfile.ZipFile(Path(root) / "multiwoz" / f"{split}.json.zip") as z:
        data = json.loads(z.read(f"{split}.json"))
    return [_dialogue("multiwoz", k, split, [("user" if i % 2 == 0 else "assistant", detokenize(t["text"]))
                                             for i, t in enumerate(v["log"])]) for k, v in data.items()]


def read_sgd(root: Path, split: str = "test") -> list[Dialogue]:
    """SGD (sgd/{train,dev,test}.jsonl.gz, reduced to {dialogue_id, services, turns: [{speaker, utterance}]})."""
    with gzip.open(Path(root) / "sgd" / f"{split}.jsonl.gz", "rt") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [_dialogue("sgd", r["dialogue_id"], split, [("user" if t["speaker"] == "USER" else "assistant",
                                                       t["utterance"]) for t in r["turns"]]) for r in rows]


READERS = {"dstc2": read_dstc2, "slurp": read_slurp, "multiwoz": read_multiwoz, "sgd": read_sgd}



def turn_words(text: str) -> list[tuple[str, str]]:
    """(as written, normalised) per word of a turn; tokens that normalise to nothing ("-", "&") join the
    word before them (or are dropped at the start)."""
    out: list[list[str]] = []
    for tok in text.split():
        norm = normalize_word(tok)
        if norm:
            out.append([tok, norm])
        elif out:
            out[-1][0] += " " + tok
    return [(a, b) for a, b in out]


def sample_turns(dialogues: Sequence[Dialogue], max_turns: int | None, seed: int) -> list[tuple[int, int]]:
    """(dialogue index, turn index) of the user turns with >= 1 word; a seeded sample of `max_turns`."""
    turns = [(i, j) for i, d in enumerate(dialogues) for j, (r, t) in enumerate(d.turns)
             if r == "user" and turn_words(t)]
    return [turns[i] for i in seeded_sample(len(turns), max_turns, seed)]


def word_durations_s(words: Sequence[str], rng: np.random.Generator) -> np.ndarray:
    """A plausible spoken duration per word: 0.1 s + 55 ms per character, x lognormal(0, 0.2), in [0.12, 0.9] s."""
    base = np.array([0.1 + 0.055 * len(w) for w in words], dtype=np.float64)
    return np.clip(base * rng.lognormal(0.0, 0.2, size=len(words)), 0.12, 0.9)


def timed_words(words: Sequence[str], rng: np.random.Generator) -> tuple[Word, ...]:
    """`words` back to back from t = 0 with `word_durations_s`."""
    ends = np.cumsum(word_durations_s(words, rng))
    starts = np.concatenate([[0.0], ends[:-1]])
    return tuple(Word(w, float(s), float(e)) for w, s, e in zip(words, starts, ends))
