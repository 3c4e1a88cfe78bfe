"""`vad-turn` command line: one subcommand per experiment, its options generated from the config dataclass.

Each entry maps a subcommand to (module, config class, run function, help). Modules are imported
to generate the options from their config dataclass; they load no model or data at import.
"""
from __future__ import annotations

import sys

from vad_turn.core.cli import dispatch

COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "build-data": ("vad_turn.data.build", "BuildConfig", "run", "build turn-span datasets from the original corpora"),
    "build-getgoing": ("vad_turn.data.corpora.getgoing_build", "GetGoingConfig", "run", "build GetGoing turn spans (VAD + ASR + log alignment)"),
    "fit-pause-model": ("vad_turn.data.pause_model", "FitPauseConfig", "run",
                        "fit where speakers pause inside a turn on real holds (GetGoing + Switchboard) into the agent-holds recipe"),
    "render": ("vad_turn.data.render", "RenderConfig", "run", "synthesize real turns with several TTS voices"),
    "vad-eval": ("vad_turn.harness.vad_eval", "VadEvalConfig", "run", "frame-level VAD baselines on the TEN VAD test set"),
    "evaluate": ("vad_turn.harness.evaluate", "EvalConfig", "run", "end-of-turn evaluation (causal scoring + policy sweep)"),
    "explore": ("vad_turn.data.explore", "ExploreConfig", "run", "pause-length distributions of holds vs ends of turn"),
    "train-acoustic": ("vad_turn.acoustic.train", "AcousticTrainConfig", "run",
                       "train the acoustic end-of-turn model (+ checked fp32/int8 ONNX export)"),
    "export-acoustic": ("vad_turn.acoustic.report", "ExportAcousticConfig", "export_run",
                        "re-export a saved acoustic model's fp32 + int8 ONNX (and int8 parity probe) from model.pt"),
    "train-lexical": ("vad_turn.lexical.train", "LexicalConfig", "run", "train the lexical end-of-turn GRU (+ ONNX export)"),
    "train-lexical-lr": ("vad_turn.lexical.baselines", "LogRegConfig", "run",
                         "train the logistic-regression floor (last six words + last word duration)"),
    "train-fusion": ("vad_turn.fusion.train", "FusionConfig", "run",
                     "fuse the lexical and acoustic branches with timing (+ temperature calibration)"),
    "kfold-fusion": ("vad_turn.fusion.kfold", "KFoldFusionConfig", "run",
                     "fit the fusion on real calls k-fold by call and score every call out of fold (+ stacked detectors)"),
    "crossfit-calls": ("vad_turn.fusion.crossfit", "CrossFitConfig", "run",
                       "retrain the turn model's corpus-fitted parts k-fold by call and score every call out of fold"),
    "refit-fusion-real": ("vad_turn.fusion.crossfit", "RefitConfig", "refit",
                          "fit the fusion on a crossfit run's real calls (out-of-fold lexical logits) and score them"),
    "domain-shift": ("vad_turn.fusion.domain_shift", "DomainShiftConfig", "run",
                     "score a crossfit run's calls with a lexical branch that never read the corpus; choose the fusion for it"),
    "agent-text": ("vad_turn.harness.agent_text", "AgentTextConfig", "run",
                   "text detectors at every word boundary of user turns to task agents (DSTC2, SLURP, MultiWOZ, SGD)"),
    "pool-evaluations": ("vad_turn.harness.pool", "PoolConfig", "pool",
                         "pool evaluation runs of one detector (e.g. GetGoing dev + agent-holds dev) into one sweep"),
    "ship-operating-points": ("vad_turn.harness.operating_points", "ShipOperatingPointsConfig", "ship",
                              "copy an evaluation run's operating points beside the shipped model they were evaluated for"),
    "publish-results": ("vad_turn.harness.results", "PublishResultsConfig", "publish",
                        "copy the headline and prosody runs' reports and plots to data/committed-results"),
    "headline": ("vad_turn.harness.headline", "HeadlineConfig", "run", "build what is missing and print the headline table"),
    "plot-pareto": ("vad_turn.harness.pareto_plot", "ParetoPlotConfig", "run",
                    "one figure of several detectors' Pareto frontiers per set, from evaluation run folders (notebook 03)"),
    "plot-training": ("vad_turn.harness.training_plot", "TrainingPlotConfig", "run",
                      "training curves and validation table of training run folders (notebook 02)"),
    "check-setup": ("vad_turn.core.setup_check", "CheckConfig", "run_check",
                    "the set-up self-check (as `python -m vad_turn.core.setup_check check`)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, "vad-turn", argv)


if __name__ == "__main__":
    sys.exit(main())
