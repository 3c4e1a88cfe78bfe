"""F0 of the acoustic front end against pure tones and against Praat ("To Pitch (ac)") on real speech.

Prints the largest tone error and, on a real clip, how many of Praat's voiced frames we also call
voiced, and the relative F0 difference on frames both call voiced (tests/test_features.py pins them).

    .venv/bin/python benchmarks/f0_vs_praat.py [--clip ../shared/data/clips/jfk.flac] [--features.voicing-threshold 0.5 ...]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from vad_turn.acoustic.features import AcousticFrontEnd, FeatureConfig, window_audio
from vad_turn.core.audio import SAMPLE_RATE_HZ, load_audio
from vad_turn.core.config import config_main, default_data_root


@dataclass(frozen=True)
class F0Config:
    clip: Path = field(default_factory=lambda: default_data_root() / "clips" / "jfk.flac",
                       metadata={"help": "real speech, any format"})
    features: FeatureConfig = field(default_factory=FeatureConfig, metadata={
        "help": "the front end measured (the shipped model's by default)"})


def run(bench: F0Config) -> dict:
    """Print (and return) the tone errors and the agreement with Praat on the clip."""
    import parselmouth

    torch.set_num_threads(1)
    front = AcousticFrontEnd(bench.features).eval()
    cfg = front.cfg

    def tracks(audio):
        with torch.no_grad():
            return {k: v[0].numpy() for k, v in front.tracks(torch.from_numpy(window_audio(audio, cfg))[None]).items()}

    t = np.arange(cfg.n_samples) / SAMPLE_RATE_HZ
    tones = {}
    for f in (90.0, 200.0, 310.0, 450.0):
        x = tracks((0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32))
        tones[f] = float(np.abs(x["f0_hz"][5:] - f).max())
        print(f"tone {f:.0f} Hz: max |F0 - f| = {np.abs(x['f0_hz'][5:] - f).max():.3f} Hz")
    audio = load_audio(bench.clip)
    pitch = parselmouth.Sound(audio.astype(np.float64), SAMPLE_RATE_HZ).to_pitch_ac(
        time_step=0.01, pitch_floor=cfg.f0_min_hz, pitch_ceiling=cfg.f0_max_hz)
    rel, n_praat, ours_only = [], 0, 0
    half_frame = SAMPLE_RATE_HZ * cfg.pitch_win_ms / 2000
    for start in range(0, audio.size - cfg.n_samples + 1, cfg.n_samples // 2):
        x = tracks(audio[start:start + cfg.n_samples])
        for i, end in enumerate(cfg.frame_end_samples()[5:], start=5):
            fp = pitch.get_value_at_time((start + end - half_frame) / SAMPLE_RATE_HZ)  # our frame's centre
            if np.isnan(fp):
                ours_only += int(x["f0_hz"][i] > 0)
                continue
            n_praat += 1
            if x["f0_hz"][i] > 0:
                rel.append(abs(x["f0_hz"][i] - fp) / fp)
    rel = np.array(rel)
    print(f"{bench.clip}: Praat-voiced frames {n_praat}, also voiced here {rel.size} ({rel.size / n_praat:.1%}), "
          f"voiced only here {ours_only}; |F0 - Praat| / Praat median {np.median(rel):.4f}, "
          f"mean {rel.mean():.4f}, share > 20% (octave jumps) {np.mean(rel > 0.2):.3f}")
    return {"tone_max_abs_error_hz": tones, "praat_voiced": n_praat, "also_voiced": int(rel.size), "voiced_only_here": ours_only,
            "rel_median": float(np.median(rel)), "rel_mean": float(rel.mean()), "octave_share": float(np.mean(rel > 0.2))}


def main(argv: list[str] | None = None) -> int:
    return config_main(F0Config, run, argv, __doc__.splitlines()[0], prog="python benchmarks/f0_vs_praat.py")


if __name__ == "__main__":
    raise SystemExit(main())
