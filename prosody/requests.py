"""The user turns every prompt variant answers: real conversational questions plus task requests.

Real turns come from the workbench's turn-span datasets (the builders' output, never a second
turn construction): the first `max_conversations` conversations of each split of
`data/built/<corpus>` when `vad-turn build-data` has written it, otherwise the corpus builder run
in memory on the same conversations (reading the original files in place from the data root).
Both paths give the same rows, so the selected requests do not depend on whether data was built.

Selection (deterministic, recorded in the run folder by turn id):

- A turn is a candidate if it has 6-30 words, is not a backchannel, and is question-like:
  SBCSAE turns whose last intonation unit ends in "?" (the transcribers' appeal mark); Switchboard
  turns (no punctuation in MS98) whose first word after leading discourse words (uh, um, well, so,
  and, oh, okay, but, now, yeah) is a wh-word, or whose first two words are an auxiliary followed
  by a pronoun ("do you", "is it", "can we" ...).
- Candidates are ordered by `vad_turn.core.seeds.stable_hash(turn id, seed)` (sha256) and taken in that order, at most
  `max_per_conversation` per conversation, until `n` are chosen.
- The request text is `schema.normalize_text` of the turn's words: lowercase and unpunctuated,
  like the streaming ASR transcript a voice agent's LLM actually receives.

Task-style requests (`TASK_REQUESTS`) are written here, by hand, as a user would say them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from vad_turn.core.config import default_built_root, default_data_root
from vad_turn.core.schema import is_backchannel_text, normalize_text, normalize_word
from vad_turn.core.seeds import stable_hash

WH_WORDS = frozenset({"what", "what's", "how", "how's", "why", "where", "where's", "when", "who", "who's", "which"})
AUXILIARIES = frozenset(
    {"do", "does", "did", "are", "is", "was", "were", "have", "has", "had", "can", "could", "would", "will",
     "should", "shall", "may", "might", "don't", "doesn't", "didn't", "aren't", "isn't", "haven't", "can't",
     "wouldn't", "won't"}
)
PRONOUNS = frozenset({"you", "i", "we", "they", "he", "she", "it", "that", "this", "there", "y'all"})
LEADING_DISCOURSE = frozenset({"uh", "um", "well", "so", "and", "oh", "okay", "but", "now", "yeah"})
MIN_WORDS, MAX_WORDS = 6, 30

TASK_REQUESTS: tuple[tuple[str, str], ...] = (
    ("task-00", "Can you set a timer for twelve minutes for the pasta?"),
    ("task-01", "What's a good way to get from the airport to downtown without a car?"),
    ("task-02", "Remind me what I need to bring to the dentist tomorrow."),
    ("task-03", "How do I reset my wifi router when the internet stops working?"),
    ("task-04", "I need to cancel my gym membership, how do I do that?"),
    ("task-05", "Could you help me write a short message saying I'll be late to the meeting?"),
    ("task-06", "What should I cook tonight if I only have rice, eggs and some spinach?"),
    ("task-07", "My flight got delayed by three hours, what are my options?"),
    ("task-08", "Explain how to change a flat tire, step by step."),
    ("task-09", "Is it going to be cold enough this weekend that I need a heavy jacket?"),
    ("task-10", "How much water should I drink during a long bike ride?"),
    ("task-11", "Can you tell me the difference between a credit card and a debit card?"),
    ("task-12", "I want to book a table for four people on Friday evening."),
    ("task-13", "What do I do if my phone won't turn on after it got wet?"),
    ("task-14", "Give me a quick summary of how compound interest works."),
    ("task-15", "How long should I boil an egg so the yolk is still soft?"),
    ("task-16", "My package says delivered but it isn't here, what should I do?"),
    ("task-17", "Can you suggest a few easy stretches for a stiff neck?"),
    ("task-18", "What's the best way to learn a few words of Spanish before my trip?"),
    ("task-19", "Help me plan a short walking route around the old town."),
)


@dataclass(frozen=True)
class Request:
    """One user turn: `id` (corpus turn id or "task-NN"), `text` sent as the user message, `source`."""

    id: str
    text: str
    source: str  # "switchboard" | "sbcsae" | "task"
    conversation: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def is_question_like(words: list[str], final_mark: str = "") -> bool:
    """SBCSAE appeal mark "?" at the end, or a wh-/auxiliary+pronoun opening (see module docstring)."""
    if final_mark == "?":
        return True
    norm = [n for n in (normalize_word(w) for w in words) if n]
    while norm and norm[0] in LEADING_DISCOURSE:
        norm = norm[1:]
    if not norm:
        return False
    return norm[0] in WH_WORDS or (len(norm) > 1 and norm[0] in AUXILIARIES and norm[1] in PRONOUNS)


def select_corpus_requests(rows: Iterable[dict], source: str, n: int, *, seed: int = 0,
                           max_per_conversation: int = 2) -> list[Request]:
    """Pick `n` question-like turns from turn-span rows ({id, words, unit_punct, conversation, ...}).

    Raises ValueError when fewer than `n` candidates exist (never silently returns fewer).
    """
    candidates = []
    for row in rows:
        words = [w["word"] for w in row["words"] or []]
        punct = list(row.get("unit_punct") or [])
        text = normalize_text(words)
        n_words = len(text.split())
        if not (MIN_WORDS <= n_words <= MAX_WORDS) or is_backchannel_text(words):
            continue
        if is_question_like(words, punct[-1] if punct else ""):
            candidates.append((stable_hash(row["id"], seed), row["id"], text, row.get("conversation", "")))
    candidates.sort()
    chosen, per_conv = [], Counter()
    for _, turn_id, text, conv in candidates:
        if per_conv[conv] >= max_per_conversation:
            continue
        per_conv[conv] += 1
        chosen.append(Request(turn_id, text, source, conv))
        if len(chosen) == n:
            return chosen
    raise ValueError(f"{source}: only {len(chosen)} question-like turns available, {n} requested "
                     f"(use more conversations or lower the count)")


def corpus_rows(corpus: str, *, built_root: Path | None = None, data_root: Path | None = None,
                max_conversations: int = 25) -> tuple[list[dict], str]:
    """Turn-span rows (without audio) of `corpus` and where they came from.

    From `built_root/corpus` if that dataset exists, else from the corpus builder run in memory on
    `max_conversations` conversations per split of the original files under `data_root`.
    """
    built = Path(built_root or default_built_root()) / corpus
    cols = ["id", "words", "unit_punct", "conversation", "source"]
    if built.exists():
        from vad_turn.data.dataset import iter_rows, load_turns

        ds = load_turns(built)
        keys = list(zip(ds["split"], ds["conversation"])) if "split" in ds.column_names else None
        keep = _first_conversations(keys, max_conversations) if keys else None
        rows = [r for i, r in enumerate(iter_rows(ds, cols)) if keep is None or i in keep]
        return rows, f"built dataset {built} (first {max_conversations} conversations per split)"
    from vad_turn.data.corpora import corpus_builder, load_recipe

    root = Path(data_root or default_data_root())
    splits, _ = corpus_builder(corpus)(root, load_recipe(corpus), max_conversations=max_conversations)
    rows = [{k: v for k, v in r.to_row().items() if k in cols} for recs in splits.values() for r in recs]
    return rows, f"{corpus} builder on {root} (first {max_conversations} conversations per split)"


def _first_conversations(keys: list[tuple[str, str]], n: int) -> set[int]:
    """Row indices of the first `n` distinct conversations of each split, in row (= split list) order.

    The same rows the builder gives with `max_conversations=n`, so selection does not depend on
    whether the dataset was built.
    """
    seen: dict[str, set[str]] = {}
    out = set()
    for i, (split, conv) in enumerate(keys):
        convs = seen.setdefault(split, set())
        if conv not in convs and len(convs) < n:
            convs.add(conv)
        if conv in convs:
            out.add(i)
    return out


def task_requests(n: int) -> list[Request]:
    if n > len(TASK_REQUESTS):
        raise ValueError(f"only {len(TASK_REQUESTS)} task requests are written, {n} requested")
    return [Request(i, t, "task") for i, t in TASK_REQUESTS[:n]]


def load_requests(n_switchboard: int, n_sbcsae: int, n_task: int, *, seed: int = 0,
                  built_root: Path | None = None, data_root: Path | None = None,
                  max_conversations: int = 25) -> tuple[list[Request], dict]:
    """All requests in a fixed order (switchboard, sbcsae, task) and provenance notes."""
    out: list[Request] = []
    notes: dict = {"seed": seed}
    for corpus, n in (("switchboard", n_switchboard), ("sbcsae", n_sbcsae)):
        if n <= 0:
            continue
        rows, origin = corpus_rows(corpus, built_root=built_root, data_root=data_root,
                                   max_conversations=max_conversations)
        out += select_corpus_requests(rows, corpus, n, seed=seed)
        notes[f"{corpus}_origin"] = origin
        notes[f"{corpus}_candidate_rows"] = len(rows)
    out += task_requests(n_task)
    ids = [r.id for r in out]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate request ids")
    return out, notes
