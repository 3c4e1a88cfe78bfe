"""Each STT engine on real callers: WER against the call log, word lag of finals and partials, CPU cost.

    python -m pipeline.bench.stt_lag                                  # every engine, 64 GetGoing test turns
    python -m pipeline.bench.stt_lag --engines moonshine --n-turns 8
    python -m pipeline.bench.stt_lag --write-record                   # also vad_turn/engines/stt_lag.json

Turns: the bench's GetGoing scenario set (`getgoing_scenarios`: `ensure_getgoing_build`, the test split,
`select_getgoing_rows`), each clip as the bench plays it (1 s lead-in, tail). Reference text: the log's
Google-ASR line (`wer`: `vad_turn.engines.stt.word_error_rate`; `wer_spoken`: both sides with numbers
spelled, `getgoing_log.align_tokens`, so "61C" and "sixty one c" agree). Reference word times: the
dataset's words (faster-whisper's alignment of the call, seconds from the clip start).

What the pipeline does, replayed exactly: the clip goes in 20 ms `AudioIn` chunks through the pipeline's
own `VADProcessor` (silero, its defaults) and `STTProcessor` (0.3 s preroll, a partial read every
`partial_every_s` of audio) on a manual clock, with a recording engine in the STT's place; that gives
every VAD segment's audio chunks, the audio time of its stop (when the final is asked for) and of each
partial read. Each engine then decodes those segments alone, one after another on 1 thread, timed with
the process CPU clock (what one uncontended core would take; the wall time is noisier here, reported too).

Lags, seconds from a word's end in the audio (for words whose middle lies inside a VAD segment):
- final: the segment's VAD stop + the CPU time of its `finish()` (`transcribe()` for whole-segment
  engines) - word end: when the final transcript holding the word reaches the pipeline.
- partial: the first partial read (read time + CPU time of `partial()`) whose text, aligned (edit distance)
  to the reference words that started before the read, puts a word in the word's place (match or
  substitution: a slot filled, right or wrong); the final when no partial did; engines without partials:
  the final. `partial_wer` is the WER of the last partial of each segment, joined per turn.
- eot_final: the final lag of each turn's last word (the one the end-of-turn decision waits for);
  segment_end_final (and _partial): the same for the last word of every VAD segment (the words before each
  pause: what a detector deciding in a silence can have seen). `final` over all words also counts the wait
  for the rest of a long segment, so it is larger.
Cost: `finish_ms` (CPU ms per finish), `partial_ms`, and `rtf` = all CPU time (accept + partial + finish)
/ segment audio seconds. The CPU is recorded (`cpu_isa`).
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.config import config_main, default_runs_root
from vad_turn.core.runs import RunFolder, atomic_write_json, git_commit
from vad_turn.core.schema import normalize_word
from vad_turn.engines.stt import STT_ENGINES, make_stt, word_error_rate, wer_tokens
from vad_turn.harness.percentiles import percentile

CHUNK_N = SAMPLE_RATE_HZ // 50  # 20 ms, as the bench feeds the pipeline


@dataclass(frozen=True)
class SttLagBenchConfig:
    engines: tuple[str, ...] = field(default=tuple(STT_ENGINES), metadata={"help": "make_stt names"})
    n_turns: int = field(default=64, metadata={"help": "GetGoing turns (select_getgoing_rows)"})
    split: str = field(default="test", metadata={"help": "GetGoing split"})
    seed: int = field(default=0, metadata={"help": "seed of the turn selection"})
    vad: str = field(default="silero", metadata={"help": "the pipeline VAD that cuts the segments"})
    partial_every_s: float = field(default=0.2, metadata={"help": "STTProcessor's partial read cadence"})
    write_record: bool = field(default=False, metadata={
        "help": "merge the measured engines into vad_turn/engines/stt_lag.json (what stt_word_lag reads)"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/stt-lag-<time>)"})


@dataclass
class Segment:
    """One VAD segment as the STT processor fed it: chunks (float32 16 kHz), the chunk counts after which a
    partial was read, the audio time of the stop (end_s) and of the first sample (start_s)."""

    chunks: list
    partial_after: list
    start_s: float = 0.0
    end_s: float = 0.0

    def read_times(self) -> list[float]:
        sizes = np.cumsum([c.size for c in self.chunks])
        return [self.start_s + float(sizes[k - 1]) / SAMPLE_RATE_HZ for k in self.partial_after]


class _RecordingSTT:
    """Stands in for the engine inside STTProcessor and keeps what it was given (streaming, so every chunk)."""

    name, streaming = "recording", True

    def __init__(self):
        self.segments: list[Segment] = []

    def new_stream(self) -> None:
        pass

    def start(self) -> None:
        self.segments.append(Segment([], []))

    def accept(self, audio) -> None:
        self.segments[-1].chunks.append(np.array(audio, np.float32))

    def partial(self) -> str:
        self.segments[-1].partial_after.append(len(self.segments[-1].chunks))
        return ""

    def finish(self):
        return "", ()

    def transcribe(self, audio):
        return "", ()


def vad_segments(audio: np.ndarray, vad_name: str = "silero", partial_every_s: float = 0.2) -> list[Segment]:
    """The STT segments the pipeline's VADProcessor + STTProcessor make of `audio` (float32 (n,), 16 kHz)."""
    from vad_turn.engines.vad import make_vad

    from pipeline.runtime.clock import ManualClock
    from pipeline.runtime.frames import AudioIn, EndOfStream, Transcript
    from pipeline.runtime.processors.base import Pipeline
    from pipeline.runtime.processors.vad_stt import STTProcessor, VADProcessor

    rec = _RecordingSTT()

    async def go():
        pipe = Pipeline([VADProcessor(make_vad(vad_name)), STTProcessor(rec, partial_every_s=partial_every_s)],
                        ManualClock())
        await pipe.start()
        n_out, seen = 0, 0
        for n_fed, i in enumerate(range(0, audio.size, CHUNK_N), 1):
            pipe.feed(AudioIn(0.0, audio[i:i + CHUNK_N], SAMPLE_RATE_HZ, i / SAMPLE_RATE_HZ))
            # paced as in real time: the next chunk enters when the STT has taken this one, so the VAD's
            # UserStartedSpeaking (a system frame, broadcast at once) reaches the STT at the chunk that fired it
            while n_out < n_fed:
                await asyncio.sleep(0)
                for fr in pipe.outputs[seen:]:
                    n_out += isinstance(fr, AudioIn)
                seen = len(pipe.outputs)
        pipe.feed(EndOfStream(0.0))
        await pipe.wait(timeout_s=120)
        return pipe.outputs

    outputs = asyncio.run(go())
    ends, last_audio_end = [], 0.0
    for fr in outputs:
        if isinstance(fr, AudioIn):
            last_audio_end = fr.end_stream_s
        elif isinstance(fr, Transcript) and fr.final:
            ends.append(last_audio_end)
    if len(ends) != len(rec.segments):
        raise AssertionError(f"{len(rec.segments)} segments started but {len(ends)} finals")
    for seg, end in zip(rec.segments, ends):
        seg.end_s = end
        seg.start_s = end - sum(c.size for c in seg.chunks) / SAMPLE_RATE_HZ
    return rec.segments


def decode_segment(engine, seg: Segment) -> dict:
    """Run one engine over a segment as the pipeline would; texts and CPU / wall seconds per call."""
    cpu, out = time.process_time, {"partials": []}
    if engine.streaming:
        c0 = cpu()
        engine.start()
        acc = cpu() - c0
        reads = dict(zip(seg.partial_after, seg.read_times()))
        for k, chunk in enumerate(seg.chunks, 1):
            c0 = cpu()
            engine.accept(chunk)
            acc += cpu() - c0
            if k in reads:
                c0 = cpu()
                text = engine.partial()
                out["partials"].append((reads[k], text, cpu() - c0))
        c0, w0 = cpu(), time.perf_counter()
        text, _ = engine.finish()
    else:
        audio = np.concatenate(seg.chunks) if seg.chunks else np.zeros(0, np.float32)
        acc = 0.0
        c0, w0 = cpu(), time.perf_counter()
        text, _ = engine.transcribe(audio)
    out.update(text=text, finish_cpu_s=cpu() - c0, finish_wall_s=time.perf_counter() - w0, accept_cpu_s=acc)
    return out


def aligned_ref(ref: list[str], hyp: list[str]) -> set[int]:
    """Indices of `ref` tokens that a minimum edit-distance alignment pairs with a `hyp` token (match or
    substitution). Among equal-cost alignments the traceback (from the end) takes a match first, then leaves
    a later reference word out before substituting: a partial lags the speech, so its words pair with the
    earlier reference words ("go two" vs "go to fifth": go, to)."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), np.int32)
    d[:, 0], d[0, :] = np.arange(n + 1), np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]), d[i - 1, j] + 1, d[i, j - 1] + 1)
    out, i, j = set(), n, m
    while i > 0 and j > 0:
        same = ref[i - 1] == hyp[j - 1]
        if same and d[i, j] == d[i - 1, j - 1]:
            out.add(i - 1)
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:  # a reference word not yet heard: at the end of a partial's prefix
            i -= 1
        elif d[i, j] == d[i - 1, j - 1] + 1:
            out.add(i - 1)
            i, j = i - 1, j - 1
        else:
            j -= 1
    return out


def word_lags(words: list, segments: list[Segment], decoded: list[dict]) -> list[dict]:
    """Per reference word (Word with start/end in clip seconds): its segment, final and partial lag (module
    docstring); words outside every segment get segment None and no lags."""
    out = []
    for w in words:
        mid = (w.start + w.end) / 2
        k = next((i for i, s in enumerate(segments) if s.start_s - 1e-9 <= mid <= s.end_s + 1e-9), None)
        out.append({"word": w.word, "start": w.start, "end": w.end, "segment": k})
    for k, (seg, dec) in enumerate(zip(segments, decoded)):
        idx = [i for i, r in enumerate(out) if r["segment"] == k]
        final_t = seg.end_s + dec["finish_cpu_s"]
        seen: dict[int, float] = {}
        toks = [normalize_word(out[i]["word"]) for i in idx]
        for t_read, text, cpu_s in dec["partials"]:
            prefix = [j for j, i in enumerate(idx) if out[i]["start"] < t_read]
            for j in aligned_ref([toks[p] for p in prefix], wer_tokens(text)):
                seen.setdefault(prefix[j], t_read + cpu_s)
        for j, i in enumerate(idx):
            out[i]["final_lag_s"] = round(final_t - out[i]["end"], 4)
            out[i]["partial_lag_s"] = round(min(seen.get(j, final_t), final_t) - out[i]["end"], 4)
    return out


def _pct(a, q) -> float | None:
    v = percentile(a, q)
    return None if v is None else round(v, 4)


def engine_summary(turns: list[dict]) -> dict:
    """Table row of one engine from its per-turn records."""
    from vad_turn.data.corpora.getgoing_log import align_tokens

    words = [w for t in turns for w in t["words"] if w["segment"] is not None]
    eot = [t["words"][-1] for t in turns if t["words"] and t["words"][-1]["segment"] is not None]
    seg_last = [max((w for w in t["words"] if w["segment"] == k), key=lambda w: w["end"])
                for t in turns for k in {w["segment"] for w in t["words"] if w["segment"] is not None}]
    fin = [d["finish_cpu_s"] for t in turns for d in t["segments"]]
    fin_wall = [d["finish_wall_s"] for t in turns for d in t["segments"]]
    part = [c for t in turns for d in t["segments"] for c in d["partial_cpu_s"]]
    cpu_total = sum(d["finish_cpu_s"] + d["accept_cpu_s"] + sum(d["partial_cpu_s"]) for t in turns for d in t["segments"])
    seg_audio = sum(d["audio_s"] for t in turns for d in t["segments"])
    refs, hyps = [t["ref"] for t in turns], [t["hyp"] for t in turns]
    w = word_error_rate(refs, hyps)
    spoken = word_error_rate([" ".join(align_tokens(r)) for r in refs], [" ".join(align_tokens(h)) for h in hyps])
    has_partials = any(t["partial_hyp"] for t in turns)
    return {
        "wer": round(w["wer"], 4), "wer_spoken": round(spoken["wer"], 4),
        "partial_wer": round(word_error_rate(refs, [t["partial_hyp"] for t in turns])["wer"], 4) if has_partials else None,
        "n_ref_words": w["n_ref_words"], "n_turns": len(turns),
        "final_p50_s": _pct([x["final_lag_s"] for x in words], 50), "final_p90_s": _pct([x["final_lag_s"] for x in words], 90),
        "partial_p50_s": _pct([x["partial_lag_s"] for x in words], 50),
        "partial_p90_s": _pct([x["partial_lag_s"] for x in words], 90),
        "eot_final_p50_s": _pct([x["final_lag_s"] for x in eot], 50), "eot_final_p90_s": _pct([x["final_lag_s"] for x in eot], 90),
        "segment_end_final_p50_s": _pct([x["final_lag_s"] for x in seg_last], 50),
        "segment_end_final_p90_s": _pct([x["final_lag_s"] for x in seg_last], 90),
        "segment_end_partial_p90_s": _pct([x["partial_lag_s"] for x in seg_last], 90),
        "n_words": len(words), "n_words_outside_vad": sum(len(t["words"]) for t in turns) - len(words),
        "finish_ms_p50": round(1000 * _pct(fin, 50), 1), "finish_ms_p90": round(1000 * _pct(fin, 90), 1),
        "finish_wall_ms_p50": round(1000 * _pct(fin_wall, 50), 1),
        "partial_ms_p50": round(1000 * _pct(part, 50), 2) if part else None,
        "rtf": round(cpu_total / seg_audio, 4) if seg_audio else None, "n_segments": len(fin),
        "has_partials": has_partials,
    }


def measure_engine(engine, turns: list[dict]) -> list[dict]:
    """Per-turn records of one engine over prepared turns ({id, ref, audio, words, segments})."""
    recs = []
    for t in turns:
        engine.new_stream()
        decoded = [decode_segment(engine, s) for s in t["segments"]]
        recs.append({
            "id": t["id"], "ref": t["ref"], "hyp": " ".join(d["text"] for d in decoded if d["text"]).strip(),
            "partial_hyp": " ".join(d["partials"][-1][1] for d in decoded if d["partials"] and d["partials"][-1][1]),
            "words": word_lags(t["words"], t["segments"], decoded),
            "segments": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "audio_s": sum(c.size for c in s.chunks) / SAMPLE_RATE_HZ,
                          "text": d["text"], "finish_cpu_s": d["finish_cpu_s"], "finish_wall_s": d["finish_wall_s"],
                          "accept_cpu_s": d["accept_cpu_s"], "partial_cpu_s": [c for _, _, c in d["partials"]]}
                         for s, d in zip(t["segments"], decoded)],
        })
    return recs


def turns_root(cfg: SttLagBenchConfig) -> Path:
    """The built root the turns come from (`ensure_getgoing_build` for the test split: the full build, else the
    fresh-clone one)."""
    from .getgoing_scenarios import ensure_getgoing_build, getgoing_built_root

    root = ensure_getgoing_build() if cfg.split == "test" else getgoing_built_root()
    if root is None:
        raise ValueError(f"no GetGoing build holds split {cfg.split!r}: run `vad-turn build-getgoing`")
    return root


def prepare_turns(cfg: SttLagBenchConfig) -> list[dict]:
    """The GetGoing turns with their reference text, words and the pipeline's VAD segments."""
    from vad_turn.core.schema import row_words

    from .getgoing_scenarios import getgoing_turn, select_getgoing_rows

    rows = select_getgoing_rows(cfg.n_turns, built_root=turns_root(cfg), split=cfg.split, seed=cfg.seed)
    if len(rows) < cfg.n_turns:
        raise ValueError(f"only {len(rows)} GetGoing {cfg.split} turns selectable, {cfg.n_turns} asked")
    out = []
    for row in rows:
        st = getgoing_turn(row)
        out.append({"id": row["id"], "ref": st.text, "audio": st.audio, "words": row_words(row),
                    "segments": vad_segments(st.audio, cfg.vad, cfg.partial_every_s)})
    return out


def measured_info(cfg: SttLagBenchConfig, n_turns: int) -> dict:
    from vad_turn.core.onnx import cpu_isa

    isa = cpu_isa()
    info = json.loads((turns_root(cfg) / "getgoing" / "build_info.json").read_text())
    build = f"{info['config'].get('max_calls') or 'all'} calls per split ({', '.join(info['config'].get('splits', []))})"
    return {"cpu": isa.get("model"), "cpu_flags": isa.get("flags"), "threads": 1, "n_turns": n_turns,
            "turns": f"GetGoing {cfg.split}, select_getgoing_rows(n={cfg.n_turns}, seed={cfg.seed}) of a build of {build}",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": git_commit(),
            "command": f"python -m pipeline.bench.stt_lag --engines {' '.join(cfg.engines)} --n-turns {cfg.n_turns} "
                       f"--split {cfg.split} --seed {cfg.seed} --write-record"}


def write_record(summaries: dict, info: dict) -> Path:
    """Merge the engines' rows into vad_turn/engines/stt_lag.json (other engines' rows kept)."""
    from vad_turn.engines.stt import word_lag_path

    path = word_lag_path()
    doc = json.loads(path.read_text()) if path.is_file() else {}
    doc["definition"] = next(p for p in __doc__.split("\n\n") if p.startswith("Lags"))
    engines = doc.setdefault("engines", {})
    for name, row in summaries.items():
        engines[name] = {**row, "measured": info}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path


TABLE_COLS = (("wer", "WER", "{:.2f}"), ("wer_spoken", "WERsp", "{:.2f}"), ("final_p50_s", "fin50", "{:.2f}"),
              ("final_p90_s", "fin90", "{:.2f}"), ("partial_p50_s", "par50", "{:.2f}"), ("partial_p90_s", "par90", "{:.2f}"),
              ("segment_end_final_p90_s", "segend90", "{:.2f}"), ("eot_final_p90_s", "eot90", "{:.2f}"), ("finish_ms_p50", "fin_ms", "{:.0f}"),
              ("finish_ms_p90", "fin_ms90", "{:.0f}"), ("rtf", "RTF", "{:.3f}"))


def table(summaries: dict) -> str:
    head = f"{'engine':30s} " + " ".join(f"{h:>8s}" for _, h, _ in TABLE_COLS)
    rows = [head]
    for name, r in summaries.items():
        rows.append(f"{name:30s} " + " ".join(f"{(fmt.format(r[k]) if r.get(k) is not None else '-'):>8s}"
                                               for k, _, fmt in TABLE_COLS))
    return "\n".join(rows)


def run(cfg: SttLagBenchConfig) -> dict:
    out = cfg.out or default_runs_root() / f"stt-lag-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = RunFolder(out, cfg)
    turns = prepare_turns(cfg)
    summaries = {}
    for name in cfg.engines:
        if name == "pocketsphinx-getgoing":
            from .stt_lm import ensure_lm

            ensure_lm()
        engine = make_stt(name)
        recs = measure_engine(engine, turns)
        with folder.file(f"turns-{engine.name}.jsonl").open("w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
        summaries[engine.name] = engine_summary(recs)
        print(table({engine.name: summaries[engine.name]}).splitlines()[-1], flush=True)
    info = measured_info(cfg, len(turns))
    folder.write_metrics({"engines": summaries, "measured": info})
    print(table(summaries))
    print(f"CPU {info['cpu']} ({', '.join(info['cpu_flags'] or [])}), 1 thread, {len(turns)} turns; wrote {folder.path}")
    if cfg.write_record:
        print(f"record: {write_record(summaries, info)}")
    return summaries


def main(argv: list[str] | None = None) -> int:
    return config_main(SttLagBenchConfig, run, argv, __doc__.splitlines()[0], prog="python -m pipeline.bench.stt_lag")


if __name__ == "__main__":
    sys.exit(main())
