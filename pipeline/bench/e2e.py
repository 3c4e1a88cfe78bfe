"""End-to-end latency harness: scripted conversations played into the pipeline in real time.

For every configuration (mode x turn strategy, plus semantic without preemptive generation (the
default starts the LLM in the silence), with a reply opener, and with the int8 LLM) every scenario of the chosen sets (`--scenario-sets`: "festival",
`scenarios.build_scenarios`, real turns rendered in `voices`, festival slt by default, with barge-in
and backchannel scenarios; "getgoing", `getgoing_scenarios`, real callers' telephone turns of the
GetGoing test split played as recorded) runs through a fresh pipeline on the wall clock; one JSON
line per user turn / barge-in / backchannel goes to `turns.jsonl` as soon as it is known (a rerun
skips finished (config, scenario) pairs), then `metrics.json` ("summary" over every scenario,
"by_set" per set) and `report.md` (`report`: the tables over all, then per set) summarise them.

The semantic policy (threshold, action delay, timeout) is the `operating_point` of the detector's
evaluation run (`operating_point.policy_from_eval`: by default the lowest mean latency with at
most 10% false cut-offs on Switchboard val; on a fresh clone, without runs/, the same points shipped
beside the detector's model), recorded with its source in the report; `--operating-point manual`
uses the bench's --threshold / --action-delay-s / --timeout-s instead.

Per user turn (times on the pipeline clock; `speech_end` is the ground truth: when the scripted
audio's last word ended):
- e2e_s = first agent audio played - speech_end (what the user waits; includes endpointing);
- endpoint_s = end-of-turn decision (the stream time at which the policy fired, on the same clock) -
  speech_end (the policy's dead air, in the audio's own time: a slow CPU cannot make it shorter);
- processing_s = first agent audio played - that decision (the 300 ms budget part: in the cascade it
  includes the batch STT, which the EndOfTurn frame has to wait for; it includes the decision's
  compute lag, decision_lag_s, which marks the turn `overloaded` past OVERLOAD_LAG_S);
- stt_final_s = final transcript - VAD stop; llm_ttft_s = first LLM token - the EndOfTurn that
  started the generation (the preemptive one when it was confirmed); tts_first_s = first TTS
  audio - first text to speak; preempt_hidden_s = confirmed decision - preemptive start;
- cutoff: an end-of-turn decision before speech_end (the agent answered a turn not yet finished; for a
  real recording, a decision in its lead-in or inside a hold counts alike).
Per config and set, stt_wer: `word_error_rate` of the answered turns' transcripts against their text.
Barge-in: reaction_s = agent audio stopped - onset of the user's speech, success = an Interrupt for
the agent's response. Backchannel: a false interruption is an Interrupt; pause_s = how long the
agent was silent before resuming.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.runtime.frames import Interrupt
from pipeline.runtime.observers import LatencyObserver
from pipeline.runtime.runner import (
    AudioInput,
    PipelineConfig,
    build_pipeline,
    check_transcript_lag,
    load_models,
    load_turn_detector,
)
from vad_turn.core.config import config_options, default_runs_root, require_range
from vad_turn.core.runs import RunFolder, atomic_write_text
from vad_turn.engines.llm.local import LocalLLM
from vad_turn.engines.stt import word_error_rate
from vad_turn.harness.operating_points import DEFAULT_PROFILE, PROFILES, policy_from_eval
from vad_turn.harness.percentiles import percentile, summary
from vad_turn.harness.policy import TurnPolicy
from vad_turn.harness.query import QUERY_GRID_S

from .plots import write_bench_figures
from .report import TURN_METRICS, ratios, report_md
from .scenarios import FESTIVAL_META, USER_VOICES, Scenario, build_scenarios
from .stats import comparisons

CONFIGS = {
    "streaming-semantic": dict(mode="streaming", turn="semantic"),
    "streaming-semantic-int8": dict(mode="streaming", turn="semantic", llm_quantize="int8"),
    # the default (TurnPolicy.preemptive_fraction) starts the LLM in the silence; this one waits for the decision
    "streaming-semantic-no-preempt": dict(mode="streaming", turn="semantic", policy_overrides={"preemptive_fraction": None}),
    # a faster first chunk: "Sure," is said at the decision and the LLM continues the reply after it
    "streaming-semantic-opener": dict(mode="streaming", turn="semantic", reply_opener="Sure,"),
    # the best open peer, Smart Turn v3.2 (audio only), at the policy Pipecat ships it with (PEER_CONFIGS)
    "streaming-smart-turn": dict(mode="streaming", turn="semantic", detectors=("smart-turn",)),
    # VAD-only at stop_silence_s (0.6 s): the naive baseline, waiting for its decision
    "streaming-vad": dict(mode="streaming", turn="vad", policy_overrides={"preemptive_fraction": None}),
    # VAD-only with the same preemptive start as the semantic agent (it generates in its own 0.6 s of silence)
    "streaming-vad-preempt": dict(mode="streaming", turn="vad"),
    # VAD-only at the silence that gives, on the same turns, the semantic default's false cut-off rate in this
    # run (`matched_stop_silence_s`, from the scenarios' true pauses), with the same preemptive start
    "streaming-vad-matched": dict(mode="streaming", turn="vad"),
    "streaming-vad-eval": dict(mode="streaming", turn="vad", policy_overrides={"preemptive_fraction": None}),
    "cascade-semantic": dict(mode="cascade", turn="semantic"),
    "cascade-vad": dict(mode="cascade", turn="vad"),
}
CONVERSATION_ONLY = ("streaming-semantic-int8", "streaming-vad-eval", "streaming-semantic-opener",
                     "streaming-vad-preempt", "streaming-vad-matched")  # barge-in/backchannel would add nothing
# VAD-only at the silence of its own point on the semantic policy's evaluation run (same operating point, e.g.
# lat@fcr<=10%), instead of `stop_silence_s`: the like-for-like baseline for "semantic vs VAD-only at <=10% FCR".
EVAL_MATCHED_VAD = ("streaming-vad-eval",)
# matched on this run's turns: scored after the semantic default (MATCHED_TO) on the same scenario set
RUN_MATCHED_VAD = ("streaming-vad-matched",)
MATCHED_TO = "streaming-semantic"
# Smart Turn as its makers configure it in Pipecat 0.0.x (pipecat/audio/turn/smart_turn): asked when the VAD
# has heard VAD_STOP_SECS = 0.2 s of silence, "complete" at probability > 0.5, the turn ends anyway after
# STOP_SECS = 3 s. Its own evaluated points are not shipped (runs/headline-v3 has its curves, not a policy).
PEER_CONFIGS = {"streaming-smart-turn": {"threshold": 0.5, "action_delay_s": 0.2, "timeout_s": 3.0,
                                         "source": "Pipecat's defaults for Smart Turn v3 (VAD stop 0.2 s, p > 0.5, "
                                                   "stop_secs 3 s)", "operating_point": "peer default"}}
# A decision made more than this behind the audio it judged (CPU overloaded) gets no verdict.
OVERLOAD_LAG_S = 0.25
SCENARIO_SETS = ("festival", "getgoing")  # rendered turns (scenarios.build_scenarios); real callers (getgoing_scenarios)


@dataclass(frozen=True)
class BenchConfig:
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/pipeline-bench-<time>)"})
    configs: tuple[str, ...] = field(default=tuple(CONFIGS), metadata={"help": f"of {', '.join(CONFIGS)}"})
    n_conversation_turns: int = field(default=16, metadata={"help": "real user turns (half Switchboard dev, half SBCSAE test)"})
    turns_per_conversation: int = field(default=4, metadata={"help": "user turns per scripted conversation"})
    n_barge_in: int = field(default=3, metadata={"help": "barge-in scenarios (streaming configs only)"})
    n_backchannel: int = field(default=4, metadata={"help": "backchannel scenarios (streaming configs only)"})
    max_words: int = field(default=15, metadata={"help": "longest user turn, words"})
    operating_point: str = field(default="default", metadata={
        "help": "semantic policy: this operating point of the detector's --profile ('default': the profile's own, "
                "operating_points.DEFAULT_POINTS), from its evaluation run (its DetectorSpec's eval_runs) or else the points "
                "shipped beside the model; 'manual' for --policy.threshold / --policy.action-delay-s / "
                "--policy.timeout-s"})
    profile: str = field(default=DEFAULT_PROFILE, metadata={
        "help": "which evaluated operating points: voice-agent (speech addressed to an agent, the default) or "
                "conversation (human-to-human Switchboard)", "choices": PROFILES})
    policy_run: Path | None = field(default=None, metadata={"help": "evaluation run folder to read it from (default: "
                                                                    "the detector's DetectorSpec eval_runs, "
                                                                    "else its shipped operating points)"})
    policy: TurnPolicy = field(default_factory=TurnPolicy, metadata={
        "help": "the turn policy: its threshold / action delay / timeout are used with --operating-point manual; "
                "its preemptive start and VAD-only stop silence always", "flatten": True})
    confident_p_eot: float = field(default=0.9, metadata={"help": "semantic turns decided at p_eot >= this are "
                                                                  "'confident' (their e2e is reported apart)"})
    voices: tuple[str, ...] = field(default=USER_VOICES, metadata={"help": "voices of the scripted user turns"})
    first_clause_words: int = field(default=2, metadata={"help": "first TTS chunk after this many words (streaming)"})
    max_new_tokens: int = field(default=16, metadata={"help": "reply length cap (shorter replies = faster bench)"})
    hear_s: float = field(default=1.0, metadata={"help": "conversations: stop each reply after this much was played"})
    stt: str = field(default="moonshine", metadata={
        "help": "STT engine (vad_turn.engines.stt.STT_ENGINES): moonshine (the default: WER 0.30 on real GetGoing callers, "
                "its measured word lag in vad_turn/engines/stt_lag.json), pocketsphinx (streaming partials, WER 1.16 there), "
                "pocketsphinx-getgoing, whisper, whisper-segment, pocketsphinx+moonshine"})
    seed: int = field(default=0, metadata={"help": "seed of the turn, barge-in and backchannel selection"})
    scenario_sets: tuple[str, ...] = field(default=("festival",), metadata={
        "help": f"scenario sets, of {', '.join(SCENARIO_SETS)}: festival = rendered real turns with barge-in and "
                "backchannel scenarios; getgoing = real callers' telephone turns (test split, reporting only)"})
    getgoing_turns: int = field(default=12, metadata={"help": "getgoing set: seeded sample of GetGoing test turns"})

    def __post_init__(self) -> None:
        """Every option is checked before any model loads or any folder is written."""
        unknown = [c for c in self.configs if c not in CONFIGS]
        if not self.configs or unknown:
            raise ValueError(f"--configs: unknown {unknown} (of {', '.join(CONFIGS)})" if unknown
                             else "--configs needs at least one configuration")
        if any(c in RUN_MATCHED_VAD for c in self.configs) and MATCHED_TO not in self.configs:
            raise ValueError(f"--configs: {', '.join(RUN_MATCHED_VAD)} is matched to {MATCHED_TO}'s cut-off rate "
                             f"on the same turns: add {MATCHED_TO}")
        require_range("confident_p_eot", self.confident_p_eot, 0.0, 1.0)
        require_range("hear_s", self.hear_s, 0.0, 600.0, lo_open=True)
        if min(self.n_conversation_turns, self.turns_per_conversation, self.max_words, self.max_new_tokens,
               self.first_clause_words) < 1 or min(self.n_barge_in, self.n_backchannel) < 0:
            raise ValueError("turn, word and token counts must be >= 1 (barge-in / backchannel counts >= 0)")
        if not self.voices:
            raise ValueError("--voices needs at least one voice")
        bad = [s for s in self.scenario_sets if s not in SCENARIO_SETS]
        if not self.scenario_sets or bad:
            raise ValueError(f"--scenario-sets: unknown {bad} (of {', '.join(SCENARIO_SETS)})" if bad
                             else "--scenario-sets needs at least one set")
        if self.getgoing_turns < 1:
            raise ValueError("--getgoing-turns must be >= 1")


def bench_policy(bench: BenchConfig, detector_name: str) -> dict:
    """The semantic policy the bench uses and why: {"threshold", "action_delay_s", "timeout_s", "source", ...}.

    The `operating_point` of the detector's shipped voice-agent profile (or its evaluation run: see
    `operating_point.policy_from_eval`; "policy_from" says which), unless `bench.operating_point == "manual"`
    (then the nested `bench.policy`, recorded as such).
    """
    if bench.operating_point == "manual" or detector_name == "vad-only" or not any(
            CONFIGS[c]["turn"] == "semantic" or c in EVAL_MATCHED_VAD
            for c in bench.configs if c in CONFIGS):  # unused: no eval run needed
        from vad_turn.harness.detectors import default_threshold

        pol = bench.policy.resolve(default_threshold(detector_name))
        return {"threshold": pol.threshold, "action_delay_s": pol.action_delay_s, "timeout_s": pol.timeout_s,
                "source": "manual (bench flags)", "operating_point": "manual"}
    point = None if bench.operating_point == "default" else bench.operating_point
    return policy_from_eval(detector_name, point, run_dir=bench.policy_run, profile=bench.profile)


def pipeline_config(bench: BenchConfig, name: str, policy: dict | None = None, *,
                    stop_silence_s: float | None = None) -> PipelineConfig:
    """The PipelineConfig of bench config `name`: `policy` (from `bench_policy`) sets the semantic policy's
    threshold, action delay and timeout, `bench.policy` the rest (preemptive start, VAD-only stop silence);
    `stop_silence_s` is the VAD-only silence of a run-matched config (`matched_stop_silence_s`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown bench config {name!r}; choose from {', '.join(CONFIGS)}")
    spec = dict(CONFIGS[name])
    overrides = spec.pop("policy_overrides", {})
    op = PEER_CONFIGS.get(name, policy)  # the peer keeps its own policy
    pol = bench.policy if op is None else TurnPolicy.from_operating_point(
        op, preemptive_fraction=bench.policy.preemptive_fraction, stop_silence_s=bench.policy.stop_silence_s)
    if name in EVAL_MATCHED_VAD:
        stop_s = ((policy or {}).get("vad_only") or {}).get("stop_silence_s")
        if stop_s is None:
            raise ValueError(f"{name} needs a policy from an evaluation run (not --operating-point manual): "
                             "it takes VAD-only's silence at the same operating point")
        overrides = {**overrides, "stop_silence_s": float(stop_s)}
    if name in RUN_MATCHED_VAD:
        if stop_silence_s is None:
            raise ValueError(f"{name} needs the stop silence matched on this run's turns (matched_stop_silence_s)")
        overrides = {**overrides, "stop_silence_s": float(stop_silence_s)}
    return PipelineConfig(**spec, policy=dataclasses.replace(pol, **overrides), max_new_tokens=bench.max_new_tokens,
                          stt=bench.stt, first_clause_words=bench.first_clause_words)


def matched_stop_silence_s(rows: list[dict], scenarios: list[Scenario], *, config: str = MATCHED_TO,
                           grid_s: float = QUERY_GRID_S, max_s: float = 3.0) -> float | None:
    """The shortest VAD-only stop silence (on a `grid_s` grid) whose false cut-off rate on these scenarios' turns,
    from their true pauses, is at most `config`'s measured rate in `rows` (the same turns): VAD-only cuts a turn
    off when one of its pauses lasts longer than the stop silence (the harness rule). None when `config` has no rows here."""
    mine = [r for r in rows if r["config"] == config and r["kind"] == "conversation"]
    if not mine:
        return None
    fcr = sum(bool(r["cutoff"]) for r in mine) / len(mine)
    longest = {}
    for sc in scenarios:
        for t in sc.turns:
            longest[(sc.id, t.id)] = max((b - a for a, b in t.holds), default=0.0)
    keys = [(r["scenario"], r["turn"]) for r in mine if (r["scenario"], r["turn"]) in longest]
    if not keys:
        return None
    for k in range(1, int(round(max_s / grid_s)) + 1):
        stop = round(k * grid_s, 6)
        if sum(longest[key] > stop + 1e-9 for key in keys) / len(keys) <= fcr + 1e-9:
            return stop
    return max_s


async def run_scenario_async(cfg: PipelineConfig, models, sc: Scenario, *, max_wait_s: float = 20.0,
                             hear_s: float | None = 1.0) -> list[dict]:
    """Play one scenario in real time; return its per-turn / per-interjection result rows.

    hear_s: in conversations, stop each reply after this much of it was played (None: play it all).
    """
    lat = LatencyObserver()
    p = build_pipeline(cfg, models, observers=[lat])
    await p.start()
    src = AudioInput(p)
    truths = await play_scenario(p, src, lat, sc, max_wait_s=max_wait_s, hear_s=hear_s)
    src.end()
    await p.wait(60.0)
    return score(sc, truths, lat.table(), p.conversation.log)


async def play_scenario(p, src: AudioInput, lat: LatencyObserver, sc: Scenario, *, max_wait_s: float = 15.0,
                        hear_s: float | None = None) -> list[dict]:
    """Play `sc` into a started pipeline in real time (the one scenario player of the bench and the demo):
    each turn, then, for barge-in / backchannel scenarios, the interjection `interject_after_s` into the
    agent's reply, then silence until the agent has answered. Returns one ground-truth dict per turn
    (clock times: start, end, holds, onset; stream times: start_stream, end_stream; agent_was_speaking:
    still speaking when the interjection began). `end` is the turn's `speech_end_s` (the audio may go on:
    a real recording's tail); `sc.history` is appended to the conversation's messages first.

    hear_s: in conversations, stop each reply after this much of it was played (None: play it all).
    """
    conv = p.conversation
    conv.messages.extend(dict(m) for m in sc.history)  # a real call's earlier turns, before its first turn
    await warm_history(p)
    src.rebase()  # stream time 0 is now, after the warm-up: the audio is paced in real time from here

    def answered(since: float):
        return lambda: any(r.eot is not None and r.eot >= since and r.first_played is not None and r.stopped
                           is not None for r in lat.records.values()) and conv.active_response is None \
            and not conv.agent_speaking

    truths = []
    await src.silence(0.3)
    for turn in sc.turns:
        t0 = await src.play(turn.audio)
        end_stream = t0 + turn.speech_end_s
        truth = {"turn": turn.id, "text": turn.text, "source": turn.source, "start": src.wall(t0),
                 "end": src.wall(end_stream), "start_stream": t0, "end_stream": end_stream,
                 "n_holds": len(turn.holds), "holds": [(src.wall(t0 + a), src.wall(t0 + b)) for a, b in turn.holds]}
        truths.append(truth)
        if sc.interjection is not None:
            speaking = await src.silence_until(lambda: conv.agent_speaking, max_wait_s)
            truth["agent_was_speaking"] = speaking
            if speaking:
                await src.silence(sc.interject_after_s)
                truth["agent_was_speaking"] = conv.agent_speaking
                t1 = await src.play(sc.interjection.audio)
                truth.update(onset=src.wall(t1), interjection=sc.interjection.text)
        if sc.interjection is None and hear_s is not None:  # latency is measured at the first audio: listen
            # to `hear_s` of the reply, then stop it, so the next turn need not wait for the whole reply
            heard = lambda: any(r.first_played is not None and p.clock.now() - r.first_played >= hear_s  # noqa: E731
                                and r.eot is not None and r.eot >= truth["start"] for r in lat.records.values())
            if await src.silence_until(heard, max_wait_s) and conv.active_response is not None:
                p.broadcast(Interrupt(p.clock.now(), conv.active_response, "stop"), "bench")
        await src.silence_until(answered(truth["start"]), max_wait_s)
        await src.silence(0.3)
    return truths


async def warm_history(p) -> None:
    """Prefill the conversation so far into the local LLM's prefix cache before the scenario plays, as a live agent
    would have done turn by turn: a scenario that seeds a real call's history (GetGoing) otherwise makes whichever
    config plays it first pay that whole prefill in its first reply, and the configs after it (sharing the loaded
    LLM and its cache) not."""
    for proc in getattr(p, "processors", ()):
        warm = getattr(getattr(proc, "llm", None), "warm", None)
        window = getattr(proc, "_window", None)
        if callable(warm) and callable(window) and len(p.conversation.messages) > 1:
            msgs = p.conversation.messages
            history = [dict(m) for m in msgs if m["role"] != "system"]
            # the prefix of the first turn's prompt: the LLM processor's own window once the user's message is in
            # (a window that overflows starts later, so warming the history alone would warm another prefix)
            first = window(history + [{"role": "user", "content": ""}])[:-1]
            await proc.run_blocking(warm, [dict(m) for m in msgs if m["role"] == "system"][:1] + first)


def _d(a, b):
    return None if a is None or b is None else float(a - b)


def decision_media_time(r: dict, tr: dict) -> float:
    """When record `r`'s policy fired, in the audio's own time on the truth's clock (start_s + stream
    time): what cut-offs and endpoint latencies are judged on, whatever the CPU's lag. Falls back to
    the clock time of the decision for truths or records without stream times."""
    if "start_stream" in tr and r.get("decided_stream_s") is not None:
        return tr["start"] - tr["start_stream"] + r["decided_stream_s"]
    return r.get("decided") or r["eot"]


def stream_lags(records: list[dict], start_s: float | None) -> dict:
    """How far behind the audio's own time the machine was for these response records, end to end: the largest
    decision_lag_s (the policy fired after the audio it judged), audio_lag_s (the VAD got a frame after its end
    stream time) and answer_lag_s (a detector answer arrived after the audio it judged), seconds, None where
    unknown; overloaded when any exceeds OVERLOAD_LAG_S (a neighbour or the CPU, not the policy, set the
    latencies). start_s: the clock time of stream time 0 (None: only the decision lag is known)."""
    def worst(values):
        v = [x for x in values if x is not None]
        return max(v) if v else None

    known = start_s is not None
    lags = {"decision_lag_s": worst((r.get("decided") or r["eot"]) - (start_s + r["decided_stream_s"])
                                    if known and r.get("decided_stream_s") is not None else None for r in records),
            "audio_lag_s": worst(r["audio_offset_s"] - start_s if known and r.get("audio_offset_s") is not None
                                 else None for r in records),
            "answer_lag_s": worst(r["answer_offset_s"] - start_s if known and r.get("answer_offset_s") is not None
                                  else None for r in records)}
    return {**lags, "overloaded": any(v is not None and v > OVERLOAD_LAG_S for v in lags.values())}


def score(sc: Scenario, truths: list[dict], records: list[dict], log: list) -> list[dict]:
    """Per-turn rows from the ground truth and the observer's response records (see the module doc).

    Decisions are judged in media time (`decision_media_time`); `stream_lags` says how far behind the audio
    the machine was (the decision, the audio reaching the VAD, the detector's answers), and a row with any
    lag > OVERLOAD_LAG_S is marked overloaded: its latencies are the machine's, not the policy's, and
    reports leave it out."""
    rows = []
    for i, tr in enumerate(truths):
        nxt = truths[i + 1]["start"] if i + 1 < len(truths) else float("inf")
        mine = [r for r in records if r["eot"] is not None and tr["start"] <= decision_media_time(r, tr) < nxt]
        mine_tent = [r for r in records if r["eot_tentative"] is not None and tr["start"] <= r["eot_tentative"] < nxt]
        cutoff = any(decision_media_time(r, tr) < tr["end"] for r in mine)
        lags = [(r.get("decided") or r["eot"]) - decision_media_time(r, tr) for r in mine]
        played = [r for r in mine if r["first_played"] is not None and r["first_played"] < tr.get("onset", nxt)
                  and (r["eot"] >= tr["end"] or r["interrupt_reason"] != "user-resumed")]
        r = played[0] if played else None
        row = {"scenario": sc.id, "kind": sc.kind, "set": scenario_set(sc.meta),
               **{k: v for k, v in tr.items() if k not in ("start", "end", "holds", "onset", "start_stream", "end_stream")},
               "cutoff": cutoff, "answered": r is not None, "n_preemptive": len(mine_tent),
               "n_discarded": sum(1 for x in mine + mine_tent if x["interrupt_reason"] == "user-resumed"),
               "n_preempt_discarded": sum(1 for x in mine_tent if x["eot"] is None or x["interrupt_reason"] == "user-resumed"),
               "decision_lag_s": max(lags) if lags else None, "overloaded": bool(lags) and max(lags) > OVERLOAD_LAG_S}
        if "start_stream" in tr:  # the audio's own clock: the audio and the detector's answers judged too
            row.update(stream_lags(mine, tr["start"] - tr["start_stream"]))
        if r is not None:
            start_gen = r["eot_tentative"] if r["eot_tentative"] is not None else r["eot"]
            row.update(transcript=r["text"], reply=r["reply"], bridged=r.get("bridged", False), p_eot=r["p_eot"], eot_silence_s=r["eot_silence_s"],
                       e2e_s=_d(r["first_played"], tr["end"]), endpoint_s=_d(decision_media_time(r, tr), tr["end"]),
                       processing_s=_d(r["first_played"], decision_media_time(r, tr)),
                       stt_final_s=_d(r["stt_final"], r["user_stopped"]),
                       llm_ttft_s=_d(r["first_token"], start_gen), tts_first_s=_d(r["first_tts"], r["first_text"]),
                       preempt_hidden_s=_d(r["eot"], r["eot_tentative"]))
        if sc.kind in ("barge-in", "backchannel") and r is not None and "onset" in tr:
            row["interrupted"] = r["interrupt_reason"] == "barge-in"
            row["reaction_s"] = _d(r["paused"][0] if r["paused"] else r["stopped"], tr["onset"])
            row["pause_s"] = _d(r["resumed"][0], r["paused"][0]) if r["resumed"] and r["paused"] else None
        rows.append(row)
    if log:
        rows[-1]["log"] = [t for _, t in log]
    return rows


def scenario_set(d: dict) -> str:
    """The scenario set of a scenario's meta or a result row ("festival" when unrecorded: runs before sets existed)."""
    return d.get("set") or FESTIVAL_META["set"]


def summarize(rows: list[dict], *, confident_p_eot: float = 0.9) -> dict:
    """{config: {metric: {n, p50, p99, mean} (`harness.percentiles.summary`), cutoff_rate, barge-in and backchannel
    figures}}.

    "e2e_confident_s": e2e over the answered turns whose decision had p_eot >= `confident_p_eot`
    (semantic configs; VAD-only decisions carry no p_eot)."""
    out = {}
    for name in sorted({r["config"] for r in rows}):
        rs = [r for r in rows if r["config"] == name]
        conv = [r for r in rs if r["kind"] == "conversation"]
        s = {m: summary([r.get(m) for r in conv]) for m in TURN_METRICS}
        semantic = (CONFIGS.get(name) or {}).get("turn", "semantic") == "semantic"  # VAD-only's p_eot is a constant
        conf = [r["e2e_s"] for r in conv if semantic and r.get("e2e_s") is not None and r.get("p_eot") is not None
                and r["p_eot"] >= confident_p_eot]
        s["e2e_confident_s"] = summary(conf)
        s["n_turns"] = len(conv)
        # decisions made > OVERLOAD_LAG_S behind the audio: the machine, not the policy, set those latencies
        s["n_overloaded"] = sum(bool(r.get("overloaded")) for r in conv)
        s["decision_lag_p99_s"] = percentile([r.get("decision_lag_s") for r in conv], 99)
        s["audio_lag_p99_s"] = percentile([r.get("audio_lag_s") for r in conv], 99)  # the VAD behind the audio
        s["answer_lag_p99_s"] = percentile([r.get("answer_lag_s") for r in conv], 99)  # the detector behind the audio
        s["false_cutoff_rate"] = (sum(r["cutoff"] for r in conv) / len(conv)) if conv else None
        s["answered_rate"] = (sum(r["answered"] for r in conv) / len(conv)) if conv else None
        # preemptive generation's cost: LLM starts in the silence, and those thrown away (the user went on, or the
        # confirmed text differed): each discarded start is LLM work done for nothing
        starts = sum(r.get("n_preemptive", 0) for r in conv)
        s["preemptive"] = {"starts": starts, "discarded": sum(r.get("n_preempt_discarded", 0) for r in conv),
                           "confirmed": sum(r.get("preempt_hidden_s") is not None for r in conv)}
        heard = [r for r in conv if r.get("transcript") is not None and r.get("text")]
        s["stt_wer"] = word_error_rate([r["text"] for r in heard], [r["transcript"] for r in heard]) if heard else None
        barge = [r for r in rs if r["kind"] == "barge-in" and r.get("agent_was_speaking")]
        if barge:
            s["barge_in"] = {"n": len(barge), "success_rate": sum(bool(r.get("interrupted")) for r in barge) / len(barge),
                             "reaction_p50_s": percentile([r.get("reaction_s") for r in barge], 50),
                             "reaction_p99_s": percentile([r.get("reaction_s") for r in barge], 99)}
        bc = [r for r in rs if r["kind"] == "backchannel" and r.get("agent_was_speaking")]
        if bc:
            s["backchannel"] = {"n": len(bc), "false_interruptions": sum(bool(r.get("interrupted")) for r in bc),
                                "pause_p50_s": percentile([r.get("pause_s") for r in bc], 50),
                                "pause_max_s": percentile([r.get("pause_s") for r in bc], 100)}
        out[name] = s
    return out


def summarize_sets(rows: list[dict], *, confident_p_eot: float = 0.9) -> dict:
    """{scenario set: `summarize` over that set's rows}, sets in SCENARIO_SETS order (then any other)."""
    names = sorted({scenario_set(r) for r in rows}, key=lambda n: (SCENARIO_SETS + (n,)).index(n))
    return {n: summarize([r for r in rows if scenario_set(r) == n], confident_p_eot=confident_p_eot) for n in names}


def _command(cfg: BenchConfig) -> str:
    """The `pipeline bench` command line that reproduces `cfg` (flags that differ from the defaults)."""
    return " ".join(["pipeline bench", *config_options(cfg, BenchConfig(), skip=("out",))])


def bench_scenarios(cfg: BenchConfig) -> list[Scenario]:
    """The scenarios of `cfg.scenario_sets`, in that order: "festival" (`scenarios.build_scenarios`) and
    "getgoing" (`getgoing_scenarios.getgoing_scenarios`: `cfg.getgoing_turns` GetGoing test turns)."""
    from .getgoing_scenarios import ensure_getgoing_build, getgoing_scenarios

    out = []
    for name in cfg.scenario_sets:
        if name == "festival":
            out += build_scenarios(n_conversation_turns=cfg.n_conversation_turns,
                                   turns_per_conversation=cfg.turns_per_conversation, n_barge_in=cfg.n_barge_in,
                                   n_backchannel=cfg.n_backchannel, seed=cfg.seed, max_words=cfg.max_words,
                                   voices=cfg.voices)
        else:
            root = ensure_getgoing_build()  # the full build, else a small one of the first test calls
            out += getgoing_scenarios(cfg.getgoing_turns, built_root=root, seed=cfg.seed, max_words=cfg.max_words)
    return out


def run(cfg: BenchConfig) -> dict:
    import os
    import platform

    from tqdm import tqdm

    from pipeline.runtime.runner import load_llm_for

    out = cfg.out or default_runs_root() / f"pipeline-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = RunFolder(out, cfg)
    path = folder.file("turns.jsonl")
    done = set()
    rows = []
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                rows.append(r)
                done.add((r["config"], r["scenario"]))
    scen = bench_scenarios(cfg)
    base_cfg = pipeline_config(cfg, "streaming-semantic")
    base = load_models(base_cfg, check_lag=False)  # every model once, the detector included
    detectors: dict[tuple, tuple] = {}  # detector names -> (detector, name) of the configs that pick their own
    policy = bench_policy(cfg, base.detector_name)  # fails here, before any scenario, if the eval run is missing
    if base.detector is not None and getattr(base.detector, "needs_words", True):  # the STT's lag against the
        check_transcript_lag(pipeline_config(cfg, "streaming-semantic", policy).turn_policy(base.detector_name),
                             base.stt)  # policy the semantic agent runs, not the base config's default
    llms = {base.llm.name: base.llm}
    wanted = lambda c, s: (c, s.id) not in done and (s.kind == "conversation" or (  # noqa: E731
        c.startswith("streaming") and c not in CONVERSATION_ONLY))
    # scenario by scenario, every config in turn (side by side on a noisy machine); the run-matched VAD-only
    # configs after the rest, once their set's semantic cut-off rate is known
    # the configs rotate from scenario to scenario, so none is always the first (or last) to play a turn
    plain = [c for c in cfg.configs if c not in RUN_MATCHED_VAD]
    jobs = [(c, s) for i, s in enumerate(scen) for c in plain[i % len(plain):] + plain[:i % len(plain)] if wanted(c, s)]
    jobs += [(c, s) for c in cfg.configs if c in RUN_MATCHED_VAD for s in scen if wanted(c, s)]
    matched: dict[str, float | None] = {}
    bar = tqdm(jobs, desc="pipeline bench", unit="scenario")
    for name, sc in bar:
        stop_s = None
        if name in RUN_MATCHED_VAD:
            sset = scenario_set(sc.meta)
            if sset not in matched:
                mine = [x for x in scen if scenario_set(x.meta) == sset]
                matched[sset] = matched_stop_silence_s([r for r in rows if scenario_set(r) == sset], mine)
            stop_s = matched[sset]
            if stop_s is None:
                continue
        pc = pipeline_config(cfg, name, policy, stop_silence_s=stop_s)
        key = LocalLLM.name_for(pc.llm_quantize)
        if key not in llms:  # e.g. the int8 variant: loaded (and its cache warmed) once, on first use
            llms[key] = load_llm_for(pc)
            llms[key].complete([{"role": "system", "content": pc.system_prompt}, {"role": "user", "content": "Hi"}],
                               max_new_tokens=2)
        models = dataclasses.replace(base, llm=llms[key], detector=base.detector if pc.turn == "semantic" else None)
        if pc.turn == "semantic" and pc.detectors != base_cfg.detectors:  # e.g. the peer: loaded once, on first use
            if pc.detectors not in detectors:
                detectors[pc.detectors] = load_turn_detector(pc.detectors)
                if detectors[pc.detectors][1] not in pc.detectors:
                    raise RuntimeError(f"{name}: none of {pc.detectors} could be built (see the warning above); "
                                       "for smart-turn install the [pipecat] extra (make setup does)")
            det, det_name = detectors[pc.detectors]
            models = dataclasses.replace(models, detector=det, detector_name=det_name)
        res = asyncio.run(run_scenario_async(pc, models, sc, hear_s=cfg.hear_s))
        res = [{**r, "stop_silence_s": pc.policy.stop_silence_s} if pc.turn == "vad" else r for r in res]
        with open(path, "a") as fh:  # one line per row, appended whole: a killed run loses at most this scenario
            fh.write("".join(json.dumps({"config": name, **r}) + "\n" for r in res))
        rows += [{"config": name, **r} for r in res]
    summary = summarize(rows, confident_p_eot=cfg.confident_p_eot)
    load = os.getloadavg()
    info = {"detector": base.detector_name, "stt": cfg.stt, "voices": list(cfg.voices),
            "semantic_policy": dataclasses.asdict(pipeline_config(cfg, "streaming-semantic", policy).turn_policy(
                base.detector_name)), "policy_source": policy, "vad_stop_silence_s": cfg.policy.stop_silence_s,
            "matched_vad_stop_silence_s": matched,
            "peer_policies": {n: PEER_CONFIGS[n] for n in cfg.configs if n in PEER_CONFIGS},
            "llm": base.llm.name, "voice": base.voice.id, "first_clause_words": cfg.first_clause_words,
            "confident_p_eot": cfg.confident_p_eot,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
                       f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end (the CPU is shared)",
            "scenario_sets": list(cfg.scenario_sets), "ratios": ratios(summary), "command": _command(cfg)}
    by_set = summarize_sets(rows, confident_p_eot=cfg.confident_p_eot)
    paired = {n: comparisons([r for r in rows if scenario_set(r) == n]) for n in by_set}  # bootstrap by call
    folder.write_metrics({"summary": summary, "by_set": by_set, "paired": paired, "info": info})
    report = report_md(summary, info, by_set, paired)
    atomic_write_text(folder.file("report.md"), report)
    write_bench_figures(folder.path, rows)  # what notebook 05 shows (pipeline.bench.plots)
    print(report)
    print(f"wrote {folder.path}")
    return {"summary": summary, "by_set": by_set, "info": info, "out": str(folder.path)}
