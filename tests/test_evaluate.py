"""Causal scoring (what a detector sees at each query), span selection, the detector registry and the
run folder of `vad-turn evaluate`, on small hand-made datasets written with write_turns."""
from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from vad_turn.cli import main as cli_main  # noqa: E402
from vad_turn.core.audio import encode_wav_bytes  # noqa: E402
from vad_turn.core.schema import Message, Span, TurnRecord, Word, silence_spans_from_words  # noqa: E402
from vad_turn.data.dataset import load_turns, write_turns  # noqa: E402
from vad_turn.harness.detectors import DETECTORS, Query, VADOnlyDetector, make_detector, predict_many, register_detector
from vad_turn.harness.evaluate import (
    EvalConfig,
    evaluate_detector,
    hold_counts,
    eval_model_fingerprint,
    resolve_split,
    run,
    score_turns,
    select_turns,
)


def turn(tid, words, end_s, split="val", **kw) -> TurnRecord:
    ws = [Word(w, a, b) for w, a, b in words]
    return TurnRecord(id=tid, source="hand", split=split, words=ws, silence_spans=silence_spans_from_words(ws, end_s), **kw)


class Recorder:
    """Records every query; p = a fixed function of what it saw (no predict_batch: exercises predict)."""

    name = "recorder"

    def __init__(self, needs_audio=False, needs_words=True):
        self.needs_audio, self.needs_words, self.seen = needs_audio, needs_words, []

    def predict(self, audio, words, messages, silence_s):
        self.seen.append({"audio": None if audio is None else np.array(audio), "words": [w.word for w in words],
                          "messages": list(messages), "silence_s": silence_s})
        return float((0.37 * len(words) + silence_s) % 1.0)


# a (0-0.4) b (0.4-1.0), a 0.6 s hold, c (1.6-2.0), end of turn at 2.0
ABC = turn("abc", [("a", 0.0, 0.4), ("b", 0.4, 1.0), ("c", 1.6, 2.0)], 2.5,
           messages=[Message("assistant", "how are you"), Message("user", "fine")])


def test_transcript_lag_hides_words_that_ended_less_than_half_a_second_ago():
    det = Recorder()
    preds = score_turns([ABC], det, EvalConfig(timeouts_s=(1.0,)))
    seen = [(round(q["silence_s"], 3), q["words"]) for q in det.seen]
    hold = [(0.0, ["a"]), (0.1, ["a"]), (0.2, ["a"]), (0.3, ["a"]), (0.4, ["a"]), (0.5, ["a", "b"])]
    end = [(round(0.1 * k, 3), ["a", "b"] if k < 5 else ["a", "b", "c"]) for k in range(10)]
    assert seen == hold + end
    assert all(q["messages"] == list(ABC.messages) and q["audio"] is None for q in det.seen)
    assert preds["timestamp"].round(6).tolist() == [round(1.0 + 0.1 * k, 6) for k in range(6)] + [
        round(2.0 + 0.1 * k, 6) for k in range(10)]
    assert preds["label"].tolist() == [0] * 6 + [1] * 10 and preds["span_index"].tolist() == [0] * 6 + [1] * 10
    assert preds["p_eot"].to_numpy() == pytest.approx([(0.37 * len(w) + s) % 1.0 for s, w in seen])


def test_zero_lag_shows_every_ended_word_and_detectors_without_words_get_none():
    det = Recorder()
    score_turns([ABC], det, EvalConfig(timeouts_s=(0.2,), transcript_lag_s=0.0))
    assert [q["words"] for q in det.seen][:1] == [["a", "b"]] and det.seen[-1]["words"] == ["a", "b", "c"]
    blind = Recorder(needs_words=False)
    score_turns([ABC], blind, EvalConfig(timeouts_s=(0.2,)))
    assert all(q["words"] == [] for q in blind.seen)


def test_audio_is_the_exact_causal_prefix_after_a_dataset_roundtrip(tmp_path):
    n_audio = int(2.5 * 16000)  # the row's audio ends 0.5 s into the end span; later queries are zero-padded
    ramp = (np.arange(n_audio) % 1000).astype(np.float32) / 32768.0  # exact in 16-bit PCM
    rec = turn("audio", [("a", 0.0, 0.4), ("b", 0.4, 1.0), ("c", 1.6, 2.0)], 2.5, audio_condition="real",
               audio={"bytes": encode_wav_bytes(ramp), "path": "audio.wav"})
    write_turns([rec, turn("text-only", [("hi", 0.0, 0.3)], 1.0)], tmp_path / "ds")
    ds = load_turns(tmp_path / "ds")
    det = Recorder(needs_audio=True)
    out = evaluate_detector(ds, det, EvalConfig(split="val", timeouts_s=(1.0,), thresholds=(0.5,),
                                                action_delays_s=(0.0, 0.5)))
    preds = out["predictions"]
    assert len(det.seen) == len(preds) == 16 + 10
    padded = np.concatenate([ramp, np.zeros(16000, dtype=np.float32)])
    for q, t in zip(det.seen[:16], preds["timestamp"][:16]):
        n = int(round(t * 16000))
        assert q["audio"].dtype == np.float32 and q["audio"].shape == (n,)
        np.testing.assert_array_equal(q["audio"], padded[:n])
    assert [len(q["audio"]) for q in det.seen[:16]][-1] == round(2.9 * 16000)
    assert all(q["audio"] is None for q in det.seen[16:])  # the text-only row has no audio
    assert out["ids"] == ["audio", "text-only"]
    assert out["metrics"]["counts"]["n_turns"] == 2 and out["metrics"]["counts"]["n_holds_kept"] == 1


def test_holds_outside_0p2_to_5s_are_dropped_and_the_end_span_always_kept():
    ws = [Word("a", 0.0, 0.5), Word("b", 0.65, 1.0), Word("c", 1.2, 1.5), Word("d", 6.5, 7.0), Word("e", 12.3, 12.6)]
    spans = [Span(0.5, 0.65), Span(1.0, 1.2), Span(1.5, 6.5), Span(7.0, 12.3), Span(12.6, 12.65)]  # 0.15 0.2 5.0 5.3
    rec = TurnRecord(id="holds", source="hand", split="val", words=ws, silence_spans=spans)
    cfg = EvalConfig(timeouts_s=(0.5,))
    preds = score_turns([rec], VADOnlyDetector(), cfg)
    counts = preds.groupby("span_index").size().to_dict()
    assert counts == {1: 2, 2: 50, 4: 5}  # 0.2 s -> t = 0, 0.1; 5.0 s -> 50 points; end -> k * 0.1 < 0.5
    assert set(preds.loc[preds.span_index == 4, "label"]) == {1} and set(preds.loc[preds.span_index < 4, "label"]) == {0}
    assert preds["span_dur"].groupby(preds["span_index"]).first().round(6).to_dict() == {1: 0.2, 2: 5.0, 4: 0.05}
    assert hold_counts([rec.to_row()], cfg) == {"n_turns": 1, "n_holds": 4, "n_holds_kept": 2,
                                                "n_holds_too_short": 1, "n_holds_too_long": 1}
    looser = score_turns([rec], VADOnlyDetector(), EvalConfig(timeouts_s=(0.5,), min_hold_s=0.1, max_hold_s=6.0))
    assert sorted(looser["span_index"].unique()) == [0, 1, 2, 3, 4]


def test_predict_batch_matches_predict_and_bad_scores_raise():
    class Batched(Recorder):
        def predict_batch(self, queries):
            return [self.predict(q.audio, q.words, q.messages, q.silence_s) for q in queries]

    a = score_turns([ABC], Recorder(), EvalConfig(timeouts_s=(1.0,)))
    b = score_turns([ABC], Batched(), EvalConfig(timeouts_s=(1.0,), batch_size=3))
    pd.testing.assert_frame_equal(a, b)

    class Broken(Recorder):
        name = "broken"

        def predict(self, audio, words, messages, silence_s):
            return 1.5 if silence_s > 0.25 else 0.5

    with pytest.raises(ValueError, match=r"broken.*p_eot=1.5.*\[0, 1\]"):
        score_turns([ABC], Broken(), EvalConfig(timeouts_s=(1.0,)))
    with pytest.raises(ValueError, match="returned 1 scores for 2 queries"):
        predict_many(type("Short", (), {"name": "short", "predict_batch": lambda self, q: [0.5]})(),
                     [Query(None, (), (), 0.0)] * 2)


def test_detector_registry():
    assert isinstance(make_detector("vad-only"), VADOnlyDetector)
    assert make_detector("vad_turn.harness.detectors:VADOnlyDetector").predict(None, [], [], 0.3) == 1.0
    with pytest.raises(ValueError, match="unknown detector 'nope'.*vad-only"):
        make_detector("nope")
    with pytest.raises(ValueError, match="cannot import"):
        make_detector("vad_turn.no_such_module:X")
    register_detector("test-const", lambda p="0.25": type("C", (VADOnlyDetector,), {
        "name": "const", "predict": lambda self, *a: float(p), "predict_batch": None})())
    try:
        det = make_detector("test-const", p="0.75")
        assert predict_many(det, [Query(None, (), (), 0.0)]) == pytest.approx([0.75])
    finally:
        DETECTORS.pop("test-const")


def _dataset(tmp_path, n_val=4, n_train=2):
    rng = np.random.default_rng(1)
    recs = []
    for i in range(n_val + n_train):
        t, ws = 0.0, []
        for j in range(int(rng.integers(3, 35))):
            d = float(rng.uniform(0.15, 0.4))
            ws.append((str(rng.choice(["uh", "and", "cat", "so"])), t, t + d))
            t += d + (float(rng.uniform(0.2, 1.2)) if rng.random() < 0.25 else 0.0)
        recs.append(turn(f"{'v' if i < n_val else 'tr'}{i}", ws, t + 1.0, split="val" if i < n_val else "train"))
    write_turns(recs, tmp_path / "ds")
    return tmp_path / "ds"


def test_cli_run_folder_holds_every_file_and_metrics_parse(tmp_path, capsys):
    ds = _dataset(tmp_path)
    rc = cli_main(["evaluate", "--dataset", str(ds), "--out", str(tmp_path / "run"), "--max-turns", "3",
                   "--action-delays-s", "0.2", "0.5", "1.0", "--timeouts-s", "1.5", "--thresholds", "0.5",
                   "--latency-budgets-s", "0.1", "0.6"])
    assert rc == 0
    run_dir = tmp_path / "run"
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "commit.txt", "split_ids.json", "metrics.json",
                                                   "predictions.parquet", "sweep.parquet", "report.md", "pareto.png"}
    m = json.loads((run_dir / "metrics.json").read_text())
    ids = json.loads((run_dir / "split_ids.json").read_text())["val"]
    assert len(ids) == 3 and all(i.startswith("v") for i in ids)
    preds = pd.read_parquet(run_dir / "predictions.parquet")
    assert sorted(preds["id"].unique()) == ids and m["counts"]["n_turns"] == 3 and m["counts"]["n_points"] == len(preds)
    ops = {o["name"]: o for o in m["operating_points"]}
    assert ops["fcr@lat<=0.1s"]["reachable"] is False and ops["fcr@lat<=0.1s"]["false_cutoff_rate"] is None
    sweep = pd.read_parquet(run_dir / "sweep.parquet")
    within = sweep[sweep["mean_latency_s"] <= 0.6]
    assert ops["fcr@lat<=0.6s"]["false_cutoff_rate"] == pytest.approx(within["false_cutoff_rate"].min())
    assert ops["fcr@lat<=0.6s"]["action_delay_s"] in (0.2, 0.5)
    assert ops["fcr@lat<=0.6s"]["vad_only"]["false_cutoff_rate"] == ops["fcr@lat<=0.6s"]["false_cutoff_rate"]
    assert len(sweep) == 2 * 3 and set(sweep["detector"]) == {"vad-only"}
    report = (run_dir / "report.md").read_text()
    assert "| fcr@lat<=0.1s | not reachable |" in report and "### turn_length_bin" in report
    assert "fcr@lat<=0.6s" in capsys.readouterr().out
    assert (run_dir / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run_dir / "config.json").read_text())["max_turns"] == 3


def test_split_selection_and_seeded_sample(tmp_path):
    ds = load_turns(_dataset(tmp_path, n_val=6, n_train=3))
    _, ids = select_turns(ds, EvalConfig(split="train"))
    assert ids == ["tr6", "tr7", "tr8"]
    _, a = select_turns(ds, EvalConfig(split=None, max_turns=4, seed=5))
    _, b = select_turns(ds, EvalConfig(split=None, max_turns=4, seed=5))
    assert a == b and len(a) == 4 and len(set(a)) == 4
    with pytest.raises(ValueError, match="no rows of split 'test'.*'train', 'val'"):
        select_turns(ds, EvalConfig(split="test"))
    assert resolve_split("val", {"train", "dev"}) == "dev" and resolve_split("dev", {"val"}) == "val"
    assert resolve_split("val", {"val", "dev"}) == "val" and resolve_split("test", {"dev"}) == "test"
    _, dev = select_turns(ds, EvalConfig(split="dev"))
    assert dev == [f"v{i}" for i in range(6)]


def test_interrupted_run_resumes_without_rescoring(tmp_path):
    ds = _dataset(tmp_path, n_val=5, n_train=0)
    calls = {"n": 0, "fail_after": None}

    class Flaky(Recorder):
        name = "flaky"

        def predict(self, audio, words, messages, silence_s):
            calls["n"] += 1
            if calls["fail_after"] is not None and calls["n"] > calls["fail_after"]:
                raise RuntimeError("interrupted")
            return super().predict(audio, words, messages, silence_s)

    register_detector("test-flaky", Flaky)
    try:
        kw = dict(dataset=ds, detector="test-flaky", timeouts_s=(1.0,), thresholds=(0.5,), action_delays_s=(0.3,),
                  chunk_turns=1)
        full = run(EvalConfig(out=tmp_path / "full", **kw))
        per_turn = pd.read_parquet(tmp_path / "full/predictions.parquet").groupby("id", sort=False).size()
        calls.update(n=0, fail_after=int(per_turn.iloc[:2].sum()) + 3)
        with pytest.raises(RuntimeError, match="interrupted"):
            run(EvalConfig(out=tmp_path / "resumed", **kw))
        assert len(list((tmp_path / "resumed/predictions.parts").glob("part-*.parquet"))) == 2
        with pytest.raises(ValueError, match="different config"):
            run(EvalConfig(out=tmp_path / "resumed", **{**kw, "thresholds": (0.6,)}))
        calls.update(n=0, fail_after=None)
        resumed = run(EvalConfig(out=tmp_path / "resumed", **kw))
        assert calls["n"] == int(per_turn.iloc[2:].sum())
        assert resumed["operating_points"] == full["operating_points"]
        a = pd.read_parquet(tmp_path / "full/predictions.parquet")
        b = pd.read_parquet(tmp_path / "resumed/predictions.parquet")
        pd.testing.assert_frame_equal(a, b)
        assert not (tmp_path / "resumed/predictions.parts").exists()
        # a finished run with the same config is not scored again; another config is
        calls.update(n=0, fail_after=None)
        again = run(EvalConfig(out=tmp_path / "resumed", **kw))
        assert calls["n"] == 0 and again == json.loads((tmp_path / "resumed/metrics.json").read_text())
        other = run(EvalConfig(out=tmp_path / "resumed", **{**kw, "thresholds": (0.6,)}))
        assert calls["n"] == int(per_turn.sum()) and other["operating_points"] != full["operating_points"]
    finally:
        DETECTORS.pop("test-flaky")


def test_detector_options_parse_booleans_once_and_refuse_ambiguous_ones():
    from vad_turn.harness.detectors import parse_detector_opts, require_bool

    assert parse_detector_opts(["int8=TRUE", "model=runs/x", "use-pitch=no", "threads=1"]) == {
        "int8": True, "model": "runs/x", "use_pitch": False, "threads": "1"}
    with pytest.raises(ValueError, match="key=value"):
        parse_detector_opts(["int8"])
    with pytest.raises(TypeError, match="int8 must be true or false, got '0'"):
        require_bool("int8", "0")


def test_a_finished_run_is_scored_again_when_its_model_files_change(tmp_path):
    ds = _dataset(tmp_path, n_val=3, n_train=0)
    calls = {"n": 0}

    class FromFile(Recorder):
        name = "from-file"

        def __init__(self, model: str):
            super().__init__()
            self.p = float(Path(model).read_text())

        def predict(self, audio, words, messages, silence_s):
            calls["n"] += 1
            return self.p

    weights = tmp_path / "weights.txt"
    weights.write_text("0.9")
    register_detector("test-from-file", FromFile)
    try:
        kw = dict(dataset=ds, detector="test-from-file", detector_opts=(f"model={weights}",), timeouts_s=(1.0,),
                  out=tmp_path / "run")
        run(EvalConfig(**kw))
        n_first = calls["n"]
        assert n_first > 0 and (tmp_path / "run/model_fingerprint.txt").exists()
        reused = run(EvalConfig(**kw))  # same files: read back, not scored
        assert calls["n"] == n_first and reused == json.loads((tmp_path / "run/metrics.json").read_text())
        weights.write_text("0.1")  # same config, another model: scored again
        run(EvalConfig(**kw))
        assert calls["n"] == 2 * n_first
        assert pd.read_parquet(tmp_path / "run/predictions.parquet")["p_eot"].eq(0.1).all()
    finally:
        DETECTORS.pop("test-from-file")
    assert eval_model_fingerprint(EvalConfig(detector="vad-only")) is None
    assert eval_model_fingerprint(EvalConfig(detector="fused")) != eval_model_fingerprint(EvalConfig(detector="lexical"))
