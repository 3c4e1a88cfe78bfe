"""Running one input through two panes at once: VAD-only and semantic endpointing.

`DemoSettings` (frozen) holds what the UI edits; `pane_config(settings, turn)` turns it into a
`runner.PipelineConfig`. `ModelPool` keeps loaded model sets (one per pane: STT, LLM, voice, and
the detector for the semantic pane) and lends each run its own set, so concurrent browser sessions
never share a stateful engine. `compare(source, settings)` plays the same input into each pane in
real time on the wall clock and returns a `PaneResult` per pane: the scored per-turn rows
(`bench.e2e.score`: cut-off, e2e, endpoint latency...), the timelines (`pipeline.bench.timeline`), the
transcript and the conversation audio (user + agent mixed).

The panes must not slow each other: on 2 cores, two pipelines at once (two STT streams, two LLM
generations, the detector) lengthen each other's processing, which would make the demo's latencies
those of a loaded machine, not the bench's. So by default (`DemoSettings.panes = "one after the
other"`) the VAD-only pane replays the input in real time, then the semantic pane replays the same
audio, each pipeline alone on the machine, as `pipeline bench` plays them (benchmarks/demo_vs_bench.py
compares the two); "at once" plays both together (half the wall time, slower agents) and says so.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.bench.e2e import play_scenario, score, stream_lags
from pipeline.bench.scenarios import Scenario, ScriptedTurn
from pipeline.bench.timeline import RecordingDetector, TurnTimeline, turn_timelines
from pipeline.runtime.observers import FrameLog, LatencyObserver
from pipeline.runtime.runner import AudioInput, Models, PipelineConfig, build_pipeline, default_pipeline_policy
from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.harness import detectors as registry
from vad_turn.harness.percentiles import percentile
from vad_turn.harness.policy import TurnPolicy

from .samples import InputError

PANES = ("vad", "semantic")
PANE_TITLES = {"vad": "VAD-only", "semantic": "Semantic"}
# The semantic pane tries these in order (the first that loads wins; each DetectorSpec's demo_rank); the others stay
# selectable. The shipped turn model v3 (`fused`) first: 3.4 ms per decision, and its lexical branch learnt that a
# request ending in "um" is unfinished, so it holds through the hesitation sample's 1 s pause (p_eot under the
# voice-agent threshold, tests/test_fusion.py) and fires at the real end. The zero-shot SmolLM2
# p(<|im_end|>) also holds but costs an LLM forward pass per query on the cores the reply needs.
DEMO_DETECTORS = registry.semantic_detectors("demo")
# What the settings panel offers: the default order, then detectors tried only when picked (DetectorSpec
# demo_on_request: Smart Turn v3.2, Pipecat's audio-only model, as an external reference; vad_turn/peers/smart_turn.py).
DEMO_DETECTOR_CHOICES = registry.semantic_detectors("demo-choices")


PANES_SEQUENTIAL, PANES_AT_ONCE = "one after the other", "at once"
PANE_MODES = (PANES_SEQUENTIAL, PANES_AT_ONCE)
# The agent of the samples and the real callers is a travel assistant that answers with an opener it continues
# (runner.PipelineConfig.reply_opener). With the bench's generic "friendly voice assistant" prompt SmolLM2-135M
# answered "I want to book a flight to, um, Boston" with "I'm sorry, but I'm unable to provide a response for
# your request"; a travel prompt alone did not help ("...as a travel and bus information assistant, I'm unable
# to provide flight information"), nor did example exchanges ("I'm sorry for your loss"); with the reply
# started as "Sure," it answers the request ("Sure, I can help with that. How about a flight to Boston?").
# tests/test_demo.py judges its replies to the samples' requests.
DEMO_SYSTEM_PROMPT = ("You are a helpful travel assistant on a phone call. You book flights and look up buses. "
                      "Reply in one short spoken sentence.")
DEMO_REPLY_OPENER = "Sure,"


@dataclass(frozen=True)
class DemoSettings:
    """What the settings panel edits. `policy`: the turn policy both panes run (the semantic pane its threshold,
    action delay, timeout and preemptive start; the VAD-only pane its stop silence), by default the shipped
    voice-agent operating point (`runner.default_pipeline_policy`), as in `pipeline bench`."""

    policy: TurnPolicy = field(default_factory=lambda: default_pipeline_policy())
    llm: str = "local"
    base_url: str = ""  # the openai backend's endpoint: server configuration (DemoConfig), never page input
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"  # environment variable whose key is sent to base_url only
    voice: str = "espeak:en-us+f3"
    hedging: bool = False
    max_new_tokens: int = 20
    detectors: tuple[str, ...] = DEMO_DETECTORS
    panes: str = PANES_SEQUENTIAL  # or PANES_AT_ONCE: see the module docstring
    system_prompt: str = DEMO_SYSTEM_PROMPT
    reply_opener: str = DEMO_REPLY_OPENER

    def __post_init__(self) -> None:
        if self.llm not in ("local", "openai"):
            raise InputError(f"LLM backend must be local or openai, got {self.llm!r}")
        if self.llm == "openai" and not self.base_url.strip():
            raise InputError("the openai backend needs an endpoint URL, e.g. http://127.0.0.1:8000/v1 "
                             "(a server setting: pipeline demo --llm-endpoint URL --llm-model NAME)")
        if not isinstance(self.policy, TurnPolicy):
            raise InputError(f"policy must be a TurnPolicy, got {type(self.policy).__name__}")
        if self.panes not in PANE_MODES:
            raise InputError(f"panes must be one of {PANE_MODES}, got {self.panes!r}")

    def model_key(self) -> tuple:
        """Settings that need other loaded models (the rest only change the policy)."""
        return self.llm, self.base_url, self.model, self.voice, self.hedging, self.detectors


def policy_note() -> str:
    """Which operating point the panes start from and where it was measured (shown on the page)."""
    from vad_turn.harness.operating_points import DEFAULT_DETECTOR, DEFAULT_PROFILE, shipped_policy

    p = shipped_policy(DEFAULT_DETECTOR, None, profile=DEFAULT_PROFILE)
    vad = p.get("vad_only") or {}
    fcr = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
    ms = lambda x: "-" if x is None else f"{1000 * x:.0f} ms"  # noqa: E731
    return (f"Policy: the `{DEFAULT_DETECTOR}` model's **{p['profile']}** operating point `{p['operating_point']}` "
            f"(`{p['source']}`), measured on {p['dataset']} ({p['split']}): false cut-offs {fcr(p['false_cutoff_rate'])}"
            f" at mean latency {ms(p['mean_latency_s'])}, against VAD-only at {vad.get('stop_silence_s')} s there: "
            f"{fcr(vad.get('false_cutoff_rate'))} at {ms(vad.get('mean_latency_s'))}. Both panes and `pipeline "
            "bench` start from it; the settings above change it for your runs.")


def pane_config(s: DemoSettings, turn: str) -> PipelineConfig:
    """The pane's PipelineConfig: the bench's streaming agent with the demo's policy, engines and prompt. The VAD-only
    pane waits for its decision (no preemptive start), as the bench's `streaming-vad` baseline does."""
    pol = s.policy if turn == "semantic" else dataclasses.replace(s.policy, preemptive_fraction=None)
    return PipelineConfig(mode="streaming", turn=turn, detectors=s.detectors, policy=pol,
                          llm=s.llm, base_url=s.base_url, model=s.model, api_key_env=s.api_key_env,
                          hedging=s.hedging, voice=s.voice, max_new_tokens=s.max_new_tokens,
                          system_prompt=s.system_prompt, reply_opener=s.reply_opener)


def load_model_set(s: DemoSettings) -> dict[str, Models]:
    """{pane: Models}; each pane its own STT and LLM (they hold state / a lock), the detector once."""
    from pipeline.runtime.runner import load_models, make_turn_detector

    det = make_turn_detector(s.detectors)
    return {pane: load_models(pane_config(s, pane), detector=det) for pane in PANES}


class ModelPool:
    """Loaded model sets by `DemoSettings.model_key()`; `acquire` lends one set to one run at a time.

    Bounded: at most `max_sets_per_key` sets per key and `max_keys` keys, so at most their product loaded (a
    set holds 1.3-2.3 GB: two panes' STT and LLM - two each with hedging -, the voice, the detector;
    benchmarks/demo_pool_memory.py). The demo's server keeps one set per key per run it admits at once
    (`DemoConfig.max_concurrent_runs`). A new key evicts the least recently used key none of whose sets is
    lent. When every set is lent, `acquire` waits up to `wait_s` for one to come back (a live session that
    has just ended returns its set), then refuses the run with a message instead of loading more."""

    def __init__(self, max_sets_per_key: int = 2, loader=None, max_keys: int = 3, wait_s: float = 0.0):
        if max_sets_per_key < 1 or max_keys < 1 or wait_s < 0:
            raise ValueError(f"max_sets_per_key and max_keys must be >= 1 and wait_s >= 0, got {max_sets_per_key}, "
                             f"{max_keys}, {wait_s}")
        self.max_sets, self.max_keys, self.wait_s = int(max_sets_per_key), int(max_keys), float(wait_s)
        self.loader = loader or load_model_set  # settings -> {pane: Models}
        self._sets: dict[tuple, list[dict]] = {}  # insertion order = least recently used first
        self._busy: set[int] = set()
        self._lock = threading.Lock()
        self._returned = threading.Condition(self._lock)  # notified when a lent set comes back
        self.evictions = 0

    def lent(self) -> int:
        """How many sets are lent now."""
        with self._lock:
            return len(self._busy)

    def keys(self) -> list[tuple]:
        with self._lock:
            return list(self._sets)

    def _evict_for_new_key(self) -> bool:
        """Drop the least recently used idle key (caller holds the lock); False when all are busy."""
        for key, sets in list(self._sets.items()):
            if not any(id(m) in self._busy for m in sets):
                del self._sets[key]
                self.evictions += 1
                return True
        return False

    def _wait_returned(self, deadline: float) -> bool:
        """Wait (lock held) until a lent set comes back or `deadline` (time.monotonic) passes; False at the deadline."""
        left = deadline - time.monotonic()
        return left > 0 and self._returned.wait(left)

    @contextlib.contextmanager
    def acquire(self, s: DemoSettings):
        key = s.model_key()
        evicted = False
        deadline = time.monotonic() + self.wait_s
        with self._lock:
            while True:
                if key not in self._sets and len(self._sets) >= self.max_keys:
                    if not self._evict_for_new_key():
                        if self._wait_returned(deadline):
                            continue
                        raise InputError(f"all {self.max_keys} loaded model configurations are busy with other "
                                         "sessions; try again shortly")
                    evicted = True
                sets = self._sets.pop(key, [])
                self._sets[key] = sets  # most recently used last
                free = [m for m in sets if id(m) not in self._busy]
                if free or len(sets) < self.max_sets:
                    break
                if not self._wait_returned(deadline):
                    raise InputError(f"all {self.max_sets} model sets are busy with other sessions; try again shortly")
            if free:
                chosen = free[0]
                self._busy.add(id(chosen))
            else:
                chosen = None
                placeholder = object()  # reserve the slot while loading outside the lock
                sets.append(placeholder)
                self._busy.add(id(placeholder))
        if evicted:
            import gc

            gc.collect()  # free the evicted models' memory now, not at some later collection
        if chosen is None:
            try:
                chosen = self.loader(s)
            except BaseException:
                with self._lock:
                    sets.remove(placeholder)
                    self._busy.discard(id(placeholder))
                    self._returned.notify_all()
                raise
            with self._lock:
                sets[sets.index(placeholder)] = chosen
                self._busy.discard(id(placeholder))
                self._busy.add(id(chosen))
        try:
            yield chosen
        finally:
            with self._lock:
                self._busy.discard(id(chosen))
                self._returned.notify_all()


POOL = ModelPool()


@dataclass
class PaneResult:
    """One pane's run. rows: `bench.e2e.score` rows (one per user turn); timelines: one per user turn;
    audio: float32 (n,) 16 kHz, the user's input and the agent's played audio mixed."""

    pane: str
    detector: str
    threshold: float
    rows: list[dict]
    timelines: list[TurnTimeline]
    transcript: list[tuple[str, str]]
    audio: np.ndarray
    log: list[str] = field(default_factory=list)
    llm_fallbacks: list[str] = field(default_factory=list)  # "LLM fallback to ...: <why>" per reply this run
    started_s: float | None = None  # clock time (time.monotonic) of the pane's stream time 0
    ended_s: float | None = None  # clock time when its pipeline had finished


async def play_audio(p, src: AudioInput, lat: LatencyObserver, audio: np.ndarray, *, max_wait_s: float = 15.0) -> list[dict]:
    """Play an upload/clip (no ground truth), then silence until the agent is done; returns no truths."""
    conv = p.conversation
    await src.silence(0.3)
    await src.play(audio)
    await src.silence(1.0)
    await src.silence_until(lambda: conv.active_response is None and not conv.agent_speaking, max_wait_s)
    return []


def untruthed_rows(records: list[dict], start_s: float | None = None) -> list[dict]:
    """Rows for input without ground truth: latencies from the VAD's stop (cut-offs unknown: None).
    start_s: the clock time of stream time 0, to mark turns where the machine fell > OVERLOAD_LAG_S behind the
    audio (the decision, the audio reaching the VAD or the detector's answers: `bench.e2e.stream_lags`)."""
    rows = []
    for r in records:
        if r["eot"] is None:
            continue
        stop = r["user_stopped"]
        rows.append({"kind": "input", "text": r["text"], "transcript": r["text"], "reply": r["reply"], "cutoff": None,
                     "answered": r["first_played"] is not None,
                     "e2e_s": None if stop is None or r["first_played"] is None else r["first_played"] - stop,
                     "endpoint_s": None if stop is None else r["eot"] - stop, **stream_lags([r], start_s)})
    return rows


def mix_conversation(frames: FrameLog, played: list, start_s: float) -> np.ndarray:
    """float32 (n,) 16 kHz: the input stream with the agent's played chunks added at their play times."""
    from pipeline.runtime.frames import AudioIn

    ins = [f for f in frames.of(AudioIn)]
    n = int(round(max([f.end_stream_s for f in ins] + [t - start_s + 0.02 for t, _, _ in played] + [0.0])
                  * SAMPLE_RATE_HZ))
    out = np.zeros(n + SAMPLE_RATE_HZ // 10, np.float32)
    for f in ins:
        i = int(round(f.stream_t_s * SAMPLE_RATE_HZ))
        out[i:i + f.audio.size] += np.asarray(f.audio, np.float32)[: out.size - i]
    for t, _, chunk in played:
        i = int(round((t - start_s) * SAMPLE_RATE_HZ))
        if 0 <= i < out.size:
            out[i:i + chunk.size] += chunk[: out.size - i]
    return np.clip(out, -1.0, 1.0)


@dataclass
class PaneRun:
    """A pane's pipeline while it runs: the pipeline, its input, observers and the recording detector."""

    pane: str
    cfg: PipelineConfig
    models: Models
    p: object
    src: AudioInput
    lat: LatencyObserver
    frames: FrameLog
    rec: RecordingDetector | None


async def start_pane(pane: str, models: Models, s: DemoSettings) -> PaneRun:
    cfg = pane_config(s, pane)
    rec = RecordingDetector(models.detector) if pane == "semantic" and models.detector is not None else None
    if rec is not None:
        models = dataclasses.replace(models, detector=rec)
    lat, frames = LatencyObserver(), FrameLog()
    p = build_pipeline(cfg, models, observers=[lat, frames])
    await p.start()
    return PaneRun(pane, cfg, models, p, AudioInput(p), lat, frames, rec)


async def finish_pane(run: PaneRun, source, truths: list[dict], s: DemoSettings) -> PaneResult:
    """End the input, wait for the pipeline, and score and draw what happened."""
    run.src.end()
    await run.p.wait(60.0)
    records = run.lat.table()
    rows = score(source, truths, records, run.p.conversation.log) if truths else untruthed_rows(records, run.src.start_s)
    sem = run.rec is not None
    threshold = run.cfg.turn_policy(run.models.detector_name).threshold if sem else 1.0
    tls = turn_timelines(run.frames, run.rec.scores if sem else [], start_s=run.src.start_s, truths=truths,
                         threshold=threshold, stop_silence_s=None if sem else s.policy.stop_silence_s)
    transcript = [("user" if m["role"] == "user" else "agent", m["content"]) for m in run.p.conversation.messages[1:]]
    return PaneResult(run.pane, run.models.detector_name if sem else "vad-only", threshold, rows, tls, transcript,
                      mix_conversation(run.frames, run.p.processors[-1].played, run.src.start_s),
                      [t for _, t in run.p.conversation.log], started_s=run.src.start_s, ended_s=run.p.clock.now())


async def run_pane(pane: str, models: Models, s: DemoSettings, source) -> PaneResult:
    run = await start_pane(pane, models, s)
    if isinstance(source, Scenario):
        truths = await play_scenario(run.p, run.src, run.lat, source)
    else:
        truths = await play_audio(run.p, run.src, run.lat, source)
    return await finish_pane(run, source, truths, s)


def compare(source: Scenario | np.ndarray, s: DemoSettings, pool: ModelPool = POOL) -> dict[str, PaneResult]:
    """Play `source` (a Scenario, or float32 (n,) 16 kHz audio) into each pane in real time: one pane after the
    other (default: neither slows the other) or both at once (`s.panes`)."""
    if isinstance(source, ScriptedTurn):
        source = Scenario(source.id, "conversation", (source,))
    t = time.perf_counter()
    with pool.acquire(s) as sets:
        n_events = {pane: len(getattr(sets[pane].llm, "events", ())) for pane in PANES}
        if s.panes == PANES_AT_ONCE:
            async def both():
                return await asyncio.gather(*(run_pane(pane, sets[pane], s, source) for pane in PANES))

            results = asyncio.run(both())
        else:
            results = [asyncio.run(run_pane(pane, sets[pane], s, source)) for pane in PANES]
        for pane, r in zip(PANES, results):  # an endpoint that failed over to the local model says so
            r.llm_fallbacks = list(getattr(sets[pane].llm, "events", ()))[n_events[pane]:]
    for r in results:
        r.log.append(f"run took {time.perf_counter() - t:.1f} s (real time, panes {s.panes})")
    return dict(zip(PANES, results))


def summary_row(pane: str, detector: str, rows: list[dict]) -> dict:
    """The running table's row: P50/P99 of e2e and endpoint latency (ms) and false cut-offs over `rows`."""
    turns = [r for r in rows if not r.get("overloaded")]  # an overloaded run's turns have no verdict
    known = [r for r in turns if r.get("cutoff") is not None]

    def ms(q, key):
        v = percentile([r.get(key) for r in turns], q)
        return None if v is None else round(1000 * v)

    return {"pane": PANE_TITLES[pane], "detector": detector, "turns": len(turns),
            "e2e P50 ms": ms(50, "e2e_s"), "e2e P99 ms": ms(99, "e2e_s"),
            "endpoint P50 ms": ms(50, "endpoint_s"), "endpoint P99 ms": ms(99, "endpoint_s"),
            "false cut-offs": f"{sum(bool(r['cutoff']) for r in known)}/{len(known)}" if known else "n/a",
            "overloaded": len(rows) - len(turns)}


def default_threshold(detector: str) -> float:
    return registry.default_threshold(detector)
