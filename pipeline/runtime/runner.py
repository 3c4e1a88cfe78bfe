"""Building and running a pipeline: config, loaded models, real-time audio input.

`PipelineConfig` (frozen) chooses the mode ("streaming" or the naive "cascade"), the turn strategy
("semantic" or "vad"), the engines and the policy. `load_models(cfg)` loads everything once
(`Models`, reused across runs of a benchmark); `build_pipeline(cfg, models, clock)` wires fresh
processors; `AudioInput` plays audio into a pipeline in real time (20 ms chunks paced by the
clock; the chunk covering stream time [t, t + 0.02) is fed at start + t + 0.02, when a sound card
would deliver it); `run_audio` runs one file and returns the per-turn records.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.config import require_range
from vad_turn.harness.detectors import default_threshold, semantic_detectors
from vad_turn.harness.policy import TurnPolicy

from .clock import Clock, WallClock
from .frames import AudioIn, EndOfStream
from .observers import FrameLog, LatencyObserver
from .processors.base import Conversation, Pipeline
from .processors.llm_proc import LLMProcessor
from .processors.speech import ClauseAggregator, OutputProcessor, TTSProcessor
from .processors.turn import TurnProcessor
from .processors.vad_stt import STTProcessor, VADProcessor

log = logging.getLogger("pipeline")
SYSTEM_PROMPT = ("You are a friendly voice assistant on a phone call. Reply in one or two short, natural "
                 "spoken sentences. No lists, no markdown.")
# the semantic detectors tried in order (each DetectorSpec's pipeline_rank; their default thresholds are theirs too)
SEMANTIC_DETECTORS = semantic_detectors("pipeline")


def default_pipeline_policy() -> TurnPolicy:
    """The policy an agent runs unless told otherwise: the shipped voice-agent operating point of the project's
    best detector (`vad_turn.harness.operating_points.default_policy`: evaluated on agent-directed dev data)."""
    from vad_turn.harness.operating_points import default_policy

    return default_policy()


@dataclass(frozen=True)
class PipelineConfig:
    mode: str = field(default="streaming", metadata={"help": "streaming, or cascade (whole STT, LLM reply, TTS)"})
    turn: str = field(default="semantic", metadata={"help": "semantic (detector + policy) or vad (silence only)"})
    detectors: tuple[str, ...] = field(default=SEMANTIC_DETECTORS,
                                       metadata={"help": "semantic detectors to try in order (first registered wins)"})
    policy: TurnPolicy = field(default_factory=default_pipeline_policy, metadata={
        "help": "the turn policy (semantic: threshold, action delay, timeout, preemptive start; VAD-only: its stop "
                "silence); `default_policy()` is the shipped voice-agent operating point", "flatten": True})
    vad: str = field(default="silero", metadata={"help": "VAD for speech start/stop"})
    stt: str = field(default="moonshine", metadata={
        "help": "STT engine (vad_turn.engines.stt.STT_ENGINES): moonshine (the default: WER 0.30 on real GetGoing callers, "
                "its measured word lag in vad_turn/engines/stt_lag.json), pocketsphinx (streaming partials, WER 1.16 there), "
                "pocketsphinx-getgoing, whisper, whisper-segment, pocketsphinx+moonshine"})
    llm: str = field(default="local", metadata={"help": "local (SmolLM2) or openai (OpenAI-compatible endpoint)"})
    base_url: str = field(default="", metadata={"help": "openai backend: e.g. http://127.0.0.1:8000/v1"})
    model: str = field(default="", metadata={"help": "openai backend: model name"})
    latency_profile: str = field(default="", metadata={"help": "add a provider's TTFT (llm_wrappers.PROFILES)"})
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={
        "help": "openai backend: environment variable whose key is sent to base_url (and nowhere else)"})
    fallback_timeout_s: float = field(default=2.0, metadata={"help": "openai backend: fall back to local after"})
    hedging: bool = field(default=False, metadata={"help": "race two LLM requests, the first token wins"})
    llm_threads: int = field(default=1, metadata={"help": "torch threads for the local LLM"})
    llm_prefix_cache: bool = field(default=True, metadata={
        "help": "local LLM: reuse the KV cache of the common prompt prefix (system prompt + history)"})
    llm_quantize: str = field(default="auto", metadata={
        "help": "local LLM weights: auto (bf16 where the CPU has native bf16, else fp32), none (fp32), bf16, "
                "or int8 (dynamic, ~2.6x faster decode, worse: +8-13% NLL on the bench turns)"})
    llm_prefill: bool = field(default=True, metadata={
        "help": "local LLM: prefill the user's words into the cache in the silence before the decision"})
    llm_prefill_after_s: float = field(default=0.05, metadata={
        "help": "start that prefill this long after the final transcript, unless a reply (e.g. the preemptive "
                "start) began first: a prefill running then delays the reply's first token by one forward pass"})
    first_clause_words: int = field(default=2, metadata={
        "help": "streaming: the first TTS chunk is cut after this many words if no clause ended sooner"})
    reply_opener: str = field(default="", metadata={
        "help": "say this at once at the decision and let the local LLM continue the reply after it (e.g. 'Sure,'); "
                "empty: off"})
    max_new_tokens: int = field(default=24, metadata={"help": "reply length cap"})
    voice: str = field(default="espeak:en-us+f3", metadata={"help": "TTS voice id (engine:name)"})
    tools: bool = field(default=True, metadata={"help": "clock and calculator tools with prefetch"})
    bridge_after_s: float = field(default=1.2, metadata={"help": "tools: say the bridging phrase after this wait"})
    llm_bridge_after_s: float | None = field(default=None, metadata={
        "help": "say the bridging phrase when the LLM's first token takes longer ('none': never)"})
    barge_in: bool = field(default=True, metadata={"help": "user speech over the agent pauses/interrupts it"})
    system_prompt: str = field(default=SYSTEM_PROMPT, metadata={"help": "the LLM's system prompt"})

    def __post_init__(self) -> None:
        if self.mode not in ("streaming", "cascade"):
            raise ValueError(f"mode must be streaming or cascade, got {self.mode!r}")
        if self.turn not in ("semantic", "vad"):
            raise ValueError(f"turn must be semantic or vad, got {self.turn!r}")
        from vad_turn.harness.detectors import check_detector_spec

        for d in self.detectors:
            check_detector_spec(d, "--detectors")
        require_range("fallback_timeout_s", self.fallback_timeout_s, 0.0, 600.0, lo_open=True)
        require_range("bridge_after_s", self.bridge_after_s, 0.0, 600.0)
        require_range("llm_bridge_after_s", self.llm_bridge_after_s, 0.0, 600.0, allow_none=True)
        require_range("llm_prefill_after_s", self.llm_prefill_after_s, 0.0, 10.0)
        if self.llm_threads < 1 or self.max_new_tokens < 1 or self.first_clause_words < 1:
            raise ValueError("--llm-threads, --max-new-tokens and --first-clause-words must be >= 1")

    def turn_policy(self, detector_name: str = "") -> TurnPolicy:
        """The policy the turn processor runs: VAD-only at `policy.stop_silence_s` for turn == "vad", else the
        semantic policy with the detector's default threshold when none is set; the naive cascade never starts
        its reply early."""
        pol = self.policy if self.mode == "streaming" else dataclasses.replace(self.policy, preemptive_fraction=None)
        if self.turn == "vad":
            return pol.vad_only()
        return pol.resolve(default_threshold(detector_name))


def make_turn_detector(names) -> tuple[object, str]:
    """The first of `names` that `vad_turn.harness.detectors.make_detector` can build, and its name.

    Falls back to "vad-only" (logged) when none is registered, so the pipeline runs with whatever
    detectors exist; the run records which one it used.
    """
    from vad_turn.harness.detectors import make_detector

    errors = []
    for name in names:
        try:
            return make_detector(name), name
        except Exception as e:  # noqa: BLE001 - any detector that cannot be built is skipped, and said so
            errors.append(f"{name}: {e}")
    log.warning("no semantic detector available (%s); using vad-only", "; ".join(errors))
    return make_detector("vad-only"), "vad-only"


@dataclass
class Models:
    vad_name: str
    stt: object
    llm: object
    detector: object | None
    detector_name: str
    voice: object


def load_llm_for(cfg: PipelineConfig):
    """The one LLM factory of the bench, the demo and `pipeline run`: the local model (SmolLM2, `llm_quantize`:
    bf16 where the CPU has native bf16), or the OpenAI-compatible endpoint with the local model as fallback;
    `hedging` races two requests (the first token wins); `latency_profile` adds a provider's TTFT. Loaded, with
    the system prompt prefilled."""
    from vad_turn.engines.llm.http import OpenAIChatLLM
    from vad_turn.engines.llm.local import LocalLLM

    from .llm_wrappers import FallbackLLM, HedgedLLM, LatencyProfileLLM

    def local_model():
        m = LocalLLM(n_threads=cfg.llm_threads, prefix_cache=cfg.llm_prefix_cache, quantize=cfg.llm_quantize).load()
        m.warm([{"role": "system", "content": cfg.system_prompt}])  # the first turn prefills only its own tokens
        return m

    local = local_model()
    if cfg.llm == "local":
        llm = HedgedLLM(local, local_model()) if cfg.hedging else local
    elif cfg.llm == "openai":
        remote = OpenAIChatLLM(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env)
        if cfg.hedging:
            remote = HedgedLLM(remote, OpenAIChatLLM(cfg.base_url, cfg.model, api_key_env=cfg.api_key_env))
        llm = FallbackLLM(remote, local, first_token_timeout_s=cfg.fallback_timeout_s)
    else:
        raise ValueError(f"llm must be local or openai, got {cfg.llm!r}")
    if cfg.latency_profile:
        llm = LatencyProfileLLM(llm, cfg.latency_profile)
    return llm


def check_transcript_lag(policy: TurnPolicy, stt) -> bool:
    """Whether the STT delivers the words before a pause no later than the policy's operating point assumed
    (`policy.transcript_lag_s`, shown to the detector that long after they end; the STT's measured P90 lag of a
    pause's last word, `vad_turn.engines.stt.stt_word_lag`). A later STT is logged: the detector then sees fewer
    words live than in its evaluation. An earlier word waits: the turn processor shows it only
    `policy.transcript_lag_s` after it ends, as the harness did."""
    from vad_turn.engines.stt import stt_word_lag

    lag = stt_word_lag(stt.name, missing_ok=True)
    if lag is None:
        log.warning("no measured word lag for STT %s: the turn policy assumes words %.2f s after they end",
                    stt.name, policy.transcript_lag_s)
        return False
    p90 = lag.get("segment_end_final_p90_s", lag.get("final_p90_s"))
    if p90 is not None and p90 > policy.transcript_lag_s + 1e-9:
        log.warning("STT %s delivers 10%% of the words before a pause more than %.2f s after they end, later than "
                    "the %.2f s the turn policy was evaluated with", stt.name, p90, policy.transcript_lag_s)
        return False
    return True


def load_models(cfg: PipelineConfig, *, llm=None, detector: tuple[object, str] | None = None,
                check_lag: bool = True) -> Models:
    """Load the STT engine, the LLM (warmed up), the detector (semantic runs) and check the voice; `check_lag`:
    also check the STT's word lag against `cfg`'s policy (`check_transcript_lag`; off for a caller that sets the
    policy later and checks that one)."""
    from vad_turn.engines.stt import make_stt
    from vad_turn.engines.tts import synthesize, voice_from_id

    voice = voice_from_id(cfg.voice)
    synthesize("Hello.", voice)  # loads the engine now, not inside the first reply
    llm = llm if llm is not None else load_llm_for(cfg)
    llm.complete([{"role": "system", "content": cfg.system_prompt}, {"role": "user", "content": "Hi"}],
                 max_new_tokens=2)  # the first call pays the graph warm-up; the system prompt stays cached
    det, det_name = (None, "vad-only")
    if cfg.turn == "semantic":
        det, det_name = load_turn_detector(cfg.detectors) if detector is None else warm_detector(*detector)
    stt = make_stt(cfg.stt)
    if check_lag and det is not None and getattr(det, "needs_words", True):  # Smart Turn (audio only) sees no words
        check_transcript_lag(cfg.turn_policy(det_name), stt)
    return Models(cfg.vad, stt, llm, det, det_name, voice)


def warm_detector(det, det_name: str) -> tuple[object | None, str]:
    """(detector, name) ready for the first silence: None for vad-only; otherwise its first forward pass (which
    builds the graph, seconds) is paid now, not in the first silence."""
    if det_name == "vad-only":
        return None, det_name
    from vad_turn.core.schema import Word

    warm_audio = np.zeros(SAMPLE_RATE_HZ, np.float32) if getattr(det, "needs_audio", False) else None
    det.predict(warm_audio, (Word("hello", 0.0, 0.3),), (), 0.2)
    return det, det_name


def load_turn_detector(names) -> tuple[object | None, str]:
    """`make_turn_detector(names)`, warmed (`warm_detector`)."""
    return warm_detector(*make_turn_detector(names))


def build_pipeline(cfg: PipelineConfig, models: Models, clock: Clock | None = None, *, observers=()) -> Pipeline:
    from vad_turn.engines.vad import make_vad

    from .tools import ToolRunner, calculator_tool, clock_tool

    cascade = cfg.mode == "cascade"
    tools = ToolRunner([clock_tool(), calculator_tool()]) if cfg.tools else None
    detector = models.detector if cfg.turn == "semantic" else None
    policy = cfg.turn_policy(models.detector_name)
    if detector is None and cfg.turn == "semantic":  # no detector could be built: the turn ends at the timeout
        policy = dataclasses.replace(policy, stop_silence_s=policy.timeout_s).vad_only()
    procs = [
        VADProcessor(make_vad(models.vad_name)),
        STTProcessor(models.stt, batch=cascade),
        TurnProcessor(policy, detector, barge_in=cfg.barge_in),
        LLMProcessor(models.llm, max_new_tokens=cfg.max_new_tokens, tools=tools, bridge_after_s=cfg.bridge_after_s,
                     llm_bridge_after_s=cfg.llm_bridge_after_s, prefill=cfg.llm_prefill,
                     prefill_after_s=cfg.llm_prefill_after_s,
                     reply_opener="" if cascade else cfg.reply_opener),
        ClauseAggregator(mode="whole" if cascade else "clause", first_max_words=cfg.first_clause_words),
        TTSProcessor(models.voice, mode="whole" if cascade else "stream"),
        OutputProcessor(),
    ]
    conv = Conversation(system_prompt=cfg.system_prompt, messages=[{"role": "system", "content": cfg.system_prompt}])
    return Pipeline(procs, clock or WallClock(), observers=list(observers), conversation=conv)


class AudioInput:
    """Feeds audio into `pipeline` in real time in `chunk_s` chunks; tracks the input stream time.

    `start_s` is the clock time of stream time 0, so stream time t happens at start_s + t.
    """

    def __init__(self, pipeline: Pipeline, *, chunk_s: float = 0.02, sample_rate_hz: int = SAMPLE_RATE_HZ):
        self.p, self.chunk_s, self.rate = pipeline, float(chunk_s), int(sample_rate_hz)
        self.n = int(round(self.chunk_s * self.rate))
        self.stream_s = 0.0
        self.start_s = pipeline.clock.now()
        self._zeros = np.zeros(self.n, np.float32)

    def rebase(self) -> None:
        """Make stream time 0 happen now (before any audio was played: set-up work done after the input was made
        must not make the first chunks late, fed in a burst to catch up)."""
        if self.stream_s != 0.0:
            raise RuntimeError("AudioInput.rebase after audio was played")
        self.start_s = self.p.clock.now()

    def wall(self, stream_s: float) -> float:
        return self.start_s + stream_s

    async def _chunk(self, chunk: np.ndarray) -> None:
        t = self.stream_s
        await self.p.clock.sleep_until(self.start_s + t + len(chunk) / self.rate)
        self.p.feed(AudioIn(self.p.clock.now(), chunk, self.rate, t))
        self.stream_s = t + len(chunk) / self.rate

    async def play(self, audio: np.ndarray) -> float:
        """Play `audio` ((n,) or (n, ch) at `sample_rate_hz`); return the stream time it started at."""
        t0 = self.stream_s
        for i in range(0, len(audio), self.n):
            await self._chunk(audio[i:i + self.n])
        return t0

    async def silence(self, duration_s: float) -> None:
        for _ in range(int(round(duration_s / self.chunk_s))):
            await self._chunk(self._zeros)

    async def silence_until(self, done, max_s: float) -> bool:
        """Silence until `done()` is true (checked every chunk) or `max_s` passed; returns done()."""
        end = self.stream_s + max_s
        while not done() and self.stream_s < end:
            await self._chunk(self._zeros)
        return bool(done())

    def end(self) -> None:
        self.p.feed(EndOfStream(self.p.clock.now()))


async def run_audio_async(cfg: PipelineConfig, models: Models, audio: np.ndarray, sample_rate_hz: int, *,
                          tail_s: float = 3.0, timeout_s: float = 120.0) -> dict:
    lat, frames = LatencyObserver(), FrameLog()
    p = build_pipeline(cfg, models, observers=[lat, frames])
    await p.start()
    src = AudioInput(p, sample_rate_hz=sample_rate_hz)
    await src.play(audio)
    conv = p.conversation
    await src.silence(tail_s)
    await src.silence_until(lambda: conv.active_response is None and not conv.agent_speaking, 30.0)
    src.end()
    await p.wait(timeout_s)
    return {"records": lat.table(), "start_s": src.start_s, "messages": conv.messages, "log": conv.log,
            "frames": frames}


def run_audio(cfg: PipelineConfig, models: Models, audio: np.ndarray, sample_rate_hz: int = SAMPLE_RATE_HZ,
              **kw) -> dict:
    return asyncio.run(run_audio_async(cfg, models, audio, sample_rate_hz, **kw))


def read_input(path: Path) -> tuple[np.ndarray, int]:
    """A WAV/FLAC file as float32 (n,) or (n, ch) at its own rate (the pipeline converts); AudioError if bad."""
    from vad_turn.core.audio import AudioError, read_audio_file

    data, sr = read_audio_file(path)
    if data.size == 0:
        raise AudioError(f"{path}: audio is empty (0 samples)")
    return data, sr
