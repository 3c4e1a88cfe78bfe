"""`prosody run`: how the system prompt's wording changes the prosody of spoken replies.

For every (variant, request): the LLM streams a reply to [system = variant prompt verbatim,
user = request]; the reply is cleaned for speech (`clean_reply`); each voice renders it (espeak
through SSML with punctuation mapped to <break/>s by `voices.text_to_ssml`; festival/flite from
plain text); text and Praat measures are taken (`prosody.measures`), and time to first audio is
measured. Real speech (`prosody.reference`) gets the same Praat measures. `prosody.report` then
aggregates per variant (bootstrap CIs over requests, paired effects vs baseline, distance to real
speech), writes the tables and the plots.

Time to first audio (`ttfa_s`) = `llm_first_clause_s` (wall time from the request until the
streamed text first holds a clause boundary , ; : . ! ? or ends) + `tts_first_audio_s` (wall time
until `synthesize_stream` yields the first chunk of the first clause, plus that clause's leading
silence). It is measured on this shared 2-core CPU, so it is noisy; `first_clause_words` is its
deterministic text-side driver.

Run folder: config.json, commit.txt, split_ids.json (the request ids, corpus turn ids included),
requests.json, replies.jsonl and renders.jsonl (appended one line per item, so an interrupted run
resumes where it stopped), reference.jsonl, per_reply.parquet, results.csv/.parquet,
metrics.json, report.md, measures.png, effects.png and a few WAVs under audio/.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.config import config_to_dict, default_data_root, default_runs_root
from vad_turn.core.runs import RunFolder, append_jsonl, atomic_write_json, atomic_write_text, git_commit, read_jsonl

from .prompts import VARIANTS_PATH, chat_messages, load_variants

DEFAULT_VARIANTS = ("baseline", "concise", "disfluent", "punctuated", "concise+disfluent+punctuated")
CLAUSE_BOUNDARY = re.compile(r"[,;:.!?]\s|\s[-\u2013\u2014]+\s|--")  # measures.CLAUSE_MARKS, streaming-safe


@dataclass(frozen=True)
class ProsodyConfig:
    """One prosody experiment; every field is a `prosody run` option."""

    tag: str = field(default="default", metadata={"help": "run folder name: runs/prosody-<tag>"})
    out: Path | None = field(default=None, metadata={"help": "run folder (overrides --tag)"})
    variants: tuple[str, ...] = field(default=DEFAULT_VARIANTS, metadata={"help": "variant names from the prompts file"})
    voices: tuple[str, ...] = field(default=("espeak:en-us+f3", "festival:cmu_us_slt_arctic_hts"),
                                    metadata={"help": "TTS voice ids (engine:name)"})
    n_switchboard: int = field(default=18, metadata={"help": "real Switchboard question turns"})
    n_sbcsae: int = field(default=14, metadata={"help": "real SBCSAE question turns"})
    n_task: int = field(default=18, metadata={"help": "hand-written task requests"})
    seed: int = field(default=0, metadata={"help": "request selection, sampling and bootstrap seed"})
    max_conversations: int = field(default=25, metadata={"help": "conversations per split read when no built dataset"})
    llm_backend: str = field(default="local", metadata={"help": "'local' (SmolLM2-135M) or 'openai'"})
    llm_base_url: str = field(default="", metadata={"help": "OpenAI-compatible base URL (backend openai)"})
    llm_model: str = field(default="", metadata={"help": "model name at the endpoint (backend openai)"})
    llm_threads: int = field(default=1, metadata={"help": "torch threads for the local LLM (the CPU is shared)"})
    max_new_tokens: int = field(default=40, metadata={"help": "reply length cap in tokens"})
    temperature: float = field(default=0.0, metadata={"help": "0 = greedy"})
    f0_floor_hz: float = field(default=75.0, metadata={"help": "Praat pitch floor (Hz)"})
    f0_ceiling_hz: float = field(default=500.0, metadata={"help": "Praat pitch ceiling (Hz)"})
    silence_db: float = field(default=-25.0, metadata={"help": "pause threshold re max intensity (dB)"})
    min_pause_s: float = field(default=0.15, metadata={"help": "shortest silence counted as a pause"})
    reference_sources: tuple[str, ...] = field(default=("ami",), metadata={"help": "real speech: ami and/or clips"})
    reference_max_utterances: int = field(default=80, metadata={"help": "real-speech utterances measured"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples of the effect intervals"})
    measure_tts_latency: bool = field(default=True, metadata={"help": "time TTS of each first clause"})
    save_audio_requests: int = field(default=2, metadata={"help": "keep WAVs of this many requests"})
    data_root: Path | None = field(default=None, metadata={
        "help": "original corpora ('none': $VAD_TURN_DATA_ROOT or ../shared/data)"})
    built_root: Path | None = field(default=None, metadata={
        "help": "built datasets, read when present ('none': $VAD_TURN_BUILT_ROOT or data/built)"})
    prompts_file: Path = field(default=VARIANTS_PATH, metadata={"help": "prompt variants file"})

    def run_dir(self) -> Path:
        return Path(self.out) if self.out else default_runs_root() / f"prosody-{self.tag}"


def clean_reply(raw: str) -> str:
    """Reply text for TTS: markdown marks and list numbering removed, whitespace collapsed.

    A reply whose end is not . ! or ? (typically cut by the token cap) is shortened to its last
    complete sentence when it has one (otherwise kept as it is).
    """
    text = re.sub(r"(?m)^\s*(?:[-*\u2022]|\d+[.)])\s+", "", raw)
    text = re.sub(r"[*#_`>]+", "", text)
    text = re.sub(r"\s+", " ", text).strip()
    if not re.search(r"[.!?]$", text):
        ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
        if ends:
            text = text[: ends[-1]]
    return text


# ----------------------------------------------------------------------------- resumable logs






def _open_run(cfg: ProsodyConfig) -> RunFolder:
    path = cfg.run_dir()
    old = path / "config.json"
    if old.exists():
        prev = json.loads(old.read_text())
        prev.pop("type", None)
        now = config_to_dict(cfg)
        defaults = config_to_dict(ProsodyConfig())  # a field added since that run counts at its default
        keep = {"n_boot", "out", "tag"}
        diff = sorted(k for k in now if k not in keep and prev.get(k, defaults[k]) != now[k])
        if diff:
            raise ValueError(f"{path} holds a run with a different config ({', '.join(diff)}); use another --tag")
    return RunFolder(path, cfg)


# ----------------------------------------------------------------------------- stages


def generate_reply(llm, variant, request, cfg: ProsodyConfig) -> dict:
    """Stream one reply; returns the log row (texts, timings in seconds)."""
    messages = chat_messages(variant, request.text)
    t0 = time.perf_counter()
    pieces, t_first, t_clause = [], None, None
    for piece in llm.stream(messages, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, seed=cfg.seed):
        now = time.perf_counter() - t0
        t_first = now if t_first is None else t_first
        pieces.append(piece)
        if t_clause is None and CLAUSE_BOUNDARY.search("".join(pieces)):
            t_clause = now
    gen_s = time.perf_counter() - t0
    raw = "".join(pieces)
    return {
        "variant": variant.name, "request_id": request.id, "source": request.source,
        "raw": raw, "text": clean_reply(raw), "n_pieces": len(pieces), "llm_first_piece_s": t_first if t_first is not None else gen_s,
        "llm_first_clause_s": t_clause if t_clause is not None else gen_s, "llm_total_s": gen_s,
        "system_prompt": messages[0]["content"],
    }


def _render(texts: list[str], voice) -> list[np.ndarray]:
    from vad_turn.engines.tts import synthesize, synthesize_many, text_to_ssml

    if voice.engine == "espeak":
        return [synthesize(text_to_ssml(t), voice, ssml=True) for t in texts]
    return synthesize_many(texts, voice)


def tts_first_audio_s(clause: str, voice) -> float:
    """Wall time to the first chunk of `clause` from `synthesize_stream` + the clause's leading silence."""
    from vad_turn.core.audio import trim_silence
    from vad_turn.engines.tts import synthesize_stream, text_to_ssml

    ssml = voice.engine == "espeak"
    t0 = time.perf_counter()
    stream = synthesize_stream(text_to_ssml(clause) if ssml else clause, voice, ssml=ssml)
    chunks = [next(stream)]
    first_s = time.perf_counter() - t0
    chunks += list(stream)
    _, lead_s, _ = trim_silence(np.concatenate(chunks))
    return first_s + lead_s


def measure_rendering(audio: np.ndarray, reply: dict, voice, cfg: ProsodyConfig) -> dict:
    from .measures import first_clause, praat_measures, text_measures

    row = {"variant": reply["variant"], "request_id": reply["request_id"], "source": reply["source"],
           "voice": voice.id, "audio_s": audio.size / SAMPLE_RATE_HZ}
    row.update(text_measures(reply["text"]))
    row.update(praat_measures(audio, f0_floor_hz=cfg.f0_floor_hz, f0_ceiling_hz=cfg.f0_ceiling_hz,
                              silence_db=cfg.silence_db, min_pause_s=cfg.min_pause_s,
                              source=f"{reply['variant']}/{reply['request_id']}/{voice.id}"))
    if cfg.measure_tts_latency:
        row["tts_first_audio_s"] = tts_first_audio_s(first_clause(reply["text"]), voice)
        row["ttfa_s"] = reply["llm_first_clause_s"] + row["tts_first_audio_s"]
    return row


def run(cfg: ProsodyConfig) -> dict:
    """Run (or resume) the experiment; returns metrics.json's content."""
    import soundfile as sf

    from vad_turn.engines.llm import load_llm
    from vad_turn.engines.tts import voice_from_id

    from .report import write_report
    from .requests import load_requests

    t_start = time.time()
    prompts = load_variants(cfg.prompts_file)
    variants = prompts.select(cfg.variants)
    if "baseline" not in cfg.variants:
        raise ValueError("--variants must include 'baseline' (effects are measured against it)")
    voices = [voice_from_id(v) for v in cfg.voices]
    folder = _open_run(cfg)
    requests, req_notes = load_requests(cfg.n_switchboard, cfg.n_sbcsae, cfg.n_task, seed=cfg.seed,
                                        built_root=cfg.built_root, data_root=cfg.data_root,
                                        max_conversations=cfg.max_conversations)
    atomic_write_json(folder.file("requests.json"), {"notes": req_notes, "requests": [r.to_dict() for r in requests]})
    folder.write_split_ids({src: [r.id for r in requests if r.source == src] for src in ("switchboard", "sbcsae", "task")})

    # 1. replies
    replies_log = folder.file("replies.jsonl")
    replies = {(r["variant"], r["request_id"]): r for r in read_jsonl(replies_log)}
    # Variants interleaved per request: a shared CPU's load drifts over a run, and timing measures
    # (llm_first_clause_s, ttfa_s) must not confound that drift with the variant.
    todo = [(v, q) for q in requests for v in variants if (v.name, q.id) not in replies]
    if todo:
        llm = load_llm(cfg.llm_backend, base_url=cfg.llm_base_url, model=cfg.llm_model, n_threads=cfg.llm_threads)
        llm.complete([{"role": "user", "content": "Hello."}], max_new_tokens=2)  # untimed warm-up: first call is slow
        for v, q in tqdm(todo, desc="prosody: LLM replies", unit="reply"):
            row = generate_reply(llm, v, q, cfg)
            append_jsonl(replies_log, row)
            replies[(v.name, q.id)] = row

    # 2. render + measure
    renders_log = folder.file("renders.jsonl")
    done = {(r["variant"], r["request_id"], r["voice"]) for r in read_jsonl(renders_log)}
    keep_audio = {q.id for q in requests[: cfg.save_audio_requests]}
    for voice in voices:
        if cfg.measure_tts_latency:
            tts_first_audio_s("Hello.", voice)  # untimed warm-up (library load, disk cache)
        items = [replies[(v.name, q.id)] for v in variants for q in requests
                 if (v.name, q.id, voice.id) not in done and replies[(v.name, q.id)]["text"]]
        bar = tqdm(total=len(items), desc=f"prosody: render+measure {voice.id}", unit="reply")
        for i in range(0, len(items), 20):  # festival renders a batch in one process
            batch = items[i: i + 20]
            for reply, audio in zip(batch, _render([r["text"] for r in batch], voice)):
                if reply["request_id"] in keep_audio:
                    name = f"{reply['variant']}__{reply['request_id']}__{voice.id.replace(':', '_')}.wav"
                    folder.file("audio").mkdir(exist_ok=True)
                    sf.write(str(folder.file("audio") / name), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
                append_jsonl(renders_log, measure_rendering(audio, reply, voice, cfg))
                bar.update(1)
        bar.close()

    # 3. reference speech
    ref_log = folder.file("reference.jsonl")
    if not ref_log.exists():
        from .measures import praat_measures
        from .reference import reference_utterances

        rows = []
        for u in tqdm(reference_utterances(cfg.data_root or default_data_root(), cfg.reference_sources,
                                           max_utterances=cfg.reference_max_utterances), desc="prosody: reference"):
            rows.append({"id": u.id, "source": u.source, **praat_measures(
                u.audio, f0_floor_hz=cfg.f0_floor_hz, f0_ceiling_hz=cfg.f0_ceiling_hz,
                silence_db=cfg.silence_db, min_pause_s=cfg.min_pause_s, source=u.id)})
        atomic_write_text(ref_log, "".join(json.dumps(r, default=float) + "\n" for r in rows))

    metrics = write_report(folder.path, cfg, prompts, [v.name for v in variants], [q.id for q in requests])
    old = json.loads(folder.file("metrics.json").read_text()) if folder.file("metrics.json").exists() else {}
    this = {"started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t_start)), "wall_s": time.time() - t_start,
            "commit": git_commit(), "new_replies": len(todo)}
    earlier = old.get("invocations") or ([{"wall_s": old["wall_s"], "commit": "see commit.txt history"}] if "wall_s" in old else [])
    metrics["invocations"] = earlier + [this]
    metrics["wall_s"] = this["wall_s"]
    metrics["wall_s_total"] = sum(i["wall_s"] for i in metrics["invocations"])
    folder.write_metrics(metrics)
    print(f"prosody: wrote {folder.path} in {this['wall_s']:.0f} s (all invocations: {metrics['wall_s_total']:.0f} s)")
    return metrics
