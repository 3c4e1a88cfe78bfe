"""Named constants, not retyped literals (issue 25).

The audio sample rate is `vad_turn.core.audio.SAMPLE_RATE_HZ`: no numeric literal worth 16000 (16000, 16_000, 16000.0, 16e3, ...) in the package sources or the
benchmark scripts outside core/audio.py, which defines it. Only code counts: strings and comments are not
scanned (the syntax tree's numeric constants are), so docstrings, help texts and comments may say "16 kHz" or "16000".

Settings with one home (`NAMED_DEFAULTS`): a parameter or config field of one of these names takes its default from
the named constant, never from a number typed beside it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("vad_turn", "pipeline", "prosody", "benchmarks")
SAMPLE_RATE_HOME = "vad_turn/core/audio.py"
# parameter / field name -> the constant its default must be
NAMED_DEFAULTS = {
    "min_silence_s": "vad_turn.core.schema.MIN_SILENCE_S",
    "min_silence_span": "vad_turn.core.schema.MIN_SILENCE_S",  # the eot-bench adapter's name for it
    "grid_s": "vad_turn.harness.query.QUERY_GRID_S",
    "inference_interval": "vad_turn.harness.query.QUERY_GRID_S",  # the eot-bench adapter's name for it
    "latency_budgets_s": "vad_turn.harness.metrics.LATENCY_BUDGETS_S",
    "false_cutoff_budgets": "vad_turn.harness.metrics.FALSE_CUTOFF_BUDGETS",
    "transcript_lag_s": "vad_turn.core.schema.DEFAULT_TRANSCRIPT_LAG_S",
    "transcript_lag": "vad_turn.core.schema.DEFAULT_TRANSCRIPT_LAG_S",  # the eot-bench adapter's name for it
}


def numeric_literals(source: str, value: float) -> list[int]:
    """Line numbers of the numeric constants of `source` equal to `value` (code only: f-string expressions count,
    strings and comments do not)."""
    return sorted(n.lineno for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant)
                  and isinstance(n.value, (int, float)) and not isinstance(n.value, bool) and n.value == value)


def _is_literal(node: ast.AST | None) -> bool:
    """A number, or a tuple / list of numbers, typed in place."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return bool(node.elts) and all(_is_literal(e) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool)


def literal_defaults(source: str, names) -> list[tuple[int, str]]:
    """(line, name) of each parameter default and dataclass field default (`x: T = v`, `field(default=v)`) of one of
    `names` that is a number typed in place."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
            out += [(d.lineno, arg.arg) for arg, d in pairs if arg.arg in names and _is_literal(d)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id in names:
            v = node.value
            if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "field":
                v = next((k.value for k in v.keywords if k.arg == "default"), None)
            if _is_literal(v):
                out.append((node.lineno, node.target.id))
    return sorted(out)


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


def test_the_defaults_scanner_sees_parameters_and_fields():
    src = ("def f(a, grid_s=0.1, *, min_silence_s=MIN_SILENCE_S, b=(0.1,)): ...\n"
           "class C:\n    min_silence_s: float = 0.1\n    grid_s: float = field(default=0.2, metadata={})\n"
           "    min_silence_span: float = field(default_factory=list)\n")
    assert literal_defaults(src, ("grid_s", "min_silence_s", "min_silence_span")) == [
        (1, "grid_s"), (3, "min_silence_s"), (4, "grid_s")]


def test_settings_with_one_home_are_not_retyped():
    found = [f"{name}:{line} {arg} (use {NAMED_DEFAULTS[arg]})" for name, p in sources()
             for line, arg in literal_defaults(p.read_text(), NAMED_DEFAULTS)]
    assert not found, "defaults typed beside their named constant: " + ", ".join(found)
