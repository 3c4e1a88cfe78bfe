"""Does the demo show what the bench measures? The same audio through the demo and through the bench, side by side.

For each input (the demo's scripted samples, and real GetGoing callers when a GetGoing build is there), the
demo's `session.compare` (the page's code path: both panes, one after the other by default, or `--panes "at
once"`, models lent by the demo's pool) and the bench's `e2e.run_scenario_async` (one fresh pipeline per
scenario, `e2e.pipeline_config` of the bench's default config and policy, models loaded by the bench's own
`runner.load_models`, with the demo's prompt, opener and voice) play the same scenario in real time,
alternating, `--repeats` times each. The two paths' turn policies are compared as objects (`same_policy`):
both come from the shipped voice-agent operating point. Reported per pane and input: the
median end-of-speech -> first agent audio (e2e) of each, and their ratio (demo / bench; the target is <= 1.3),
plus the endpoint latency and the verdicts. Medians over repeats measured in one run on one machine.

    python benchmarks/demo_vs_bench.py --repeats 3 --out runs/demo-vs-bench.json
    python benchmarks/demo_vs_bench.py --panes "at once"   # what the panes do to each other when they share the CPU
"""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from vad_turn.core.config import config_main  # noqa: E402
from vad_turn.core.runs import atomic_write_json  # noqa: E402


@dataclass(frozen=True)
class DemoVsBenchConfig:
    out: Path = field(default=Path("runs/demo-vs-bench.json"), metadata={"help": "JSON report"})
    repeats: int = field(default=3, metadata={"help": "runs of each input through each path (alternating)"})
    samples: tuple[str, ...] = field(default=("hesitation", "backchannel"), metadata={"help": "demo samples to play"})
    n_callers: int = field(default=2, metadata={"help": "GetGoing test turns to play too (when a build is there)"})
    panes: str = field(default="one after the other", metadata={"help": "the demo's pane mode"})

    def __post_init__(self) -> None:
        if self.repeats < 1 or self.n_callers < 0:
            raise ValueError("--repeats must be >= 1 and --n-callers >= 0")


def _med(xs):
    v = [x for x in xs if x is not None]
    return None if not v else float(np.median(v))


def run(cfg: DemoVsBenchConfig) -> dict:
    import dataclasses

    from pipeline.bench.e2e import BenchConfig, bench_policy, pipeline_config, run_scenario_async
    from pipeline.serving.demo.samples import getgoing_samples, sample_scenario
    from pipeline.serving.demo.session import PANES, DemoSettings, compare, pane_config
    from pipeline.runtime.runner import load_models, make_turn_detector

    s = DemoSettings(panes=cfg.panes)
    bench = BenchConfig(max_new_tokens=s.max_new_tokens)
    det = make_turn_detector(s.detectors)
    policy = bench_policy(bench, det[1])
    bench_cfgs = {pane: dataclasses.replace(
        pipeline_config(bench, "streaming-semantic" if pane == "semantic" else "streaming-vad", policy),
        system_prompt=s.system_prompt, reply_opener=s.reply_opener, voice=s.voice, detectors=s.detectors)
        for pane in PANES}
    same_policy = {pane: bench_cfgs[pane].turn_policy(det[1]) == pane_config(s, pane).turn_policy(det[1])
                   for pane in PANES}
    bench_models = {pane: load_models(bench_cfgs[pane], detector=det) for pane in PANES}  # the bench's own
    inputs = {name: sample_scenario(name) for name in cfg.samples}
    inputs |= dict(list(getgoing_samples().items())[:cfg.n_callers])
    per = {(label, pane, path): [] for label in inputs for pane in PANES for path in ("demo", "bench")}
    t0 = time.perf_counter()
    for k in range(cfg.repeats):
        for label, sc in inputs.items():
            for pane, r in compare(sc, s).items():
                per[(label, pane, "demo")].append(r.rows[0] if r.rows else {})
            for pane in PANES:
                rows = asyncio.run(run_scenario_async(bench_cfgs[pane], bench_models[pane], sc, hear_s=None))
                per[(label, pane, "bench")].append(rows[0] if rows else {})
            print(f"repeat {k + 1}/{cfg.repeats}: {label} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    table = []
    for label in inputs:
        for pane in PANES:
            d, b = per[(label, pane, "demo")], per[(label, pane, "bench")]
            e_d, e_b = _med([r.get("e2e_s") for r in d]), _med([r.get("e2e_s") for r in b])
            table.append({"input": label, "pane": pane, "n": len(d),
                          "demo_e2e_p50_s": e_d, "bench_e2e_p50_s": e_b,
                          "ratio_demo_over_bench": (e_d / e_b) if e_d is not None and e_b not in (None, 0.0) else None,
                          "demo_endpoint_p50_s": _med([r.get("endpoint_s") for r in d]),
                          "bench_endpoint_p50_s": _med([r.get("endpoint_s") for r in b]),
                          "demo_processing_p50_s": _med([r.get("processing_s") for r in d]),
                          "bench_processing_p50_s": _med([r.get("processing_s") for r in b]),
                          "demo_cutoffs": [r.get("cutoff") for r in d], "bench_cutoffs": [r.get("cutoff") for r in b]})
    report = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
              "settings": {"panes": s.panes, "detectors": list(s.detectors), "reply_opener": s.reply_opener,
                           "policy": dataclasses.asdict(s.policy)},
              "same_policy": same_policy, "bench_policy_source": policy,
              "rows": table, "wall_s": round(time.perf_counter() - t0, 1), "cpu_count": os.cpu_count()}
    atomic_write_json(cfg.out, report)
    print(f"{'input':42s} {'pane':9s} {'demo e2e':>9s} {'bench e2e':>9s} {'ratio':>6s}  cut-offs demo / bench")
    for r in table:
        f = (lambda x: "-" if x is None else f"{1000 * x:.0f} ms")
        ratio = "-" if r["ratio_demo_over_bench"] is None else f"{r['ratio_demo_over_bench']:.2f}"
        print(f"{r['input'][:42]:42s} {r['pane']:9s} {f(r['demo_e2e_p50_s']):>9s} {f(r['bench_e2e_p50_s']):>9s} "
              f"{ratio:>6s}  {r['demo_cutoffs']} / {r['bench_cutoffs']}")
    print(f"wrote {cfg.out}")
    return report


if __name__ == "__main__":
    raise SystemExit(config_main(DemoVsBenchConfig, lambda c: (run(c), 0)[1], prog="demo_vs_bench"))
