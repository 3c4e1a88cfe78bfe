"""The torch-free inference module: API, input handling, errors, parity with the harness detector,
int8 vs fp32 on real clips, and the one window definition shared with the acoustic front end."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from vad_turn.core.audio import AudioError, last_window, load_audio
from vad_turn.core.schema import Message, Word
from vad_turn.fusion.runtime import DEFAULT_TURN_MODEL_DIR, load_turn_model, predict_eot

WORDS = (Word("i", 0.2, 0.3), Word("want", 0.3, 0.6), Word("to", 0.6, 0.7), Word("go", 0.7, 1.0), Word("home", 1.0, 1.4))
MSGS = (Message("assistant", "where do you want to go"),)


@pytest.fixture(scope="module")
def model():
    return load_turn_model()


@pytest.fixture(scope="module")
def jfk(data_root):
    return load_audio(data_root / "clips" / "jfk.flac")


def test_inference_needs_no_torch():
    code = ("import sys, numpy as np; from vad_turn import load_turn_model, predict_eot; m = load_turn_model(); "
            "p = predict_eot(np.zeros(8000, np.float32) + 0.01, 8000, [('yes', 0.1, 0.4)], [], silence_s=0.5, model=m); "
            "assert 0 <= p <= 1; bad = [k for k in sys.modules if k.split('.')[0] in ('torch', 'torchaudio', 'transformers')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_window_is_the_acoustic_front_ends_window():
    from vad_turn.acoustic.features import FeatureConfig, window_audio

    cfg = FeatureConfig(window_s=4.0)
    rng = np.random.default_rng(0)
    for n in (0, 1, 1000, cfg.n_samples, cfg.n_samples + 12345):
        a = rng.standard_normal(n).astype(np.float32)
        np.testing.assert_array_equal(last_window(a, cfg.n_samples), window_audio(a, cfg))


def test_matches_the_harness_detector_and_the_acoustic_branch(model, jfk):
    from vad_turn.acoustic.runtime import AcousticDetector
    from vad_turn.fusion.detector import FusedDetector

    det = FusedDetector()
    a = jfk[: 3 * 16000]
    p = predict_eot(a, 16000, WORDS, MSGS, silence_s=0.7, model=model)
    assert p == pytest.approx(det.predict(a, WORDS, MSGS, 0.7), abs=1e-9)
    # the acoustic part is the shipped acoustic model's own probability
    b = model.branches.logits([(a, WORDS, MSGS, 0.7)])
    p_ac = AcousticDetector().predict(a, (), (), 0.7)
    assert 1 / (1 + np.exp(-b["ac_logit"][0])) == pytest.approx(p_ac, abs=1e-5)


def test_8k_stereo_and_int16_inputs(model, jfk):
    from vad_turn.core.audio import resample

    a = jfk[: 4 * 16000]
    p16 = predict_eot(a, 16000, WORDS, MSGS, silence_s=0.5, model=model)
    p_st = predict_eot(np.stack([a, a], axis=1), 16000, WORDS, MSGS, silence_s=0.5, model=model)
    assert p_st == pytest.approx(p16, abs=1e-6)
    p_i16 = predict_eot((a * 32767).astype(np.int16), 16000, WORDS, MSGS, silence_s=0.5, model=model)
    assert p_i16 == pytest.approx(p16, abs=2e-3)
    p8 = predict_eot(resample(a, 16000, 8000), 8000, WORDS, MSGS, silence_s=0.5, model=model)
    assert p8 == pytest.approx(p16, abs=0.05)  # telephony band loses > 4 kHz: close, not equal


def test_text_only_fallback_uses_the_lexical_mode(model):
    from vad_turn.fusion.runtime import MODES, fusion_features, fusion_logit, logit

    p = predict_eot(None, 16000, WORDS, MSGS, silence_s=0.8, model=model)
    lex = logit(model.branches.lexical.p_eot([(WORDS, MSGS, 0.8)]))
    X, mode = fusion_features(lex, [0.0], [0.8], [len(WORDS)], [True], [False])
    assert MODES[mode[0]] == "lexical"
    assert p == pytest.approx(1 / (1 + np.exp(-fusion_logit(X, mode, model.weights)[0] / model.temperature)), abs=1e-12)
    # more silence after a complete answer -> more likely the end of the turn
    assert predict_eot(None, 16000, WORDS, MSGS, silence_s=2.0, model=model) > p


def test_bad_audio_and_silence_raise_clear_errors(model):
    with pytest.raises(AudioError, match="empty"):
        predict_eot(np.zeros(0, np.float32), 16000, WORDS, MSGS, silence_s=0.5, model=model)
    with pytest.raises(AudioError, match="NaN or infinite"):
        predict_eot(np.full(1600, np.nan, np.float32), 16000, WORDS, MSGS, silence_s=0.5, model=model)
    with pytest.raises(AudioError, match="sample rate"):
        predict_eot(np.zeros(1600, np.float32), 0, WORDS, MSGS, silence_s=0.5, model=model)
    with pytest.raises(ValueError, match="silence_s"):
        predict_eot(None, 16000, WORDS, MSGS, silence_s=-1.0, model=model)
    with pytest.raises(ValueError, match="word 0"):
        predict_eot(None, 16000, ["hello"], MSGS, silence_s=0.5, model=model)


def test_missing_model_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="fusion.json"):
        load_turn_model(tmp_path)
    meta = json.loads((DEFAULT_TURN_MODEL_DIR / "fusion.json").read_text())
    (tmp_path / "fusion.json").write_text(json.dumps({**meta, "acoustic_onnx": "nowhere/model.onnx",
                                                      "lexical_dir": str(DEFAULT_TURN_MODEL_DIR.parent / "lexical")}))
    with pytest.raises(FileNotFoundError, match="nowhere/model.onnx"):
        load_turn_model(tmp_path)
    lex = tmp_path / "lex"
    shutil.copytree(DEFAULT_TURN_MODEL_DIR.parent / "lexical", lex, ignore=shutil.ignore_patterns("*.pt", "lr.npz"))
    (lex / "tokenizer.json").unlink()
    meta.update(lexical_dir="lex", acoustic_onnx=str(DEFAULT_TURN_MODEL_DIR.parent / "acoustic" / "model.onnx"))
    (tmp_path / "fusion.json").write_text(json.dumps(meta))
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_turn_model(tmp_path)
    (tmp_path / "fusion.json").write_text("{not json")
    with pytest.raises(ValueError, match="fusion.json"):
        load_turn_model(tmp_path)


def test_predict_eot_loads_the_shipped_model_once_and_shares_it(monkeypatch, model):
    """Without `model=`, predict_eot loads and verifies the shipped model on its first call only: later calls
    share the same TurnModel (`cached_turn_model`, keyed by the resolved folder) and score like a loaded one."""
    import vad_turn.fusion.runtime as R

    monkeypatch.setattr(R, "_LOADED", {})
    loads = []
    real = R.load_turn_model
    monkeypatch.setattr(R, "load_turn_model", lambda *a, **kw: loads.append(a) or real(*a, **kw))
    audio = np.zeros(16000, np.float32) + 0.01
    p = [predict_eot(audio, 16000, WORDS[:3], MSGS, silence_s=0.5) for _ in range(3)]
    assert len(loads) == 1, loads
    first = R.cached_turn_model()
    assert first is R.cached_turn_model() is R.cached_turn_model(DEFAULT_TURN_MODEL_DIR / ".." / "turn")
    assert len(loads) == 1  # the same folder by another spelling is the same entry
    assert p[0] == p[1] == p[2] == pytest.approx(predict_eot(audio, 16000, WORDS[:3], MSGS, silence_s=0.5,
                                                             model=model), abs=1e-12)


def test_concurrent_first_calls_load_the_model_once(monkeypatch):
    """Eight threads asking for the model at once: one load (the others wait for it), one shared object; a
    load that raises is not cached (the next call loads again)."""
    import threading
    import time

    import vad_turn.fusion.runtime as R

    monkeypatch.setattr(R, "_LOADED", {})
    loads, fail = [], [True]

    def slow_load(path):
        loads.append(path)
        time.sleep(0.2)  # long enough for every thread to arrive while the first one loads
        if fail[0]:
            fail[0] = False
            raise OSError("disk hiccup")
        return object()

    monkeypatch.setattr(R, "load_turn_model", slow_load)
    with pytest.raises(OSError, match="hiccup"):
        R.cached_turn_model()
    barrier, got = threading.Barrier(8), []

    def ask():
        barrier.wait()
        got.append(R.cached_turn_model())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(loads) == 2, loads  # the failed load, then exactly one for the eight threads
    assert len(got) == 8 and all(g is got[0] for g in got)


def test_int8_acoustic_graph_agrees_with_fp32_on_real_clips(model, data_root):
    """Every 0.25 s of two real clips, with and without words, at seeded silences: |p_int8 - p_fp32| <= 0.02
    and the same decision at the model's threshold on >= 99% of them."""
    m8 = load_turn_model(int8=True)
    rng = np.random.default_rng(0)
    items = []
    for name in ("jfk.flac", "silero_test.wav"):
        clip = load_audio(data_root / "clips" / name)
        for end in range(4000, clip.size, 4000):
            words = WORDS if rng.random() < 0.5 else ()
            words = tuple(w for w in words if w.end <= end / 16000)  # words end before the audio does
            items.append((clip[:end], words, MSGS, float(rng.choice([0.0, 0.2, 0.5, 1.0, 2.0]))))
    assert len(items) >= 100
    p32, p8 = model.p_eot(items), m8.p_eot(items)
    assert np.abs(p8 - p32).max() <= 0.02
    assert np.mean((p8 >= model.threshold) == (p32 >= model.threshold)) >= 0.99
    assert p32.std() > 0.05  # the fixtures span a range of probabilities, not one value
