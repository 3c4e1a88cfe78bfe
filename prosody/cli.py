"""`prosody` command line: `prosody run`, its options generated from `ProsodyConfig`.

Uses the workbench's one CLI mechanism (`vad_turn.core.cli.dispatch`): modules load only when their
subcommand runs.
"""
from __future__ import annotations

import sys

from vad_turn.core.cli import dispatch

COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "run": ("prosody.experiment", "ProsodyConfig", "run",
            "prompt variants -> LLM replies -> TTS -> text and Praat measures vs real speech"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, "prosody", argv)


if __name__ == "__main__":
    sys.exit(main())
