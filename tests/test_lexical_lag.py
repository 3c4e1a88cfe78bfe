"""The transcript lag as a training parameter of the lexical model: it reaches the training examples,
is recorded in lexical.json (old folders read as 0.5 s), and a model queried under another lag warns
(or refuses with strict_lag); a model folder may reference another folder's tokenizer."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402
import warnings  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vad_turn.core.schema import (  # noqa: E402
    DEFAULT_TRANSCRIPT_LAG_S,
    Message,
    TurnRecord,
    Word,
    silence_spans_from_words,
)
from vad_turn.harness.evaluate import EvalConfig, evaluate_detector  # noqa: E402
from vad_turn.lexical.runtime import (
    DEFAULT_MODEL_DIR,
    LexicalDetector,
    LexicalModel,
    LexicalTokenizer,
    TranscriptLagMismatch,
)


def turn(tid, words, end_s, split="train") -> TurnRecord:
    ws = [Word(w, a, b) for w, a, b in words]
    return TurnRecord(id=tid, source="hand", split=split, words=ws, silence_spans=silence_spans_from_words(ws, end_s),
                      messages=[Message("assistant", "how are you")])


# a 0.6 s hold after "well" (ends 1.0 s), then "fine" and the end of the turn at 3.0 s
FINE = turn("fine", [("so", 0.0, 0.4), ("well", 0.4, 1.0), ("fine", 1.6, 2.0)], 3.0)
DEV = turn("dev-fine", [("yes", 0.0, 0.4), ("no", 1.0, 1.3)], 2.3, split="dev")


@pytest.fixture(scope="module")
def tokenizer_path() -> Path:
    p = DEFAULT_MODEL_DIR / "tokenizer.json"
    if p.exists():
        return p
    from vad_turn.lexical.train import default_tokenizer_path

    return default_tokenizer_path()


def _tiny_folder(out: Path, tokenizer_path: Path, lag_s: float) -> Path:
    import torch

    from vad_turn.lexical.export import save_model_folder
    from vad_turn.lexical.model import build_model
    from vad_turn.lexical.train import LexicalConfig

    tok = LexicalTokenizer(tokenizer_path)
    cfg = LexicalConfig(emb_dim=8, hidden=12, head_hidden=8, dropout=0.0, transcript_lag_s=lag_s)
    torch.manual_seed(0)
    model = build_model((np.arange(tok.vocab_size) % 300).astype(np.int64), 300, cfg)
    return save_model_folder(model.eval(), cfg, tok, 300, out, {})


@pytest.fixture(scope="module")
def lag02_dir(tmp_path_factory, tokenizer_path) -> Path:
    return _tiny_folder(tmp_path_factory.mktemp("lag") / "model", tokenizer_path, 0.2)


def test_the_lag_decides_which_words_the_examples_see(tokenizer_path):
    from vad_turn.lexical.train import build_items

    tok = LexicalTokenizer(tokenizer_path)
    items = {lag: build_items([FINE], "train", tok, max_turns=None, points_per_span=None, seed=0, transcript_lag_s=lag)
             for lag in (0.2, 0.5)}
    ctx = len(tok.context_ids("how are you"))
    after = ctx - 1 + np.cumsum([0] + [len(tok.word_ids(w)) for w in ("so", "well", "fine")])  # state after n words
    # the hold after "well" (6 points, silence 0..0.5 s): "well" visible from 0.2 s at lag 0.2, only at 0.5 s at lag 0.5
    n_seen = {0.2: [1, 1, 2, 2, 2, 2], 0.5: [1, 1, 1, 1, 1, 2]}
    for lag, (its, ids, _) in items.items():
        assert ids == ["fine"] and len(its) == 1
        pos = its[0]["pos"]
        assert pos.size == 6 + 30  # the hold, then the end span up to the 3 s timeout
        assert pos[:6].tolist() == after[n_seen[lag]].tolist()
        assert its[0]["labels"].tolist() == [0] * 6 + [1] * 30
        assert its[0]["timing"][:6, 1] == pytest.approx(np.log1p(n_seen[lag]))  # log1p_n_seen
        # "fine" (ends 2.0 s = the end span's start) appears after the lag
        k = int(round(lag / 0.1))
        assert pos[6:].tolist() == [after[2]] * k + [after[3]] * (30 - k)


def test_config_lag_reaches_training_and_lexical_json(tmp_path, tokenizer_path, monkeypatch):
    import vad_turn.lexical.train as L
    from vad_turn.data.dataset import write_turns

    ds = write_turns([FINE, replace(FINE, id="fine2"), DEV], tmp_path / "data")
    seen = []
    real = L.build_items

    def recording(*a, **kw):  # the real function, recording the lag it was given
        seen.append(kw["transcript_lag_s"])
        return real(*a, **kw)

    monkeypatch.setattr(L, "build_items", recording)
    cfg = L.LexicalConfig(dataset=ds, max_turns=None, val_turns=10, emb_dim=8, hidden=12, head_hidden=8, epochs=1,
                          min_token_count=1, tokenizer=tokenizer_path, transcript_lag_s=0.3, out=tmp_path / "run")
    L.run(cfg)
    assert seen == [0.3, 0.3]  # train and val examples
    meta = json.loads((tmp_path / "run" / "model" / "lexical.json").read_text())
    assert meta["transcript_lag_s"] == pytest.approx(0.3)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["transcript_lag_s"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="transcript_lag_s"):
        L.LexicalConfig(transcript_lag_s=-0.1)


def test_lag_round_trips_and_old_folders_read_as_half_a_second(lag02_dir, tmp_path):
    assert json.loads((lag02_dir / "lexical.json").read_text())["transcript_lag_s"] == pytest.approx(0.2)
    assert LexicalModel(lag02_dir).transcript_lag_s == pytest.approx(0.2)
    old = tmp_path / "old"
    shutil.copytree(lag02_dir, old)
    meta = json.loads((old / "lexical.json").read_text())
    del meta["transcript_lag_s"]
    (old / "lexical.json").write_text(json.dumps(meta))
    assert LexicalModel(old).transcript_lag_s == 0.5
    # the shipped model states the lag it was trained with, and it is the harness default its queries use
    shipped = json.loads((DEFAULT_MODEL_DIR / "lexical.json").read_text())
    assert shipped["transcript_lag_s"] == pytest.approx(DEFAULT_TRANSCRIPT_LAG_S)
    assert LexicalModel(DEFAULT_MODEL_DIR).transcript_lag_s == pytest.approx(DEFAULT_TRANSCRIPT_LAG_S)


def test_mismatched_lag_warns_or_refuses(lag02_dir):
    det = LexicalDetector(lag02_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert det.check_transcript_lag(0.2) is True and det.check_transcript_lag(0.24) is True  # within 0.05 s
    with pytest.warns(TranscriptLagMismatch, match=r"trained with transcript lag 0.2 s, queried with 0.5 s"):
        assert det.check_transcript_lag(0.5) is False
    with pytest.raises(ValueError, match="queried with 0.5 s"):
        LexicalDetector(lag02_dir, strict_lag=True).check_transcript_lag(0.5)
    with pytest.raises(TypeError, match="strict_lag"):
        LexicalDetector(lag02_dir, strict_lag="yes")


def test_the_harness_tells_the_detector_its_lag(lag02_dir):
    det = LexicalDetector(lag02_dir)
    cfg = EvalConfig(split=None, timeouts_s=(1.0,), transcript_lag_s=0.5)
    with pytest.warns(TranscriptLagMismatch):
        a = evaluate_detector([FINE], det, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TranscriptLagMismatch)
        b = evaluate_detector([FINE], det, replace(cfg, transcript_lag_s=0.2))
    assert len(a["predictions"]) == len(b["predictions"]) == 6 + 10
    # same model, different visible words in the hold -> different scores at 0.2-0.4 s of silence
    assert not np.allclose(a["predictions"]["p_eot"].to_numpy()[2:5], b["predictions"]["p_eot"].to_numpy()[2:5])
    with pytest.raises(ValueError, match="queried with 0.5 s"):
        evaluate_detector([FINE], LexicalDetector(lag02_dir, strict_lag=True), cfg)


def test_a_folder_may_reference_another_folders_tokenizer(lag02_dir, tmp_path):
    ref = tmp_path / "ref"
    shutil.copytree(lag02_dir, ref)
    (ref / "tokenizer.json").unlink()
    meta = json.loads((ref / "lexical.json").read_text())
    (ref / "lexical.json").write_text(json.dumps({**meta, "tokenizer": f"../{lag02_dir.parent.name}/model/tokenizer.json"}))
    shutil.copytree(lag02_dir, tmp_path / lag02_dir.parent.name / "model")
    qs = [([Word("well", 0.0, 0.3), Word("fine", 0.3, 0.6)], [Message("assistant", "hi")], s) for s in (0.0, 0.4)]
    assert LexicalModel(ref).p_eot(qs) == pytest.approx(LexicalModel(lag02_dir).p_eot(qs), abs=1e-7)
    (ref / "lexical.json").write_text(json.dumps({**meta, "tokenizer": "../nowhere/tokenizer.json"}))
    with pytest.raises(FileNotFoundError, match="nowhere/tokenizer.json"):
        LexicalModel(ref)
