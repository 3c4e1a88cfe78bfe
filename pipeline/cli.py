"""`pipeline` command line: `pipeline run` (one file, per-turn timeline), `pipeline bench` and the others of COMMANDS.

    pipeline run --turn semantic --input call.wav
    pipeline bench --n-conversation-turns 8
    pipeline plot-bench --run runs/pipeline-bench-quiet3
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from vad_turn.core.cli import dispatch

from .runtime.runner import PipelineConfig


@dataclass(frozen=True)
class RunConfig(PipelineConfig):
    input: Path = field(default=Path("input.wav"), metadata={"help": "audio file played in real time (any rate, mono/stereo)"})
    tail_s: float = field(default=3.0, metadata={"help": "silence played after the file"})


def timeline(result: dict) -> str:
    """One line per agent response: times in seconds from the start of the input stream."""
    t0 = result["start_s"]

    def f(x):
        return "     -" if x is None else f"{x - t0:6.2f}"

    head = f"{'turn':>4} {'user_stop':>9} {'stt_final':>9} {'eot':>6} {'1st_tok':>7} {'1st_tts':>7} {'played':>6}  " \
           f"{'stopped':>7}  transcript -> reply"
    lines = [head]
    for r in result["records"]:
        lines.append(f"{r['response_id']:>4} {f(r['user_stopped']):>9} {f(r['stt_final']):>9} {f(r['eot'])} "
                     f"{f(r['first_token']):>7} {f(r['first_tts']):>7} {f(r['first_played'])}  {f(r['stopped']):>7}  "
                     f"{r['text']!r} -> {r['reply']!r}" + (f" [{r['interrupt_reason']}]" if r["interrupt_reason"] else ""))
    for _, text in result["log"]:
        lines.append(f"  log: {text}")
    return "\n".join(lines)


def run(cfg: RunConfig) -> int:
    import logging

    from .runtime.runner import load_models, read_input, run_audio

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    audio, rate = read_input(cfg.input)  # fails with the file name before any model loads
    models = load_models(cfg)
    print(f"turn strategy {cfg.turn} ({models.detector_name}), mode {cfg.mode}, STT {models.stt.name}, "
          f"LLM {models.llm.name}, voice {models.voice.id}; playing {cfg.input} in real time")
    result = run_audio(cfg, models, audio, rate, tail_s=cfg.tail_s)
    print(timeline(result))
    return 0


@dataclass(frozen=True)
class PlotBenchConfig:
    run: Path | None = field(default=None, metadata={
        "help": "pipeline bench run folder ('none': the newest runs/pipeline-bench-*)"})


def plot_bench(cfg: PlotBenchConfig) -> list[Path]:
    """Print a bench run's report (summarised from its turns.jsonl) and (re)write its figures (`bench.plots`)."""
    from .bench.e2e import report_md, summarize, summarize_sets
    from .bench.plots import latest_bench_run, read_bench_run, write_bench_figures

    run_dir = Path(cfg.run) if cfg.run is not None else latest_bench_run()
    rows, info = read_bench_run(run_dir)
    conf = info.get("confident_p_eot", 0.9)
    print(report_md(summarize(rows, confident_p_eot=conf), info, summarize_sets(rows, confident_p_eot=conf)))
    paths = write_bench_figures(run_dir, rows)
    print("wrote " + ", ".join(str(p) for p in paths))
    return paths


COMMANDS = {
    "run": ("pipeline.cli", "RunConfig", "run", "play an audio file through the pipeline, print the per-turn timeline"),
    "bench": ("pipeline.bench.e2e", "BenchConfig", "run", "end-to-end latency harness (JSON + Markdown report + figures)"),
    "plot-bench": ("pipeline.cli", "PlotBenchConfig", "plot_bench",
                   "a bench run's report and figures (latency_boxes.png, endpoint_processing.png), redrawn from turns.jsonl"),
    "llm-bench": ("pipeline.bench.llm", "LLMBenchConfig", "run",
                  "LLM TTFT / decode / first TTS chunk on the bench's turns: prefix cache, int8, clause cut"),
    "stt-wer": ("pipeline.bench.stt_eval", "SttEvalConfig", "run", "word error rate of the STT engines, rendered and real audio"),
    "demo": ("pipeline.serving.demo.app", "DemoConfig", "run", "Gradio demo: semantic vs VAD-only side by side (port 7860)"),
}


def main(argv: list[str] | None = None) -> int:
    return dispatch(COMMANDS, "pipeline", argv)


if __name__ == "__main__":
    sys.exit(main())
