"""The shipped turn model inside Pipecat against the project's own pipeline, on the same recorded turns.

For every GetGoing test turn (real callers' telephone audio, `vad-turn build-getgoing`; on a fresh clone the
small build of the first test calls, `getgoing_scenarios.ensure_getgoing_build`):

- Pipecat: the turn's audio through Pipecat's own pipeline (`vad_turn.integrations.pipecat_replay.replay`:
  its Silero VAD, its user turn processor, `TurnAnalyzerUserTurnStopStrategy`) with our analyzer
  (`TurnModelAnalyzer`, the shipped voice-agent policy), then with Pipecat's `LocalSmartTurnAnalyzerV3`;
- project: the same audio through the project's pipeline (`project_decisions`: its VAD processor and its
  `TurnProcessor` with the fused detector, on a manual clock, the same policy); the turn's words reach the
  turn processor as a final transcript at each of the VAD's stops (the STT's place in the pipeline).

Our analyzer runs in its default mode, audio only (`--mode audio`: the project's detector is then shown no
words either), or with the turn's words (`--mode words`: both get the row's word times). A turn "agrees" when
both pipelines end it first within one grid step (0.1 s) of each other (`agree`; every decision: `agree_all`).
Per analyzer: end-of-turn latency (first decision - the turn's end, the row's last silence span start; turns
not cut off) and false cut-offs (first decision before the turn's end: inside a pause of the turn), the
bench's definitions (`pipeline.bench.e2e.score`). Smart Turn's probability at each VAD stop is compared with the
project's Smart Turn detector (`vad_turn.peers.smart_turn`) on the very audio Pipecat scored.

    python benchmarks/pipecat_agreement.py --out runs/pipecat-agreement.json
"""
from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.harness.percentiles import summary as percentile_summary
from vad_turn.harness.query import QUERY_GRID_S

CHUNK_S = 0.02


@dataclass(frozen=True)
class AgreementConfig:
    mode: str = field(default="audio", metadata={
        "help": "audio (the analyzer's default: no transcript) or words (both shown the turn's word times)",
        "choices": ("audio", "words")})
    split: str = field(default="test", metadata={"help": "GetGoing split (test turns are for reporting only)"})
    max_turns: int = field(default=0, metadata={"help": "at most this many turns, in id order (0: all)"})
    tail_s: float = field(default=3.5, metadata={
        "help": "silence appended after each clip (s): room for the policies' timeouts (Smart Turn: VAD stop + 3 s)"})
    smart_turn: bool = field(default=True, metadata={"help": "also run Pipecat's own Smart Turn analyzer"})
    vad_only: bool = field(default=True, metadata={
        "help": "also VAD-only at the policy's stop silence, in Pipecat (the analyzer at threshold 0, Pipecat's VAD) "
                "and in the project's pipeline (its VAD): the baseline the policy is safe against, per framework"})
    n_boot: int = field(default=2000, metadata={"help": "bootstrap resamples of calls for the paired differences"})
    vad_start_secs: float = field(default=0.2, metadata={
        "help": "Pipecat VADParams.start_secs (its default 0.2 s misses one-word telephone answers; 0.1 hears them)"})
    vad_min_volume: float = field(default=0.6, metadata={
        "help": "Pipecat VADParams.min_volume (its default 0.6; 0.3 for quiet 8 kHz telephone callers)"})
    out: Path = field(default=Path("runs/pipecat-agreement.json"), metadata={"help": "the JSON report"})

    def __post_init__(self) -> None:
        if self.n_boot < 0:
            raise ValueError(f"--n-boot must be >= 0, got {self.n_boot}")
        if self.max_turns < 0 or not (0.0 <= self.tail_s <= 30.0):
            raise ValueError("--max-turns must be >= 0 and --tail-s within [0, 30]")
        if not (0.0 < self.vad_start_secs <= 2.0) or not (0.0 <= self.vad_min_volume <= 1.0):
            raise ValueError("--vad-start-secs must be in (0, 2] and --vad-min-volume in [0, 1]")


# ----------------------------------------------------------------------------- the turns


def getgoing_turns(split: str = "test", max_turns: int = 0, built_root: Path | None = None) -> list[dict]:
    """{id, audio (float32 16 kHz), end_s, holds, words (stream-time Words), messages} of the built GetGoing split
    under `built_root` (default: the full build, else the fresh-clone small one, made if missing)."""
    from pipeline.bench.getgoing_scenarios import SET_NAME, ensure_getgoing_build
    from vad_turn.core.audio import decode_audio_bytes
    from vad_turn.core.schema import row_messages, row_words
    from vad_turn.data.dataset import load_turns

    ds = load_turns((Path(built_root) if built_root is not None else ensure_getgoing_build()) / SET_NAME)
    meta = ds.select_columns(["id", "split"]).to_pandas()
    idx = sorted(meta.index[meta["split"] == split], key=lambda i: meta.at[i, "id"])
    if not idx:
        raise ValueError(f"GetGoing build has no {split!r} turns")
    out = []
    for i in idx[: max_turns or None]:
        row = ds[int(i)]
        spans = row["silence_spans"]
        out.append({"id": row["id"], "audio": decode_audio_bytes(row["audio"]["bytes"], source=row["id"]),
                    "end_s": float(spans[-1]["start"]), "holds": [(s["start"], s["end"]) for s in spans[:-1]],
                    "words": row_words(row), "messages": row_messages(row)})
    return out


# ----------------------------------------------------------------------------- the project's pipeline


class _DetectorShownNoWords:
    """The fused detector asked without words: the project's side of the analyzer's audio-only mode."""

    needs_audio, needs_words = True, False

    def __init__(self, det):
        self.det, self.name = det, f"{det.name}-audio"

    def predict(self, audio, words, messages, silence_s):
        return self.det.predict(audio, (), messages, silence_s)


def _transcript_at_stops(words, text: str):
    """A pipeline processor standing where the STT stands: at each UserStoppedSpeaking, the final transcript of the
    words begun in that speech segment (`text` for the first segment when no word has a time there)."""
    from pipeline.runtime.frames import Transcript, UserStoppedSpeaking
    from pipeline.runtime.processors.base import Processor

    class TranscriptAtStops(Processor):
        name = "transcript"

        def __init__(self):
            super().__init__()
            self.seg, self.prev_stop = 0, -math.inf

        async def process(self, frame):
            await self.push(frame)
            if isinstance(frame, UserStoppedSpeaking):
                t = frame.stream_t_s
                ws = tuple(w for w in words if self.prev_stop - 1e-6 <= w.start < t - 1e-6)
                said = " ".join(w.word for w in ws) or (text if self.seg == 0 else "")
                await self.push(Transcript(self.now(), said, True, self.seg, ws))
                self.seg, self.prev_stop = self.seg + 1, t

    return TranscriptAtStops()


async def _project_async(audio: np.ndarray, detector, policy, words, messages, text: str) -> list[dict]:
    from pipeline.runtime.clock import ManualClock
    from pipeline.runtime.frames import AudioIn, EndOfStream, EndOfTurn
    from pipeline.runtime.observers import FrameLog
    from pipeline.runtime.processors.base import Conversation, Pipeline
    from pipeline.runtime.processors.turn import TurnProcessor
    from pipeline.runtime.processors.vad_stt import VADProcessor
    from vad_turn.core.audio import SAMPLE_RATE_HZ
    from vad_turn.engines.vad import make_vad

    clock, log = ManualClock(), FrameLog()
    turn = TurnProcessor(policy, detector, barge_in=False)
    conv = Conversation(messages=[{"role": m.role, "content": m.content} for m in messages])
    p = Pipeline([VADProcessor(make_vad("silero")), _transcript_at_stops(words, text), turn], clock, observers=[log],
                 conversation=conv)
    await p.start()
    n = int(round(CHUNK_S * SAMPLE_RATE_HZ))
    for i in range(0, audio.size, n):
        p.feed(AudioIn(clock.now(), audio[i:i + n], SAMPLE_RATE_HZ, i / SAMPLE_RATE_HZ))
        await clock.advance(CHUNK_S)
        deadline = time.monotonic() + 60.0  # the detector answers on its thread before the next chunk is fed
        while (turn._pending is not None and not turn._pending.done()) or any(not pr.queue.empty() for pr in p.processors):
            if time.monotonic() > deadline:
                raise TimeoutError("the project's pipeline did not take a chunk within 60 s")
            await asyncio.sleep(0.0005)
        await clock.settle()
    p.feed(EndOfStream(clock.now()))
    for _ in range(10):
        await clock.advance(CHUNK_S)
    await p.wait(30.0)
    return [{"decided_s": e.decided_stream_t_s, "p_eot": e.p_eot, "silence_s": e.silence_s}
            for e in log.of(EndOfTurn) if not e.tentative]


def project_decisions(audio: np.ndarray, detector, policy, *, words=(), messages=(), text: str = "") -> list[dict]:
    """Every end-of-turn decision of the project's pipeline (its Silero VAD processor, then `TurnProcessor(policy,
    detector)` on a manual clock) on `audio` (float32 16 kHz): [{decided_s (stream s), p_eot, silence_s}]."""
    return asyncio.run(_project_async(audio, detector, policy, tuple(words), tuple(messages), text))


# ----------------------------------------------------------------------------- Pipecat


def recording_smart_turn():
    """Pipecat's `LocalSmartTurnAnalyzerV3`, keeping a copy of every audio segment it scores (`scored`), so the
    project's Smart Turn detector can be asked on the very same samples."""
    from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3

    class RecordingSmartTurn(LocalSmartTurnAnalyzerV3):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.scored: list[tuple[np.ndarray, float]] = []

        def _predict_endpoint(self, audio_array):
            out = super()._predict_endpoint(audio_array)
            self.scored.append((np.array(audio_array, dtype=np.float32), float(out["probability"])))
            return out

    return RecordingSmartTurn()


def agree(a: list[float], b: list[float], tol_s: float = QUERY_GRID_S + 1e-6) -> bool:
    """Both pipelines ended the turn first within `tol_s` of each other. (After a false cut-off the two differ by
    design: the project's pipeline goes on with the same turn when the user resumes before the agent is heard, its
    audio from the first onset; Pipecat starts a new user turn, and the analyzer its audio at the new onset.)"""
    return bool(a) and bool(b) and abs(a[0] - b[0]) <= tol_s


def agree_all(a: list[float], b: list[float], tol_s: float = QUERY_GRID_S + 1e-6) -> bool:
    """Both pipelines ended the turn as often, each decision within `tol_s` of the other's."""
    return len(a) == len(b) and all(abs(x - y) <= tol_s for x, y in zip(a, b))


def outcome(decisions: list[float], end_s: float) -> dict:
    """The bench's verdict on a turn's first decision: a false cut-off before `end_s`, else its latency."""
    if not decisions:
        return {"decided": False, "cutoff": False, "latency_s": None}
    first = decisions[0]
    cut = first < end_s
    return {"decided": True, "cutoff": cut, "latency_s": None if cut else first - end_s}


def summary(rows: list[dict], key: str) -> dict:
    outs = [r[key] for r in rows]
    lat = np.array([o["latency_s"] for o in outs if o["latency_s"] is not None])
    return {"n_turns": len(outs), "n_undecided": sum(not o["decided"] for o in outs),
            "false_cutoffs": sum(o["cutoff"] for o in outs),
            "false_cutoff_rate": sum(o["cutoff"] for o in outs) / max(len(outs), 1),
            "latency_s": percentile_summary(lat, (50, 90))
            if lat.size else None}


def paired_difference(rows: list[dict], a: str, b: str, n_boot: int, seed: int = 0) -> dict:
    """Outcome `a` - outcome `b` over the same turns: false cut-off rate (points) and mean latency (s, over turns
    neither cut off nor left undecided), with 95% intervals resampling calls (`ratio_bootstrap.paired_interval`)."""
    from vad_turn.harness.ratio_bootstrap import conversation_of, paired_interval

    calls = np.array([conversation_of(r["id"]) for r in rows], dtype=object)
    cut = np.array([[r[a]["cutoff"], r[b]["cutoff"]] for r in rows], dtype=np.float64)
    lat = np.array([[r[k]["latency_s"] if r[k]["latency_s"] is not None else np.nan for k in (a, b)] for r in rows])
    both = np.isfinite(lat).all(axis=1)

    def point(groups, diff: np.ndarray, scale: float = 1.0) -> dict:
        ci = paired_interval(groups, diff, n_boot, seed) if n_boot and diff.size else None
        return {"value": scale * float(diff.mean()) if diff.size else None,
                "ci95": None if ci is None else [scale * x for x in ci]}

    return {"a": a, "b": b, "n_turns": len(rows), "n_calls": len(set(calls)),
            "false_cutoffs": [int(cut[:, 0].sum()), int(cut[:, 1].sum())],
            "fcr_pt": point(calls, cut[:, 0] - cut[:, 1], 100.0), "n_turns_latency": int(both.sum()),
            "mean_latency_s": point(calls[both], lat[both, 0] - lat[both, 1])}


def run(cfg: AgreementConfig) -> int:
    from loguru import logger
    from pipecat.audio.vad.vad_analyzer import VADParams

    from vad_turn.core.audio import SAMPLE_RATE_HZ
    from vad_turn.core.runs import atomic_write_json, git_commit
    from vad_turn.harness.detectors import make_detector
    from vad_turn.integrations.pipecat import TurnModelAnalyzer, TurnModelParams
    from vad_turn.integrations.pipecat_replay import replay

    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    turns = getgoing_turns(cfg.split, cfg.max_turns)
    fused = make_detector("fused")
    det = fused if cfg.mode == "words" else _DetectorShownNoWords(fused)
    smart = make_detector("smart-turn") if cfg.smart_turn else None
    vad = VADParams(start_secs=cfg.vad_start_secs, min_volume=cfg.vad_min_volume)
    rows, t0 = [], time.time()
    for i, tr in enumerate(turns):
        audio = np.concatenate([tr["audio"], np.zeros(int(cfg.tail_s * SAMPLE_RATE_HZ), np.float32)])
        ours = TurnModelAnalyzer(model=fused.model)
        ours.set_messages(tr["messages"])
        if cfg.mode == "words":
            ours.add_words(tr["words"])
        pc = replay(audio, ours, vad_params=vad)
        text = " ".join(w.word for w in tr["words"]) or "(speech)"
        proj = project_decisions(audio, det, ours.policy, words=tr["words"], messages=tr["messages"], text=text)
        ours_s, proj_s = pc.turn_stops_s, [d["decided_s"] for d in proj]
        row = {"id": tr["id"], "end_s": tr["end_s"], "n_holds": len(tr["holds"]), "pipecat_ours_s": ours_s,
               "project_s": proj_s, "agree": agree(ours_s, proj_s), "agree_all": agree_all(ours_s, proj_s),
               "ours": outcome(ours_s, tr["end_s"]),
               "project": outcome(proj_s, tr["end_s"]), "vad_stops_s": pc.times("vad_stop"),
               "model_calls_ms": [1e3 * s for s in ours.query_s]}
        if cfg.vad_only:
            base = ours.policy.vad_only()
            vo = TurnModelAnalyzer(model=fused.model, params=TurnModelParams(
                threshold=base.threshold, action_delay_s=base.action_delay_s, timeout_s=base.timeout_s,
                transcript_lag_s=base.transcript_lag_s))
            vo_s = replay(audio, vo, vad_params=vad).turn_stops_s
            pv_s = [d["decided_s"] for d in project_decisions(audio, det, base, words=tr["words"],
                                                               messages=tr["messages"], text=text)]
            row.update(pipecat_vad_only_s=vo_s, vad_only_pipecat=outcome(vo_s, tr["end_s"]),
                       project_vad_only_s=pv_s, vad_only_project=outcome(pv_s, tr["end_s"]))
        if smart is not None:
            st = recording_smart_turn()
            ps = replay(audio, st, vad_params=vad)
            ours_p = [smart.predict(a, (), (), 0.0) for a, _ in st.scored]
            row.update(pipecat_smart_turn_s=ps.turn_stops_s, smart_turn=outcome(ps.turn_stops_s, tr["end_s"]),
                       smart_turn_p=[p for _, p in st.scored], smart_turn_p_project=ours_p)
        rows.append(row)
        print(f"[{i + 1}/{len(turns)}] {tr['id']}: pipecat {np.round(ours_s, 2).tolist()} project "
              f"{np.round(proj_s, 2).tolist()} {'=' if row['agree'] else 'DIFFERENT'}"
              + (f"; smart turn {np.round(row['pipecat_smart_turn_s'], 2).tolist()}" if smart else ""), flush=True)
    calls = np.array([c for r in rows for c in r["model_calls_ms"]])
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
              "commit": git_commit(), "policy": ours.policy.describe() if turns else None,
              "n_turns": len(rows), "wall_s": time.time() - t0,
              "agreement": sum(r["agree"] for r in rows) / max(len(rows), 1),
              "agreement_all_decisions": sum(r["agree_all"] for r in rows) / max(len(rows), 1),
              "outcome_agreement": sum(r["ours"]["cutoff"] == r["project"]["cutoff"] for r in rows) / max(len(rows), 1),
              "ours_in_pipecat": summary(rows, "ours"), "project_pipeline": summary(rows, "project"),
              "model_call_ms": percentile_summary(calls, (50, 90))
              if calls.size else None, "turns": rows}
    if cfg.vad_only and rows:
        report["vad_only_in_pipecat"] = summary(rows, "vad_only_pipecat")
        report["vad_only_project_pipeline"] = summary(rows, "vad_only_project")
        report["ours_minus_vad_only"] = {
            "in_pipecat": paired_difference(rows, "ours", "vad_only_pipecat", cfg.n_boot),
            "in_project": paired_difference(rows, "project", "vad_only_project", cfg.n_boot)}
    if cfg.smart_turn and rows:
        diffs = np.array([abs(a - b) for r in rows for a, b in zip(r["smart_turn_p"], r["smart_turn_p_project"])])
        report["smart_turn_in_pipecat"] = summary(rows, "smart_turn")
        report["smart_turn_p_max_abs_diff_vs_project_detector"] = float(diffs.max()) if diffs.size else None
    atomic_write_json(Path(cfg.out), report)
    s = report
    print(f"{s['n_turns']} turns ({cfg.mode}): Pipecat = project on {100 * s['agreement']:.1f}% of turns; ours in Pipecat: "
          f"{json.dumps(s['ours_in_pipecat'])}; project: {json.dumps(s['project_pipeline'])}"
          + (f"; Smart Turn in Pipecat: {json.dumps(s['smart_turn_in_pipecat'])}" if cfg.smart_turn else "")
          + (f"; VAD-only in Pipecat: {json.dumps(s['vad_only_in_pipecat'])}; in the project: "
             f"{json.dumps(s['vad_only_project_pipeline'])}; ours - VAD-only: {json.dumps(s['ours_minus_vad_only'])}"
             if cfg.vad_only and rows else "")
          + f"; wrote {cfg.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    from vad_turn.core.config import add_config_args, build_config, run_config

    parser = argparse.ArgumentParser(prog="pipecat_agreement", description=__doc__.split("\n\n")[0])
    add_config_args(parser, AgreementConfig)
    return run_config("pipecat_agreement", run, build_config("pipecat_agreement", AgreementConfig, parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
