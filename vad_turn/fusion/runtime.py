"""End-of-turn inference with the fused model: numpy, onnxruntime and `tokenizers` only (no torch).

    model = load_turn_model()                      # the shipped vad_turn/models/turn
    p = predict_eot(audio, 8000, words, messages, silence_s=0.4, model=model)

A turn model folder holds `fusion.json`: the fusion weights (one small logistic regression per
available-input mode), the calibration temperature, the chosen threshold and the paths (relative
to the folder) of the lexical model folder (`lexical_step.onnx`, `lexical_head.onnx`,
`tokenizer.json`, `lexical.json`) and of the acoustic ONNX graph (front end included).

Fusion (`fusion_logit`): per query, the lexical logit (when >= 1 word is visible), the acoustic
logit (when audio is given), the silence so far and the number of visible words form the feature
vector `FUSION_FEATURES`; the mode (both / lexical / acoustic / timing) picks the weight row;
p_eot = sigmoid(logit / temperature). `vad_turn.fusion.train` trains these weights with the very same
`fusion_features`, so training and inference share one definition.

Bad input is refused with named errors rather than scored: `AudioError` (empty, non-finite, or
float audio that is unscaled integer PCM), `WordError` (see `schema.check_words`: missing or
non-string words, non-finite / reversed / out-of-order times, words ending after the audio),
ValueError for a bad silence_s, and `ModelFileError` / `ChecksumMismatch` naming the file for a
model folder that is truncated, corrupt, has a non-finite field, or differs from its checksums.json
(`vad_turn.core.model_files`; rewrite the records after a re-export with `write_turn_model_checksums`).
"""
from __future__ import annotations

import math
import threading
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from vad_turn.acoustic.session import run_session
from vad_turn.core.audio import SAMPLE_RATE_HZ, AudioError, last_window, prepare_audio  # noqa: F401  (errors re-exported)
from vad_turn.core.model_files import (  # noqa: F401
    SHIPPED_TURN_DIR,
    ChecksumMismatch,
    ModelFileError,
    onnx_session,
    read_model_json,
    verify_model_file,
    write_checksums,
)
from vad_turn.core.schema import (  # noqa: F401  (errors re-exported)
    DEFAULT_TRANSCRIPT_LAG_S,
    MAX_SILENCE_S,
    Message,
    Word,
    WordError,
    check_silence_s,
    check_words,
)

DEFAULT_TURN_MODEL_DIR = SHIPPED_TURN_DIR
FUSION_FEATURES = ("bias", "lex_logit", "ac_logit", "silence_norm", "log_silence", "lex_x_silence", "ac_x_silence",
                   "log1p_n_seen")
MODES = ("both", "lexical", "acoustic", "timing")
# the inputs each mode has: (lexical logit, acoustic logit)
MODE_INPUTS = {"both": (True, True), "lexical": (True, False), "acoustic": (False, True), "timing": (False, False)}
_MODE_USES = {"both": FUSION_FEATURES,
              "lexical": ("bias", "lex_logit", "silence_norm", "log_silence", "lex_x_silence", "log1p_n_seen"),
              "acoustic": ("bias", "ac_logit", "silence_norm", "log_silence", "ac_x_silence"),
              "timing": ("bias", "silence_norm", "log_silence")}
MODE_MASKS = np.array([[f in _MODE_USES[m] for f in FUSION_FEATURES] for m in MODES], dtype=bool)
_MODE_OF = np.zeros((2, 2), dtype=np.int64)  # [has_lex, has_ac] -> index into MODES
for _i, _m in enumerate(MODES):
    _MODE_OF[int(MODE_INPUTS[_m][0]), int(MODE_INPUTS[_m][1])] = _i
del _i, _m
_P_CLIP = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """ln(p / (1 - p)) of probabilities clipped to [1e-6, 1 - 1e-6] (float64)."""
    p = np.clip(np.asarray(p, dtype=np.float64), _P_CLIP, 1 - _P_CLIP)
    return np.log(p) - np.log1p(-p)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def mode_index(has_lex: np.ndarray, has_ac: np.ndarray) -> np.ndarray:
    """(n,) int index into MODES: 0 both, 1 lexical only, 2 acoustic only, 3 timing only."""
    return _MODE_OF[np.asarray(has_lex, bool).astype(np.int64), np.asarray(has_ac, bool).astype(np.int64)]


def fusion_features(lex_logit: np.ndarray, ac_logit: np.ndarray, silence_s: np.ndarray, n_seen: np.ndarray,
                    has_lex: np.ndarray, has_ac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> (X float64 (n, len(FUSION_FEATURES)), mode (n,) int). Features a mode does not use are 0.

    lex_logit / ac_logit: branch logits (ignored where has_lex / has_ac is False); silence_s >= 0
    (clipped to [0, 5] s); n_seen: number of visible words.
    """
    s = np.clip(np.asarray(silence_s, dtype=np.float64), 0.0, MAX_SILENCE_S)
    lex = np.where(has_lex, np.asarray(lex_logit, dtype=np.float64), 0.0)
    ac = np.where(has_ac, np.asarray(ac_logit, dtype=np.float64), 0.0)
    sn = s / MAX_SILENCE_S
    cols = {"bias": np.ones_like(s), "lex_logit": lex, "ac_logit": ac, "silence_norm": sn,
            "log_silence": np.log(s + 0.05), "lex_x_silence": lex * sn, "ac_x_silence": ac * sn,
            "log1p_n_seen": np.log1p(np.asarray(n_seen, dtype=np.float64))}
    X = np.stack([cols[f] for f in FUSION_FEATURES], axis=1)
    mode = mode_index(has_lex, has_ac)
    return X * MODE_MASKS[mode], mode


def fusion_logit(X: np.ndarray, mode: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Uncalibrated fused logit (n,) from features (n, F), modes (n,) and weights (len(MODES), F)."""
    return np.einsum("nf,nf->n", X, np.asarray(weights, dtype=np.float64)[mode])


class ModelOutputError(ValueError):
    """The fused model produced a p_eot that is not a finite probability (a corrupt branch graph)."""


def _session(path: Path, threads: int):
    return onnx_session(path, threads, what="turn model")


def _int8_or_fp32_session(int8_path: Path, fp32_path: Path, threads: int) -> tuple[object, Path]:
    """`vad_turn.core.onnx.int8_session` on verified graphs. A parity probe that fails its checksum counts
    as a failed probe (as a missing or unreadable one does): Int8ParityWarning, and the fp32 graph."""
    from vad_turn.core.onnx import Int8ParityWarning, int8_session, probe_path

    for p in (int8_path, fp32_path):
        if p.is_file():
            verify_model_file(p)
    probe, probe_problem = probe_path(int8_path), ""
    try:
        if probe.is_file():
            verify_model_file(probe)
    except ModelFileError as e:
        probe_problem = str(e)
        warnings.warn(f"turn model: the parity probe of the int8 graph {int8_path.name} fails verification "
                      f"({probe_problem}); using the fp32 graph {fp32_path.name} instead", Int8ParityWarning,
                      stacklevel=4)
    try:
        session, used = int8_session(int8_path, fp32_path, threads, what="turn model")
    except FileNotFoundError:
        raise
    except Exception as e:  # onnxruntime's own Exception subclasses for a truncated / corrupt graph
        raise ModelFileError(f"turn model: cannot load ONNX file {int8_path} or {fp32_path}: truncated or corrupt "
                             f"({type(e).__name__}: {e})") from e
    if probe_problem and used == int8_path:
        session, used = _session(fp32_path, threads), fp32_path
    return session, used


class Branches:
    """The two branch models at inference: the lexical ONNX pair and the acoustic ONNX graph.

    lexical_dir: a lexical model folder; acoustic_onnx: the acoustic graph ((batch, n) audio +
    (batch,) silence_s -> p_eot); window_s: its window length in seconds. acoustic_int8: its int8
    graph, run instead where its parity probe holds on this CPU (`acoustic_path` says which file runs).
    """

    def __init__(self, lexical_dir: Path, acoustic_onnx: Path, window_s: float, *, threads: int = 1,
                 batch_size: int = 64, acoustic_int8: Path | None = None, lexical_without_words: bool = False,
                 lexical_max_unheard_s: float | None = None):
        from vad_turn.lexical.runtime import LexicalModel

        # False (the fitted fusions): the lexical branch is an input once >= 1 word is visible. True (the branch
        # average): always, since with no word yet it still reads the agent's last message and the timing
        self.lexical_without_words = bool(lexical_without_words)
        # None: no gate. Else, with audio, the lexical branch is an input only while the visible words reach to
        # within this many seconds of the speech's end (`unheard_s`); staler words are treated as absent
        self.lexical_max_unheard_s = None if lexical_max_unheard_s is None else float(lexical_max_unheard_s)

        self.lexical = LexicalModel(Path(lexical_dir), backend="onnx", threads=threads)
        if acoustic_int8 is None:
            self.acoustic_path = Path(acoustic_onnx)
            self._ac = _session(self.acoustic_path, threads)
        else:  # used only where its parity probe holds on this CPU; else fp32 with a warning
            self._ac, self.acoustic_path = _int8_or_fp32_session(Path(acoustic_int8), Path(acoustic_onnx), threads)
        self.window_samples = int(round(float(window_s) * SAMPLE_RATE_HZ))
        self.batch_size = int(batch_size)

    def acoustic_p(self, windows: np.ndarray, silence_s: np.ndarray) -> np.ndarray:
        """windows float32 (n, window_samples), silence_s (n,) -> acoustic p_eot float64 (n,)."""
        return run_session(self._ac, windows, silence_s, self.batch_size)

    def logits(self, items: Sequence[tuple]) -> dict[str, np.ndarray]:
        """Per item: lex_logit, ac_logit, has_lex, has_ac, silence_s, n_seen (arrays of length n).

        items: (audio, words, messages, silence_s) with audio float32 16 kHz mono (n_samples,) or
        None. The lexical branch is used when >= 1 word is visible (always with `lexical_without_words`),
        unless `lexical_max_unheard_s` is set and the words are staler than that (`unheard_s`); the acoustic
        one when audio is given.
        """
        n = len(items)
        sil = np.array([float(it[3]) for it in items], dtype=np.float64)
        n_seen = np.array([len(it[1]) for it in items], dtype=np.int64)
        has_lex = np.ones(n, dtype=bool) if self.lexical_without_words else n_seen > 0
        has_ac = np.array([it[0] is not None for it in items], dtype=bool)
        if self.lexical_max_unheard_s is not None:  # NaN (no audio) compares False: the gate needs a speech end
            has_lex &= ~(unheard_s(items) > self.lexical_max_unheard_s + 1e-9)
        lex, ac = np.zeros(n), np.zeros(n)
        li = np.flatnonzero(has_lex)
        if li.size:
            lex[li] = logit(self.lexical.p_eot([(items[i][1], items[i][2], sil[i]) for i in li]))
        ai = np.flatnonzero(has_ac)
        if ai.size:
            win = np.stack([last_window(items[i][0], self.window_samples) for i in ai])
            ac[ai] = logit(self.acoustic_p(win, sil[ai]))
        return {"lex_logit": lex, "ac_logit": ac, "has_lex": has_lex, "has_ac": has_ac, "silence_s": sil,
                "n_seen": n_seen}


def unheard_s(items: Sequence[tuple]) -> np.ndarray:
    """Per (audio16k | None, words, messages, silence_s) item: seconds of speech the visible words do not cover,
    float64 (n,): the speech's end (the audio's end less silence_s) less the last visible word's end (0 with no
    word), at least 0; NaN without audio. Under a transcript lag the words trail the speech, so this is how stale
    the lexical branch's input is (words as they end: about the VAD's stop hangover)."""
    out = np.full(len(items), np.nan)
    for i, (audio, words, _, silence_s) in enumerate(items):
        if audio is not None:
            speech_end_s = audio.shape[0] / SAMPLE_RATE_HZ - float(silence_s)
            out[i] = max(0.0, speech_end_s - (words[-1].end if len(words) else 0.0))
    return out


def fused_logits(b, weights: np.ndarray) -> np.ndarray:
    """Uncalibrated fused logits (n,) of rows in the mode of the inputs they actually have, from weights
    (len(MODES), F). b: `Branches.logits` output, or any table with its columns (lex_logit, ac_logit,
    has_lex, has_ac, silence_s, n_seen: a `fusion.train.branch_table` DataFrame)."""
    X, mode = fusion_features(b["lex_logit"], b["ac_logit"], b["silence_s"], b["n_seen"], b["has_lex"], b["has_ac"])
    return fusion_logit(X, mode, weights)


class TurnModel:
    """The fused end-of-turn model at inference (see the module docstring).

    `p_eot(items)` -> float64 (n,) in [0, 1] for (audio16k | None, words, messages, silence_s) items:
    audio float32 (n_samples,) 16 kHz mono in [-1, 1] (or None), words as `as_words` takes them with
    times in seconds from the audio's first sample, silence_s >= 0. Bad items raise (module docstring).
    int8: use the acoustic graph's int8 file (`acoustic_int8_onnx` in fusion.json) where its parity
    probe holds on this CPU; elsewhere warn (Int8ParityWarning) and use the fp32 graph.
    `transcript_lag_s`: the lag the fusion was fitted with (pass words as a recogniser with that lag
    would have them; the model is calibrated for it).
    Loading verifies every file against its folder's checksums.json where there is one.
    """

    def __init__(self, path: str | Path | None = None, *, threads: int = 1, int8: bool = False, batch_size: int = 64):
        self.path = Path(path) if path is not None else DEFAULT_TURN_MODEL_DIR
        meta_path = self.path / "fusion.json"
        self.meta = read_model_json(meta_path, what="fused turn model",
                                    hint="train one with `vad-turn train-fusion`")
        try:
            if tuple(self.meta["features"]) != FUSION_FEATURES or tuple(self.meta["modes"]) != MODES:
                raise ValueError(f"features/modes {self.meta['features']}/{self.meta['modes']} differ from this code's")
            self.weights = np.asarray(self.meta["weights"], dtype=np.float64).reshape(len(MODES), len(FUSION_FEATURES))
            self.temperature = _field(meta_path, "temperature", self.meta.get("temperature", 1.0), lo=0.0, lo_open=True)
            self.threshold = _field(meta_path, "threshold", self.meta["threshold"], lo=0.0, hi=1.0)
            # the transcript lag (s) of the queries the fusion was fitted on: words are visible this
            # long after they end (DEFAULT_TRANSCRIPT_LAG_S for models written before it was recorded)
            self.transcript_lag_s = _field(meta_path, "transcript_lag_s",
                                           self.meta.get("transcript_lag_s", DEFAULT_TRANSCRIPT_LAG_S), lo=0.0)
            window_s = _field(meta_path, "acoustic_window_s", self.meta["acoustic_window_s"], lo=0.0, lo_open=True)
            lex_dir = (self.path / self.meta["lexical_dir"]).resolve()
            ac_path = (self.path / self.meta["acoustic_onnx"]).resolve()
            ac_int8 = (self.path / self.meta["acoustic_int8_onnx"]).resolve() if int8 else None
            lexical_without_words = self.meta.get("lexical_without_words", False)
            if not isinstance(lexical_without_words, bool):
                raise ValueError(f"lexical_without_words must be true or false, got {lexical_without_words!r}")
            max_unheard = self.meta.get("lexical_max_unheard_s")
            if max_unheard is not None:
                max_unheard = _field(meta_path, "lexical_max_unheard_s", max_unheard, lo=0.0, hi=MAX_SILENCE_S)
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFileError(f"{meta_path}: not a fused turn model file ({type(e).__name__}: {e})") from e
        bad = np.argwhere(~np.isfinite(self.weights))
        if bad.size:
            m, f = bad[0]
            raise ModelFileError(f"{meta_path}: field 'weights' holds {self.weights[m, f]} at mode {MODES[m]!r}, "
                                 f"feature {FUSION_FEATURES[f]!r}: every weight must be finite")
        self.branches = Branches(lex_dir, ac_path, window_s, threads=threads, batch_size=batch_size,
                                 acoustic_int8=ac_int8, lexical_without_words=lexical_without_words,
                                 lexical_max_unheard_s=max_unheard)

    def logits(self, items: Sequence[tuple]) -> np.ndarray:
        """Uncalibrated fused logits (n,) of checked items (see `p_eot`)."""
        return self._logits([turn_item(*_unpack(it, i), SAMPLE_RATE_HZ, source=f"item {i}", allow_empty=True)
                             for i, it in enumerate(items)])

    def p_eot(self, items: Sequence[tuple]) -> np.ndarray:
        """Calibrated p_eot float64 (n,) in [0, 1] for (audio16k | None, words, messages, silence_s) items."""
        return self._p_eot([turn_item(*_unpack(it, i), SAMPLE_RATE_HZ, source=f"item {i}", allow_empty=True)
                            for i, it in enumerate(items)])

    def _logits(self, items: Sequence[tuple]) -> np.ndarray:
        return fused_logits(self.branches.logits(items), self.weights)

    def _p_eot(self, items: Sequence[tuple]) -> np.ndarray:
        """p_eot of items already checked by `turn_item`; raises ModelOutputError unless finite in [0, 1]."""
        if not items:
            return np.zeros(0, dtype=np.float64)
        p = sigmoid(self._logits(items) / self.temperature)
        bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0.0) & (p <= 1.0)))
        if bad.size:
            i = int(bad[0])
            raise ModelOutputError(f"turn model {self.path}: p_eot of item {i} is {p[i]} (not a finite probability); "
                                   "a branch graph is corrupt: check its files against checksums.json")
        return p


def _field(meta_path: Path, name: str, value, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False) -> float:
    """A fusion.json number: finite and within [lo, hi] ((lo, hi] with lo_open), else ModelFileError
    naming the file and the field."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    ok = math.isfinite(v) and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ModelFileError(f"{meta_path}: field {name!r} must be a finite number in {rng}, got {value!r}")
    return v


def load_turn_model(path: str | Path | None = None, *, threads: int = 1, int8: bool = False) -> TurnModel:
    """The fused turn model in `path` (default: the shipped vad_turn/models/turn). Raises
    FileNotFoundError naming the missing file, ModelFileError / ChecksumMismatch naming a bad one."""
    return TurnModel(path, threads=threads, int8=int8)


_LOADED: dict[Path, TurnModel] = {}
_LOADED_LOCK = threading.Lock()


def cached_turn_model(path: str | Path | None = None) -> TurnModel:
    """The fused turn model in `path` (default: the shipped one) with the default options (fp32 graphs, one
    thread), loaded and verified once per process per folder (resolved path) and shared after that.

    Thread-safe: concurrent first calls load it once (the others wait for that load); a load that raises is
    not cached, so the next call tries again. A folder re-exported after its first load is not re-read in
    this process: load it with `load_turn_model` instead."""
    key = (Path(path) if path is not None else DEFAULT_TURN_MODEL_DIR).resolve()
    model = _LOADED.get(key)
    if model is None:
        with _LOADED_LOCK:
            model = _LOADED.get(key)
            if model is None:
                model = _LOADED[key] = load_turn_model(key)
    return model


def turn_model_files(path: str | Path | None = None) -> list[Path]:
    """Every file the fused model in `path` loads, fp32 and int8: fusion.json, the lexical folder's
    lexical.json, tokenizer and ONNX pair, and the acoustic fp32 / int8 graphs and the int8 probe."""
    import json

    from vad_turn.core.onnx import probe_path
    from vad_turn.lexical.runtime import lexical_model_files

    path = Path(path) if path is not None else DEFAULT_TURN_MODEL_DIR
    meta = json.loads((path / "fusion.json").read_text())
    int8 = (path / meta["acoustic_int8_onnx"]).resolve()
    return [path / "fusion.json", *lexical_model_files((path / meta["lexical_dir"]).resolve()),
            (path / meta["acoustic_onnx"]).resolve(), int8, probe_path(int8)]


def write_turn_model_checksums(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    """(Re)write checksums.json in every folder the fused model in `path` loads files from (the turn,
    lexical and acoustic folders) from the files as they are now. Run after re-exporting any of them.
    Returns {folder: {file name: sha256 hex}}."""
    by_folder: dict[Path, list[str]] = {}
    for f in turn_model_files(path):
        by_folder.setdefault(f.parent, []).append(f.name)
    return {str(d): write_checksums(d, names) for d, names in by_folder.items()}


def as_words(words: Sequence, *, source: str = "") -> tuple[Word, ...]:
    """Words as `Word`s: Word objects, {"word", "start", "end"} dicts or (word, start_s, end_s) tuples.

    Raises WordError naming the entry's index for anything else (None, a bare string, a missing key,
    non-numeric times); `check_words` then checks the times and text."""
    pre, out = f"{source}: " if source else "", []
    for i, w in enumerate(words if words is not None else ()):
        try:
            if isinstance(w, Word):
                out.append(w)
            elif isinstance(w, dict):
                out.append(Word(w["word"], float(w["start"]), float(w["end"])))
            elif isinstance(w, (tuple, list)) and len(w) == 3:
                out.append(Word(w[0], float(w[1]), float(w[2])))
            else:
                raise WordError(f"{pre}word {i} ({w!r}) must be a Word, a dict with word/start/end or a "
                                "(word, start, end) tuple")
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, WordError):
                raise
            raise WordError(f"{pre}word {i} ({w!r}) is not a word with numeric start/end times "
                            f"({type(e).__name__}: {e})") from e
    return tuple(out)


def as_messages(messages: Sequence) -> tuple[Message, ...]:
    """Messages as `Message`s (Message objects or {"role", "content"} dicts)."""
    out = []
    for i, m in enumerate(messages or ()):
        if isinstance(m, Message):
            out.append(m)
        elif isinstance(m, dict) and "role" in m and "content" in m:
            out.append(Message(str(m["role"]), str(m["content"])))
        else:
            raise ValueError(f"message {i} ({m!r}) must be a Message or a dict with role and content")
    return tuple(out)


def _unpack(item, index: int) -> tuple:
    try:
        audio, words, messages, silence_s = item
    except (TypeError, ValueError):
        raise ValueError(f"item {index}: expected (audio16k | None, words, messages, silence_s), got {item!r}"[:300]) \
            from None
    return audio, words, messages, silence_s


def turn_item(audio, words, messages, silence_s, sample_rate_hz: int, *, source: str = "",
              allow_empty: bool = False) -> tuple:
    """One checked query (audio16k float32 | None, Words, Messages, silence_s float) for the model.

    The one input check of `predict_eot` and `TurnModel.p_eot`: audio through `prepare_audio` (AudioError),
    silence_s finite >= 0 (ValueError), words through `as_words` + `check_words` with the audio's end
    (len(audio16k) / 16 kHz) as the latest allowed word end (WordError), messages through `as_messages`.
    """
    pre = f"{source} " if source else ""
    silence = check_silence_s(silence_s, source=source)
    a16 = None
    if audio is not None:
        a16 = prepare_audio(np.asarray(audio), sample_rate_hz, source=f"{pre}audio", allow_empty=allow_empty)
    ws = as_words(words, source=f"{pre}words")
    check_words(ws, audio_end_s=None if a16 is None else a16.size / SAMPLE_RATE_HZ, source=f"{pre}words")
    return a16, ws, as_messages(messages), silence


def predict_eot(audio: np.ndarray | None, sample_rate_hz: int, words: Sequence = (), messages: Sequence = (), *,
                silence_s: float = 0.0, model: TurnModel | None = None) -> float:
    """p_eot in [0, 1] that the user has finished their turn, after `silence_s` of silence.

    audio: the user's audio up to now, any rate (8 kHz telephony, 44.1/48 kHz), mono (n,) or
        stereo (n, 2), float in [-1, 1] or integer PCM (scaled); None for text only (lexical +
        timing fallback). Empty, non-finite, or float audio peaking above 2 (integer PCM cast to
        float unscaled) raises AudioError.
    words: the words recognised so far (Word / dict / (word, start_s, end_s)), times in seconds from
        the audio's first sample, in start order; with audio, none may end more than 0.05 s after
        the audio does (`schema.check_words` states the rule). Bad words raise WordError.
    messages: earlier turns. silence_s: seconds of silence so far, a real number (int, float or a numpy scalar;
        not a bool, not a string), finite, >= 0 (ValueError otherwise).
    model: a loaded TurnModel (default: the shipped one, loaded and verified on the first call and shared by
        every later one: `cached_turn_model`).
    """
    item = turn_item(audio, words, messages, silence_s, sample_rate_hz, source="predict_eot")
    model = model or cached_turn_model()
    return float(model._p_eot([item])[0])
