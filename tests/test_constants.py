"""Named constants, not retyped literals (issue 25): the audio sample rate is `vad_turn.core.audio.SAMPLE_RATE_HZ`.

The rule: no numeric literal worth 16000 (16000, 16_000, 16000.0, 16e3, ...) in the package sources or the
benchmark scripts outside core/audio.py, which defines it. Only code counts: strings and comments are not
scanned (the syntax tree's numeric constants are), so docstrings, help texts and comments may say "16 kHz" or "16000".
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("vad_turn", "pipeline", "prosody", "benchmarks")
SAMPLE_RATE_HOME = "vad_turn/core/audio.py"


def numeric_literals(source: str, value: float) -> list[int]:
    """Line numbers of the numeric constants of `source` equal to `value` (code only: f-string expressions count,
    strings and comments do not)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                  and isinstance(n.value, (int, float)) and not isinstance(n.value, bool) and n.value == value)


def sources():
    for pkg in SOURCES:
        for p in sorted((ROOT / pkg).rglob("*.py")):
            yield p.relative_to(ROOT).as_posix(), p


def test_the_scanner_sees_code_and_skips_prose():
    src = '"""16000 Hz."""\nSR = 16_000  # 16000\nhelp = "divides 16000"\nx = n / 16e3\ny = f"{a * 16000.0}"\n'
    assert numeric_literals(src, 16000) == [2, 4, 5]


def test_no_literal_sample_rate_outside_core_audio():
    found = [f"{name}:{line}" for name, p in sources() if name != SAMPLE_RATE_HOME
             for line in numeric_literals(p.read_text(), 16000)]
    assert not found, ("literal 16000 where vad_turn.core.audio.SAMPLE_RATE_HZ belongs (import it): "
                       + ", ".join(found))
