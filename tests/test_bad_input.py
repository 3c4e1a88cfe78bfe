"""Bad input to the fused turn model and the lexical runtime raises named errors (or, where the input is
legitimately valid, gives the right number): words, audio, silence, fusion.json fields, truncated or
corrupt ONNX / tokenizer files, and files that differ from their folder's checksums.json."""
from __future__ import annotations

import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from vad_turn.core.audio import AudioError, load_audio
from vad_turn.core.model_files import (
    CHECKSUMS_FILE,
    ChecksumMismatch,
    ModelFileError,
    sha256_file,
    verify_model_file,
    write_checksums,
)
from vad_turn.core.onnx import Int8ParityWarning
from vad_turn.core.schema import WORD_END_TOLERANCE_S, Message, Word, WordError
from vad_turn.fusion.runtime import (
    DEFAULT_TURN_MODEL_DIR,
    ModelOutputError,
    load_turn_model,
    predict_eot,
    turn_model_files,
    write_turn_model_checksums,
)
from vad_turn.lexical.runtime import LexicalModel

MODELS = DEFAULT_TURN_MODEL_DIR.parent
MSGS = (Message("assistant", "where do you want to go"),)
AUDIO_S = 3.0  # the first 3 s of jfk.flac
GOOD = [Word("i", 0.2, 0.3), Word("want", 0.3, 0.6), Word("to", 0.6, 0.7), Word("go", 0.7, 1.0), Word("home", 1.0, 1.4)]


@pytest.fixture(scope="module")
def model():
    return load_turn_model()


@pytest.fixture(scope="module")
def jfk3(data_root):
    return load_audio(data_root / "clips" / "jfk.flac")[: int(AUDIO_S * 16000)]


def _with(i: int, w) -> list:
    return [*GOOD[:i], w, *GOOD[i + 1:]]


# ----------------------------------------------------------------------------- words
# (id, words, fragment of the WordError message; None: valid, scored like the same words as Words)
WORD_ROWS = [
    ("out_of_order", _with(3, Word("go", 0.5, 1.0)), r"word 3 .* starts at 0.5 s, before word 2 \(0.6 s\)"),
    ("end_before_start", _with(2, Word("to", 0.7, 0.6)), r"word 2 .* ends before it starts"),
    ("nan_start", _with(1, Word("want", math.nan, 0.6)), r"word 1 .* NaN or infinite time"),
    ("inf_end", _with(4, Word("home", 1.0, math.inf)), r"word 4 .* NaN or infinite time"),
    ("none_entry", _with(2, None), r"word 2 \(None\) must be a Word"),
    ("none_time_in_dict", _with(0, {"word": "i", "start": None, "end": 0.3}), r"word 0 .* numeric start/end"),
    ("int_text", _with(1, Word(7, 0.3, 0.6)), r"word 1 .* text of type int, not str"),
    ("none_text_tuple", _with(4, (None, 1.0, 1.4)), r"word 4 .* text of type NoneType, not str"),
    ("bare_string", ["hello"], r"word 0 \('hello'\) must be a Word"),
    # valid: overlapping words (recognisers' boundaries overlap) with non-decreasing starts
    ("overlap_ok", _with(3, Word("go", 0.6, 1.05)), None),
    # valid: dicts / tuples with numpy scalars are the same words
    ("dicts_tuples_ok", [{"word": "i", "start": np.float32(0.2), "end": 0.3}, ("want", 0.3, np.float64(0.6)),
                         *GOOD[2:]], None),
]
# rows that need audio: a word ending after the audio (3 s) does
AUDIO_WORD_ROWS = [
    ("ends_after_audio", [*GOOD, Word("now", 2.9, AUDIO_S + 0.2)], r"word 5 .* ends at 3.2 s, after the audio's end at 3 s"),
    ("starts_after_audio", [*GOOD, Word("now", 3.5, 3.6)], r"word 5 .* after the audio's end"),
    ("within_tolerance_ok", [*GOOD, Word("now", 2.9, AUDIO_S + WORD_END_TOLERANCE_S - 0.01)], None),
]


def _as_word_objects(words):
    from vad_turn.fusion.runtime import as_words

    return as_words(words)


@pytest.mark.parametrize("name,words,fragment", WORD_ROWS + AUDIO_WORD_ROWS, ids=[r[0] for r in WORD_ROWS + AUDIO_WORD_ROWS])
def test_predict_eot_words(model, jfk3, name, words, fragment):
    if fragment is not None:
        with pytest.raises(WordError, match=fragment):
            predict_eot(jfk3, 16000, words, MSGS, silence_s=0.5, model=model)
        with pytest.raises(WordError, match=fragment):  # the same check behind TurnModel.p_eot
            model.p_eot([(jfk3, words, MSGS, 0.5)])
        return
    p = predict_eot(jfk3, 16000, words, MSGS, silence_s=0.5, model=model)
    ref = model.branches.logits([(jfk3, _as_word_objects(words), MSGS, 0.5)])
    from vad_turn.fusion.runtime import fused_logits, sigmoid

    assert 0.0 < p < 1.0
    assert p == pytest.approx(float(sigmoid(fused_logits(ref, model.weights) / model.temperature)[0]), abs=1e-12)


@pytest.mark.parametrize("name,words,fragment", WORD_ROWS, ids=[r[0] for r in WORD_ROWS])
def test_text_only_and_lexical_runtime_words(model, name, words, fragment):
    if fragment is None:
        p = predict_eot(None, 16000, words, MSGS, silence_s=0.5, model=model)
        assert 0.0 < p < 1.0
        assert p == pytest.approx(predict_eot(None, 16000, _as_word_objects(words), MSGS, silence_s=0.5, model=model),
                                  abs=1e-12)
        return
    with pytest.raises(WordError, match=fragment):
        predict_eot(None, 16000, words, MSGS, silence_s=0.5, model=model)
    if all(isinstance(w, Word) for w in words):  # the lexical runtime takes Words
        with pytest.raises(WordError, match="query 0 words: " + fragment):
            model.branches.lexical.p_eot([(words, MSGS, 0.5)])


def test_text_only_words_have_no_audio_end(model):
    """Without audio there is no end to exceed: late word times are only a timing feature."""
    late = [Word(w.word, w.start + 100.0, w.end + 100.0) for w in GOOD]
    assert predict_eot(None, 16000, late, MSGS, silence_s=0.5, model=model) == pytest.approx(
        predict_eot(None, 16000, GOOD, MSGS, silence_s=0.5, model=model), abs=1e-6)


# ----------------------------------------------------------------------------- audio and silence
def _audio(kind: str, a: np.ndarray):
    return {"int16_as_float": (a * 32767).astype(np.int16).astype(np.float32),
            "int32_as_float64": (a * 2147483647).astype(np.int32).astype(np.float64),
            "quiet_int16_as_float": (a * 32767 * 0.01).astype(np.int16).astype(np.float32),  # -40 dB speech
            "stereo_int16_as_float": np.stack([a, a], 1) * 32767.0,
            "int16": (a * 32767).astype(np.int16),
            "hot_float": np.clip(a * 10, -1, 1) * 1.5,  # resampled clipped audio overshoots [-1, 1]
            }[kind]


AUDIO_ROWS = [  # (kind, fragment of the AudioError; None: valid, within 2e-3 of the float input's p_eot)
    ("int16_as_float", r"float audio peaks at \|x\| = \d+.*unscaled integer PCM.*np.int16.*32768"),
    ("int32_as_float64", r"unscaled integer PCM"),
    ("quiet_int16_as_float", r"unscaled integer PCM"),
    ("stereo_int16_as_float", r"unscaled integer PCM"),
    ("int16", None),
    ("hot_float", None),
]


@pytest.mark.parametrize("kind,fragment", AUDIO_ROWS, ids=[r[0] for r in AUDIO_ROWS])
def test_audio_range(model, jfk3, kind, fragment):
    a = _audio(kind, jfk3)
    if fragment is not None:
        with pytest.raises(AudioError, match="predict_eot audio: .*" + fragment):
            predict_eot(a, 16000, GOOD, MSGS, silence_s=0.5, model=model)
        with pytest.raises(AudioError, match="item 0 audio: .*" + fragment):
            model.p_eot([(a, GOOD, MSGS, 0.5)])
        return
    p = predict_eot(a, 16000, GOOD, MSGS, silence_s=0.5, model=model)
    if kind == "int16":
        assert p == pytest.approx(predict_eot(jfk3, 16000, GOOD, MSGS, silence_s=0.5, model=model), abs=2e-3)
    else:  # accepted as given (not rescaled): the same as the item path
        assert p == pytest.approx(float(model.p_eot([(a.astype(np.float32), GOOD, MSGS, 0.5)])[0]), abs=1e-12)


def test_the_range_check_lives_in_prepare_audio_and_spares_resampled_clipped_audio(data_root):
    """Every caller of prepare_audio (load_audio, the pipeline, the acoustic detector) gets the check; audio
    that was clipped and then resampled by prepare_audio itself overshoots [-1, 1] but stays under the limit."""
    from vad_turn.core.audio import FLOAT_AUDIO_MAX_ABS, prepare_audio, resample

    a48 = load_audio(data_root / "clips" / "jfk.flac", target_rate_hz=48000)
    with pytest.raises(AudioError, match=r"clip.wav: float audio peaks at \|x\| = \d+"):
        prepare_audio(a48 * 32768.0, 48000, source="clip.wav")
    clipped8k = np.clip(resample(a48 * 100, 48000, 8000), -1, 1)  # heavily clipped telephony audio
    a16 = prepare_audio(clipped8k, 8000)
    assert 1.3 < np.abs(a16).max() < FLOAT_AUDIO_MAX_ABS == 2.0  # soxr overshoot: 1.56 measured
    np.testing.assert_array_equal(prepare_audio(a16, 16000), a16)  # fed back in: accepted as it is


@pytest.mark.parametrize("silence", [math.nan, math.inf, -0.1, None, "0.5s"])
def test_bad_silence(model, jfk3, silence):
    # nan, inf, -0.1: "a finite number >= 0"; None, "0.5s": "a real number of seconds (int or float)"
    with pytest.raises(ValueError, match=r"predict_eot: silence_s must be a (finite number >= 0|real number of seconds)"):
        predict_eot(jfk3, 16000, GOOD, MSGS, silence_s=silence, model=model)
    with pytest.raises(ValueError, match=r"item 0: silence_s must be"):
        model.p_eot([(jfk3, GOOD, MSGS, silence)])
    with pytest.raises(ValueError, match=r"query 0: silence_s must be"):
        model.branches.lexical.p_eot([(GOOD, MSGS, silence)])


def test_output_is_checked_to_be_a_probability(model, jfk3, monkeypatch):
    """A branch graph that emits NaN (corrupt weights with no checksum record) cannot reach the caller."""
    monkeypatch.setattr(model.branches, "acoustic_p", lambda w, s: np.full(len(w), np.nan))
    with pytest.raises(ModelOutputError, match=r"p_eot of item 0 is nan"):
        predict_eot(jfk3, 16000, GOOD, MSGS, silence_s=0.5, model=model)


# ----------------------------------------------------------------------------- model files
def _copy_models(tmp_path: Path) -> Path:
    """turn/, lexical/, acoustic/ side by side (the layout fusion.json's relative paths expect), no .pt."""
    root = tmp_path / "models"
    for name in ("turn", "lexical", "acoustic"):
        shutil.copytree(MODELS / name, root / name,
                        ignore=shutil.ignore_patterns("*.pt", "*.png", "lr.npz", "split_ids.json", "*.md"))
    return root


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def _flip_middle(p: Path) -> None:  # same size, 64 bytes of weights inverted
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    b[mid:mid + 64] = bytes(255 - x for x in b[mid:mid + 64])
    p.write_bytes(bytes(b))


def _fusion_field(field: str, value):
    def edit(root: Path) -> None:
        p = root / "turn" / "fusion.json"
        meta = json.loads(p.read_text())
        if field == "weights":
            meta["weights"][2][1] = value
        else:
            meta[field] = value
        p.write_text(json.dumps(meta))  # json writes NaN / Infinity literals, as json.dumps of a float nan does
        write_checksums(root / "turn", ["fusion.json"])  # re-exported with a fresh record: the field check must catch it
    return edit


def _no_record(folder: str, then):
    def edit(root: Path) -> None:
        (root / folder / CHECKSUMS_FILE).unlink()
        then(root)
    return edit


def _on(rel: str, fn):
    return lambda root: fn(root / rel)


def _unlisted(root: Path) -> None:
    p = root / "lexical" / CHECKSUMS_FILE
    rec = json.loads(p.read_text())
    del rec["files"]["lexical_head.onnx"]
    p.write_text(json.dumps(rec))


# (id, edit of the copied models, error class, message fragment)
MODEL_ROWS = [
    ("fusion_temperature_nan", _fusion_field("temperature", math.nan), ModelFileError,
     r"turn/fusion.json: field 'temperature' must be a finite number in \(0.0, inf\], got nan"),
    ("fusion_temperature_inf", _fusion_field("temperature", math.inf), ModelFileError, r"field 'temperature'"),
    ("fusion_threshold_nan", _fusion_field("threshold", math.nan), ModelFileError,
     r"turn/fusion.json: field 'threshold' must be a finite number in \[0.0, 1.0\], got nan"),
    ("fusion_threshold_above_1", _fusion_field("threshold", 1.5), ModelFileError, r"field 'threshold'"),
    ("fusion_weight_nan", _fusion_field("weights", math.nan), ModelFileError,
     r"turn/fusion.json: field 'weights' holds nan at mode 'acoustic', feature 'lex_logit'"),
    ("fusion_weight_inf", _fusion_field("weights", -math.inf), ModelFileError, r"field 'weights' holds -inf"),
    ("fusion_window_nan", _fusion_field("acoustic_window_s", math.nan), ModelFileError, r"field 'acoustic_window_s'"),
    ("fusion_lag_nan", _fusion_field("transcript_lag_s", math.nan), ModelFileError, r"field 'transcript_lag_s'"),
    ("fusion_truncated", _no_record("turn", _on("turn/fusion.json", _truncate)), ModelFileError,
     r"turn/fusion.json: not a fused turn model file: invalid JSON"),
    ("fusion_edited_vs_record", _on("turn/fusion.json", lambda p: p.write_text(p.read_text().replace("0.5", "0.6", 1))),
     ChecksumMismatch, r"turn/fusion.json: sha256 \w+\.\.\. differs from \w+\.\.\. recorded in .*turn/checksums.json"),
    ("acoustic_truncated_vs_record", _on("acoustic/model.onnx", _truncate), ChecksumMismatch,
     r"acoustic/model.onnx: sha256 .* differs"),
    ("acoustic_truncated_no_record", _no_record("acoustic", _on("acoustic/model.onnx", _truncate)), ModelFileError,
     r"turn model: cannot load ONNX file .*acoustic/model.onnx: truncated or corrupt \(InvalidProtobuf"),
    ("acoustic_weights_flipped", _on("acoustic/model.onnx", _flip_middle), ChecksumMismatch,
     r"acoustic/model.onnx: sha256 .* differs"),
    ("lexical_step_weights_flipped", _on("lexical/lexical_step.onnx", _flip_middle), ChecksumMismatch,
     r"lexical/lexical_step.onnx: sha256 .* differs"),
    ("lexical_head_truncated_no_record", _no_record("lexical", _on("lexical/lexical_head.onnx", _truncate)),
     ModelFileError, r"lexical model: cannot load ONNX file .*lexical/lexical_head.onnx: truncated or corrupt"),
    ("tokenizer_truncated_vs_record", _on("lexical/tokenizer.json", _truncate), ChecksumMismatch,
     r"lexical/tokenizer.json: sha256 .* differs"),
    ("tokenizer_truncated_no_record", _no_record("lexical", _on("lexical/tokenizer.json", _truncate)), ModelFileError,
     r"lexical/tokenizer.json: not a valid tokenizer.json, truncated or corrupt"),
    ("tokenizer_not_json_no_record", _no_record("lexical", _on("lexical/tokenizer.json", lambda p: p.write_text("{}"))),
     ModelFileError, r"lexical/tokenizer.json: not a valid tokenizer.json"),
    ("lexical_json_truncated_no_record", _no_record("lexical", _on("lexical/lexical.json", _truncate)), ModelFileError,
     r"lexical/lexical.json: not a lexical model file: invalid JSON"),
    ("record_missing_a_file", _unlisted, ModelFileError,
     r"lexical/lexical_head.onnx: not listed in .*lexical/checksums.json"),
    ("record_truncated", _on("acoustic/checksums.json", _truncate), ModelFileError,
     r"acoustic/checksums.json: unreadable checksum record"),
]


@pytest.mark.parametrize("name,edit,error,fragment", MODEL_ROWS, ids=[r[0] for r in MODEL_ROWS])
def test_bad_model_files_are_named(tmp_path, name, edit, error, fragment):
    root = _copy_models(tmp_path)
    load_turn_model(root / "turn")  # the untouched copy loads (and verifies)
    edit(root)
    with pytest.raises(error, match=fragment):
        load_turn_model(root / "turn")


@pytest.mark.parametrize("target", ["lexical.json", "tokenizer.json", "lexical_step.onnx", "lexical_head.onnx"])
def test_lexical_runtime_verifies_its_own_folder(tmp_path, target):
    root = _copy_models(tmp_path)
    _flip_middle(root / "lexical" / target)
    with pytest.raises(ChecksumMismatch, match=f"lexical/{target}: sha256"):
        LexicalModel(root / "lexical")


def test_int8_graph_vs_record_and_a_probe_that_fails_its_record(tmp_path, jfk3):
    root = _copy_models(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m8 = load_turn_model(root / "turn", int8=True)
    assert not [w for w in caught if "fails verification" in str(w.message)]  # the copied records hold
    # a probe that differs from its record counts as a failed probe: warn, run the (verified) fp32 graph
    probe = root / "acoustic" / "model.int8.probe.npz"
    with np.load(probe) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["tol"] = np.float32(1.0)  # a probe that would pass anything
    with open(probe, "wb") as f:
        np.savez_compressed(f, **arrays)
    with pytest.warns(Int8ParityWarning, match=r"parity probe of the int8 graph model.int8.onnx fails verification "
                                               r"\(.*model.int8.probe.npz: sha256 .* differs.*using the fp32 graph model.onnx"):
        m = load_turn_model(root / "turn", int8=True)
    assert m.branches.acoustic_path.name == "model.onnx"
    item = [(jfk3, GOOD, MSGS, 0.5)]
    assert m.p_eot(item)[0] == pytest.approx(load_turn_model(root / "turn").p_eot(item)[0], abs=1e-12)
    assert m8.branches.acoustic_path.name in ("model.int8.onnx", "model.onnx")  # int8 where its probe holds here
    _truncate(root / "acoustic" / "model.int8.onnx")
    with pytest.raises(ChecksumMismatch, match=r"acoustic/model.int8.onnx: sha256"):
        load_turn_model(root / "turn", int8=True)
    load_turn_model(root / "turn")  # the fp32 model does not load the int8 graph


def test_rewriting_the_records_after_a_re_export(tmp_path):
    root = _copy_models(tmp_path)
    _flip_middle(root / "acoustic" / "model.onnx")  # stands in for a re-export
    with pytest.raises(ChecksumMismatch, match="model.onnx"):
        load_turn_model(root / "turn")
    written = write_turn_model_checksums(root / "turn")
    assert set(written) == {str((root / d).resolve()) for d in ("turn", "lexical", "acoustic")}
    assert written[str((root / "acoustic").resolve())]["model.onnx"] == sha256_file(root / "acoustic" / "model.onnx")
    load_turn_model(root / "turn")
    # a folder without a record loads unverified
    for d in ("turn", "lexical", "acoustic"):
        (root / d / CHECKSUMS_FILE).unlink()
    assert not verify_model_file(root / "turn" / "fusion.json")
    load_turn_model(root / "turn")


def test_the_shipped_records_cover_every_loaded_file():
    """The checksums.json beside the shipped models list and match every file the fused model loads."""
    files = turn_model_files()
    assert [f.name for f in files] == ["fusion.json", "lexical.json", "tokenizer.json", "lexical_step.onnx",
                                       "lexical_head.onnx", "model.onnx", "model.int8.onnx", "model.int8.probe.npz"]
    assert all(verify_model_file(f) for f in files)


def test_hashes_are_cached_per_path_size_and_mtime(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"a" * 1000)
    h1 = sha256_file(p)
    assert h1 == "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"  # sha256 of 1000 x "a"
    p.write_bytes(b"b" * 1000)  # same size, new mtime -> rehashed
    import os

    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sha256_file(p) != h1
