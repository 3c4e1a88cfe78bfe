"""Fixed turn policies against VAD-only on each evaluated set apart, with paired bootstrap intervals by conversation.

The voice-agent point is chosen on the pooled agent-directed dev sets (`vad-turn pool-evaluations`); this script
reports what a few policies do on each set alone, dev and test, so a gain on the pool that is a loss on real
callers shows. For every `vad-turn evaluate` run folder given and every policy (the shipped voice-agent point,
plus any "thr/delay/timeout" given), on the run's own turns:

- the policy's and VAD-only's (at `--vad-stop-s`) cut-off counts, false cut-off rate, mean / median / P90
  latency (the harness's definitions, `vad_turn.harness.metrics.policy_outcome`), and the turns with a pause
  after a filler that each cuts (pause_context "filler");
- the paired bootstrap 95% interval of (policy - VAD-only) in false cut-off rate (points) and mean latency
  (seconds): conversations (GetGoing calls, agent-text dialogues) resampled with replacement, both sides on
  the same draws. The policies are fixed, not re-optimised per resample: these are the numbers of a policy
  a user runs.

    python benchmarks/voice_agent_point.py --runs runs/eval-fused-getgoing-dev-lag0.7 \\
        runs/eval-fused-agent-holds-utt-dev-lag0.7 runs/eval-fused-getgoing-test-lag0.7 \\
        --policies 0.98/0/0.6 0.5/0/1.5 --json runs/voice-agent-point.json
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.config import config_main, config_to_dict
from vad_turn.core.runs import atomic_write_json
from vad_turn.harness import metrics as M
from vad_turn.harness.operating_points import VOICE_AGENT_POINT, VOICE_AGENT_VAD_STOP_S, shipped_policy
from vad_turn.harness.ratio_bootstrap import conversation_of, paired_interval


def parse_policy(text: str) -> tuple[float, float, float]:
    """"thr/delay/timeout" -> floats; a clear error for anything else."""
    parts = text.split("/")
    try:
        thr, delay, timeout = (float(x) for x in parts)
    except ValueError:
        raise ValueError(f"--policies: {text!r} is not threshold/action_delay_s/timeout_s (e.g. 0.5/0.6/1.5)") from None
    if not (0.0 <= thr <= 1.0 and 0.0 <= delay <= timeout):
        raise ValueError(f"--policies: {text!r} needs 0 <= threshold <= 1 and 0 <= action delay <= timeout")
    return thr, delay, timeout


def turn_outcomes(table: M.SpanTable, p: np.ndarray, policy: tuple[float, float, float]) -> dict:
    """Per turn: cut (bool), latency_s, filler_cut (a pause after a filler cut inside the turn)."""
    out = M.policy_outcome(table, p, *policy)
    filler = np.zeros(table.n_turns, bool)
    if "pause_context" in table.span_tags.columns:
        hold_f = ~table.is_end & (table.span_tags["pause_context"].to_numpy() == "filler")
        filler[np.unique(table.span_turn[hold_f & out.hold_cut])] = True
    return {"cut": out.turn_cut.astype(bool), "latency_s": np.asarray(out.latency_s, float), "filler_cut": filler}


def summarize(o: dict) -> dict:
    lat = o["latency_s"]
    return {"n_cutoff": int(o["cut"].sum()), "false_cutoff_rate": float(o["cut"].mean()),
            "mean_latency_s": float(lat.mean()), "median_latency_s": float(np.median(lat)),
            "p90_latency_s": float(np.percentile(lat, 90)), "n_filler_cut": int(o["filler_cut"].sum())}


def read_set(spec: str) -> tuple[dict, pd.DataFrame]:
    """One set: a run folder, or several joined by '+' (e.g. the folds of a cross-fit, each scored by its own
    model) whose predictions are concatenated; they must share the grid and hold distinct turns."""
    runs = [Path(r) for r in str(spec).split("+")]
    cfgs = [json.loads((r / "config.json").read_text()) for r in runs]
    if len({(c["grid_s"], tuple(c["timeouts_s"]), c.get("transcript_lag_s")) for c in cfgs}) > 1:
        raise ValueError(f"{spec}: the runs differ in grid, timeouts or transcript lag")
    parts = [pd.read_parquet(r / "predictions.parquet") for r in runs]
    preds = pd.concat(parts, ignore_index=True)
    if preds["id"].nunique() != sum(x["id"].nunique() for x in parts):
        raise ValueError(f"{spec}: the runs share turn ids")
    return cfgs[0], preds


def evaluate_run(run: str | Path, policies: dict[str, tuple[float, float, float]], vad_stop_s: float,
                 n_resamples: int, seed: int) -> dict:
    cfg, preds = read_set(str(run))
    table = M.build_span_table(preds, cfg["grid_s"])
    p = preds["p_eot"].to_numpy(dtype=np.float64)[table.order]
    conv = np.array([conversation_of(t) for t in table.turns["id"]])
    vad = turn_outcomes(table, np.ones_like(p), (1.0, vad_stop_s, max(cfg["timeouts_s"])))
    row = {"run": str(run), "dataset": cfg.get("dataset"), "split": cfg.get("split"), "detector": cfg.get("detector"),
           "transcript_lag_s": cfg.get("transcript_lag_s"), "n_turns": table.n_turns,
           "n_conversations": int(len(np.unique(conv))), "n_hold_turns": int(np.unique(table.span_turn[~table.is_end]).size),
           "vad_only": {"stop_silence_s": vad_stop_s, **summarize(vad)}, "policies": {}}
    for name, pol in policies.items():
        o = turn_outcomes(table, p, pol)
        row["policies"][name] = {
            "threshold": pol[0], "action_delay_s": pol[1], "timeout_s": pol[2], **summarize(o),
            "fcr_minus_vad_pt": 100 * float(o["cut"].mean() - vad["cut"].mean()),
            "fcr_minus_vad_pt_ci95": [100 * x for x in paired_interval(conv, o["cut"] * 1.0 - vad["cut"], n_resamples, seed)],
            "latency_minus_vad_s": float(o["latency_s"].mean() - vad["latency_s"].mean()),
            "latency_minus_vad_s_ci95": paired_interval(conv, o["latency_s"] - vad["latency_s"], n_resamples, seed)}
    return row


@dataclass(frozen=True)
class VoiceAgentPointConfig:
    runs: tuple[str, ...] = field(default=(), metadata={
        "help": "finished `vad-turn evaluate` run folders, one set each; RUN+RUN+... makes one set of several "
                "(a cross-fit's folds)"})
    policies: tuple[str, ...] = field(default=(), metadata={
        "help": "more policies, each threshold/action_delay_s/timeout_s (e.g. 0.98/0/0.6)"})
    shipped: bool = field(default=True, metadata={"help": "report the shipped voice-agent point too"})
    vad_stop_s: float = field(default=VOICE_AGENT_VAD_STOP_S, metadata={"help": "VAD-only's stop silence"})
    n_resamples: int = field(default=2000, metadata={"help": "conversation resamples of each interval"})
    seed: int = field(default=0, metadata={"help": "seed of the resamples"})
    json: Path | None = field(default=None, metadata={"help": "write the results (and this config) here"})

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("--runs needs at least one `vad-turn evaluate` run folder")
        for run in (r for spec in self.runs for r in str(spec).split("+")):
            for name in ("config.json", "predictions.parquet"):
                if not (Path(run) / name).is_file():
                    raise ValueError(f"--runs: {run}: no {name} (not a finished `vad-turn evaluate` run)")
        for text in self.policies:
            parse_policy(text)
        if not self.shipped and not self.policies:
            raise ValueError("no policy to report (--no-shipped and no --policies)")
        if self.n_resamples < 1:
            raise ValueError(f"--n-resamples must be >= 1, got {self.n_resamples}")


def run(cfg: VoiceAgentPointConfig) -> dict:
    """Print one block per run and return (and write to `cfg.json`) the results."""
    policies = {t: parse_policy(t) for t in cfg.policies}
    if cfg.shipped:
        sp = shipped_policy("fused", None, profile="voice-agent")
        policies = {f"shipped {VOICE_AGENT_POINT}": (sp["threshold"], sp["action_delay_s"], sp["timeout_s"]), **policies}
    out = {"config": config_to_dict(cfg),
           "runs": [evaluate_run(r, policies, cfg.vad_stop_s, cfg.n_resamples, cfg.seed) for r in cfg.runs]}
    for r in out["runs"]:
        v = r["vad_only"]
        print(f"{r['run']}: {r['n_turns']} turns, {r['n_conversations']} conversations, {r['n_hold_turns']} with a pause; "
              f"VAD-only {v['stop_silence_s']:g} s: {v['n_cutoff']} cut ({v['n_filler_cut']} after a filler), "
              f"{v['mean_latency_s']:.3f} s")
        for name, x in r["policies"].items():
            lo, hi = x["fcr_minus_vad_pt_ci95"]
            llo, lhi = x["latency_minus_vad_s_ci95"]
            print(f"  {name}: {x['n_cutoff']} cut ({x['n_filler_cut']} after a filler), FCR {x['fcr_minus_vad_pt']:+.1f} pt "
                  f"[{lo:+.1f}, {hi:+.1f}], mean latency {x['mean_latency_s']:.3f} s ({x['latency_minus_vad_s']:+.3f} "
                  f"[{llo:+.3f}, {lhi:+.3f}])")
    if cfg.json:
        atomic_write_json(cfg.json, out)
    return out


def main(argv: list[str] | None = None) -> int:
    return config_main(VoiceAgentPointConfig, run, argv, __doc__.split("\n")[0],
                       prog="python benchmarks/voice_agent_point.py")


if __name__ == "__main__":
    raise SystemExit(main())
