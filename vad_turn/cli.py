"""`vad-turn` command line: one subcommand per experiment, its options generated from the config dataclass.

Each entry maps a subcommand to (module, config class, run function, help). Modules are imported
to generate the options from their config dataclass; they load no model or data at import.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from .config import add_config_args, config_from_args

COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "build-data": ("vad_turn.build", "BuildConfig", "run", "build turn-span datasets from the original corpora"),
    "build-getgoing": ("vad_turn.corpora.getgoing_build", "GetGoingConfig", "run", "build GetGoing turn spans (VAD + ASR + log alignment)"),
    "render": ("vad_turn.render", "RenderConfig", "run", "synthesize real turns with several TTS voices"),
    "vad-eval": ("vad_turn.vad_eval", "VadEvalConfig", "run", "frame-level VAD baselines on the TEN VAD test set"),
    "evaluate": ("vad_turn.evaluate", "EvalConfig", "run", "end-of-turn evaluation (causal scoring + policy sweep)"),
    "explore": ("vad_turn.explore", "ExploreConfig", "run", "pause-length distributions of holds vs ends of turn"),
    "train-acoustic": ("vad_turn.acoustic_train", "AcousticTrainConfig", "run",
                       "train the acoustic end-of-turn model (+ checked fp32/int8 ONNX export)"),
    "export-acoustic": ("vad_turn.acoustic_train", "ExportAcousticConfig", "export_run",
                        "re-export a saved acoustic model's fp32 + int8 ONNX (and int8 parity probe) from model.pt"),
    "train-lexical": ("vad_turn.lexical", "LexicalConfig", "run", "train the lexical end-of-turn GRU (+ ONNX export)"),
    "train-lexical-lr": ("vad_turn.lexical_baselines", "LogRegConfig", "run",
                         "train the logistic-regression floor (last six words + last word duration)"),
    "train-fusion": ("vad_turn.fusion", "FusionConfig", "run",
                     "fuse the lexical and acoustic branches with timing (+ temperature calibration)"),
    "agent-text": ("vad_turn.agent_text", "AgentTextConfig", "run",
                   "text detectors at every word boundary of user turns to task agents (DSTC2, SLURP, MultiWOZ, SGD)"),
    "headline": ("vad_turn.headline", "HeadlineConfig", "run", "build what is missing and print the headline table"),
}


def build_parser(commands: dict[str, tuple[str, str, str, str]], prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (mod, cls_name, _, helptext) in commands.items():
        p = sub.add_parser(name, help=helptext)
        p.set_defaults(_entry=(mod, cls_name))
        try:
            cls = getattr(importlib.import_module(mod), cls_name)
        except (ImportError, AttributeError) as e:  # a module that fails to import must say so, not vanish
            p.set_defaults(_import_error=f"{mod}.{cls_name}: {e}")
            continue
        add_config_args(p, cls)
    return parser


def dispatch(commands: dict[str, tuple[str, str, str, str]], prog: str, argv: list[str] | None = None) -> int:
    parser = build_parser(commands, prog)
    args = parser.parse_args(argv)
    if getattr(args, "_import_error", None):
        parser.error(f"cannot load {args.command}: {args._import_error}")
    mod, cls_name, run_name, _ = commands[args.command]
    module = importlib.import_module(mod)
    try:  # every option is checked by the config's __post_init__ before any work: one line, exit 2
        cfg = config_from_args(getattr(module, cls_name), args)
    except (ValueError, TypeError) as e:
        parser.error(f"{args.command}: {e}")
    try:
        result = getattr(module, run_name)(cfg)
    except (FileNotFoundError, NotADirectoryError, PermissionError, ValueError) as e:
        # bad input (a missing file, no turns selected, ...): one line naming it; VAD_TURN_TRACEBACK=1 re-raises
        if os.environ.get("VAD_TURN_TRACEBACK"):
            raise
        print(f"{prog} {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0 if result is None or not isinstance(result, int) else result


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, "vad-turn", argv)


if __name__ == "__main__":
    sys.exit(main())
