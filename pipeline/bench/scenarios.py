"""Scripted conversations for the end-to-end harness, from real turns rendered with their real pauses.

User turns are real Switchboard dev-split (the shipped val list) and SBCSAE test-split turns of
`min_words`..`max_words` words (never training turns), chosen by a seeded hash of their id, and
rendered by `vad_turn.data.render.render_rows` (each inter-pausal unit synthesized with a voice drawn
(seeded) from `voices` and joined with the turn's real hold durations), then cut at the end of the
last word. The default user voice is festival's HTS slt: pocketsphinx transcribes it far better
than espeak (scenario-set WER measured with `pipeline stt-wer --voices ...`: see stt_eval), so
the STT and the semantic detector see realistic text; `ESPEAK_VOICES` gives the old renders.
Holds longer than `max_hold_s` are skipped (they would be cut off by every policy with a shorter
timeout and only lengthen the run).

Scenario kinds:
- "conversation": user turns one after another, each played once the agent has finished its reply;
- "barge-in": a question, then, `interject_after_s` into the agent's reply, a real (non-backchannel)
  turn spoken over the agent: it should be interrupted;
- "backchannel": the same with "uh-huh", "yeah", "right" or "okay" (synthesized, trimmed): the agent
  should pause at most briefly and carry on, never be interrupted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes, seconds_to_samples, trim_silence
from vad_turn.core.config import default_built_root
from vad_turn.core.schema import is_backchannel_text, normalize_text
from vad_turn.core.seeds import seeded_order

ESPEAK_VOICES = ("espeak:en-us", "espeak:en-us+f3", "espeak:en+m3")
USER_VOICES = ("festival:cmu_us_slt_arctic_hts",)
BACKCHANNELS = ("uh-huh", "yeah", "right", "okay")
FESTIVAL_META = {"set": "festival"}  # the scenario set of `build_scenarios` (rendered turns)
QUESTIONS = ("can you tell me a little about your favorite kind of music and why you like it",
             "what do you think makes a good weekend")


@dataclass(frozen=True, eq=False)
class ScriptedTurn:
    """audio: float32 (n,) 16 kHz mono; rendered turns hold speech from sample 0 to the end (no lead-in,
    no tail), real recordings (`getgoing_scenarios`) keep their real lead-in and tail.
    holds: (start_s, end_s) of the real mid-turn pauses, relative to the audio start.
    end_s: the true end of the turn (end of its last word), seconds from the audio start; None = the
    audio's end."""

    id: str
    text: str
    audio: np.ndarray
    holds: tuple[tuple[float, float], ...] = ()
    source: str = ""
    end_s: float | None = None

    @property
    def duration_s(self) -> float:
        return self.audio.size / SAMPLE_RATE_HZ

    @property
    def speech_end_s(self) -> float:
        """The ground-truth end of the turn, seconds from the audio start (cut-offs and latencies count from it)."""
        return self.duration_s if self.end_s is None else float(self.end_s)


@dataclass(frozen=True, eq=False)
class Scenario:
    id: str
    kind: str  # "conversation" | "barge-in" | "backchannel"
    turns: tuple[ScriptedTurn, ...]
    interjection: ScriptedTurn | None = None
    interject_after_s: float = 0.8
    meta: dict = field(default_factory=dict)  # "set": the scenario set it belongs to (bench.SCENARIO_SETS)
    # messages the agent's conversation starts with, OpenAI format (a real call's earlier turns, the agent's
    # last prompt last): what the LLM and the semantic detector see as history before the first turn
    history: tuple[dict, ...] = ()


def select_rows(built_root: Path, corpus: str, split: str, n: int, *, seed: int = 0, min_words: int = 3,
                max_words: int = 15, max_hold_s: float = 2.0, with_holds: bool | None = None) -> list[dict]:
    """`n` source rows of `corpus`/`split` (seeded hash order) that fit the limits and are not backchannels."""
    from vad_turn.data.dataset import load_turns

    ds = load_turns(Path(built_root) / corpus)
    cols = [c for c in ds.column_names if c != "audio"]
    meta = ds.select_columns(["id", "split", "n_words"]).to_pandas()
    if split not in set(meta["split"]):
        raise ValueError(f"{Path(built_root) / corpus}: no split {split!r} (it has {sorted(set(meta['split']))})")
    m = meta[(meta["split"] == split) & meta["n_words"].between(min_words, max_words)]
    order = [m.index[j] for j in seeded_order(m["id"].tolist(), seed, "scenario")]
    ds = ds.select_columns(cols)
    out = []
    for i in order:
        row = ds[int(i)]
        holds = [s["end"] - s["start"] for s in row["silence_spans"][:-1]]
        words = [w["word"] for w in row["words"]]
        if any(h > max_hold_s for h in holds) or is_backchannel_text(words) or any(
                ch.isdigit() for w in words for ch in w):  # SBCSAE codes such as "l2" are not speakable words
            continue
        if with_holds is not None and bool(holds) != with_holds:
            continue
        out.append(row)
        if len(out) == n:
            break
    return out


def render_turns(rows: list[dict], corpus: str, *, seed: int = 0,
                 voices: tuple[str, ...] = USER_VOICES) -> list[ScriptedTurn]:
    """Render rows with `vad_turn.data.render.render_rows` (a seeded voice of `voices` per turn) into ScriptedTurns."""
    from vad_turn.data.render import RenderConfig, render_rows

    cfg = RenderConfig(voices=tuple(voices), lead_in_s=0.0, tail_s=0.2, condition_splits=(), seed=seed,
                       espeak_backend="lib", workers=1)
    res = render_rows(rows, cfg, corpus)
    out = []
    for rec in res["records"]:
        audio = decode_audio_bytes(rec.audio["bytes"], source=rec.id)
        end = seconds_to_samples(rec.silence_spans[-1].start)
        holds = tuple((s.start, s.end) for s in rec.silence_spans[:-1])
        out.append(ScriptedTurn(rec.id, normalize_text(w.word for w in rec.words), audio[:end], holds, corpus))
    return out


def conversation_rows(*, n_conversation_turns: int, built_root: Path | None = None, seed: int = 0,
                      max_words: int = 15) -> list[tuple[str, list[dict]]]:
    """(corpus, source rows) groups of the conversations' user turns, in play order: half Switchboard
    dev, half SBCSAE test, at least half of each with a real mid-turn pause (where cut-offs happen).
    The one selection behind `conversation_turns` (rendered) and `scenario_texts` (text only)."""
    root = Path(built_root) if built_root is not None else default_built_root()
    n_sw = (n_conversation_turns + 1) // 2
    groups = []
    for corpus, split, n in (("switchboard", "dev", n_sw), ("sbcsae", "test", n_conversation_turns - n_sw)):
        n_holds = (n + 1) // 2
        for want, k in ((True, n_holds), (False, n - n_holds)):
            if k:
                groups.append((corpus, select_rows(root, corpus, split, k, seed=seed, max_words=max_words,
                                                   with_holds=want)))
    return groups


def scenario_texts(*, n_conversation_turns: int = 16, built_root: Path | None = None, seed: int = 0,
                   max_words: int = 15) -> list[str]:
    """The normalised texts of the conversation turns `build_scenarios` would pick (`conversation_rows`:
    same rows, same order), without rendering audio: prompts for measuring the LLM on the bench's user turns."""
    return [normalize_text(w["word"] for w in r["words"])
            for _, rows in conversation_rows(n_conversation_turns=n_conversation_turns, built_root=built_root,
                                             seed=seed, max_words=max_words) for r in rows]


def spoken(text: str, voice_id: str = USER_VOICES[0]) -> ScriptedTurn:
    """`text` synthesized with `voice_id` and trimmed to its speech (a backchannel, a question)."""
    from vad_turn.engines.tts import synthesize, voice_from_id

    audio = trim_silence(synthesize(text, voice_from_id(voice_id)))[0]
    return ScriptedTurn(f"tts:{text}@{voice_id}", text, audio, (), "tts")


def conversation_turns(*, n_conversation_turns: int = 10, built_root: Path | None = None, seed: int = 0,
                       max_words: int = 15, voices: tuple[str, ...] = USER_VOICES) -> list[ScriptedTurn]:
    """The user turns of the conversations (`conversation_rows`), rendered in `voices`."""
    return [t for corpus, rows in conversation_rows(n_conversation_turns=n_conversation_turns, built_root=built_root,
                                                    seed=seed, max_words=max_words)
            for t in render_turns(rows, corpus, seed=seed, voices=voices)]


def build_scenarios(*, n_conversation_turns: int = 10, turns_per_conversation: int = 5, n_barge_in: int = 4,
                    n_backchannel: int = 4, built_root: Path | None = None, seed: int = 0,
                    max_words: int = 15, voices: tuple[str, ...] = USER_VOICES) -> list[Scenario]:
    """Conversations of real turns (`conversation_turns`), then barge-in and backchannel ones, in `voices`:
    the bench's "festival" scenario set (meta["set"])."""
    root = Path(built_root) if built_root is not None else default_built_root()
    turns = conversation_turns(n_conversation_turns=n_conversation_turns, built_root=root, seed=seed,
                               max_words=max_words, voices=voices)
    scen = []
    for i in range(0, len(turns), turns_per_conversation):
        chunk = tuple(turns[i:i + turns_per_conversation])
        scen.append(Scenario(f"conv{i // turns_per_conversation}", "conversation", chunk, meta=dict(FESTIVAL_META)))
    if n_barge_in:
        extra = render_turns(select_rows(root, "switchboard", "dev", n_barge_in, seed=seed + 1, min_words=5,
                                         max_words=max_words, with_holds=False), "switchboard", seed=seed,
                             voices=voices)
        for k, t in enumerate(extra):
            q = spoken(QUESTIONS[k % len(QUESTIONS)], voices[k % len(voices)])
            scen.append(Scenario(f"barge{k}", "barge-in", (q,), t, meta=dict(FESTIVAL_META)))
    for k in range(n_backchannel):
        q = spoken(QUESTIONS[k % len(QUESTIONS)], voices[k % len(voices)])
        bc = spoken(BACKCHANNELS[k % len(BACKCHANNELS)], voices[(k + 1) % len(voices)])
        scen.append(Scenario(f"backchannel{k}", "backchannel", (q,), bc, meta=dict(FESTIVAL_META)))
    return scen
