"""Distillation targets for the acoustic model: the teacher's answers are cached per query and mixed into the label."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vad_turn.acoustic.teacher import TeacherCache, query_keys, soft_target
from vad_turn.harness.detectors import Query

CALLS: list[int] = []


class LoudnessTeacher:
    """A cheap audio-reading teacher: p_eot = 1 - RMS of the last 0.1 s (x 10, clipped); counts its calls."""

    name, needs_audio, needs_words = "loudness", True, False

    def __init__(self, threads: int = 1):
        self.threads = threads

    def predict(self, audio, words, messages, silence_s):
        CALLS.append(1)
        tail = audio[-1600:]
        return float(np.clip(1.0 - 10 * np.sqrt(np.mean(tail ** 2)), 0.0, 1.0))


class TextTeacher(LoudnessTeacher):
    needs_audio, needs_words = False, True


def _queries(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    amps = rng.uniform(0.0, 0.09, size=n)
    qs = [Query(np.full(16000, a, np.float32), (), (), 0.1 * i) for i, a in enumerate(amps)]
    table = pd.DataFrame({"turn_id": [f"t{i // 3}" for i in range(n)], "span_index": [i % 3 for i in range(n)],
                          "timestamp": [1.0 + 0.1 * i for i in range(n)]})
    return table, qs, amps


def test_soft_target_mixes_label_and_teacher():
    y = np.array([0.0, 1.0, 1.0])
    assert soft_target(y, None, 0.5).tolist() == [0.0, 1.0, 1.0]
    assert soft_target(y, np.array([0.2, 0.6, 1.4]), 0.5) == pytest.approx([0.1, 0.8, 1.0])  # teacher clipped to 1
    assert soft_target(y, np.array([0.2, 0.6, 0.0]), 0.0).tolist() == [0.0, 1.0, 1.0]


def test_cache_computes_each_query_once_and_survives_a_new_process(tmp_path):
    table, qs, amps = _queries(9)
    CALLS.clear()
    spec = "test_acoustic_teacher:LoudnessTeacher"
    t1 = TeacherCache(spec, "getgoing:train", tmp_path)
    p = t1.p_eot(table.iloc[:6], qs[:6])
    assert len(CALLS) == 6 and t1.n_computed == 6
    assert p == pytest.approx(np.clip(1 - 10 * amps[:6], 0, 1), abs=1e-6)
    assert t1.path.name == "test_acoustic_teacher-LoudnessTeacher__getgoing-train.npz" and t1.path.exists()
    t2 = TeacherCache(spec, "getgoing:train", tmp_path)  # a new run reads the file: only the 3 new queries run
    assert len(t2) == 6
    p_all = t2.p_eot(table, qs)
    assert len(CALLS) == 9 and t2.n_computed == 3
    assert p_all[:6] == pytest.approx(p) and p_all == pytest.approx(np.clip(1 - 10 * amps, 0, 1), abs=1e-6)
    assert len(set(query_keys(table))) == 9


def test_a_teacher_that_cannot_hear_is_refused(tmp_path):
    table, qs, _ = _queries(2)
    with pytest.raises(ValueError, match="does not read audio"):
        TeacherCache("test_acoustic_teacher:TextTeacher", "x:train", tmp_path).p_eot(table, qs)


def test_teacher_options_are_checked():
    from vad_turn.acoustic.train import AcousticTrainConfig

    with pytest.raises(ValueError, match="teacher-weight"):
        AcousticTrainConfig(teacher="smart-turn", teacher_weight=1.5)
    with pytest.raises(ValueError, match="teacher-sources"):
        AcousticTrainConfig(teacher="smart-turn", teacher_sources=("getgoing:train",))


def test_answers_of_a_finished_run_seed_the_cache(tmp_path):
    """`add_from_run`: an evaluation run of the teacher fills the cache by query key, so those queries are not
    asked again; a run of another detector is refused."""
    import json

    table, qs, amps = _queries(6)
    run = tmp_path / "run"
    run.mkdir()
    spec = "test_acoustic_teacher:LoudnessTeacher"
    (run / "config.json").write_text(json.dumps({"detector": spec}))
    p_run = np.linspace(0.1, 0.6, 4)
    pd.DataFrame({"id": table["turn_id"][:4], "span_index": table["span_index"][:4],
                  "timestamp": table["timestamp"][:4] + 1e-7, "p_eot": p_run}).to_parquet(run / "predictions.parquet")
    CALLS.clear()
    cache = TeacherCache(spec, "getgoing:train", tmp_path / "cache")
    assert cache.add_from_run(run) == 4 and cache.add_from_run(run) == 0
    p = TeacherCache(spec, "getgoing:train", tmp_path / "cache").p_eot(table, qs)  # saved: a new process reads it
    assert len(CALLS) == 2  # only the two queries the run lacks
    assert p[:4] == pytest.approx(p_run) and p[4:] == pytest.approx(np.clip(1 - 10 * amps[4:], 0, 1), abs=1e-6)
    (run / "config.json").write_text(json.dumps({"detector": "smart-turn"}))
    with pytest.raises(ValueError, match="not of the teacher"):
        cache.add_from_run(run)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_smart_turn_answers_from_an_evaluation_run_are_its_training_answers(tiny_getgoing, tmp_path):
    """Parity behind `crossfit-calls --acoustic --teacher-runs`: Smart Turn's scores in a `vad-turn evaluate` run of
    real GetGoing turns are the answers it gives the acoustic training's queries of the same turns (every training
    query found in the run, none computed, equal to Smart Turn asked live)."""
    from vad_turn.harness.detectors import make_detector
    from vad_turn.harness.evaluate import EvalConfig, run, select_turns
    from vad_turn.harness.examples import build_examples
    from vad_turn.data.dataset import load_turns

    ds_path = tiny_getgoing / "getgoing"
    run(EvalConfig(dataset=ds_path, split="test", max_turns=2, seed=3, detector="smart-turn", out=tmp_path / "st"))
    rows, _ = select_turns(load_turns(ds_path), EvalConfig(split="test", max_turns=2, seed=3))
    ex = build_examples(rows, None, seed=0, points_per_span=3, needs_audio=True, needs_words=False, progress=False)
    cache = TeacherCache("smart-turn", "getgoing:train", tmp_path / "cache")
    assert cache.add_from_run(tmp_path / "st") >= len(ex) >= 6
    p = cache.p_eot(ex.table, ex.queries)
    assert cache.n_computed == 0
    live = make_detector("smart-turn").predict_batch(ex.queries)
    np.testing.assert_allclose(p, live, rtol=0, atol=1e-5)
