"""The k-fold fusion on real calls (`vad_turn.fusion.kfold`): out-of-fold means out of fold, stacked inputs
line up with the queries they belong to, and the out-of-fold predictions are a harness predictions frame."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vad_turn.fusion.fit import conversation_folds, fit_cross_validated, stacked_logits
from vad_turn.fusion.kfold import KFoldFusionConfig, attach_extra, cross_fit, predictions_frame
from vad_turn.fusion.runtime import fused_logits


def _table(n_calls: int = 30, seed: int = 0, extra_signal: bool = False) -> pd.DataFrame:
    """A branch table of synthetic calls: 4 turns per call, a hold span and an end span per turn, grid points
    every 0.1 s. The lexical and acoustic logits carry a weak signal; with `extra_signal` a third input
    ("extra_logit") carries a strong one."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_calls):
        for t in range(4):
            for span, (label, n) in enumerate(((0, 4), (1, 10))):
                for g in range(n):
                    rows.append({"turn_id": f"call{c}-{t}", "conversation": f"call{c}", "span_index": span,
                                 "timestamp": 1.0 + span * 2 + 0.1 * g, "silence_s": 0.1 * g, "label": label,
                                 "span_dur": 0.4 if label == 0 else 3.0, "n_seen": 3, "n_words": 5,
                                 "audio_condition": "real", "pause_context": "none", "unit_punct": "",
                                 "source": "synthetic", "backchannel_context": False, "weight": 1.0})
    t = pd.DataFrame(rows)
    y = t["label"].to_numpy()
    t["lex_logit"] = 0.5 * (2 * y - 1) + rng.normal(0, 2.0, len(t))
    t["ac_logit"] = 0.5 * (2 * y - 1) + rng.normal(0, 2.0, len(t))
    t["has_lex"], t["has_ac"] = True, True
    if extra_signal:
        t["extra_logit"] = 3.0 * (2 * y - 1) + rng.normal(0, 1.0, len(t))
    return t


def _cfg(tmp_path, **kw) -> KFoldFusionConfig:
    return KFoldFusionConfig(dataset=tmp_path / "ds", out=tmp_path / "out", c_grid=(0.1, 1.0), **kw)


def test_a_folds_predictions_do_not_depend_on_its_own_labels(tmp_path):
    t = _table()
    cfg = _cfg(tmp_path, k=3, inner_k=3)
    p, folds = cross_fit(t, cfg)
    assert np.isfinite(p).all() and ((p > 0) & (p < 1)).all()
    assert sum(f["n_calls"] for f in folds) == 30 and sum(f["n_queries"] for f in folds) == len(t)
    # flip every label of the calls of fold 0: fold 0's predictions stay exactly the same, the others move
    f = conversation_folds(t["conversation"].to_numpy(), 3, 0)
    flipped = t.copy()
    flipped.loc[f == 0, "label"] = 1 - flipped.loc[f == 0, "label"]
    p2, _ = cross_fit(flipped, cfg)
    np.testing.assert_array_equal(p2[f == 0], p[f == 0])
    assert np.abs(p2[f != 0] - p[f != 0]).max() > 0.01


def test_a_stacked_input_that_carries_the_signal_gets_the_weight(tmp_path):
    t = _table(extra_signal=True)
    fit = fit_cross_validated(t, (0.1, 1.0), 3, extra=("extra_logit",))
    w_both = np.asarray(fit["weights"])[0]
    assert w_both.shape == (8 + 2,)
    assert w_both[8] > 3 * max(abs(w_both[1]), abs(w_both[2]))  # extra logit weight vs lexical / acoustic
    p_plain, _ = cross_fit(t, _cfg(tmp_path, k=3, inner_k=3))
    p_stacked, _ = cross_fit(t, _cfg(tmp_path, k=3, inner_k=3), extra=("extra_logit",))
    y = t["label"].to_numpy()
    from vad_turn.harness.metrics import roc_auc

    assert roc_auc(y, p_stacked) > 0.99 > roc_auc(y, p_plain) + 0.1


def test_without_extra_inputs_the_stacked_logit_is_the_runtime_fusion():
    t = _table(n_calls=6)
    w = np.random.default_rng(1).normal(size=(4, 8))
    np.testing.assert_allclose(stacked_logits(t, w), fused_logits(t, w), rtol=0, atol=1e-12)


def _eval_run(folder, table: pd.DataFrame, p: np.ndarray, detector: str = "smart-turn"):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"detector": detector}))
    pd.DataFrame({"id": table["turn_id"], "span_index": table["span_index"], "timestamp": table["timestamp"],
                  "p_eot": p}).to_parquet(folder / "predictions.parquet")


def test_extra_runs_line_up_by_turn_span_and_time_and_missing_queries_are_named(tmp_path):
    t = _table(n_calls=4)
    p = np.random.default_rng(2).uniform(0.01, 0.99, len(t))
    half = t["conversation"].isin(["call0", "call1"]).to_numpy()
    _eval_run(tmp_path / "a", t[half], p[half])
    # the second run lists its rows in another order, with times a float rounding away
    rev = t[~half].iloc[::-1]
    _eval_run(tmp_path / "b", rev.assign(timestamp=rev["timestamp"] + 1e-7), p[~half][::-1])
    merged, detector = attach_extra(t, (tmp_path / "a", tmp_path / "b"), "extra_logit")
    assert detector == "smart-turn" and len(merged) == len(t)
    np.testing.assert_allclose(merged["extra_logit"], np.log(p / (1 - p)), atol=1e-9)
    with pytest.raises(ValueError, match=r"miss \d+ of \d+ queries"):
        attach_extra(t, (tmp_path / "a",), "extra_logit")
    _eval_run(tmp_path / "c", t[~half], p[~half], detector="fused")
    with pytest.raises(ValueError, match="2 detectors"):
        attach_extra(t, (tmp_path / "a", tmp_path / "c"), "extra_logit")


def test_out_of_fold_predictions_are_a_harness_predictions_frame(tmp_path):
    from vad_turn.harness.evaluate import PREDICTION_COLUMNS, EvalConfig, compute_metrics

    t = _table(n_calls=6)
    p, _ = cross_fit(t, _cfg(tmp_path, k=2, inner_k=2))
    preds = predictions_frame(t, p)
    assert tuple(preds.columns) == PREDICTION_COLUMNS and len(preds) == len(t)
    metrics, _ = compute_metrics(preds, EvalConfig(split="test", detector="fused"), "fused-kfold")
    assert metrics["counts"]["n_turns"] == 24 and metrics["counts"]["n_holds_scored"] == 24


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--dataset and --out"):
        KFoldFusionConfig()
    with pytest.raises(ValueError, match="--k"):
        _cfg(tmp_path, k=1)


def test_fold_copies_hold_out_only_the_folds_train_calls(tmp_path):
    import datasets

    from vad_turn.fusion.crossfit import HELDOUT, fold_of_calls, train_calls, write_fold_dataset

    ds = datasets.Dataset.from_dict({
        "id": [f"c{i}-{t}" for i in range(8) for t in range(2)] + ["d0-0", "e0-0"],
        "conversation": [f"c{i}" for i in range(8) for _ in range(2)] + ["d0", "e0"],
        "split": ["train"] * 16 + ["dev", "test"]})
    calls = train_calls(ds)
    assert calls.tolist() == [f"c{i}" for i in range(8)]
    folds = fold_of_calls(calls, 4, 0)
    assert sorted(np.bincount(list(folds.values())).tolist()) == [2, 2, 2, 2]
    held = {c for c, f in folds.items() if f == 1}
    path = write_fold_dataset(ds, held, tmp_path / "fold1")
    copy = datasets.load_from_disk(str(path / "data"))
    got = dict(zip(copy["id"], copy["split"]))
    for i, c, s in zip(ds["id"], ds["conversation"], ds["split"]):
        assert got[i] == (HELDOUT if c in held else s)
    assert json.loads((path / "build_info.json").read_text())["heldout_calls"] == sorted(held)
    assert ds["split"].count("train") == 16  # the source is not changed


def test_mix_and_alpha_choice_refuse_bad_input(tmp_path):
    from vad_turn.fusion.stacked import mix, paired_predictions

    np.testing.assert_allclose(mix(np.array([0.2, 0.9]), np.array([0.8, 0.9]), 0.5), [0.5, 0.9], atol=1e-12)
    np.testing.assert_allclose(mix(np.array([0.2]), np.array([0.7]), 0.0), [0.2], atol=1e-12)
    with pytest.raises(ValueError, match="alpha"):
        mix(np.array([0.2]), np.array([0.7]), 1.5)
    t = _table(n_calls=2)
    p_st = np.random.default_rng(1).uniform(0.01, 0.99, len(t))
    # a cross-fitted run of every call (split 'none') beside a pooled one: the same queries, so they pair
    for name, det, split, rows, p in (("a", "fused", "none", t, np.full(len(t), 0.5)),
                                      ("b", "smart-turn", "train+dev+test", t, p_st),
                                      ("c", "smart-turn", "dev", t.iloc[: len(t) // 2], p_st[: len(t) // 2]),
                                      ("d", "smart-turn", "none", t, p_st)):
        _eval_run(tmp_path / name, rows, p, detector=det)
        cfg = json.loads((tmp_path / name / "config.json").read_text())
        (tmp_path / name / "config.json").write_text(json.dumps({**cfg, "dataset": "d" if name != "d" else "e",
                                                                  "split": split}))
    _, _, got = paired_predictions(tmp_path / "a", tmp_path / "b")
    np.testing.assert_array_equal(got, p_st)
    with pytest.raises(ValueError, match=r"not the same spans \(their splits / samples differ: 'none'"):
        paired_predictions(tmp_path / "a", tmp_path / "c")
    with pytest.raises(ValueError, match="differ in dataset"):
        paired_predictions(tmp_path / "a", tmp_path / "d")


@pytest.mark.slow
def test_the_mix_of_two_runs_is_what_the_stacked_detector_scores(tiny_getgoing, tmp_path):
    """Parity of the accuracy-first variant: mixing finished fused and Smart Turn runs gives the predictions the
    live detector ("fused+smart-turn") gives on the same real GetGoing turn."""
    from vad_turn.fusion.stacked import mixed_run
    from vad_turn.harness.evaluate import EvalConfig, run

    common = dict(dataset=tiny_getgoing / "getgoing", split="test", max_turns=1, seed=3)
    for det, opts in (("fused", ()), ("smart-turn", ()), ("fused+smart-turn", ("alpha=0.4",))):
        run(EvalConfig(detector=det, detector_opts=opts, out=tmp_path / det, **common))
    mixed_run(tmp_path / "fused", tmp_path / "smart-turn", 0.4, tmp_path / "mixed")
    live = pd.read_parquet(tmp_path / "fused+smart-turn" / "predictions.parquet")
    mixed = pd.read_parquet(tmp_path / "mixed" / "predictions.parquet")
    assert len(live) == len(mixed) >= 10
    np.testing.assert_allclose(mixed["p_eot"], live["p_eot"], atol=1e-9)
    assert json.loads((tmp_path / "mixed" / "metrics.json").read_text())["operating_points"]


def test_refit_on_real_calls_writes_oof_dev_test_runs_and_a_loadable_model(tmp_path):
    from vad_turn.fusion.crossfit import RefitConfig, refit, span_balanced

    src = tmp_path / "crossfit"
    src.mkdir()
    (src / "config.json").write_text(json.dumps({"k": 2, "dataset": str(tmp_path / "ds")}))
    t = _table(n_calls=20)
    calls = t["conversation"].isin([f"call{i}" for i in range(10)])
    for j, part in enumerate((t[calls], t[~calls])):
        (src / f"fold{j}").mkdir()
        part.to_parquet(src / f"fold{j}" / "heldout-scored.parquet")
    held = _table(n_calls=6, seed=5)
    held.assign(turn_id="d" + held["turn_id"], conversation="d" + held["conversation"]).to_parquet(src / "dev-shipped-scored.parquet")
    held.assign(turn_id="t" + held["turn_id"]).to_parquet(src / "test-shipped-scored.parquet")
    w = span_balanced(t)["weight"].to_numpy()
    assert np.allclose(w[:4], 0.25) and np.allclose(w[4:14], 0.1)  # a 4-point hold, then a 10-point end
    m = refit(RefitConfig(crossfit=src, k=2, inner_k=2, c_grid=(0.1, 1.0), out=tmp_path / "out"))
    for name, n_turns in (("train-oof", 80), ("dev", 24), ("test", 24), ("all", 128)):
        assert json.loads((tmp_path / "out" / name / "metrics.json").read_text())["counts"]["n_turns"] == n_turns
    meta = json.loads((tmp_path / "out" / "model" / "fusion.json").read_text())
    assert np.asarray(meta["weights"]).shape == (4, 8) and meta["temperature"] == m["temperature"]
    from vad_turn.fusion.runtime import TurnModel

    TurnModel(tmp_path / "out" / "model")  # its branch paths resolve to the shipped branches


def test_the_crossfit_recipes_are_the_makefiles():
    """`crossfit-calls` retrains the branches with the shipped recipes; they are written twice (the Makefile's
    targets and crossfit.py's constants), so this pins them together. --teacher-runs without --acoustic is refused."""
    import re
    import shlex

    from vad_turn.fusion.crossfit import ACOUSTIC_OTHER_SETS, ACOUSTIC_RECIPE, LEXICAL_RECIPE, CrossFitConfig

    make = (Path(__file__).resolve().parent.parent / "Makefile").read_text()

    def flags(command: str) -> dict[str, list[str]]:
        out, key = {}, None
        for tok in shlex.split(command):
            if tok.startswith("--"):
                key = tok[2:].replace("-", "_")
                out[key] = []
            elif key:
                out[key].append(tok)
        return out

    ac = flags(re.search(r"vad-turn train-acoustic (.*--model-out vad_turn/models/acoustic)", make).group(1))
    spec = "getgoing:train"
    assert ac["train_sets"] == [*ACOUSTIC_OTHER_SETS, spec] and ac["teacher_sources"] == [spec]
    assert {k: ac[k][0] for k in ACOUSTIC_RECIPE} == {k: str(v) for k, v in ACOUSTIC_RECIPE.items()}
    lex = flags(re.search(r"vad-turn train-lexical (.*--out runs/lexical-v2e)", make).group(1))
    assert {k: lex[k][0] for k in LEXICAL_RECIPE} == {k: str(v) for k, v in LEXICAL_RECIPE.items()}
    assert lex["extra_datasets"] == ["getgoing"]
    for bad in ({"teacher_runs": (Path("r"),)}, {"acoustic_sets": ("agent-holds-rendered-utt:train",)}):
        with pytest.raises(ValueError, match="only serve --acoustic"):
            CrossFitConfig(dataset=Path("d"), out=Path("o"), **bad)
