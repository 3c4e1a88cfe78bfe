"""Word error rate and speed of the STT engines on rendered turns and on real speech.

Rendered: the bench's conversation turns (`scenarios.conversation_turns`: real Switchboard dev /
SBCSAE test turns, real pauses) rendered with `voices` (default `scenarios.USER_VOICES`, festival
slt; `--voices espeak:en-us espeak:en-us+f3 espeak:en+m3` gives the older espeak renders); the
reference is the turn's normalised text. Real: `clips/jfk.flac` from the
shared data root (11 s, 1961, public domain) with its known transcript, and "getgoing:log": real callers'
telephone turns (the bench's getgoing scenario set, `getgoing_scenarios`, GetGoing test split, reporting
only; each clip as the bench plays it, lead-in and tail included) against the call log's Google-ASR line
(so the figure is agreement with another recogniser; `word_agreement` = 1 - WER). Each engine decodes each
utterance streamed in 20 ms chunks (pocketsphinx) or whole (whisper, moonshine); we report corpus WER, the
real-time factor (decode seconds per audio second) and the finalisation time (`finish()` after the
last chunk, what the pipeline waits for after the user stops).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.config import default_data_root, default_runs_root
from vad_turn.core.runs import RunFolder
from vad_turn.engines.stt import make_stt, word_agreement
from vad_turn.harness.percentiles import percentile

from .scenarios import USER_VOICES

JFK_TEXT = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


@dataclass(frozen=True)
class SttEvalConfig:
    engines: tuple[str, ...] = field(default=("pocketsphinx", "whisper", "moonshine"), metadata={
        "help": "STT engines (make_stt names; pipeline.bench.stt_lag measures all of them on real callers with word lag)"})
    n_rendered: int = field(default=20, metadata={"help": "rendered real turns (the bench's conversation turns; 0: none)"})
    getgoing_turns: int = field(default=12, metadata={
        "help": "real GetGoing test turns (the bench's getgoing scenario set), against the log's Google-ASR line; 0: none"})
    voices: tuple[str, ...] = field(default=USER_VOICES, metadata={"help": "voices rendering the turns"})
    data_root: Path = field(default_factory=default_data_root, metadata={"help": "shared data root (clips/jfk.flac)"})
    seed: int = field(default=0, metadata={"help": "seed of the rendered turn selection"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/stt-wer-<time>)"})


def decode(engine, audio: np.ndarray) -> tuple[str, float, float]:
    """(text, decode seconds, finish seconds): streamed in 20 ms chunks when the engine streams."""
    t0 = time.perf_counter()
    engine.start()
    for i in range(0, audio.size, 320):
        engine.accept(audio[i:i + 320])
    t1 = time.perf_counter()
    text, _ = engine.finish()
    t2 = time.perf_counter()
    return text, t2 - t0, t2 - t1


def run(cfg: SttEvalConfig) -> dict:
    from tqdm import tqdm

    from vad_turn.core.audio import load_audio

    from .scenarios import conversation_turns

    out = cfg.out or default_runs_root() / f"stt-wer-{time.strftime('%Y%m%d-%H%M%S')}"
    folder = RunFolder(out, cfg)
    pad = np.zeros(3200, np.float32)
    sets = {"real:jfk": [(JFK_TEXT, load_audio(Path(cfg.data_root) / "clips" / "jfk.flac"))]}
    if cfg.n_rendered:
        rendered = conversation_turns(n_conversation_turns=cfg.n_rendered, seed=cfg.seed, voices=cfg.voices)
        sets["rendered"] = [(t.text, np.concatenate([pad, t.audio, pad])) for t in rendered]
    if cfg.getgoing_turns:
        from .getgoing_scenarios import getgoing_scenarios

        sets["getgoing:log"] = [(t.text, t.audio) for sc in getgoing_scenarios(cfg.getgoing_turns, seed=cfg.seed)
                                for t in sc.turns]
    results = {}
    for name in cfg.engines:
        engine = make_stt(name)
        for set_name, items in sets.items():
            hyps, dec_s, fin_s, audio_s = [], [], [], 0.0
            for ref, audio in tqdm(items, desc=f"{name} {set_name}", leave=False):
                text, d, f = decode(engine, audio)
                hyps.append(text)
                dec_s.append(d)
                fin_s.append(f)
                audio_s += audio.size / SAMPLE_RATE_HZ
            w = word_agreement([r for r, _ in items], hyps)
            results[f"{name}/{set_name}"] = {**w, "rtf": float(sum(dec_s) / audio_s),
                                             "finish_p50_s": percentile(fin_s, 50),
                                             "examples": [{"ref": r, "hyp": h} for (r, _), h in list(zip(items, hyps))[:5]]}
    folder.write_metrics(results)
    print(f"{'engine/set':32s} {'WER':>6s} {'agree':>6s} {'words':>6s} {'RTF':>6s} {'finish_p50_ms':>14s}")
    for k, r in results.items():
        print(f"{k:32s} {r['wer']:6.3f} {r['agreement']:6.3f} {r['n_ref_words']:6d} {r['rtf']:6.2f} "
              f"{1000 * r['finish_p50_s']:14.0f}")
    print(f"wrote {folder.path}")
    return results
