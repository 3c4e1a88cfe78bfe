"""Time to first audio of each TTS voice (`vad_turn.engines.tts`): from the call to the first 20 ms chunk, medians.

Every default voice is timed through `synthesize_stream` (espeak in process through its library, and once more
through the espeak-ng CLI); the first call of each voice (library load, disk cache) is reported apart.

    python benchmarks/tts_ttfa.py --repeats 5
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from vad_turn.core.config import config_main
from vad_turn.engines.tts import DEFAULT_PATHS, DEFAULT_VOICES, EnginePaths, Voice, synthesize_stream


def measure_ttfa(voices: Sequence[Voice], text: str, repeats: int = 5,
                 paths: EnginePaths = DEFAULT_PATHS) -> dict[str, dict[str, float]]:
    """Time from call to the first 20 ms chunk per voice: {voice id: {first_s, median_s, total_median_s}}."""
    out = {}
    for v in voices:
        firsts, totals = [], []
        for _ in range(repeats + 1):  # the first call (library load, disk cache) is reported separately
            t0 = time.perf_counter()
            it = synthesize_stream(text, v, paths=paths)
            next(it)
            firsts.append(time.perf_counter() - t0)
            for _chunk in it:
                pass
            totals.append(time.perf_counter() - t0)
        out[v.id] = {"first_s": firsts[0], "median_s": float(np.median(firsts[1:])),
                     "total_median_s": float(np.median(totals[1:]))}
    return out


@dataclass(frozen=True)
class TtfaConfig:
    """Time to first audio per TTS engine (medians)."""

    text: str = field(default="so I was thinking we could go there tomorrow if the weather holds",
                      metadata={"help": "the sentence every voice synthesizes"})
    repeats: int = field(default=5, metadata={"help": "timed calls per voice after the first (reported apart)"})

    def __post_init__(self) -> None:
        if self.repeats < 1 or not self.text.strip():
            raise ValueError(f"--repeats must be >= 1 and --text non-empty, got {self.repeats}, {self.text!r}")


def run_ttfa(cfg: TtfaConfig) -> dict:
    """Print and return {voice: {first_s, median_s, total_median_s}} (espeak also through its CLI)."""
    rows = measure_ttfa(DEFAULT_VOICES, cfg.text, cfg.repeats)
    rows.update({k + " (cli)": v for k, v in measure_ttfa(DEFAULT_VOICES[:1], cfg.text, cfg.repeats,
                                                          EnginePaths(espeak_backend="cli")).items()})
    print(f"{'voice':40s} {'first_ms':>9s} {'ttfa_median_ms':>15s} {'total_median_ms':>16s}")
    for k, r in rows.items():
        print(f"{k:40s} {1e3 * r['first_s']:9.1f} {1e3 * r['median_s']:15.1f} {1e3 * r['total_median_s']:16.1f}")
    return rows


def main(argv: list[str] | None = None) -> int:
    return config_main(TtfaConfig, run_ttfa, argv, TtfaConfig.__doc__, prog="python benchmarks/tts_ttfa.py")


if __name__ == "__main__":
    sys.exit(main())
