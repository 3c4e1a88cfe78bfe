"""The bench's "getgoing" scenario set: real callers' turns, their real telephone audio played as it was.

Each scenario is one caller turn of the built GetGoing dataset (`vad-turn build-getgoing`,
`vad_turn/data/corpora/getgoing.py`), split `test` by default. **Test turns are used for reporting
only**: nothing is tuned on them (the semantic policy comes from the detector's Switchboard-val
evaluation run or the operating points shipped with it).

From the row:
- audio: the caller's channel (8 kHz telephone band, stored at 16 kHz), float32 (n,), from `pre_s`
  (1 s) before the turn to the end of the end span (the next speech or at most 2 s later): the
  real lead-in and tail are played, not digital silence;
- end of turn (`ScriptedTurn.end_s`) = the start of the row's last silence span (end of its last
  speech region), seconds from the clip start;
- holds = the row's other silence spans (pauses inside the turn): a decision inside one is a false
  cut-off, by the bench's one definition (`e2e.score`: a decision before the end of turn);
- history: the row's `messages` (the call's earlier log turns, the system's last prompt last),
  seeded into the conversation before the turn: the detector and the LLM see what the caller heard;
- text: the log's Google-ASR line (`turn_tags.jsonl` `log_text`), normalised: the reference the
  bench's STT agreement and `pipeline stt-wer --getgoing-turns` score against (the dataset's own
  words are faster-whisper tiny.en's, so they cannot judge whisper).

Selection (`select_getgoing_rows`): the split's rows in seeded hash order (`core.seeds.seeded_order`, salt
"getgoing-scenario"), without holds longer than `max_hold_s`; half of the `n` with a hold (the
turns where cut-offs can happen; GetGoing's callers hold rarely, about 15 of 313 test turns) as far
as there are, the rest without.

Where the turns come from (`getgoing_built_root`): the full build under the built root (data/built), else
the small build of the first `SMALL_BUILD_CALLS` test calls that `ensure_getgoing_build` makes from the data
root (read in place) under runs/cache/getgoing-small: 24 calls, of which `select_getgoing_rows` can pick 103
turns (>= 60 for the bench's power and `pipeline.bench.stt_lag`; 16 calls gave 52), built in ~2 min on 2 shared
cores (the first three test calls hold no caller line). The bench and the demo's real-caller samples use
it on a fresh clone.
"""
from __future__ import annotations

from pathlib import Path

from vad_turn.core.audio import decode_audio_bytes
from vad_turn.core.config import default_built_root
from vad_turn.core.schema import normalize_text
from vad_turn.core.seeds import seeded_order

from .scenarios import Scenario, ScriptedTurn

SET_NAME = "getgoing"
SMALL_BUILD_CALLS = 24  # test calls in the fresh-clone build (ensure_getgoing_build)


def small_getgoing_root() -> Path:
    """Built root of the fresh-clone GetGoing build (runs/cache/getgoing-small)."""
    from vad_turn.core.config import default_runs_root

    return default_runs_root() / "cache" / "getgoing-small"


def getgoing_built_root() -> Path | None:
    """The built root holding a GetGoing build: the full one (data/built) first, else the small one; None when
    neither exists (`ensure_getgoing_build` makes the small one). A small build of fewer than SMALL_BUILD_CALLS
    calls (an older clone's) does not count: `ensure_getgoing_build` rebuilds it."""
    import json

    for root in (default_built_root(), small_getgoing_root()):
        info = root / SET_NAME / "build_info.json"
        if info.exists():
            if root == small_getgoing_root():
                max_calls = json.loads(info.read_text()).get("config", {}).get("max_calls")
                if max_calls is not None and max_calls < SMALL_BUILD_CALLS:
                    continue
            return root
    return None


def ensure_getgoing_build(data_root: Path | None = None) -> Path:
    """A built root with GetGoing test turns: the existing one, or a build of the recipe's first
    SMALL_BUILD_CALLS test calls from the data root (read in place) under `small_getgoing_root()`."""
    root = getgoing_built_root()
    if root is not None:
        return root
    from vad_turn.data.corpora.getgoing_build import GetGoingConfig, run

    out = small_getgoing_root()
    run(GetGoingConfig(out_root=out, cache_dir=out / "calls", splits=("test",), max_calls=SMALL_BUILD_CALLS,
                       n_check_turns=2, **({"data_root": Path(data_root)} if data_root is not None else {})))
    return out


def select_getgoing_rows(n: int, *, built_root: Path | None = None, split: str = "test", seed: int = 0,
                         max_hold_s: float = 2.0, max_words: int = 15) -> list[dict]:
    """`n` rows (audio included) of the built GetGoing `split`, each with its sidecar tags under "tags"
    (log_text, recognised_text, ...): half with a hold when there are enough, in seeded hash order."""
    from vad_turn.data.corpora.getgoing_build import load_turn_tags
    from vad_turn.data.dataset import load_turns

    root = (Path(built_root) if built_root is not None else (getgoing_built_root() or default_built_root())) / SET_NAME
    ds = load_turns(root)
    tags = load_turn_tags(root)
    meta = ds.select_columns(["id", "split", "n_words", "silence_spans"]).to_pandas()
    if split not in set(meta["split"]):
        raise ValueError(f"{root}: no split {split!r} (it has {sorted(set(meta['split']))})")
    m = meta[(meta["split"] == split) & meta["n_words"].between(1, max_words)]
    order = [m.index[j] for j in seeded_order(m["id"].tolist(), seed, "getgoing-scenario")]
    held, plain = [], []
    for i in order:
        holds = [s["end"] - s["start"] for s in m.at[i, "silence_spans"][:-1]]
        if any(h > max_hold_s for h in holds):
            continue
        (held if holds else plain).append(int(i))
    n_held = min(len(held), (n + 1) // 2)
    rank = {i: k for k, i in enumerate(order)}
    picked = sorted(held[:n_held] + plain[:n - n_held], key=rank.__getitem__)
    out = []
    for i in picked:
        row = ds[i]
        if row["id"] not in tags:
            raise ValueError(f"{root}: row {row['id']} has no line in turn_tags.jsonl "
                             "(rebuild it: vad-turn build-getgoing)")
        out.append({**row, "tags": tags[row["id"]]})
    return out


def getgoing_turn(row: dict) -> ScriptedTurn:
    """The ScriptedTurn of a GetGoing row (from `select_getgoing_rows`): the whole clip, end of turn and holds
    from its silence spans (seconds from the clip start), text = the log's normalised Google-ASR line."""
    audio = decode_audio_bytes(row["audio"]["bytes"], source=row["id"])
    spans = row["silence_spans"]
    holds = tuple((float(s["start"]), float(s["end"])) for s in spans[:-1])
    text = normalize_text(row["tags"]["log_text"].split())
    return ScriptedTurn(row["id"], text, audio, holds, SET_NAME, end_s=float(spans[-1]["start"]))


def getgoing_scenarios(n: int = 12, *, built_root: Path | None = None, split: str = "test",
                       seed: int = 0, max_hold_s: float = 2.0, max_words: int = 15) -> list[Scenario]:
    """One single-turn "conversation" scenario per selected GetGoing row (`select_getgoing_rows`), id
    "gg-<row id>", history = the row's earlier log turns, meta: set, split, log and recognised texts."""
    out = []
    for row in select_getgoing_rows(n, built_root=built_root, split=split, seed=seed, max_hold_s=max_hold_s,
                                    max_words=max_words):
        history = tuple({"role": m["role"], "content": m["content"]} for m in row["messages"])
        meta = {"set": SET_NAME, "split": split, "log_text": row["tags"]["log_text"],
                "recognised_text": row["tags"]["recognised_text"]}
        out.append(Scenario(f"gg-{row['id']}", "conversation", (getgoing_turn(row),), meta=meta, history=history))
    return out
