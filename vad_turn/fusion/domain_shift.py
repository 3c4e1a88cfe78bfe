"""A new domain's words, simulated on real calls: every cross-fitted call scored again with a lexical branch that
never read the corpus, and the fusion chosen to hold up under it.

Every user's agent is a new domain for the lexical branch, and on held-out real task-oriented calls from outside
GetGoing the shipped fusion trailed its own acoustic branch (issue 26). The GetGoing k-fold cannot show that: its
lexical branches read the other folds' GetGoing transcripts, so on a held-out call they still know the domain.
Here the domain is taken away from the words only:

1. a lexical branch trained with the shipped recipe minus the GetGoing transcripts (`UNSEEN_LEXICAL_RECIPE`:
   Switchboard + the agent-text corpora), or any given `lexical_dir`;
2. its logits on every call of the cross-fit's dataset, words as they are visible `transcript_lag_s` after they
   end (audio dropped: the acoustic logits stay the cross-fit's, out of fold);
3. each row's fusion applied to them as the cross-fit applied it to the in-domain words (train calls: their
   fold's fitted fusion; dev and test calls: the shipped one);
4. the branch average (`average.average_weights`: lexical share w, acoustic 1 - w, no timing terms) with w
   chosen on the dev calls: the largest of min(same-silence AUC with the in-domain words, with the unseen-domain
   words), ties to the smaller w. So the choice does not give up the unseen domain for the seen one.

Run folders over every call (split "none", as `crossfit-calls` writes them), for `benchmarks/paired_operating_points.py`
beside the cross-fit's own `fused`, `acoustic` and `lexical`:
- `fused-unseen`: the fitted fusion recipe over the unseen-domain words;
- `lexical-unseen`: the unseen-domain lexical branch (0.5 before a word is visible, as the cross-fit's `lexical`);
- `average` and `average-unseen`: the branch average at the chosen w over the in-domain and unseen-domain words
  (and `average-w<W>`, `average-w<W>-unseen` at each `report_w`).
The words table is cached (`words_cache`: by lexical model and lag); metrics.json holds the choice table and each split's
same-silence AUC per run.

The product adds one constraint (`constrained_choice`, `python -m vad_turn.fusion.domain_shift`): of the w whose
voice-agent dev pool (`vad-turn pool-evaluations`, words 0.7 s late) was measured, the best by that criterion among
those that cut off no more pauses after a filler than the shipped default does at its VAD-matched point.

    vad-turn domain-shift --crossfit runs/crossfit-gg-ac --out runs/domain-shift-gg
    python -m vad_turn.fusion.domain_shift --domain-shift runs/domain-shift-gg --pool 0.1=runs/eval-avgw0.1-voice-agent-dev \
        --pool 0.2=runs/eval-avgw0.2-voice-agent-dev --reference runs/eval-fused-v2-voice-agent-dev \
        --out runs/domain-shift-gg/default-choice.json
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.runs import RunFolder, atomic_path

from .crossfit import DEV_TEST_FUSION, LEXICAL_RECIPE

KEYS = ["turn_id", "span_index", "timestamp"]
# the shipped lexical recipe without the corpus's transcripts (crossfit.LEXICAL_RECIPE reads them as extra datasets)
UNSEEN_LEXICAL_RECIPE = {k: v for k, v in LEXICAL_RECIPE.items() if k != "extra_repeat"}
W_GRID = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class DomainShiftConfig:
    crossfit: Path | None = field(default=None, metadata={"help": "a finished `vad-turn crossfit-calls` run folder"})
    lexical_dir: Path | None = field(default=None, metadata={
        "help": "lexical model folder that never read the corpus (default: trained into OUT/lexical with the shipped "
                "recipe minus the corpus's transcripts)"})
    dev_test_fusion: Path | None = field(default=None, metadata={
        "help": "the fusion.json that scored the cross-fit's dev and test calls (default: the one the cross-fit saved, "
                "else its shipped model's as it is now)"})
    w_grid: tuple[float, ...] = field(default=W_GRID, metadata={"help": "lexical shares of the branch average tried"})
    report_w: tuple[float, ...] = field(default=(), metadata={
        "help": "also write the average runs at these lexical shares (e.g. the product's constrained choice), as "
                "average-w<W> and average-w<W>-unseen"})
    out: Path | None = field(default=None, metadata={"help": "run folder"})

    def __post_init__(self) -> None:
        if self.crossfit is None or self.out is None:
            raise ValueError("--crossfit and --out are required")
        for name, grid in (("--w-grid", self.w_grid), ("--report-w", self.report_w)):
            if (name == "--w-grid" and not grid) or any(not 0.0 <= float(w) <= 1.0 for w in grid):
                raise ValueError(f"{name}: lexical shares in [0, 1], got {grid!r}")


class _WordsOnly:
    """`Branches` with the audio dropped: only the lexical logits are computed."""

    def __init__(self, branches):
        self.branches = branches

    def logits(self, items):
        return self.branches.logits([(None, words, messages, s) for _audio, words, messages, s in items])


def words_table(ds_path: Path, lexical_dir: Path, transcript_lag_s: float, splits=("train", "dev", "test")) -> pd.DataFrame:
    """Every grid point of `splits` with `lexical_dir`'s logit (lex_logit, has_lex) on the words visible
    `transcript_lag_s` after they end, keyed by turn_id, span_index, timestamp."""
    from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR
    from vad_turn.data.dataset import load_turns

    from .runtime import Branches
    from .train import _acoustic_window_s, branch_table

    ds = load_turns(ds_path)
    branches = _WordsOnly(Branches(Path(lexical_dir), SHIPPED_ACOUSTIC_DIR / "model.onnx",
                                   _acoustic_window_s(SHIPPED_ACOUSTIC_DIR)))
    present = set(ds["split"])
    frames = [branch_table(ds, s, branches, max_turns=None, points_per_span=None, seed=0, desc=f"words {s}",
                           transcript_lag_s=transcript_lag_s) for s in splits if s in present]
    return pd.concat(frames, ignore_index=True)[KEYS + ["lex_logit", "has_lex"]]


def words_cache(out: Path, lexical_dir: Path, transcript_lag_s: float) -> Path:
    """Where `run` keeps `words_table`'s result: named by the lexical model folder and the lag, so another model or
    lag under the same --out is scored again, not read from the old file."""
    import hashlib

    key = hashlib.sha1(f"{Path(lexical_dir).resolve()}|{float(transcript_lag_s):g}".encode()).hexdigest()[:10]
    return Path(out) / f"unseen-words-{key}.parquet"


def swap_lexical(parts: list[tuple[pd.DataFrame, dict]], unseen: pd.DataFrame) -> pd.DataFrame:
    """The cross-fit's scored tables (each with the fusion.json that scored it) with the unseen-domain words
    added: lex_unseen, p_fused_unseen (the same fusion over them) and p_lexical_unseen. Every row must find its
    words, with the same visibility (has_lex), or this raises naming the first missing query; a fusion that does
    not give the table's own p_fused on its own logits (e.g. the shipped model re-shipped since) raises too."""
    from .runtime import fused_logits, sigmoid

    u = unseen.rename(columns={"lex_logit": "lex_unseen", "has_lex": "has_lex_unseen"})
    out = []
    for table, meta in parts:
        w = np.asarray(meta["weights"], dtype=np.float64)
        if "p_fused" in table and len(table):
            own = sigmoid(fused_logits(table, w) / float(meta["temperature"]))
            if not np.allclose(own, table["p_fused"].to_numpy(), atol=1e-6):
                raise ValueError(f"the fusion given for the rows of {table['turn_id'].iloc[0]} does not reproduce their "
                                 "p_fused: not the fusion that scored them (re-shipped since? pass --dev-test-fusion)")
        t = table.merge(u, on=KEYS, how="left", validate="one_to_one")
        bad = (t["lex_unseen"].isna() & t["has_lex"]) | (t["has_lex_unseen"].fillna(False).astype(bool)
                                                         != t["has_lex"].astype(bool))
        if bad.any():
            r = t[bad].iloc[0]
            raise ValueError(f"query {r['turn_id']} span {r['span_index']} at {r['timestamp']:.3f} s: the unseen-domain "
                             "words table lacks it or sees other words (same dataset and transcript lag?)")
        z = fused_logits(t.assign(lex_logit=t["lex_unseen"].fillna(0.0)), w) / float(meta["temperature"])
        t["p_fused_unseen"] = sigmoid(z)
        t["p_lexical_unseen"] = np.where(t["has_lex"], sigmoid(t["lex_unseen"].fillna(0.0)), 0.5)
        out.append(t.drop(columns=["has_lex_unseen"]))
    return pd.concat(out, ignore_index=True)


def average_p(table: pd.DataFrame, w: float, timing_row, lexical_column: str = "lex_logit") -> np.ndarray:
    """p_eot of the branch average with lexical share `w` over `lexical_column`'s logits (acoustic alone where no
    word is visible, as the fitted fusions)."""
    from .average import average_weights
    from .runtime import fused_logits, sigmoid

    t = table if lexical_column == "lex_logit" else table.assign(lex_logit=table[lexical_column].fillna(0.0))
    return sigmoid(fused_logits(t, average_weights(w, timing_row)))


def choose_w(dev: pd.DataFrame, timing_row, grid=W_GRID) -> dict:
    """The w of `grid` whose smaller dev same-silence AUC (in-domain words, unseen-domain words) is the largest,
    ties to the smaller w; with the whole table."""
    from vad_turn.harness.metrics import same_silence_auc

    y, sil = dev["label"].to_numpy(), dev["silence_s"].to_numpy()
    table = []
    for w in grid:
        seen = same_silence_auc(average_p(dev, w, timing_row), sil, y)
        unseen = same_silence_auc(average_p(dev, w, timing_row, "lex_unseen"), sil, y)
        table.append({"w": float(w), "auc_same_silence_in_domain": seen, "auc_same_silence_unseen": unseen,
                      "worse_of_the_two": min(seen, unseen)})
    best = max(table, key=lambda r: (round(r["worse_of_the_two"], 6), -r["w"]))
    return {"w": best["w"], "criterion": "max over w of min(in-domain, unseen-domain) same-silence AUC on the dev "
                                         "calls (silence <= 1 s), ties to the smaller w",
            "n_dev_turns": int(dev["turn_id"].nunique()), "table": table}


def _train_unseen_lexical(ccfg: dict, out: Path) -> Path:
    from vad_turn.lexical.config import LexicalConfig
    from vad_turn.lexical.train import run as train_lexical

    model = out / "lexical" / "model"
    if not (model / "lexical_head.onnx").exists():
        train_lexical(LexicalConfig(dataset=Path(ccfg["lexical_dataset"]), extra_datasets=(), out=out / "lexical",
                                    **{**UNSEEN_LEXICAL_RECIPE, "max_turns": ccfg["lexical_max_turns"]}))
    return model


def _crossfit_parts(src: Path, ccfg: dict, dev_test_fusion: Path | None = None) -> list[tuple[pd.DataFrame, dict]]:
    """(scored table, the fusion.json that scored it) of every fold and of dev and test, as `crossfit.assemble`
    put them together."""
    parts = []
    for j in range(int(ccfg["k"])):
        p = src / f"fold{j}" / "heldout-scored.parquet"
        if not p.exists():
            raise ValueError(f"{src}: fold {j} is not scored yet ({p})")
        meta = json.loads((src / f"fold{j}" / "fusion" / "model" / "fusion.json").read_text())
        parts.append((pd.read_parquet(p).assign(split="train"), meta))
    path = dev_test_fusion or (src / DEV_TEST_FUSION if (src / DEV_TEST_FUSION).exists()
                               else Path(ccfg["shipped_model"]) / "fusion.json")
    shipped = json.loads(Path(path).read_text())
    for s in ("dev", "test"):
        parts.append((pd.read_parquet(src / f"{s}-shipped-scored.parquet").assign(split=s), shipped))
    return parts


def run(cfg: DomainShiftConfig) -> dict:
    """Score the unseen-domain words, choose w on dev, write the run folders (module docstring)."""
    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.evaluate import EvalConfig, write_scored_run
    from vad_turn.harness.metrics import same_silence_auc

    from .kfold import predictions_frame
    from .runtime import MODES

    src, out = Path(cfg.crossfit), Path(cfg.out)
    if not (src / "config.json").is_file():
        raise ValueError(f"{src}: no config.json (not a `vad-turn crossfit-calls` run folder)")
    ccfg = json.loads((src / "config.json").read_text())
    RunFolder(out, cfg)
    lexical_dir = Path(cfg.lexical_dir) if cfg.lexical_dir is not None else _train_unseen_lexical(ccfg, out)
    parts = _crossfit_parts(src, ccfg, cfg.dev_test_fusion)
    lag_s = {float(m["transcript_lag_s"]) for _, m in parts}
    if len(lag_s) != 1:
        raise ValueError(f"{src}: its fusions were fitted with different transcript lags {sorted(lag_s)}")
    lag = lag_s.pop()
    cache = words_cache(out, lexical_dir, lag)
    if not cache.exists():
        words = words_table(Path(ccfg["dataset"]), lexical_dir, lag)
        with atomic_path(cache) as tmp:
            words.to_parquet(tmp, index=False)
    table = swap_lexical(parts, pd.read_parquet(cache))
    timing_row = np.asarray(parts[-1][1]["weights"], dtype=np.float64)[MODES.index("timing")]
    choice = choose_w(table[table["split"] == "dev"], timing_row, cfg.w_grid)
    w = choice["w"]
    # run name -> (p_eot, the branch average's lexical share or None)
    cols = {"fused-unseen": (table["p_fused_unseen"].to_numpy(), None),
            "lexical-unseen": (table["p_lexical_unseen"].to_numpy(), None),
            "average": (average_p(table, w, timing_row), w),
            "average-unseen": (average_p(table, w, timing_row, "lex_unseen"), w)}
    for v in cfg.report_w:
        cols[f"average-w{v:g}"] = (average_p(table, v, timing_row), v)
        cols[f"average-w{v:g}-unseen"] = (average_p(table, v, timing_row, "lex_unseen"), v)
    ds = load_turns(Path(ccfg["dataset"]))
    y, sil = table["label"].to_numpy(), table["silence_s"].to_numpy()
    aucs = {}
    scored = {**{n: p for n, (p, _) in cols.items()}, "fused": table["p_fused"].to_numpy(),
              "acoustic": table["p_acoustic"].to_numpy()}
    for name, p in scored.items():
        aucs[name] = {s: same_silence_auc(p[m], sil[m], y[m]) for s in ("train", "dev", "test")
                      for m in [(table["split"] == s).to_numpy()]}
    for name, (p, share) in cols.items():
        detector = "lexical" if name.startswith("lexical") else "fused"
        opts = (f"crossfit={ccfg['k']}", f"domain-shift={name}", *((f"w={share:g}",) if share is not None else ()))
        ecfg = EvalConfig(dataset=Path(ccfg["dataset"]), split="none", detector=detector, detector_opts=opts,
                          out=out / name)
        write_scored_run(out / name, ecfg, predictions_frame(table, p), f"{name}-domain-shift", "all",
                         span_rows=ds.select_columns(["silence_spans"]))
    metrics = {"crossfit": str(src), "lexical_dir": str(lexical_dir), "choice": choice,
               "same_silence_auc_by_split": aucs, "runs": {n: str(out / n) for n in cols},
               "n_turns": int(table["turn_id"].nunique()), "n_calls": int(table["conversation"].nunique())}
    RunFolder(out).write_metrics(metrics)
    print(json.dumps({"w": w, "choice": choice["table"], "same_silence_auc_by_split": aucs}, indent=1))
    return metrics


# ----------------------------------------------------------------------------- the product's constraint on w

# The VAD-matched point of `pool-evaluations`, the shipped voice-agent point when v3's w was chosen (matched on the
# pool only then: `pool-evaluations --no-match-each-run` reproduces docs/domain-shift-choice.json's pools). The
# point shipped since is VOICE_AGENT_POINT (vad_turn/harness/pool.py says why).
FILLER_POINT = "lat@fcr<=vad-0.6s"


def filler_cutoffs(pool_run: Path) -> dict:
    """The VAD-matched point of a `vad-turn pool-evaluations` run: its policy, FCR and mean latency, and the
    turns with a pause after a filler it cuts off (metrics.json's pause_context slice), against VAD-only's."""
    m = json.loads((Path(pool_run) / "metrics.json").read_text())
    point = next((o for o in m["operating_points"] if o["name"] == FILLER_POINT), None)
    sl = next((s for s in m.get("slices", []) if s["slice"] == "pause_context" and s["value"] == "filler"
               and s["operating_point"] == FILLER_POINT), None)
    if point is None or sl is None:
        raise ValueError(f"{pool_run}: no {FILLER_POINT} point with a filler slice (a `vad-turn pool-evaluations` run?)")
    return {"run": str(pool_run), "threshold": point["threshold"], "action_delay_s": point["action_delay_s"],
            "timeout_s": point["timeout_s"], "false_cutoff_rate": point["false_cutoff_rate"],
            "mean_latency_s": point["mean_latency_s"], "filler_turns": sl["n_turns"], "filler_cutoffs": sl["n_cutoff"],
            "vad_only_filler_cutoffs": sl["vad_only_n_cutoff"]}


def constrained_choice(choice: dict, pools: dict[float, Path], reference: Path) -> dict:
    """Of the w in `pools` (w -> its voice-agent dev pool run), the one with the best worse-domain AUC in
    `choice["table"]` (`choose_w`) whose pool cuts off no more filler pauses than `reference`'s (the shipped
    default's pool run) at the VAD-matched point: the product's promise to hold a hesitation. Raises when none
    qualifies."""
    ref = filler_cutoffs(reference)
    auc = {r["w"]: r["worse_of_the_two"] for r in choice["table"]}
    rows = []
    for w, run in sorted(pools.items()):
        if float(w) not in auc:
            raise ValueError(f"w {w} is not in the choice table (grid {sorted(auc)})")
        f = filler_cutoffs(run)
        rows.append({"w": float(w), "worse_of_the_two": auc[float(w)], **f,
                     "holds_the_promise": f["filler_cutoffs"] <= ref["filler_cutoffs"]})
    ok = [r for r in rows if r["holds_the_promise"]]
    if not ok:
        raise ValueError(f"no w of {sorted(pools)} cuts off at most {ref['filler_cutoffs']} filler pauses, as {reference} does")
    best = max(ok, key=lambda r: (round(r["worse_of_the_two"], 6), -r["w"]))
    return {"w": best["w"], "criterion": choice["criterion"] + "; among the w whose voice-agent dev pool cuts off no "
                                                               "more filler pauses than the reference's at the VAD-matched point",
            "reference": ref, "candidates": rows, "dev_choice": choice}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from vad_turn.core.runs import atomic_write_json

    ap = argparse.ArgumentParser(prog="python -m vad_turn.fusion.domain_shift",
                                 description="w under the product's filler constraint (`constrained_choice`)")
    ap.add_argument("--domain-shift", type=Path, required=True, help="a finished `vad-turn domain-shift` run folder")
    ap.add_argument("--pool", action="append", default=[], metavar="W=RUN", required=True,
                    help="a voice-agent dev pool run of the branch average at lexical share W (repeatable)")
    ap.add_argument("--reference", type=Path, required=True, help="the shipped default's voice-agent dev pool run")
    ap.add_argument("--out", type=Path, required=True, help="write the record here (JSON)")
    a = ap.parse_args(argv)
    try:
        pools = {float(k): Path(v) for k, v in (p.split("=", 1) for p in a.pool)}
        choice = json.loads((a.domain_shift / "metrics.json").read_text())["choice"]
        rec = constrained_choice(choice, pools, a.reference)
    except (ValueError, OSError, KeyError) as e:
        ap.error(str(e))
    rec["domain_shift"] = str(a.domain_shift)
    atomic_write_json(a.out, rec)
    for r in rec["candidates"]:
        print(f"w {r['w']}: worse-domain AUC {r['worse_of_the_two']:.3f}, {100 * r['false_cutoff_rate']:.1f}% at "
              f"{r['mean_latency_s']:.2f} s, filler pauses cut {r['filler_cutoffs']}/{r['filler_turns']} "
              f"(reference {rec['reference']['filler_cutoffs']})")
    print(f"chosen w {rec['w']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
