"""Operating points of evaluation runs on all turns and re-optimised on short turns (<= 10 words).

The harness's slice rows keep the policy chosen on all turns; the voice-agent regime is the short
turn, so here each subset gets its own operating points (the harness's `compute_metrics` on the
subset of the run's grid predictions; VAD-only on the same subset). Ratios = detector / VAD-only.
The table also names each run's data set and transcript lag (words visible that long after they end).

    python benchmarks/lexical_slices.py runs/eval-switchboard-val-lexical runs/eval-... [--json out.json]
"""
from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vad_turn.core.config import config_from_dict, config_main
from vad_turn.core.runs import atomic_write_json
from vad_turn.harness.evaluate import EvalConfig, compute_metrics

SUBSETS = {"all": (1, 10**9), "1-10 words": (1, 10), "11-30 words": (11, 30), ">30 words": (31, 10**9)}


def run_config(run_dir: Path) -> EvalConfig:
    raw = json.loads((run_dir / "config.json").read_text())
    return dataclasses.replace(config_from_dict(EvalConfig, raw, ignore_unknown=True), out=None)


def subset_points(run_dir: Path) -> dict:
    """{subset: {operating point name: {fcr, mean_latency_s, vad_fcr, vad_mean_latency_s, ratio, n_turns}}}."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    name = json.loads((run_dir / "metrics.json").read_text())["detector"]
    opts = " ".join(cfg.detector_opts)
    out = {"detector": name + (f" ({opts})" if opts else ""), "run": str(run_dir), "dataset": Path(cfg.dataset).name,
           "transcript_lag_s": cfg.transcript_lag_s}
    for subset, (lo, hi) in SUBSETS.items():
        sub = preds[(preds["n_words"] >= lo) & (preds["n_words"] <= hi)]
        if sub.empty:
            continue
        m, _ = compute_metrics(sub, cfg, name)
        out[subset] = {"n_turns": m["counts"]["n_turns"], **{op["name"]: {
            "fcr": op.get("false_cutoff_rate"), "mean_latency_s": op.get("mean_latency_s"),
            "vad_fcr": op["vad_only"].get("false_cutoff_rate"), "vad_mean_latency_s": op["vad_only"].get("mean_latency_s"),
            "ratio": op["ratio_to_vad_only"]} for op in m["operating_points"]}}
    return out


def table(results: list[dict], points=("fcr@lat<=0.6s", "lat@fcr<=10%")) -> str:
    def f(x, pct=False):
        return "—" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.3f}")

    lines = ["| detector | data | lag s | subset | turns | " + " | ".join(f"{p} det / VAD / ratio" for p in points) + " |",
             "|---|---|---|---|---|" + "---|" * len(points)]
    for r in results:
        for subset in SUBSETS:
            if subset not in r:
                continue
            cells = []
            for p in points:
                o = r[subset][p]
                pct = p.startswith("fcr")
                det = o["fcr"] if pct else o["mean_latency_s"]
                vad = o["vad_fcr"] if pct else o["vad_mean_latency_s"]
                cells.append(f"{f(det, pct)} / {f(vad, pct)} / {f(o['ratio'])}")
            lines.append(f"| {r['detector']} | {r.get('dataset', '')} | {r.get('transcript_lag_s', '')} | {subset} | "
                         f"{r[subset]['n_turns']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@dataclass(frozen=True)
class SlicesConfig:
    runs: tuple[Path, ...] = field(metadata={"help": "evaluation run folders (vad-turn evaluate --out)", "positional": True})
    json: Path | None = field(default=None, metadata={"help": "also write the numbers here"})


def run(cfg: SlicesConfig) -> list[dict]:
    results = [subset_points(r) for r in cfg.runs]
    print(table(results))
    if cfg.json:
        atomic_write_json(cfg.json, results)
    return results


def main(argv: list[str] | None = None) -> int:
    return config_main(SlicesConfig, run, argv, __doc__.splitlines()[0], prog="python benchmarks/lexical_slices.py")


if __name__ == "__main__":
    sys.exit(main())
