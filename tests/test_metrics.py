"""Pin the end-of-turn metric definitions (false cut-off, latency, operating points, Pareto, slices)
on hand-made turns whose results are computed by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vad_turn.core.schema import TurnRecord, Word, silence_spans_from_words
from vad_turn.harness import metrics as M
from vad_turn.harness.detectors import VADOnlyDetector
from vad_turn.harness.evaluate import EvalConfig, compute_metrics, score_turns


def turn(tid: str, words: list[tuple[str, float, float]], end_s: float, **kw) -> TurnRecord:
    ws = [Word(w, a, b) for w, a, b in words]
    return TurnRecord(id=tid, source=kw.pop("source", "hand"), split="val", words=ws,
                      silence_spans=silence_spans_from_words(ws, end_s), **kw)


# "i think" (0-1.0), a 0.8 s hold, "so" (1.8-2.2), end of turn at 2.2
HESITANT = turn("hesitant", [("i", 0.0, 0.5), ("think", 0.5, 1.0), ("so", 1.8, 2.2)], 4.0)


def sweep(recs, detector, **cfg_kw):
    cfg = EvalConfig(**{"thresholds": (0.5,), "timeouts_s": (2.0,), **cfg_kw})
    preds = score_turns(recs, detector, cfg)
    table = M.build_span_table(preds, cfg.grid_s)
    p = preds["p_eot"].to_numpy()[table.order]
    return M.sweep_policies(table, p, cfg.thresholds, cfg.action_delays_s, cfg.timeouts_s), table, p


class LastWordOracle:
    """p = 1 once every word of the turn is visible (the end-of-turn span with no lag), else 0."""

    name, needs_audio, needs_words = "oracle", False, True

    def __init__(self, n_words: int):
        self.n_words = n_words

    def predict(self, audio, words, messages, silence_s):
        return float(len(words) == self.n_words)


class Never:
    name, needs_audio, needs_words = "never", False, False

    def predict(self, audio, words, messages, silence_s):
        return 0.0


def test_vad_only_cuts_a_0p8s_hold_at_0p6s_delay_but_not_at_1s():
    s, _, _ = sweep([HESITANT], VADOnlyDetector(), action_delays_s=(0.6, 1.0))
    at = s.set_index("action_delay_s")
    assert at.loc[0.6, "n_cutoff"] == 1 and at.loc[0.6, "false_cutoff_rate"] == pytest.approx(1.0)
    assert at.loc[0.6, "mean_latency_s"] == pytest.approx(0.6)
    assert at.loc[1.0, "n_cutoff"] == 0 and at.loc[1.0, "false_cutoff_rate"] == pytest.approx(0.0)
    assert at.loc[1.0, "mean_latency_s"] == pytest.approx(1.0, abs=1e-9)
    assert at.loc[1.0, "median_latency_s"] == pytest.approx(1.0) and at.loc[1.0, "p90_latency_s"] == pytest.approx(1.0)


def test_detector_silent_in_holds_fires_at_the_action_delay_in_the_end_span():
    s, _, _ = sweep([HESITANT], LastWordOracle(3), action_delays_s=(0.0, 0.3, 0.45), transcript_lag_s=0.0)
    assert s["n_cutoff"].tolist() == [0, 0, 0]
    # the first grid time >= the delay: 0.0, 0.3 and 0.5 s
    assert s["mean_latency_s"].tolist() == pytest.approx([0.0, 0.3, 0.5])


def test_timeout_fires_when_the_detector_never_does_and_cuts_longer_holds():
    long_hold = turn("long", [("well", 0.0, 0.4), ("yes", 2.9, 3.2)], 5.0)  # a 2.5 s hold
    s, _, _ = sweep([HESITANT, long_hold], Never(), action_delays_s=(0.0,), timeouts_s=(1.5, 2.0, 3.0))
    at = s.set_index("timeout_s")
    assert at["mean_latency_s"].tolist() == pytest.approx([1.5, 2.0, 3.0])
    # 2.5 s hold: cut by the 1.5 and 2.0 s timeouts, not the 3.0 s one; the 0.8 s hold never
    assert at["n_cutoff"].tolist() == [1, 1, 0]
    assert at.loc[1.5, "false_cutoff_rate"] == pytest.approx(0.5)


def test_threshold_sweep_on_a_graded_detector():
    class Ramp:  # p grows 0.25 per 0.1 s of silence: 0.5 at 0.2 s, 0.75 at 0.3 s, 0.99 from 0.4 s
        name, needs_audio, needs_words = "ramp", False, False

        def predict(self, audio, words, messages, silence_s):
            return min(0.99, 2.5 * silence_s)

    # threshold 1.0 is never reached: the timeout decides (thresholds outside [0, 1] are refused)
    s, _, _ = sweep([HESITANT], Ramp(), thresholds=(0.45, 0.95, 1.0), action_delays_s=(0.0, 0.3), timeouts_s=(3.0,))
    got = {(r.threshold, r.action_delay_s): r.mean_latency_s for r in s.itertuples()}
    assert got == pytest.approx({(0.45, 0.0): 0.2, (0.45, 0.3): 0.3, (0.95, 0.0): 0.4, (0.95, 0.3): 0.4,
                                 (1.0, 0.0): 3.0, (1.0, 0.3): 3.0})
    assert s.set_index(["threshold", "action_delay_s"])["n_cutoff"].to_dict() == {
        (0.45, 0.0): 1, (0.45, 0.3): 1, (0.95, 0.0): 1, (0.95, 0.3): 1, (1.0, 0.0): 0, (1.0, 0.3): 0}


def test_latency_statistics_over_turns():
    recs = [turn(f"t{i}", [("yes", 0.0, 0.5)], 3.0) for i in range(4)]

    class ById:  # fires at 0.0, 0.1, 0.2, 0.7 s by turn
        name, needs_audio, needs_words = "by-id", False, True
        fire = {"t0": 0.0, "t1": 0.1, "t2": 0.2, "t3": 0.7}

        def __init__(self):
            self.current = None

        def predict(self, audio, words, messages, silence_s):
            return float(silence_s >= self.fire[self.current] - 1e-9)

    det, parts = ById(), []
    for r in recs:  # score one turn at a time so the detector knows which turn it is in
        det.current = r.id
        parts.append(score_turns([r], det, EvalConfig()))
    preds = pd.concat(parts, ignore_index=True)
    table = M.build_span_table(preds, 0.1)
    s = M.sweep_policies(table, preds["p_eot"].to_numpy()[table.order], (0.5,), (0.0,), (3.0,))
    lat = np.array([0.0, 0.1, 0.2, 0.7])
    assert s.loc[0, "mean_latency_s"] == pytest.approx(lat.mean())
    assert s.loc[0, "median_latency_s"] == pytest.approx(np.median(lat))
    assert s.loc[0, "p90_latency_s"] == pytest.approx(np.quantile(lat, 0.9))


HAND_SWEEP = pd.DataFrame(
    [  # name, fcr, mean latency
        ("A", 0.30, 0.25), ("B", 0.20, 0.30), ("C", 0.20, 0.50), ("D", 0.08, 0.55),
        ("E", 0.04, 0.90), ("F", 0.04, 1.00), ("G", 0.00, 1.50),
    ], columns=["name", "false_cutoff_rate", "mean_latency_s"])


def _hand_sweep() -> pd.DataFrame:
    s = HAND_SWEEP.copy()
    s["threshold"] = np.arange(len(s)) / 10
    s["action_delay_s"] = s["timeout_s"] = 1.0
    s["n_turns"], s["n_cutoff"] = 100, (100 * s["false_cutoff_rate"]).round().astype(int)
    s["median_latency_s"] = s["p90_latency_s"] = s["mean_latency_s"]
    return s


def test_operating_points_and_pareto_on_a_hand_sweep():
    s = _hand_sweep()
    ops = {o["name"]: o for o in M.operating_points(s, (0.2, 0.3, 0.6), (0.05, 0.10))}
    name_of = dict(zip(s["threshold"], s["name"]))
    assert name_of[ops["fcr@lat<=0.3s"]["threshold"]] == "B" and ops["fcr@lat<=0.3s"]["false_cutoff_rate"] == 0.20
    assert name_of[ops["fcr@lat<=0.6s"]["threshold"]] == "D" and ops["fcr@lat<=0.6s"]["false_cutoff_rate"] == 0.08
    assert name_of[ops["lat@fcr<=5%"]["threshold"]] == "E" and ops["lat@fcr<=5%"]["mean_latency_s"] == 0.90
    assert name_of[ops["lat@fcr<=10%"]["threshold"]] == "D" and ops["lat@fcr<=10%"]["mean_latency_s"] == 0.55
    unreachable = ops["fcr@lat<=0.2s"]
    assert unreachable["reachable"] is False and unreachable["false_cutoff_rate"] is None
    assert unreachable["threshold"] is None
    assert M.pareto_frontier(s)["name"].tolist() == ["A", "B", "D", "E", "G"]
    base = {"kind": "min_fcr_at_latency", "false_cutoff_rate": 0.40}
    assert M.ratio_to_baseline(ops["fcr@lat<=0.3s"], base) == pytest.approx(0.5)
    assert M.ratio_to_baseline(ops["fcr@lat<=0.3s"], {**base, "false_cutoff_rate": 0.0}) is None
    assert M.ratio_to_baseline(unreachable, base) is None


def _slice(rows, dim, value, op):
    (r,) = [r for r in rows if r["slice"] == dim and r["value"] == value and r["operating_point"] == op]
    return r


def test_pause_context_and_turn_slices_by_hand():
    t1 = turn("t1", [("well", 0.0, 0.4), ("uh", 0.4, 0.6), ("and", 1.4, 1.7), ("dog", 2.0, 2.3)], 4.0)
    t2 = turn("t2", [("the", 0.0, 0.3), ("dog", 0.3, 0.6), ("ran", 1.4, 1.8), ("uh", 1.8, 2.0)], 4.0,
              source="other", backchannel_context=True)
    assert t1.pause_context == ["filler", "conjunction", "none"] and t2.pause_context == ["none", "filler"]
    cfg = EvalConfig(thresholds=(0.5,), action_delays_s=(0.6, 1.0), timeouts_s=(2.0,), latency_budgets_s=(0.6,),
                     false_cutoff_budgets=(0.0,))
    preds = score_turns([t1, t2], VADOnlyDetector(), cfg)
    metrics, _ = compute_metrics(preds, cfg, "vad-only")
    rows, op = metrics["slices"], "fcr@lat<=0.6s"
    # delay 0.6: t1's 0.8 s filler hold is cut, its 0.3 s conjunction hold is not; t2's 0.8 s hold is cut
    assert (_slice(rows, "pause_context", "filler", op)["n_turns"], _slice(rows, "pause_context", "filler", op)["n_cutoff"]) == (1, 1)
    assert _slice(rows, "pause_context", "conjunction", op)["false_cutoff_rate"] == 0.0
    none = _slice(rows, "pause_context", "none", op)
    assert (none["n_turns"], none["n_cutoff"], none["n_turns_latency"]) == (1, 1, 1)  # latency: t1 ends on "dog"
    assert _slice(rows, "pause_context", "filler", op)["n_turns_latency"] == 1  # t2 ends on "uh"
    assert _slice(rows, "source", "other", op)["vad_only_false_cutoff_rate"] == 1.0
    zero = _slice(rows, "backchannel_context", "True", "lat@fcr<=0%")
    assert zero["false_cutoff_rate"] == 0.0 and zero["mean_latency_s"] == pytest.approx(1.0)
    assert {r["value"] for r in rows if r["slice"] == "turn_length_bin"} == {"1-10"}
    assert not any(r["slice"] == "unit_punct" for r in rows)  # no corpus marks -> no unit_punct slice


def test_slice_rows_add_up_to_the_totals():
    rng = np.random.default_rng(3)
    recs = []
    for i in range(40):
        t, ws = 0.0, []
        for j in range(int(rng.integers(1, 45))):
            d = float(rng.uniform(0.1, 0.4))
            ws.append((str(rng.choice(["uh", "and", "cat", "so", "yes"])), t, t + d))
            t += d + (float(rng.uniform(0.1, 2.0)) if rng.random() < 0.15 else 0.0)
        recs.append(turn(f"r{i}", ws, t + 1.0, source=f"c{i % 3}", backchannel_context=bool(i % 2)))

    class Hash:  # deterministic, turn-dependent scores
        name, needs_audio, needs_words = "hash", False, True

        def predict(self, audio, words, messages, silence_s):
            return float((len(words) * 0.37 + silence_s * 1.3) % 1.0)

    cfg = EvalConfig(thresholds=(0.3, 0.6, 0.9), action_delays_s=(0.0, 0.2, 0.4, 0.8), timeouts_s=(1.0, 2.0))
    metrics, _ = compute_metrics(score_turns(recs, Hash(), cfg), cfg, "hash")
    n = metrics["counts"]["n_turns"]
    for op in metrics["operating_points"]:
        if not op["reachable"]:
            continue
        for dim in ("turn_length_bin", "source", "backchannel_context", "audio_condition"):
            rows = [r for r in metrics["slices"] if r["slice"] == dim and r["operating_point"] == op["name"]]
            assert sum(r["n_turns"] for r in rows) == n
            assert sum(r["n_cutoff"] for r in rows) == op["n_cutoff"]
            assert sum(r["vad_only_n_cutoff"] for r in rows) == op["vad_only"]["n_cutoff"]
            lat = sum(r["mean_latency_s"] * r["n_turns"] for r in rows) / n
            assert lat == pytest.approx(op["mean_latency_s"], abs=1e-9)
        pause = [r for r in metrics["slices"] if r["slice"] == "pause_context" and r["operating_point"] == op["name"]]
        assert sum(r["n_turns_latency"] for r in pause) == n  # every turn's end span has one context
        assert sum(r["n_cutoff"] for r in pause) >= op["n_cutoff"]  # a turn can be cut in several contexts
        assert all(r["n_cutoff"] <= r["n_turns"] for r in pause)


def test_vad_only_diagnostics_and_oracle_auc():
    cfg = EvalConfig(thresholds=(0.5,), action_delays_s=(0.0,), timeouts_s=(1.0,), transcript_lag_s=0.0)
    m_vad, _ = compute_metrics(score_turns([HESITANT], VADOnlyDetector(), cfg), cfg, "vad-only")
    assert m_vad["diagnostics"]["auc"] == pytest.approx(0.5)
    assert m_vad["diagnostics"]["ap"] == pytest.approx(10 / 18)  # 8 hold points, 10 end-span points
    m_or, _ = compute_metrics(score_turns([HESITANT], LastWordOracle(3), cfg), cfg, "oracle")
    assert m_or["diagnostics"]["auc"] == pytest.approx(1.0)
