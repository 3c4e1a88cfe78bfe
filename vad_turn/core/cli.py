"""The command lines generated from config dataclasses: one subcommand per experiment.

`dispatch(commands, prog)` builds an argparse parser whose subcommands map to (module, config
class, run function, help); each module is imported to generate the options from its config
dataclass (modules load no model or data at import). `vad-turn`, `prosody` and `pipeline` all
go through it, so every entry point checks its options the same way and fails with one line.
"""
from __future__ import annotations

import argparse
import importlib

from .config import add_config_args, build_config, run_config


def build_parser(commands: dict[str, tuple[str, str, str, str]], prog: str,
                 description: str = "") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (mod, cls_name, _, helptext) in commands.items():
        p = sub.add_parser(name, help=helptext, description=helptext)
        p.set_defaults(_entry=(mod, cls_name))
        try:
            cls = getattr(importlib.import_module(mod), cls_name)
        except (ImportError, AttributeError) as e:  # a module that fails to import must say so, not vanish
            p.set_defaults(_import_error=f"{mod}.{cls_name}: {e}")
            continue
        add_config_args(p, cls)
    return parser


def dispatch(commands: dict[str, tuple[str, str, str, str]], prog: str, argv: list[str] | None = None,
             description: str = "") -> int:
    """Parse `argv` against the command table, build the subcommand's config (a bad option: one `error:` line,
    exit 2, before any work) and run it (`vad_turn.core.config.run_config`); returns the exit status."""
    parser = build_parser(commands, prog, description)
    args = parser.parse_args(argv)
    if getattr(args, "_import_error", None):
        parser.error(f"cannot load {args.command}: {args._import_error}")
    mod, cls_name, run_name, _ = commands[args.command]
    module = importlib.import_module(mod)
    # every option is checked by the config's __post_init__ before any work: one line naming it, exit 2
    cfg = build_config(f"{prog} {args.command}", getattr(module, cls_name), args)
    return run_config(f"{prog} {args.command}", getattr(module, run_name), cfg)
