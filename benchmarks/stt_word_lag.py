"""How long after a pause starts the pipeline's streaming STT shows the words before it: JSON report.

Rendered turns (default: the Switchboard-rendered dev clean rows, every voice) are fed to
`vad_turn.engines.stt`'s PocketSphinx streamer in 20 ms chunks, as one utterance per turn, as fast as the
CPU allows; every time is audio time (seconds from the start of the turn's audio), not wall time.
After each chunk the partial hypothesis is read and normalised (`vad_turn.engines.stt.wer_tokens`).

For each silence span [start, end] of a row that lasts at least `min_span_s` (so the decoder has
settled long before the user speaks again), the *final* hypothesis of the words before the pause
is the partial at the horizon h = min(end, start + horizon_s, end of audio). Two lags, in s from
the span start (= the end of the last word before the pause; negative when the hypothesis was
already complete before the speech stopped):

- settle_lag_s: t* - start, where t* is the earliest chunk end such that the partial at every chunk
  end in [t*, h] equals the final hypothesis (the text stops changing).
- count_lag_s: the same with "has the final hypothesis's word count" instead of "equals it" (the
  last word is there, perhaps not yet in its final spelling).
- emitted_lag_s: the settle lag rounded up to the pipeline's partial cadence: `STTProcessor` reads
  the partial only when `partial_every_s` (0.2 s) of audio has passed since its last read (reads at
  chunk ends, counted from the start of the audio), so the settled text reaches the turn detector
  at the first read at or after t*. (The pipeline also finishes the segment at the VAD's speech
  stop, `hangover_s` 0.1 s after the speech ends plus the VAD frame; that path is not simulated.)

This is the quantity the harness's `transcript_lag_s` stands for (a word becomes visible that long
after it ends), measured on the pipeline's default engine. Per-turn records go to `spans.jsonl` as
they are computed (a rerun with the same --out and config resumes); the summary (P50/P90 overall,
per voice and per span kind) goes to `report.json`.

    python benchmarks/stt_word_lag.py [--max-turns N] [--conditions noisy] [--out runs/stt-word-lag]

Measured (all 300 Switchboard-rendered dev clean rows, 349 spans >= 1 s, pipeline default search):
settle lag P50 -0.02 s, P90 0.12 s; word-count lag P50 -0.09 s, P90 0.08 s; emitted lag (0.2 s
read cadence) P50 0.08 s, P90 0.24 s; festival slt-hts rows (57 spans): settle P50 -0.03, P90 0.11 s.
Noisy rows (`--conditions noisy --max-turns 100`, 123 spans): settle P50 0.04, P90 0.16 s; emitted
P50 0.11, P90 0.30 s.
So the pipeline's words reach the turn detector about 0.1-0.2 s after they end, not 0.5 s. (TTS
speech, word-level correctness not checked: the lag is when the hypothesis stops changing.)
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from vad_turn.core.audio import SAMPLE_RATE_HZ, decode_audio_bytes
from vad_turn.core.config import config_main, config_to_dict, default_built_root, default_runs_root
from vad_turn.core.runs import RunFolder, atomic_write_json
from vad_turn.core.schema import row_spans, row_words
from vad_turn.harness.percentiles import summary

CHUNK_S = 0.02


@dataclass(frozen=True)
class SttLagConfig:
    dataset: Path = field(default_factory=lambda: default_built_root() / "switchboard-rendered",
                          metadata={"help": "rendered turn-span dataset (rows with audio)"})
    split: str = field(default="dev", metadata={"help": "rows of this split"})
    conditions: tuple[str, ...] = field(default=("clean",), metadata={"help": "audio_condition values kept"})
    voices: tuple[str, ...] = field(default=(), metadata={"help": "voices kept (empty: all)"})
    max_turns: int | None = field(default=None, metadata={"help": "seeded sample of this many rows (none: all)"})
    seed: int = field(default=0, metadata={"help": "seed of the row sample"})
    min_span_s: float = field(default=1.0, metadata={"help": "shortest silence span measured"})
    horizon_s: float = field(default=3.0, metadata={"help": "the final hypothesis is read this long after the span start"})
    chunk_ms: int = field(default=20, metadata={"help": "audio chunk fed to the decoder"})
    partial_every_s: float = field(default=0.2, metadata={"help": "the pipeline STTProcessor's partial read cadence"})
    accurate: bool = field(default=False, metadata={"help": "PocketSphinx library defaults instead of the pipeline's fast search"})
    out: Path = field(default_factory=lambda: default_runs_root() / "stt-word-lag", metadata={"help": "run folder"})


def partial_track(stt, audio: np.ndarray, chunk_n: int) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Feed `audio` (float32 (n,), 16 kHz) in chunks of `chunk_n` samples to a started streaming STT.

    Returns (times_s (n_chunks,): audio time at the end of each chunk, the normalised partial word
    tuple after each chunk). The utterance is ended (`finish`) before returning.
    """
    from vad_turn.engines.stt import wer_tokens

    stt.start()
    times, hyps = [], []
    for i in range(0, audio.size, chunk_n):
        stt.accept(audio[i:i + chunk_n])
        times.append(min(i + chunk_n, audio.size) / SAMPLE_RATE_HZ)
        hyps.append(tuple(wer_tokens(stt.partial())))
    stt.finish()
    return np.asarray(times, dtype=np.float64), hyps


def read_times(times_s: np.ndarray, every_s: float) -> np.ndarray:
    """The chunk-end times (subset of `times_s`) at which the pipeline reads the partial: the first
    chunk end at least `every_s` after the previous read (the first read counts from 0)."""
    out, last = [], 0.0
    for t in times_s:
        if t - last >= every_s - 1e-9:
            out.append(t)
            last = t
    return np.asarray(out, dtype=np.float64)


def settle_lags(times_s: np.ndarray, hyps: list[tuple[str, ...]], start_s: float, from_s: float,
                horizon_s: float) -> dict:
    """The two lags of one span (module docstring) from a partial track.

    times_s: (n,) increasing chunk-end times; hyps: partial word tuples at those times; start_s: the
    span start; from_s: the earliest time searched (the start of the speech before the pause);
    horizon_s: where the final hypothesis is read. Returns {settle_lag_s, count_lag_s, n_final_words}
    (lags in s, relative to start_s); ValueError when no chunk ends in [from_s, horizon_s].
    """
    idx = np.flatnonzero((times_s >= from_s - 1e-9) & (times_s <= horizon_s + 1e-9))
    if idx.size == 0:
        raise ValueError(f"no chunk ends between {from_s:.3f} and {horizon_s:.3f} s")
    final = hyps[idx[-1]]
    out = {"n_final_words": len(final)}
    for key, same in (("settle_lag_s", lambda h: h == final), ("count_lag_s", lambda h: len(h) == len(final))):
        k = idx.size - 1
        while k > 0 and same(hyps[idx[k - 1]]):
            k -= 1
        out[key] = round(float(times_s[idx[k]] - start_s), 4)
    return out


def emitted_lag(settle_lag_s: float, start_s: float, reads_s: np.ndarray) -> float:
    """The first partial read at or after the settle time (start_s + settle_lag_s), minus start_s
    (nan when no read follows)."""
    later = reads_s[reads_s >= start_s + settle_lag_s - 1e-9]
    return round(float(later[0] - start_s), 4) if later.size else float("nan")


def turn_records(row: dict, stt, cfg: SttLagConfig) -> list[dict]:
    """One dict per measured span of a rendered row: its lags, kind (hold/end), duration and word counts."""
    audio = decode_audio_bytes(row["audio"]["bytes"], source=f"turn {row['id']} audio")
    spans, words = row_spans(row), row_words(row)
    times, hyps = partial_track(stt, audio, max(int(round(cfg.chunk_ms * SAMPLE_RATE_HZ / 1000)), 1))
    reads = read_times(times, cfg.partial_every_s)
    recs, prev_end = [], 0.0
    for i, s in enumerate(spans):
        is_end = i == len(spans) - 1
        horizon = min(s.end, s.start + cfg.horizon_s, times[-1])
        if s.end - s.start >= cfg.min_span_s - 1e-9 and horizon - s.start >= cfg.min_span_s - 1e-9:
            lag = settle_lags(times, hyps, s.start, prev_end, horizon)
            lag["emitted_lag_s"] = emitted_lag(lag["settle_lag_s"], s.start, reads)
            recs.append({"id": row["id"], "voice": row.get("voice") or "", "span_index": i,
                         "kind": "end" if is_end else "hold", "span_dur_s": round(s.end - s.start, 4),
                         "n_ref_words": sum(w.end <= s.start + 1e-6 for w in words), **lag})
        prev_end = s.end
    return recs


def summarize(recs: list[dict]) -> dict:
    """P10/P50/P90/mean of both lags overall, per span kind and per voice."""

    def stats(rs: list[dict]) -> dict:
        out = {"n_spans": len(rs)}
        for key in ("settle_lag_s", "count_lag_s", "emitted_lag_s"):
            a = np.array([r[key] for r in rs], dtype=np.float64)
            a = a[np.isfinite(a)]
            out[key] = {**summary(a, (10, 50, 90)),
                        "frac_le_0.2": float((a <= 0.2 + 1e-9).mean()), "frac_le_0.3": float((a <= 0.3 + 1e-9).mean()),
                        "frac_le_0.5": float((a <= 0.5 + 1e-9).mean())} if a.size else None
        return out

    groups = {"all": recs}
    for key in ("kind", "voice"):
        for v in sorted({r[key] for r in recs}):
            groups[f"{key}={v}"] = [r for r in recs if r[key] == v]
    return {g: stats(rs) for g, rs in groups.items()}


def _select_rows(cfg: SttLagConfig):
    from vad_turn.data.dataset import load_turns

    ds = load_turns(cfg.dataset)
    meta = ds.select_columns([c for c in ("split", "audio_condition", "voice") if c in ds.column_names]).to_list()
    idx = [i for i, m in enumerate(meta) if m.get("split") == cfg.split
           and (not cfg.conditions or m.get("audio_condition") in cfg.conditions)
           and (not cfg.voices or m.get("voice") in cfg.voices)]
    if not idx:
        raise ValueError(f"{cfg.dataset}: no rows of split {cfg.split!r}, conditions {cfg.conditions}, voices {cfg.voices}")
    if cfg.max_turns is not None and cfg.max_turns < len(idx):
        idx = sorted(np.random.default_rng(cfg.seed).choice(idx, size=cfg.max_turns, replace=False).tolist())
    return ds.select(idx)


def _read_done(path: Path) -> list[list[dict]]:
    """The complete lines of an interrupted spans.jsonl (a cut-off last line is dropped)."""
    done = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                done.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return done


def run(cfg: SttLagConfig) -> dict:
    from vad_turn.engines.stt import PocketsphinxSTT

    out = Path(cfg.out)
    cfg_dict = {"type": type(cfg).__name__, **config_to_dict(cfg)}
    old = out / "config.json"
    if old.exists() and json.loads(old.read_text()) != cfg_dict and (out / "spans.jsonl").exists():
        raise ValueError(f"{out}: holds a run with a different config; use another --out")
    rf = RunFolder(out, cfg)
    rows = _select_rows(cfg)
    spans_path = rf.file("spans.jsonl")
    done = _read_done(spans_path)
    done_ids = {t["id"] for t in done}
    with spans_path.open("w") as f:  # rewrite the complete lines, then append
        for t in done:
            f.write(json.dumps(t) + "\n")
    stt = PocketsphinxSTT(accurate=cfg.accurate)
    t0, audio_s = time.perf_counter(), 0.0
    with spans_path.open("a") as f:
        for row in tqdm(rows, desc="stt word lag", unit="turn", mininterval=2.0):
            if row["id"] in done_ids:
                continue
            recs = turn_records(row, stt, cfg)
            audio_s += row_spans(row)[-1].end
            done.append({"id": row["id"], "spans": recs})
            f.write(json.dumps(done[-1]) + "\n")
            f.flush()
    recs = [r for t in done for r in t["spans"]]
    report = {"engine": "pocketsphinx" + (" (accurate)" if cfg.accurate else " (pipeline default search)"),
              "n_turns": len(done), "chunk_ms": cfg.chunk_ms, "summary": summarize(recs),
              "decode_wall_s_this_call": round(time.perf_counter() - t0, 1), "audio_s_this_call": round(audio_s, 1),
              "definitions": __doc__.split("\n\n")[1:4]}
    atomic_write_json(rf.file("report.json"), report)
    return report


def run_and_print(cfg: SttLagConfig) -> dict:
    """`run`, then one line per summary group."""
    report = run(cfg)
    for g, s in report["summary"].items():
        if s["settle_lag_s"] is None:
            continue
        a, c, e = s["settle_lag_s"], s["count_lag_s"], s["emitted_lag_s"]
        print(f"{g:40s} n={s['n_spans']:4d}  settle P50 {a['p50']:.2f} P90 {a['p90']:.2f} | "
              f"count P50 {c['p50']:.2f} P90 {c['p90']:.2f} | emitted P50 {e['p50']:.2f} P90 {e['p90']:.2f} s")
    print(f"report: {Path(cfg.out) / 'report.json'}")
    return report


def main(argv: list[str] | None = None) -> int:
    return config_main(SttLagConfig, run_and_print, argv, __doc__.splitlines()[0], prog="python benchmarks/stt_word_lag.py")


if __name__ == "__main__":
    sys.exit(main())
