"""The accuracy-first turn detector: the fused model and Smart Turn v3.2 mixed in logit space.

    p = sigmoid((1 - alpha) * logit(p_fused) + alpha * logit(p_smart_turn))

One number, `alpha`, chosen on dev data where both detectors ran on the same spans (`choose_alpha`: the largest
same-silence AUC on the grid, ties to the smaller alpha) and recorded with the choice in
`vad_turn/models/accuracy-first/accuracy_first.json` (with the variant's own operating points). One parameter because the real agent-directed dev sets hold a few
dozen holds: a regression on the two logits and their silence interactions, fitted k-fold on GetGoing dev + test
(`vad-turn kfold-fusion --extra-runs`), is reported beside it. It costs Smart Turn's CPU per decision (about
0.3 s on an AVX2-only EPYC core, 0.05 s on CPUs with VNNI) on top of the fused model's ~5 ms: for a user who pays
Smart Turn once per pause already (Pipecat).

`mixed_run` writes the mix of two finished `vad-turn evaluate` runs on the same spans as a run folder, so a
mix is measured without scoring Smart Turn again; `StackedDetector` ("fused+smart-turn") computes the same p
live (tests/test_kfold_fusion.py checks the two agree on real queries).

    python -m vad_turn.fusion.stacked choose --fused runs/gg-full-eval/dev-fused --smart-turn runs/gg-full-eval/dev-smart-turn
    python -m vad_turn.fusion.stacked mix --fused runs/gg-full-eval/test-fused --smart-turn runs/gg-full-eval/test-smart-turn \\
        --out runs/gg-full-eval/test-fused+smart-turn
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.core.model_files import SHIPPED_ACCURACY_FIRST_DIR, SHIPPED_TURN_DIR
from vad_turn.core.runs import atomic_write_json

from .runtime import logit, sigmoid

CHOICE_FILE = "accuracy_first.json"
ALPHA_GRID = tuple(round(0.1 * i, 1) for i in range(11))


def mix(p_fused: np.ndarray, p_smart_turn: np.ndarray, alpha: float) -> np.ndarray:
    """sigmoid((1 - alpha) logit(p_fused) + alpha logit(p_smart_turn)), float64; alpha in [0, 1]."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    return sigmoid((1.0 - alpha) * logit(p_fused) + alpha * logit(p_smart_turn))


def shipped_alpha(choice_dir: Path = SHIPPED_ACCURACY_FIRST_DIR) -> float:
    """The alpha recorded in `choice_dir`/accuracy_first.json; FileNotFoundError naming the command that writes it."""
    path = Path(choice_dir) / CHOICE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no accuracy-first choice; write it with `python -m vad_turn.fusion.stacked "
                                "choose --fused <dev run> --smart-turn <dev run> --model-out <folder>`")
    alpha = float(json.loads(path.read_text())["alpha"])
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{path}: alpha {alpha!r} is outside [0, 1]")
    return alpha


class StackedDetector:
    """"fused+smart-turn": the fused model and Smart Turn v3.2 mixed with the shipped alpha (module docstring).

    model: the turn model folder; alpha: default the one recorded in `choice_dir` (the shipped
    vad_turn/models/accuracy-first); threads: both models' onnxruntime threads."""

    needs_audio = True
    needs_words = True

    def __init__(self, model: str | Path = SHIPPED_TURN_DIR, alpha: float | str | None = None,
                 threads: int | str = 1, choice_dir: str | Path = SHIPPED_ACCURACY_FIRST_DIR,
                 name: str = "fused+smart-turn"):
        from vad_turn.peers.smart_turn import SmartTurnDetector

        from .detector import FusedDetector

        self.alpha = shipped_alpha(Path(choice_dir)) if alpha is None else float(alpha)
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.fused = FusedDetector(model, threads=threads)
        self.smart_turn = SmartTurnDetector(threads=threads)
        self.name = name

    def check_transcript_lag(self, lag_s: float) -> bool:
        return self.fused.check_transcript_lag(lag_s)

    def predict(self, audio, words, messages, silence_s: float) -> float:
        return float(mix(self.fused.predict(audio, words, messages, silence_s),
                         self.smart_turn.predict(audio, words, messages, silence_s), self.alpha))

    def predict_batch(self, queries: Sequence) -> np.ndarray:
        return mix(self.fused.predict_batch(queries), self.smart_turn.predict_batch(queries), self.alpha)


# ----------------------------------------------------------------------------- from finished runs


def _run_predictions(run: Path) -> tuple[dict, "pd.DataFrame"]:
    import pandas as pd

    for name in ("config.json", "predictions.parquet"):
        if not (Path(run) / name).is_file():
            raise ValueError(f"{run}: no {name} (not a finished `vad-turn evaluate` run)")
    return json.loads((Path(run) / "config.json").read_text()), pd.read_parquet(Path(run) / "predictions.parquet")


def paired_predictions(fused_run: Path, smart_turn_run: Path) -> tuple[dict, "pd.DataFrame", np.ndarray]:
    """(the fused run's config, its predictions, Smart Turn's p_eot on the same rows). Raises ValueError
    naming the runs when they did not score the same dataset and queries.

    Their split names (and turn samples) may differ when the queries are the same ones: a cross-fitted run of
    every call (`vad-turn crossfit-calls`, split 'none') beside runs of each split pooled ('train+dev+test')."""
    cf, pf = _run_predictions(fused_run)
    cs, ps = _run_predictions(smart_turn_run)
    for key in ("dataset", "grid_s", "transcript_lag_s"):
        if cf.get(key) != cs.get(key):
            raise ValueError(f"{fused_run} and {smart_turn_run} differ in {key} ({cf.get(key)!r} vs {cs.get(key)!r}): "
                             "not the same spans")
    same_sample = all(cf.get(k) == cs.get(k) for k in ("split", "max_turns", "seed"))
    keys = ["id", "span_index", "timestamp"]
    a = pf[keys].assign(timestamp=np.round(pf["timestamp"] * 1000).astype(np.int64))
    b = ps[keys].assign(timestamp=np.round(ps["timestamp"] * 1000).astype(np.int64), p=ps["p_eot"].to_numpy())
    m = a.merge(b, on=keys, how="left", validate="one_to_one")
    if m["p"].isna().any() or len(ps) != len(pf):
        why = "" if same_sample else (f" (their splits / samples differ: {cf.get('split')!r}, max_turns "
                                      f"{cf.get('max_turns')!r}, seed {cf.get('seed')!r} against {cs.get('split')!r}, "
                                      f"{cs.get('max_turns')!r}, {cs.get('seed')!r})")
        raise ValueError(f"{smart_turn_run} has {len(ps)} queries and {fused_run} {len(pf)}, "
                         f"{int(m['p'].isna().sum())} of the latter unmatched: not the same spans{why}")
    return cf, pf, m["p"].to_numpy(dtype=np.float64)


def choose_alpha(fused_run: Path, smart_turn_run: Path, grid: Sequence[float] = ALPHA_GRID) -> dict:
    """The alpha of `grid` with the largest same-silence AUC (silence <= 1 s, `metrics.same_silence_auc`) on the
    two runs' queries, ties to the smaller; the whole table (AUC, same-silence AUC per alpha) is returned too."""
    from vad_turn.harness.metrics import roc_auc, same_silence_auc

    cfg, pf, p_st = paired_predictions(fused_run, smart_turn_run)
    y, sil = pf["label"].to_numpy(), pf["silence_dur"].to_numpy()
    table = []
    for a in grid:
        p = mix(pf["p_eot"].to_numpy(), p_st, a)
        table.append({"alpha": float(a), "auc": roc_auc(y, p), "auc_same_silence": same_silence_auc(p, sil, y)})
    best = max(table, key=lambda r: (round(r["auc_same_silence"], 6), -r["alpha"]))
    return {"alpha": best["alpha"], "criterion": "max same-silence AUC (silence <= 1 s), ties to the smaller alpha",
            "chosen_on": {"fused": str(fused_run), "smart_turn": str(smart_turn_run), "dataset": cfg.get("dataset"),
                          "split": cfg.get("split"), "n_points": int(len(pf)), "n_turns": int(pf["id"].nunique())},
            "table": table}


def mixed_run(fused_run: Path, smart_turn_run: Path, alpha: float, out: Path, name: str = "fused+smart-turn") -> dict:
    """Write the mix of two finished runs on the same spans as a `vad-turn evaluate`-style run folder
    (detector `name`; any two runs mix the same way, e.g. the two branches in benchmarks/branch_average.py);
    returns its metrics."""
    from vad_turn.harness.evaluate import EvalConfig, write_scored_run

    cfg, pf, p_st = paired_predictions(fused_run, smart_turn_run)
    ecfg = EvalConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
                         if k in EvalConfig.__dataclass_fields__ and k not in ("detector", "detector_opts", "out")},
                      # a mix other than the registered "fused+smart-turn" is recorded as its first run's detector
                      # and what it was mixed with (no live detector computes it)
                      **({"detector": name, "detector_opts": (f"alpha={alpha:g}",)} if name == "fused+smart-turn" else
                         {"detector": cfg["detector"], "detector_opts": (f"alpha={alpha:g}", f"mixed_with={smart_turn_run}")}),
                      out=Path(out))
    preds = pf.assign(p_eot=mix(pf["p_eot"].to_numpy(), p_st, alpha))
    return write_scored_run(Path(out), ecfg, preds, name, cfg.get("split"),
                            extra_metrics={"mixed_from": {"fused": str(fused_run), "smart_turn": str(smart_turn_run),
                                                          "alpha": alpha}})

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vad_turn.fusion.stacked", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("choose", help="choose alpha on dev runs (and record it with --model-out)")
    m = sub.add_parser("mix", help="write the mix of two runs as a run folder")
    for p in (c, m):
        p.add_argument("--fused", type=Path, required=True, help="`vad-turn evaluate` run of the fused model")
        p.add_argument("--smart-turn", type=Path, required=True, help="run of smart-turn on the same spans")
    c.add_argument("--model-out", type=Path, default=None, help="turn model folder to record the choice in")
    m.add_argument("--alpha", type=float, default=None, help="default: the shipped choice")
    m.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "choose":
            rec = choose_alpha(a.fused, a.smart_turn)
            for r in rec["table"]:
                print(f"alpha {r['alpha']:.1f}: AUC {r['auc']:.3f}, same-silence AUC {r['auc_same_silence']:.3f}")
            print(f"chosen alpha {rec['alpha']}")
            if a.model_out is not None:
                atomic_write_json(Path(a.model_out) / CHOICE_FILE, rec)
        else:
            alpha = shipped_alpha() if a.alpha is None else a.alpha
            from vad_turn.harness.report import format_table

            print(format_table(mixed_run(a.fused, a.smart_turn, alpha, a.out)))
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
