"""The branch-average turn model (`vad_turn.fusion.average`): the live fused runtime over its fusion.json gives
exactly sigmoid((1 - w) logit(p_acoustic) + w logit(p_lexical)) of the two branch detectors, words visible or
not, and the text-only mode is the lexical branch alone."""
from __future__ import annotations

import json

import numpy as np
import pytest

from vad_turn.core.model_files import SHIPPED_LEXICAL_DIR, ModelFileError
from vad_turn.core.schema import Message, Word
from vad_turn.fusion.average import average_weights, write_average_model
from vad_turn.fusion.runtime import FUSION_FEATURES, MODES, TurnModel, logit, sigmoid
from vad_turn.harness.detectors import make_detector


def _queries():
    rng = np.random.default_rng(0)
    t = np.arange(int(2.4 * 16000)) / 16000
    speech = (0.3 * np.sin(2 * np.pi * 180 * t) * (t < 1.6) + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
    words = (Word("i", 0.1, 0.3), Word("need", 0.35, 0.7), Word("a", 0.75, 0.85), Word("bus", 0.9, 1.5))
    context = (Message("assistant", "where are you leaving from?"),)
    out = []
    for silence in (0.1, 0.4, 0.8):
        n = int((1.6 + silence) * 16000)
        for k in (0, 2, 4):  # no word visible yet, some, all
            out.append((speech[:n], words[:k], context, silence))
    return out


def test_the_live_model_is_the_mix_of_the_two_branch_detectors(tmp_path):
    w = 0.3
    write_average_model(w, SHIPPED_LEXICAL_DIR, tmp_path / "avg")
    model = TurnModel(tmp_path / "avg")
    qs = _queries()
    lex, ac = make_detector("lexical"), make_detector("acoustic")
    p_lex = np.array([lex.predict(*q) for q in qs])
    p_ac = np.array([ac.predict(*q) for q in qs])
    want = sigmoid((1 - w) * logit(p_ac) + w * logit(p_lex))
    got = model.p_eot(qs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.ptp(got) > 0.05  # the queries differ enough for the check to mean something
    # text only (no audio): the lexical branch alone
    text = model.p_eot([(None, q[1], q[2], q[3]) for q in qs])
    np.testing.assert_allclose(text, p_lex, rtol=0, atol=1e-6)


def test_another_acoustic_folder_of_the_same_recipe_replaces_the_graph(tmp_path):
    """`--acoustic-dir` (a cross-fit fold's acoustic model): the average reads that folder's graph, so with the
    shipped acoustic folder copied elsewhere it is the same model; a folder of another window is refused."""
    import shutil

    from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR

    copy = tmp_path / "fold-acoustic"
    shutil.copytree(SHIPPED_ACOUSTIC_DIR, copy)
    meta = write_average_model(0.3, SHIPPED_LEXICAL_DIR, tmp_path / "avg", acoustic_dir=copy)
    assert (tmp_path / "avg" / meta["acoustic_onnx"]).resolve() == (copy / "model.onnx").resolve()
    write_average_model(0.3, SHIPPED_LEXICAL_DIR, tmp_path / "ref")
    qs = _queries()
    np.testing.assert_allclose(TurnModel(tmp_path / "avg").p_eot(qs), TurnModel(tmp_path / "ref").p_eot(qs), atol=1e-6)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["model"]["window_s"] = float(cfg["model"]["window_s"]) + 1.0
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="another recipe"):
        write_average_model(0.3, SHIPPED_LEXICAL_DIR, tmp_path / "bad", acoustic_dir=copy)
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        write_average_model(0.3, SHIPPED_LEXICAL_DIR, tmp_path / "bad", acoustic_dir=tmp_path / "nowhere")


def test_weights_and_refusals(tmp_path):
    W = average_weights(0.25, np.arange(len(FUSION_FEATURES), dtype=float))
    both = W[MODES.index("both")]
    assert both[FUSION_FEATURES.index("lex_logit")] == 0.25 and both[FUSION_FEATURES.index("ac_logit")] == 0.75
    assert np.count_nonzero(both) == 2 and W[MODES.index("timing")][1] == 1.0
    with pytest.raises(ValueError, match="lexical share"):
        average_weights(1.5, np.zeros(len(FUSION_FEATURES)))
    with pytest.raises(FileNotFoundError, match="lexical_head.onnx"):
        write_average_model(0.5, tmp_path / "nowhere", tmp_path / "avg")
    meta = write_average_model(0.5, SHIPPED_LEXICAL_DIR, tmp_path / "avg")
    assert meta["lexical_without_words"] is True and meta["temperature"] == 1.0
    bad = dict(meta, lexical_without_words="yes")
    (tmp_path / "avg" / "fusion.json").write_text(json.dumps(bad))
    with pytest.raises(ModelFileError, match="lexical_without_words"):
        TurnModel(tmp_path / "avg")


def test_stale_words_leave_the_acoustic_branch_alone(tmp_path):
    """With `max_unheard_s`, a query whose visible words end more than that before the speech does (a word lag)
    is scored by the acoustic branch alone; one whose words reach the speech's end is still the mix. The speech
    of `_queries` ends at 1.6 s: all words visible leave 0.1 s unheard, two words 0.9 s, none 1.6 s."""
    from vad_turn.fusion.runtime import unheard_s

    w = 0.3
    meta = write_average_model(w, SHIPPED_LEXICAL_DIR, tmp_path / "avg", max_unheard_s=0.3)
    assert meta["lexical_max_unheard_s"] == 0.3
    model = TurnModel(tmp_path / "avg")
    qs = _queries()
    np.testing.assert_allclose(unheard_s(qs), np.tile([1.6, 0.9, 0.1], 3), atol=1e-3)
    assert np.isnan(unheard_s([(None, qs[0][1], qs[0][2], 0.1)])).all()
    lex, ac = make_detector("lexical"), make_detector("acoustic")
    p_lex = np.array([lex.predict(*q) for q in qs])
    p_ac = np.array([ac.predict(*q) for q in qs])
    fresh = np.array([len(q[1]) == 4 for q in qs])
    want = np.where(fresh, sigmoid((1 - w) * logit(p_ac) + w * logit(p_lex)), p_ac)
    got = model.p_eot(qs)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert np.abs(got - p_ac)[fresh].max() > 0.01  # the fresh rows really are mixed
    # text only (no audio, so no speech end to compare with): the lexical branch alone, as without the gate
    np.testing.assert_allclose(model.p_eot([(None, q[1], q[2], q[3]) for q in qs]), p_lex, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="max_unheard_s"):
        write_average_model(w, SHIPPED_LEXICAL_DIR, tmp_path / "bad", max_unheard_s=-1)
    (tmp_path / "avg" / "fusion.json").write_text(json.dumps(dict(meta, lexical_max_unheard_s="soon")))
    with pytest.raises(ModelFileError, match="lexical_max_unheard_s"):
        TurnModel(tmp_path / "avg")


def test_without_a_visible_word_the_acoustic_branch_alone_when_words_are_required(tmp_path):
    """`lexical_without_words=False` (the shipped default's setting, as in the fitted fusions): no word visible ->
    the acoustic detector's p; a visible word -> the mix. Written over its own source, the timing row is the
    source's and its origin is kept."""
    w = 0.2
    meta = write_average_model(w, SHIPPED_LEXICAL_DIR, tmp_path / "avg", lexical_without_words=False)
    assert meta["lexical_without_words"] is False
    model = TurnModel(tmp_path / "avg")
    qs = _queries()
    lex, ac = make_detector("lexical"), make_detector("acoustic")
    p_lex = np.array([lex.predict(*q) for q in qs])
    p_ac = np.array([ac.predict(*q) for q in qs])
    has_words = np.array([len(q[1]) > 0 for q in qs])
    want = np.where(has_words, sigmoid((1 - w) * logit(p_ac) + w * logit(p_lex)), p_ac)
    np.testing.assert_allclose(model.p_eot(qs), want, rtol=0, atol=1e-6)
    assert np.abs(want - p_ac)[has_words].max() > 0.01
    again = write_average_model(0.4, SHIPPED_LEXICAL_DIR, tmp_path / "avg", source=tmp_path / "avg")
    np.testing.assert_array_equal(np.asarray(again["weights"])[MODES.index("timing")],
                                  np.asarray(meta["weights"])[MODES.index("timing")])
    assert again["timing_from"] == meta["timing_from"] and again["w"] == 0.4
