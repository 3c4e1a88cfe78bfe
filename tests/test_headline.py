import json
from dataclasses import replace
import time

import numpy as np
import pandas as pd
import pytest

from vad_turn.harness import metrics as M
from vad_turn.harness.detectors import Query
from vad_turn.harness.evaluate import EvalConfig, compute_metrics
from vad_turn.harness.headline import (
    DEFAULT_SETS,
    FALSE_CUTOFF_BUDGETS,
    LATENCY_BUDGETS_S,
    agent_text_section,
    available_sets,
    cpu_ms_per_decision,
    format_headline,
    headline_rows,
)
from vad_turn.harness.ratio_bootstrap import conversation_of, group_weights, ratio_bootstrap, weighted_sweep


def _op(name, kind, fcr, lat, ratio=None, reachable=True):
    return {"name": name, "kind": kind, "false_cutoff_rate": fcr, "mean_latency_s": lat,
            "ratio_to_vad_only": ratio, "reachable": reachable}


def test_headline_rows_pick_operating_points_slices_ratios_and_intervals():
    metrics = {
        "detector": "lexical", "counts": {"n_turns": 10, "n_holds_kept": 7},
        "operating_points": [
            _op("fcr@lat<=0.3s", "min_fcr_at_latency", 0.4, 0.3, 0.8),
            _op("fcr@lat<=0.6s", "min_fcr_at_latency", 0.2, 0.6, 0.5),
            _op("lat@fcr<=2%", "min_latency_at_fcr", None, None, None, reachable=False),
            _op("lat@fcr<=5%", "min_latency_at_fcr", None, None, None, reachable=False),
            _op("lat@fcr<=10%", "min_latency_at_fcr", 0.09, 1.2, 0.75),
        ],
        "slices": [{"slice": "turn_length_bin", "value": "1-10", "operating_point": "fcr@lat<=0.6s",
                    "false_cutoff_rate": 0.05}],
    }
    boot = [{"name": "fcr@lat<=0.3s", "ci_low": 0.61, "ci_high": 0.93},
            {"name": "lat@fcr<=10%", "ci_low": None, "ci_high": None}]
    (row,) = headline_rows([{"set": "switchboard:val", "metrics": metrics, "bootstrap": boot,
                             "cpu_ms": {"p50": 1.234, "p99": 5.0, "n": 50}}])
    assert row["fcr@lat<=0.6s"] == 0.2 and row["fcr@lat<=0.6s:ratio"] == 0.5
    assert row["fcr@lat<=0.3s:ci"] == [0.61, 0.93] and row["lat@fcr<=10%:ci"] is None
    assert row["lat@fcr<=5%"] is None and row["lat@fcr<=10%"] == 1.2
    assert row["fcr@lat<=0.6s (1-10 words)"] == 0.05
    table = format_headline([row])
    assert table.splitlines()[0] == ("| set | detector | turns | holds kept | FCR @ 0.3 s | FCR @ 0.6 s | "
                                     "latency @ 2% FCR | latency @ 5% FCR | latency @ 10% FCR | CPU ms P50 / P99 |")
    assert ("| switchboard:val | lexical | 10 | 7 | 40.0% (0.80x [0.61, 0.93]) | 20.0% (0.50x) | n/r | n/r | "
            "1.20 s (0.75x) | 1.23 / 5.00 |") in table
    vad = dict(row, detector="vad-only", cpu_ms=None)
    assert "| switchboard:val | vad-only | 10 | 7 | 40.0% | 20.0% | n/r | n/r | 1.20 s | - |" in format_headline([vad])


def test_headline_budgets_and_default_sets():
    assert LATENCY_BUDGETS_S == (0.3, 0.6) and FALSE_CUTOFF_BUDGETS == (0.02, 0.05, 0.10)
    assert {"getgoing:dev", "getgoing:test", "ami:none", "switchboard:val", "sbcsae:none",
            "switchboard-rendered:dev", "sbcsae-rendered:test"} <= set(DEFAULT_SETS)


def test_sets_of_unbuilt_optional_corpora_are_skipped_with_a_note(tmp_path):
    (tmp_path / "sbcsae-rendered").mkdir()
    keep, notes = available_sets(("getgoing:dev", "getgoing:test", "ami:none", "sbcsae-rendered:test",
                                  "switchboard-rendered:dev"), tmp_path)
    assert keep == ["ami:none", "sbcsae-rendered:test"]  # ami is built from the corpus files if missing
    assert notes == [f"getgoing:dev is skipped: {tmp_path / 'getgoing'} is not built.",
                     f"getgoing:test is skipped: {tmp_path / 'getgoing'} is not built.",
                     f"switchboard-rendered:dev is skipped: {tmp_path / 'switchboard-rendered'} is not built."]
    (tmp_path / "getgoing").mkdir()
    assert available_sets(("getgoing:dev",), tmp_path) == (["getgoing:dev"], [])


# ----------------------------------------------------------------------------- bootstrap


def _preds(p_hold, p_end, n_conv=12, turns_per_conv=5, seed=0):
    """Hand-made grid predictions: each turn has two holds (0.2-2.0 s) and its end span (3 s of grid);
    p_hold(rng, n) / p_end(rng, n) give the detector's scores there."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_conv):
        for t in range(turns_per_conv):
            tid = f"conv{c:02d}-{t:04d}-A"
            spans = [(float(rng.choice(np.arange(2, 21)) / 10), 0), (float(rng.choice(np.arange(2, 21)) / 10), 0),
                     (3.0, 1)]
            for i, (dur, label) in enumerate(spans):
                n = int(round(dur / 0.1)) if label == 0 else 30
                p = p_hold(rng, n) if label == 0 else p_end(rng, n)
                for k in range(n):
                    rows.append({"id": tid, "span_index": i, "timestamp": 0.0, "silence_dur": round(0.1 * k, 9),
                                 "p_eot": float(p[k]), "label": label, "span_dur": dur, "pause_context": "none",
                                 "unit_punct": "", "source": "x", "audio_condition": "text",
                                 "backchannel_context": False, "n_words": 5})
    return pd.DataFrame(rows)


CFG = EvalConfig(latency_budgets_s=LATENCY_BUDGETS_S, false_cutoff_budgets=FALSE_CUTOFF_BUDGETS)


def test_weighted_sweep_with_unit_weights_is_the_harness_sweep():
    preds = _preds(lambda r, n: r.uniform(0, 0.7, n), lambda r, n: r.uniform(0.3, 1, n))
    table = M.build_span_table(preds, CFG.grid_s)
    p = preds["p_eot"].to_numpy()[table.order]
    args = (CFG.thresholds, CFG.action_delays_s, CFG.timeouts_s)
    fcr, lat = weighted_sweep(table, p, np.ones((2, table.n_turns)), *args)
    sweep = M.sweep_policies(table, p, *args)
    np.testing.assert_allclose(fcr[0], sweep["false_cutoff_rate"], atol=1e-12)
    np.testing.assert_allclose(lat[1], sweep["mean_latency_s"], atol=1e-12)
    # doubling one turn's weight is the same as duplicating that turn
    w = np.ones((1, table.n_turns))
    w[0, 3] = 2
    fcr2, _ = weighted_sweep(table, p, w, *args)
    one = table.turns["id"][3]
    dup = pd.concat([preds, preds[preds["id"] == one].assign(id=one + "-copy")], ignore_index=True)
    t2 = M.build_span_table(dup, CFG.grid_s)
    s2 = M.sweep_policies(t2, dup["p_eot"].to_numpy()[t2.order], *args)
    np.testing.assert_allclose(fcr2[0], s2["false_cutoff_rate"], atol=1e-12)


def test_group_weights_resample_whole_conversations():
    groups = ["a", "a", "b", "c", "c", "c"]
    w = group_weights(groups, n_boot=50, seed=1)
    assert w.shape == (50, 6)
    assert (w[:, 0] == w[:, 1]).all() and (w[:, 3] == w[:, 5]).all()
    assert (w[:, [0, 2, 3]].sum(axis=1) == 3).all()  # 3 conversations drawn per resample
    assert (group_weights(groups, 50, 1) == w).all()  # seeded
    assert conversation_of("032019b319fca2ab2df3f4c60d194721-000-caller") == "032019b319fca2ab2df3f4c60d194721"
    assert conversation_of("sw4637-0000-B") == "sw4637"
    assert conversation_of("agent-holds:sgd:1_00012#4+8k") == conversation_of("agent-holds:sgd:1_00012#2") == \
        "agent-holds:sgd:1_00012"


def test_a_detector_identical_to_vad_only_has_ratio_1_with_an_interval_at_1():
    preds = _preds(lambda r, n: np.full(n, 0.97), lambda r, n: np.full(n, 0.97))  # fires wherever VAD does
    out = ratio_bootstrap(preds, CFG, n_boot=100, seed=0)
    assert [o["name"] for o in out] == ["fcr@lat<=0.3s", "fcr@lat<=0.6s", "lat@fcr<=2%", "lat@fcr<=5%",
                                        "lat@fcr<=10%"]
    for o in out:
        assert o["ratio"] == pytest.approx(1.0) and o["n_groups"] == 12
        assert o["ci_low"] == pytest.approx(1.0) and o["ci_high"] == pytest.approx(1.0)


def test_a_clearly_better_detector_has_an_interval_below_1():
    preds = _preds(lambda r, n: r.uniform(0, 0.6, n), lambda r, n: r.uniform(0.5, 1, n))
    out = ratio_bootstrap(preds, CFG, n_boot=100, seed=0)
    metrics, _ = compute_metrics(preds, CFG, "better")
    for o, op in zip(out, metrics["operating_points"]):
        assert o["name"] == op["name"]
        assert o["ratio"] == pytest.approx(op["ratio_to_vad_only"], abs=1e-12)  # the point estimate is the harness's
        assert o["ci_low"] <= o["ratio"] + 1e-12 and o["ci_high"] < 0.9, o
    # seeded: the same resamples give the same intervals
    assert ratio_bootstrap(preds, CFG, n_boot=100, seed=0) == out


def test_intervals_are_none_when_the_operating_point_is_unreachable():
    # with a 1 s timeout every turn with a hold longer than 1 s is cut off: FCR <= 0% is unreachable for both
    preds = _preds(lambda r, n: r.uniform(0, 0.6, n), lambda r, n: r.uniform(0.5, 1, n))
    cfg = EvalConfig(latency_budgets_s=(0.6,), false_cutoff_budgets=(0.0,), timeouts_s=(1.0,))
    fcr_op, lat_op = ratio_bootstrap(preds, cfg, n_boot=20, seed=0)
    assert lat_op["name"] == "lat@fcr<=0%" and lat_op["ratio"] is None and lat_op["n_defined"] == 0
    assert lat_op["ci_low"] is None and lat_op["ci_high"] is None
    assert fcr_op["ci_low"] is not None and fcr_op["n_defined"] == 20


def test_paired_differences_share_the_resamples_and_see_a_better_detector():
    from vad_turn.harness.ratio_bootstrap import paired_difference_bootstrap

    weak = _preds(lambda r, n: r.uniform(0, 0.9, n), lambda r, n: r.uniform(0.3, 1, n))
    strong = weak.assign(p_eot=np.where(weak["label"] == 1, np.maximum(weak["p_eot"], 0.9), 0.5 * weak["p_eot"]))
    rep = paired_difference_bootstrap({"weak": weak, "strong": strong, "same": weak.copy()}, CFG, "weak",
                                      n_boot=100, seed=0)
    assert rep["n_groups"] == 12 and rep["operating_points"][2] == "lat@fcr<=2%"
    ratios = {o["name"]: o for o in ratio_bootstrap(strong, CFG, n_boot=100, seed=0)}
    for row in rep["detectors"]["strong"]:  # the same resamples as ratio_bootstrap: the same ratio intervals
        assert row["ratio"] == pytest.approx(ratios[row["name"]]["ratio"], abs=1e-12)
        assert row["ratio_ci"] == pytest.approx([ratios[row["name"]]["ci_low"], ratios[row["name"]]["ci_high"]])
    for row in rep["detectors"]["same"]:  # a copy of the reference differs by exactly 0 in every resample
        assert row["diff_vs_reference"] == 0.0 and row["diff_ci"] == [0.0, 0.0]
    assert all(r["diff_ci"] is None for r in rep["detectors"]["weak"])
    lat2 = next(r for r in rep["detectors"]["strong"] if r["name"] == "lat@fcr<=2%")
    assert lat2["diff_vs_reference"] < 0 and lat2["diff_ci"][1] < 0, lat2  # sooner at 2% FCR, clear of 0
    with pytest.raises(ValueError, match="did not score the same spans"):
        paired_difference_bootstrap({"weak": weak, "fewer": weak[weak["id"] != weak["id"].iloc[0]]}, CFG, "weak",
                                    n_boot=10)
    with pytest.raises(ValueError, match="reference 'nope'"):
        paired_difference_bootstrap({"weak": weak}, CFG, "nope", n_boot=10)


def test_paired_cli_compares_runs_of_different_samples_on_their_common_turns(tmp_path, capsys):
    """benchmarks/paired_operating_points.py --common-turns: a run of every turn and a run of a sample are
    compared on the sample's turns, and the result equals comparing the sample alone."""
    import importlib.util
    from pathlib import Path

    from vad_turn.core.config import config_to_dict

    spec = importlib.util.spec_from_file_location(
        "paired_cli", Path(__file__).resolve().parent.parent / "benchmarks" / "paired_operating_points.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    weak = _preds(lambda r, n: r.uniform(0, 0.9, n), lambda r, n: r.uniform(0.3, 1, n))
    strong = weak.assign(p_eot=np.where(weak["label"] == 1, np.maximum(weak["p_eot"], 0.9), 0.5 * weak["p_eot"]))
    ids = sorted(weak["id"].unique())
    sample = strong[strong["id"].isin(ids[: len(ids) // 2])]

    def write(name, preds, **cfg):
        run = tmp_path / name
        run.mkdir()
        preds.to_parquet(run / "predictions.parquet", index=False)
        (run / "config.json").write_text(json.dumps({"type": "EvalConfig", **config_to_dict(replace(CFG, **cfg))}))
        return str(run)

    all_weak = write("all-weak", weak, split="none")
    sample_strong = write("sample-strong", sample, split="train", max_turns=len(ids) // 2)
    sample_weak = write("sample-weak", weak[weak["id"].isin(sample["id"])], split="train", max_turns=len(ids) // 2)
    with pytest.raises(SystemExit):  # without the flag: not the same spans
        cli.main(["--runs", sample_strong, "--reference", all_weak, "--boot", "20"])
    assert cli.main(["--runs", sample_strong, "--reference", all_weak, "--boot", "50", "--common-turns",
                     "--json", str(tmp_path / "common.json")]) == 0
    assert f"--common-turns: {len(ids) // 2} turns" in capsys.readouterr().out
    assert cli.main(["--runs", sample_strong, "--reference", sample_weak, "--boot", "50",
                     "--json", str(tmp_path / "sample.json")]) == 0
    common, alone = (json.loads((tmp_path / f).read_text()) for f in ("common.json", "sample.json"))
    assert common["common_turns"] == len(ids) // 2
    assert list(common["detectors"].values())[0] == list(alone["detectors"].values())[0]


# ----------------------------------------------------------------------------- CPU and agent text


class _Busy:
    name, needs_audio, needs_words = "busy", False, False

    def predict(self, audio, words, messages, silence_s):
        t0 = time.process_time()
        while time.process_time() - t0 < 0.002:
            pass
        return 0.5


def test_cpu_ms_per_decision_measures_process_time_per_query():
    qs = [Query(None, (), (), 0.1 * k) for k in range(20)]
    cpu = cpu_ms_per_decision(_Busy(), qs)
    assert cpu["n"] == 20
    assert 2.0 <= cpu["p50"] <= cpu["p99"] < 50.0


def test_agent_text_section_reads_the_run_metrics(tmp_path):
    assert agent_text_section(tmp_path) == ""
    (tmp_path / "metrics.json").write_text(json.dumps({"results": [
        {"variant": "asr", "detector": "fused", "corpus": "dstc2", "n_turns": 300, "n_prefixes": 1040, "auc": 0.558,
         "fer@95": 0.9878, "cut@95": 0.9955, "fer@99": 0.9932, "cut@99": 1.0, "worst": []}]}))
    sec = agent_text_section(tmp_path)
    assert "| asr | fused | dstc2 | 300 | 1040 | 0.558 | 0.988 | 0.996 | 0.993 | 1.000 |" in sec


def test_bootstrap_is_kept_beside_the_predictions_and_recomputed_when_they_change(tmp_path, monkeypatch):
    import vad_turn.harness.ratio_bootstrap as rb
    from vad_turn.harness.headline import cached_ratio_bootstrap

    preds = _preds(lambda r, n: r.uniform(0, 0.4, n), lambda r, n: r.uniform(0.5, 1, n))
    preds.to_parquet(tmp_path / "predictions.parquet", index=False)
    ecfg = replace(CFG, out=tmp_path)
    groups = {i: i.split("-")[0] for i in preds["id"].unique()}
    calls = []
    real = rb.ratio_bootstrap
    monkeypatch.setattr(rb, "ratio_bootstrap", lambda *a, **k: calls.append(k) or real(*a, **k))
    first = cached_ratio_bootstrap(ecfg, groups, n_boot=20, seed=0)
    assert cached_ratio_bootstrap(ecfg, groups, n_boot=20, seed=0) == first and len(calls) == 1
    cached_ratio_bootstrap(ecfg, groups, n_boot=30, seed=0)  # another resample count: computed again
    preds.assign(p_eot=preds["p_eot"] * 0.9).to_parquet(tmp_path / "predictions.parquet", index=False)
    cached_ratio_bootstrap(ecfg, groups, n_boot=30, seed=0)  # other predictions: computed again
    assert len(calls) == 3
