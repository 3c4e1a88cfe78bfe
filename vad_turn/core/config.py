"""Frozen experiment configs, the CLI generated from them, and run folders.

One frozen dataclass per experiment. `add_config_args` turns its fields into argparse
options (`--window-s`, booleans via BooleanOptionalAction, tuples via nargs), and
`config_from_args` builds the instance back. `RunFolder` writes `config.json`, the git
commit, split ids and `metrics.json` next to the results, each written atomically
(temporary file + rename), so an interrupted run never leaves a half-written file.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # vad_turn/
REPO_ROOT = PACKAGE_ROOT.parent
SHIPPED_MODELS_DIR = PACKAGE_ROOT / "models"  # the shipped models (package data)


def default_data_root() -> Path:
    """The folder holding the original corpora: $VAD_TURN_DATA_ROOT or ../shared/data."""
    env = os.environ.get("VAD_TURN_DATA_ROOT")
    return Path(env) if env else (REPO_ROOT.parent / "shared" / "data")


def default_built_root() -> Path:
    """Where built datasets go (git-ignored): $VAD_TURN_BUILT_ROOT or data/built."""
    env = os.environ.get("VAD_TURN_BUILT_ROOT")
    return Path(env) if env else (REPO_ROOT / "data" / "built")


def default_runs_root() -> Path:
    """Where run folders go (git-ignored): $VAD_TURN_RUNS_ROOT or runs/."""
    env = os.environ.get("VAD_TURN_RUNS_ROOT")
    return Path(env) if env else (REPO_ROOT / "runs")


# ----------------------------------------------------------------------------- CLI


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[field.name]


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def add_config_args(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one `--field-name` option per field of the frozen dataclass `cls`.

    Defaults come from the dataclass; the help text is the field's `metadata["help"]`.
    """
    for f in dataclasses.fields(cls):
        tp, optional = _strip_optional(_field_type(cls, f))
        name = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        # argparse %-formats help texts: a literal % (as in "lat@fcr<=10%") must be doubled
        helptext = (f.metadata.get("help", "") + f" (default: {default})").replace("%", "%%")
        origin = typing.get_origin(tp)
        if tp is bool:
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=helptext)
        elif origin in (tuple, list):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            conv = Path if inner is Path else inner
            parser.add_argument(name, nargs="*", type=conv, default=default, help=helptext)
        else:
            conv = Path if tp is Path else tp
            if optional:
                base = conv

                def conv(s: str, _b=base):  # noqa: E731 - "none" maps to None for optional fields
                    return None if s.lower() == "none" else _b(s)

            parser.add_argument(name, type=conv, default=default, help=helptext)


def require_range(name: str, values, lo: float, hi: float, *, lo_open: bool = False, allow_none: bool = False) -> None:
    """Check a config option (one value or a sequence) is finite and in [lo, hi] ((lo, hi] when lo_open);
    raises ValueError naming the option as its flag (`--action-delay-s: -0.1 is outside [0.0, 60.0]`).
    Config dataclasses call this in __post_init__, so a bad option fails before any work."""
    import math

    flag = "--" + name.replace("_", "-")
    if values is None and allow_none:
        return
    seq = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not seq:
        raise ValueError(f"{flag} needs at least one value")
    for v in seq:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            raise ValueError(f"{flag}: {v!r} is outside {'(' if lo_open else '['}{lo}, {hi}]")


def config_from_args(cls: type, args: argparse.Namespace):
    """Build `cls` from parsed args (lists become tuples so the config stays hashable)."""
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name)
        if isinstance(v, list):
            v = tuple(v)
        values[f.name] = v
    return cls(**values)


def config_main(cls: type, run: Any, argv: list[str] | None = None, description: str = "") -> int:
    """Entry point of a script driven by one config dataclass: parse `argv` into `cls`, call `run(cfg)`, return 0."""
    parser = argparse.ArgumentParser(description=description)
    add_config_args(parser, cls)
    run(config_from_args(cls, parser.parse_args(argv)))
    return 0


def config_to_dict(cfg: Any) -> dict:
    """JSON-ready dict of a config dataclass (paths become strings)."""

    def conv(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (tuple, list)):
            return [conv(x) for x in v]
        if dataclasses.is_dataclass(v):
            return {k: conv(x) for k, x in dataclasses.asdict(v).items()}
        return v

    return {f.name: conv(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


# ----------------------------------------------------------------------------- files












