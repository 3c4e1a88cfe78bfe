"""Frozen experiment configs and the CLI generated from them.

One frozen dataclass per experiment. `add_config_args` turns its fields into argparse options
(`--window-s`, booleans via BooleanOptionalAction, tuples via nargs, nested configs as dotted
options such as `--model.features.window-s`), and `config_from_args` builds the instance back;
`config_main` is the entry point of a one-command script, `vad_turn.core.cli.dispatch` of a
command table. `config_to_dict` / `config_from_dict` are the config.json form, which run folders
(`vad_turn.core.runs.RunFolder`) write next to the results.
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


def without_server_paths(text: str) -> str:
    """`text` with this machine's folders taken out, for what is shown or committed (run reports and configs
    record absolute paths): the repository's become repository-relative, the corpora's root `$VAD_TURN_DATA_ROOT`."""
    for root, name in ((default_data_root(), "$VAD_TURN_DATA_ROOT"), (REPO_ROOT, "")):
        for form in dict.fromkeys((str(root), str(Path(root).resolve()))):
            text = text.replace(form + "/", f"{name}/" if name else "").replace(form, name or ".")
    return text


def default_built_root() -> Path:
    """Where built datasets go (git-ignored): $VAD_TURN_BUILT_ROOT or data/built."""
    env = os.environ.get("VAD_TURN_BUILT_ROOT")
    return Path(env) if env else (REPO_ROOT / "data" / "built")


def default_runs_root() -> Path:
    """Where run folders go (git-ignored): $VAD_TURN_RUNS_ROOT or runs/."""
    env = os.environ.get("VAD_TURN_RUNS_ROOT")
    return Path(env) if env else (REPO_ROOT / "runs")


# ----------------------------------------------------------------------------- CLI
#
# Field metadata read here: "help" (every field has one; `--help` shows it), "choices" (the allowed values),
# "positional" (an argument without a flag, as in `setup_check write-lock RESOLVED MODELS`). A field without
# a default is a required option. A tuple field takes several values (`--sets a b`), and a repeated flag
# adds to them (`--branch-run a=x --branch-run b=y`).
#
# Nested configs: a field whose type is itself a config dataclass holds that config, and its fields become
# options named by their dotted path, at any depth: AcousticTrainConfig.model.features.window_s is
# `--model.features.window-s` (a boolean: `--model.x` / `--no-model.x`). The nested config's defaults are
# those of its parent's default instance. config.json holds the nested dict (`config_to_dict`);
# `config_from_dict` reads it back, and also reads the flat form a config had before it was nested.
#
# Flattened nested configs: a nested config field with metadata "flatten": True keeps its own flag names, without
# the dotted prefix: `policy: TurnPolicy = field(default_factory=TurnPolicy, metadata={"help": ..., "flatten":
# True})` gives `--threshold`, `--action-delay-s`, `--timeout-s` (not `--policy.threshold`), so a setting declared
# once in its own config keeps the command lines it had when it was fields of each parent. Its flag names must not
# collide with the parent's (refused when the parser is built). Its errors are not prefixed with a section (its
# messages already name its flags); config.json still holds it nested ("policy": {...}).
#
# Errors: every ValueError / TypeError a config raises while it is built from the command line (its __post_init__,
# a nested config's, the port rule below) ends as ONE line, `<prog>: error: <message>`, exit status 2, no
# traceback and no usage text (`config_error`). A message that starts with a field's name ("mode must be ...")
# gets that field's flag ("--mode must be ..."), so every such line names its option.
#
# Ports: an int field named `port` or ending in `_port` is a TCP port, checked here for every config: 0..65535
# (0: any free port).


def is_config_class(tp: Any) -> bool:
    """Whether `tp` is a config dataclass (a field of that type is a nested config)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def option_name(path: str) -> str:
    """The flag of a field path: "epochs" -> "--epochs", "model.features.window_s" -> "--model.features.window-s"."""
    return "--" + path.replace("_", "-")


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return tp, False


def _field_default(f: dataclasses.Field) -> Any:
    """The field's default value (a default_factory is called), or dataclasses.MISSING for a required field."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def _converter(tp: Any, optional: bool):
    conv = Path if tp is Path else tp
    if not optional:
        return conv

    def none_or(s: str, _b=conv):  # "none" maps to None for optional fields
        return None if s.lower() == "none" else _b(s)

    none_or.__name__ = getattr(conv, "__name__", "value")  # argparse names it in "invalid float value: 'x'"
    return none_or


class _TupleAction(argparse.Action):
    """A tuple option: `--x a b` gives (a, b); a repeated flag adds to what it gave before (`--x a --x b`)."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_tuple_options_given", set())
        before = list(getattr(namespace, self.dest)) if self.dest in given else []
        given.add(self.dest)
        setattr(namespace, self.dest, before + list(values))


def is_flattened(f: dataclasses.Field) -> bool:
    """Whether the nested config field `f` gives its options without its dotted prefix (metadata "flatten")."""
    return bool(f.metadata.get("flatten"))


def add_config_args(parser: argparse.ArgumentParser, cls: type, *, prefix: str = "", defaults: Any = None,
                    _group: Any = None, _flag_prefix: str | None = None) -> None:
    """Add one option per field of the frozen dataclass `cls`: `--field-name`, or `--prefix.field-name` for the
    fields of a nested config, or `--field-name` again for those of a flattened one (see the notes above).

    Defaults come from the dataclass (inside a nested config: from `defaults`, its parent's default instance);
    the help text is the field's `metadata["help"]`; each nested config gets its own section in `--help`.
    The options' destinations are the fields' dotted paths (`config_from_args` reads them back).
    """
    target = _group if _group is not None else parser
    flag_prefix = prefix if _flag_prefix is None else _flag_prefix
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, optional = _strip_optional(hints[f.name])
        default = getattr(defaults, f.name) if defaults is not None else _field_default(f)
        path, flag_path = prefix + f.name, flag_prefix + f.name
        helptext = f.metadata.get("help", "")
        if is_config_class(tp):
            flat = is_flattened(f)
            title = (f"{tp.__name__} ({option_name(path)}, flattened)" if flat
                     else f"{option_name(flag_path)}.* ({tp.__name__})")
            group = parser.add_argument_group(title, helptext.replace("%", "%%"))
            try:
                add_config_args(parser, tp, prefix=path + ".", _group=group, _flag_prefix=flag_prefix if flat
                                else flag_path + ".", defaults=None if default is dataclasses.MISSING else default)
            except argparse.ArgumentError as e:
                raise TypeError(f"{cls.__name__}.{f.name}: the flattened {tp.__name__}'s options collide with "
                                f"others ({e})") from e
            continue
        required = default is dataclasses.MISSING
        # argparse %-formats help texts: a literal % (as in "lat@fcr<=10%") must be doubled
        kw: dict[str, Any] = {"help": (helptext + ("" if required else f" (default: {default})")).replace("%", "%%")}
        if "choices" in f.metadata:
            kw["choices"] = list(f.metadata["choices"])
        positional = bool(f.metadata.get("positional"))
        if positional:
            names = [path]
        else:
            names, kw["dest"] = [option_name(flag_path)], path
            if tp is not bool and "choices" not in kw:
                kw["metavar"] = f.name.upper()
            if required:
                kw["required"] = True
        if not required:
            kw["default"] = default
        origin = typing.get_origin(tp)
        if tp is bool:
            target.add_argument(*names, action=argparse.BooleanOptionalAction, **kw)
        elif origin in (tuple, list):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            conv = Path if inner is Path else inner
            if positional:
                target.add_argument(*names, nargs="+" if required else "*", type=conv, **kw)
            else:
                target.add_argument(*names, nargs="*", type=conv, action=_TupleAction, **kw)
        else:
            if positional and not required:
                kw["nargs"] = "?"
            target.add_argument(*names, type=_converter(tp, optional), **kw)


def require_range(name: str, values, lo: float, hi: float, *, lo_open: bool = False, allow_none: bool = False) -> None:
    """Check a config option (one value or a sequence) is finite and in [lo, hi] ((lo, hi] when lo_open);
    raises ValueError naming the option as its flag (`--action-delay-s: -0.1 is outside [0.0, 60.0]`).
    Config dataclasses call this in __post_init__, so a bad option fails before any work."""
    import math

    flag = option_name(name)
    if values is None and allow_none:
        return
    seq = tuple(values) if isinstance(values, (tuple, list)) else (values,)
    if not seq:
        raise ValueError(f"{flag} needs at least one value")
    for v in seq:
        ok = isinstance(v, (int, float)) and math.isfinite(v) and (v > lo if lo_open else v >= lo) and v <= hi
        if not ok:
            raise ValueError(f"{flag}: {v!r} is outside {'(' if lo_open else '['}{lo}, {hi}]")


def _nested(cls: type, path: str, build, *, flat: bool = False):
    """build() -> the nested config at `path`; its own checks' errors name the options' section (not for a
    flattened config: its flags are its own field names, which its messages name already)."""
    try:
        return build()
    except (ValueError, TypeError) as e:
        if getattr(e, "config_path", None):  # already named by a deeper nested config
            raise
        if flat:  # named as its own flags; a dotted config around it still adds its section
            e.config_class = cls  # type: ignore[attr-defined]
            raise
        err = (TypeError if isinstance(e, TypeError) else ValueError)(f"{option_name(path)}.*: {e}")
        err.config_path = path  # type: ignore[attr-defined]
        raise err from e


PORT_RANGE = (0, 65_535)


def _is_port_field(name: str, tp: Any) -> bool:
    return tp is int and (name == "port" or name.endswith("_port"))


def check_port(name: str, value: Any) -> None:
    """A TCP port option: an int in 0..65535 (0: any free port); ValueError naming its flag."""
    lo, hi = PORT_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{option_name(name)} {value!r} is not a port: it must be an integer in {lo}..{hi}")


def config_from_args(cls: type, args: argparse.Namespace, *, prefix: str = "", _flag_prefix: str | None = None):
    """Build `cls` from parsed args, nested configs included (lists become tuples so the config stays hashable).
    Ports are checked (`check_port`) before the config's own __post_init__."""
    flag_prefix = prefix if _flag_prefix is None else _flag_prefix
    values = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _strip_optional(hints[f.name])
        path = prefix + f.name
        if is_config_class(tp):
            flat = is_flattened(f)
            sub_flags = flag_prefix if flat else flag_prefix + f.name + "."
            values[f.name] = _nested(tp, path, lambda tp=tp, path=path, sub_flags=sub_flags: config_from_args(
                tp, args, prefix=path + ".", _flag_prefix=sub_flags), flat=flat)
            continue
        v = getattr(args, path)
        if isinstance(v, list):
            v = tuple(v)
        if _is_port_field(f.name, tp) and v is not None:
            check_port(flag_prefix + f.name, v)
        values[f.name] = v
    return cls(**values)


def _flag_names(cls: type, flag_prefix: str = "") -> list[str]:
    """The field names of `cls` as its options call them (dotted for nested configs, plain for flattened ones)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp, _ = _strip_optional(hints[f.name])
        if is_config_class(tp):
            out += _flag_names(tp, flag_prefix if is_flattened(f) else flag_prefix + f.name + ".")
        else:
            out.append(flag_prefix + f.name)
    return out


def name_flag(cls: type, message: str) -> str:
    """`message` with a leading field name ("mode must be ...", "threshold: 2 is ...", "x is ...", "x needs ...",
    "x cannot ...", "x=...") written as its flag ("--mode must be ..."), so the error names the option; unchanged
    when it names one already or starts otherwise."""
    if message.startswith("--"):
        return message
    for name in sorted(_flag_names(cls), key=len, reverse=True):
        for sep in (":", "=", " must ", " is ", " needs ", " cannot "):
            if message.startswith(name + sep):
                return option_name(name) + message[len(name):]
    return message


def config_error(prog: str, message: str) -> typing.NoReturn:
    """Print ONE line, `<prog>: error: <message>` (its first line only), to stderr and exit with status 2."""
    import sys

    first = str(message).strip().splitlines()[0] if str(message).strip() else "invalid option"
    print(f"{prog}: error: {first}", file=sys.stderr)
    raise SystemExit(2)


def build_config(prog: str, cls: type, args: argparse.Namespace):
    """`config_from_args(cls, args)`; a ValueError / TypeError it raises (the config's checks) is one line naming
    the option and exit status 2 (`config_error`)."""
    try:
        return config_from_args(cls, args)
    except (ValueError, TypeError) as e:
        if os.environ.get("VAD_TURN_TRACEBACK"):
            raise
        config_error(prog, name_flag(getattr(e, "config_class", cls), str(e)))


def run_config(prog: str, run: Any, cfg: Any) -> int:
    """`run(cfg)` for a command line: bad input (a missing file, no turns selected, ...) is one `error:` line
    naming it and exit status 2 (VAD_TURN_TRACEBACK=1 re-raises); an int result is the exit status, else 0."""
    try:
        result = run(cfg)
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as e:
        if os.environ.get("VAD_TURN_TRACEBACK"):
            raise
        import sys

        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def config_main(cls: type, run: Any, argv: list[str] | None = None, description: str = "",
                prog: str | None = None) -> int:
    """Entry point of a script driven by one config dataclass: parse `argv` into `cls` (a bad option is one
    `error:` line, exit 2, before any work), then `run_config(prog, run, cfg)`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_args(parser, cls)
    args = parser.parse_args(argv)
    return run_config(parser.prog, run, build_config(parser.prog, cls, args))


def config_to_dict(cfg: Any) -> dict:
    """JSON-ready dict of a config dataclass (paths become strings, nested configs nested dicts)."""
    return {f.name: json_ready(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def config_to_flat_dict(cfg: Any) -> dict:
    """`config_to_dict` with every nested config's fields at the top level: the form a config had before it was
    nested (e.g. an acoustic model folder's "model" section). Field names must be unique across the levels."""
    out: dict = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        items = config_to_flat_dict(v) if dataclasses.is_dataclass(v) and not isinstance(v, type) else {f.name: v}
        for k, x in items.items():
            if k in out:
                raise ValueError(f"{type(cfg).__name__}: field {k!r} appears twice when flattened")
            out[k] = x
    return json_ready(out)


def json_ready(v: Any) -> Any:
    """Paths as strings, tuples as lists, configs as dicts, recursively (what json.dumps accepts)."""
    if isinstance(v, Path):
        return str(v)
    if isinstance(v, (tuple, list)):
        return [json_ready(x) for x in v]
    if isinstance(v, dict):
        return {k: json_ready(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return config_to_dict(v)
    return v


def _field_names(cls: type) -> set[str]:
    """Every init field name of `cls` and of its nested configs, at any depth."""
    hints = typing.get_type_hints(cls)
    names = set()
    for f in dataclasses.fields(cls):
        if f.init:
            tp, _ = _strip_optional(hints[f.name])
            names |= _field_names(tp) if is_config_class(tp) else {f.name}
    return names


def _coerce(v: Any, tp: Any) -> Any:
    tp, _ = _strip_optional(tp)
    if v is None:
        return None
    if typing.get_origin(tp) in (tuple, list) and isinstance(v, (list, tuple)):
        inner = typing.get_args(tp)[0] if typing.get_args(tp) else Any
        return tuple(_coerce(x, inner) for x in v)
    if tp is Path and isinstance(v, str):
        return Path(v)
    if tp is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def config_from_dict(cls: type, data: dict, *, ignore_unknown: bool = False, _where: str = ""):
    """`cls` from its `config_to_dict` form (e.g. a run folder's config.json): lists become tuples, strings Paths
    where the field is a Path, nested dicts nested configs; a missing field keeps its default.

    Also reads the flat form a config had before it was nested: the fields of a nested config found at the top
    level (an old AcousticTrainConfig's `window_s` is now `model.features.window_s`). A key no field takes raises
    ValueError naming it, unless `ignore_unknown` (a config.json's "type" key is always ignored)."""
    hints = typing.get_type_hints(cls)
    fs = [f for f in dataclasses.fields(cls) if f.init]
    own = {f.name for f in fs}
    pool = {k: v for k, v in data.items() if k not in own}  # candidates for nested configs written flat
    used: set[str] = set(own & set(data))
    kwargs = {}
    for f in fs:
        tp, _ = _strip_optional(hints[f.name])
        path = _where + f.name
        if is_config_class(tp):
            sub = data.get(f.name)
            if not isinstance(sub, dict):  # the flat form: this config's fields (at any depth) at the top level
                names = _field_names(tp)
                sub = {k: v for k, v in pool.items() if k in names}
                used |= set(sub)
                if not sub and f.name not in data:
                    continue
            kwargs[f.name] = _nested(tp, path, lambda tp=tp, sub=sub, path=path: config_from_dict(
                tp, sub, ignore_unknown=ignore_unknown, _where=path + "."))
        elif f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name])
    unknown = sorted(set(data) - used - {"type"})
    if unknown and not ignore_unknown:
        raise ValueError(f"{cls.__name__}: no field {', '.join(repr(_where + k) for k in unknown)}")
    return cls(**kwargs)


def config_options(cfg: Any, base: Any = None, *, skip: tuple[str, ...] = ()) -> list[str]:
    """The command-line options that turn `base` (default: `type(cfg)()`) into `cfg`, in field order: one per
    field whose value differs, nested ones by their dotted path (`--model.features.window-s 2.0`, `--no-export`,
    `--sets a b`, `--max-turns none`). `skip`: field paths left out (e.g. "out")."""
    base = type(cfg)() if base is None else base
    out = []
    for f in dataclasses.fields(cfg):
        if not f.init or f.name in skip:
            continue
        v, b = getattr(cfg, f.name), getattr(base, f.name)
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            inner = tuple(s.partition(".")[2] for s in skip if s.startswith(f.name + "."))
            if is_flattened(f):  # its options keep their own names
                out += config_options(v, b, skip=inner)
                continue
            pre = f.name.replace("_", "-") + "."
            out += [o.replace("--no-", "--no-" + pre, 1) if o.startswith("--no-") else o.replace("--", "--" + pre, 1)
                    for o in config_options(v, b, skip=inner)]
            continue
        if json_ready(v) == json_ready(b):
            continue
        flag = option_name(f.name)
        if f.metadata.get("positional"):
            out.append(" ".join(map(str, json_ready(v) if isinstance(v, (tuple, list)) else [json_ready(v)])))
        elif isinstance(v, bool):
            out.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, (tuple, list)):
            out.append(" ".join([flag, *map(str, json_ready(v))]))
        else:
            out.append(f"{flag} {'none' if v is None else json_ready(v)}")
    return out
