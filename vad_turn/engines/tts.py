"""TTS voices shared by the data renderer, the prosody experiments and the streaming pipeline.

Three local engines, every one returning float32 `(n_samples,)` mono 16 kHz audio in [-1, 1]
(engine output goes through `vad_turn.core.audio`, so 22.05 kHz espeak, 8/16 kHz flite and 32 kHz
festival all come out at 16 kHz):

- espeak (`Voice("espeak", "en-us+f3")`): in process by default, through the `espeakng-loader`
  package's libespeak-ng (ctypes, synchronous mode with a callback per ~60 ms block), or the
  `espeak-ng` CLI (`EnginePaths(espeak_backend="cli")`). The library starts audio 3-10x sooner
  than the CLI (median time to the first 20 ms chunk 1-5 ms vs 12-25 ms on the 2-core dev box,
  depending on load; flite 55-170 ms, festival 0.34-0.72 s; `python benchmarks/tts_ttfa.py` prints
  the medians) and streams. It is the engine for SSML (`<break time="800ms"/>`).
  Caveat: the library keeps synthesis state between calls (not reset by espeak_ng_SetRandSeed,
  srand or re-initialising), so the same text gives slightly different samples (a few samples of
  length) depending on what was synthesized before in the process. The CLI starts fresh each
  call and is byte-reproducible: the dataset renderer uses it; the pipeline uses the library.
- flite (`Voice("flite", "slt")`): the `flite` CLI with its built-in voices (`flite -lv`).
- festival (`Voice("festival", "cmu_us_slt_arctic_hts")`): `festival --batch` running a Scheme
  script (as text2wave does); `synthesize_many` renders many texts in one festival process.

`Voice.rate` is a speaking-rate multiplier for all engines (espeak -s 175*rate wpm, flite
duration_stretch 1/rate, festival HTS "-r rate"); `Voice.pitch` is espeak's -p (0-99, default 50)
and is refused for the other engines, which have no comparable control. A missing binary,
library or voice raises `EngineError` naming it and the Debian package to install.
"""
from __future__ import annotations

import ctypes
import queue
import re
import shutil
import struct
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ, load_audio, prepare_audio, resample_stream

ENGINES = ("espeak", "flite", "festival")
DEBIAN_PACKAGES = {"espeak": "espeak-ng", "flite": "flite", "festival": "festival festvox-us-slt-hts"}
ESPEAK_DEFAULT_WPM = 175
ESPEAK_DEFAULT_PITCH = 50


class EngineError(RuntimeError):
    """A TTS engine, voice or library that is missing or failed (the message says what to install)."""


@dataclass(frozen=True)
class Voice:
    """One TTS voice. `id` ("engine:name", plus "*rate" / "^pitch" when not default) names it in datasets."""

    engine: str  # "espeak" | "flite" | "festival"
    name: str  # espeak voice+variant ("en-us+f3"), flite voice ("slt"), festival voice ("cmu_us_slt_arctic_hts")
    rate: float = 1.0  # speaking-rate multiplier, 1.0 = engine default, in [0.5, 2.0]
    pitch: int | None = None  # espeak only: -p in [0, 99]; None = engine default

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown TTS engine {self.engine!r}; expected one of {ENGINES}")
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_+\-.]+", self.name):
            raise ValueError(f"invalid voice name {self.name!r}")
        if not 0.5 <= self.rate <= 2.0:
            raise ValueError(f"{self.engine}:{self.name}: rate {self.rate} outside [0.5, 2.0]")
        if self.pitch is not None and (self.engine != "espeak" or not 0 <= self.pitch <= 99):
            raise ValueError(f"{self.engine}:{self.name}: pitch is espeak's -p in [0, 99] and only for espeak")

    @property
    def id(self) -> str:
        s = f"{self.engine}:{self.name}"
        if abs(self.rate - 1.0) > 1e-9:
            s += f"*{self.rate:.3g}"
        return s + (f"^{self.pitch}" if self.pitch is not None else "")


def voice_from_id(voice_id: str) -> Voice:
    """Parse `Voice.id` back: "flite:slt", "espeak:en-us+f3*1.1^60"."""
    m = re.fullmatch(r"(\w+):([A-Za-z0-9_+\-.]+?)(?:\*([0-9.]+))?(?:\^(\d+))?", voice_id.strip())
    if not m:
        raise ValueError(f"invalid voice id {voice_id!r}; expected engine:name[*rate][^pitch]")
    return Voice(m[1], m[2], float(m[3]) if m[3] else 1.0, int(m[4]) if m[4] else None)


# Seven distinct voices (four speakers' timbres x three synthesis methods); the default render set.
DEFAULT_VOICES: tuple[Voice, ...] = (
    Voice("espeak", "en-us"),
    Voice("espeak", "en-us+f3"),
    Voice("espeak", "en+m3"),
    Voice("flite", "slt"),
    Voice("flite", "rms"),
    Voice("flite", "awb"),
    Voice("festival", "cmu_us_slt_arctic_hts"),
)


@dataclass(frozen=True)
class EnginePaths:
    """Where the engines are: binaries by name (PATH) or path; espeak_lib "" = espeakng-loader's library."""

    espeak_backend: str = "lib"  # "lib" (in process) or "cli"
    espeak_lib: str = ""
    espeak_bin: str = "espeak-ng"
    flite_bin: str = "flite"
    festival_bin: str = "festival"


DEFAULT_PATHS = EnginePaths()


def _require_binary(engine: str, binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pkg = DEBIAN_PACKAGES[engine]
        raise EngineError(f"{engine}: binary {binary!r} not found; install the Debian package(s) `{pkg}` "
                          f"(apt-get install {pkg}) or configure the binary's path")
    return found


# ----------------------------------------------------------------------------- espeak in process


class _EspeakLib:
    """libespeak-ng in synchronous mode; one per process, calls serialised by a lock."""

    _CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def __init__(self, lib_path: str):
        import espeakng_loader

        path = lib_path or espeakng_loader.get_library_path()
        data = espeakng_loader.get_data_path() if not lib_path else str(Path(lib_path).parent / "espeak-ng-data")
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as e:
            raise EngineError(f"espeak: cannot load library {path!r} ({e}); reinstall the PyPI package "
                              f"espeakng-loader or use EnginePaths(espeak_backend='cli') with Debian `espeak-ng`") from e
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data_arg = data.encode() if Path(data).is_dir() else None
        self.sample_rate_hz = self.lib.espeak_Initialize(2, 0, data_arg, 0)  # 2 = AUDIO_OUTPUT_SYNCHRONOUS
        if self.sample_rate_hz <= 0:
            raise EngineError(f"espeak: espeak_Initialize failed for {path} (data {data})")
        self.lock = threading.Lock()
        self._sink: Callable[[np.ndarray], None] = lambda a: None
        self._cb = self._CB(self._on_audio)  # keep a reference: the library holds a raw pointer
        self.lib.espeak_SetSynthCallback(self._cb)

    def _on_audio(self, wav, n: int, _events) -> int:
        if wav and n > 0:
            self._sink(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def synth(self, text: str, voice: Voice, ssml: bool, sink: Callable[[np.ndarray], None]) -> None:
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
                raise EngineError(f"espeak: voice {voice.name!r} not found in the espeak-ng data "
                                  f"(list them with `espeak-ng --voices=en`; variants with `--voices=variant`)")
            self.lib.espeak_SetParameter(1, int(round(ESPEAK_DEFAULT_WPM * voice.rate)), 0)  # espeakRATE
            self.lib.espeak_SetParameter(3, ESPEAK_DEFAULT_PITCH if voice.pitch is None else voice.pitch, 0)
            self._sink = sink
            data = text.encode("utf-8")
            try:
                rc = self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1 | (0x10 if ssml else 0), None, None)
                self.lib.espeak_Synchronize()
            finally:
                self._sink = lambda a: None
            if rc != 0:
                raise EngineError(f"espeak: espeak_Synth returned error {rc} for {text[:60]!r}")


@lru_cache(maxsize=4)
def _espeak_lib(lib_path: str) -> _EspeakLib:
    return _EspeakLib(lib_path)


# ----------------------------------------------------------------------------- CLIs


def _stream_wav_header(head: bytes, source: str) -> tuple[int, int]:
    """(sample_rate_hz, data offset) of a 16-bit mono WAV header whose lengths may be bogus (streamed)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise EngineError(f"{source}: output is not a WAV stream ({head[:16]!r})")
    pos = 12
    sr = 0
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if cid == b"fmt ":
            channels, sr, _, _, bits = struct.unpack("<HIIHH", head[pos + 10:pos + 24])
            if channels != 1 or bits != 16:
                raise EngineError(f"{source}: expected 16-bit mono, got {channels} ch {bits} bit")
        elif cid == b"data":
            return sr, pos + 8
        pos += 8 + size
    raise EngineError(f"{source}: WAV header without a data chunk")


def _espeak_cli_cmd(voice: Voice, ssml: bool, paths: EnginePaths) -> list[str]:
    cmd = [_require_binary("espeak", paths.espeak_bin), "--stdout", "--stdin", "-v", voice.name,
           "-s", str(int(round(ESPEAK_DEFAULT_WPM * voice.rate)))]
    cmd += ["-p", str(voice.pitch)] if voice.pitch is not None else []
    return cmd + (["-m"] if ssml else [])


def _espeak_cli_blocks(text: str, voice: Voice, ssml: bool, paths: EnginePaths) -> Iterator[tuple[np.ndarray, int]]:
    """int16 blocks from `espeak-ng --stdout` as the process writes them, with the sample rate."""
    proc = subprocess.Popen(_espeak_cli_cmd(voice, ssml, paths), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        proc.stdin.write(text.encode("utf-8"))
        proc.stdin.close()
        head = proc.stdout.read(44)
        if len(head) < 44:
            err = proc.stderr.read().decode(errors="replace").strip()
            raise EngineError(f"espeak: `{paths.espeak_bin}` -v {voice.name} produced no audio: {err}")
        sr, off = _stream_wav_header(head, "espeak-ng --stdout")
        rest = head[off:]
        while block := proc.stdout.read1(8192):
            buf = rest + block
            n = len(buf) // 2 * 2
            rest = buf[n:]
            if n:
                yield np.frombuffer(buf[:n], dtype="<i2"), sr
    finally:
        proc.stdout.close()
        proc.wait()
        proc.stderr.close()


@lru_cache(maxsize=8)
def _flite_voices(flite_bin: str) -> tuple[str, ...]:
    out = subprocess.run([flite_bin, "-lv"], capture_output=True, text=True).stdout
    return tuple(out.split(":", 1)[-1].split())


def _flite(text: str, voice: Voice, paths: EnginePaths) -> np.ndarray:
    binary = _require_binary("flite", paths.flite_bin)
    if voice.name not in _flite_voices(binary):  # flite silently falls back to kal for unknown names
        raise EngineError(f"flite: voice {voice.name!r} is not built into {binary} (it has "
                          f"{', '.join(_flite_voices(binary))}); install the Debian package `flite`")
    with tempfile.TemporaryDirectory(prefix="flite-") as tmp:
        txt, wav = Path(tmp) / "in.txt", Path(tmp) / "out.wav"
        txt.write_text(text)
        r = subprocess.run([binary, "-voice", voice.name, "--setf", f"duration_stretch={1.0 / voice.rate:.4f}",
                            "-f", str(txt), "-o", str(wav)], capture_output=True, text=True)
        if r.returncode != 0 or "Error" in r.stderr or not wav.exists():
            raise EngineError(f"flite: {binary} -voice {voice.name} failed on {text[:60]!r}: {r.stderr.strip()}")
        return load_audio(wav)


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _festival_many(texts: Sequence[str], voice: Voice, paths: EnginePaths) -> list[np.ndarray]:
    binary = _require_binary("festival", paths.festival_bin)
    with tempfile.TemporaryDirectory(prefix="festival-") as tmp:
        lines = [f"(voice_{voice.name})"]
        if abs(voice.rate - 1.0) > 1e-9:
            if voice.name.endswith("_hts"):  # HTS voices ignore Duration_Stretch; hts_engine's -r is the rate
                lines.append(f'(set! hts_engine_params (append hts_engine_params (list (list "-r" {voice.rate:.4f}))))')
            else:
                lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / voice.rate:.4f})")
        wavs = [Path(tmp) / f"{i}.wav" for i in range(len(texts))]
        for text, wav in zip(texts, wavs):
            lines.append(f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(text)})) "
                         f"{_scheme_string(str(wav))} 'riff)")
        script = Path(tmp) / "synth.scm"
        script.write_text("\n".join(lines) + "\n")
        r = subprocess.run([binary, "--batch", str(script)], capture_output=True, text=True)
        if r.returncode != 0 or "SIOD ERROR" in r.stderr + r.stdout:
            msg = (r.stderr + r.stdout).strip()
            if f"voice_{voice.name}" in msg:
                raise EngineError(f"festival: voice {voice.name!r} is not installed ({msg.splitlines()[0]}); install "
                                  f"the Debian package `{DEBIAN_PACKAGES['festival'].split()[1]}` or another festvox voice")
            raise EngineError(f"festival: {binary} failed: {msg[-500:]}")
        return [load_audio(w) for w in wavs]


# ----------------------------------------------------------------------------- public API


def _check_text(text: str, voice: Voice, ssml: bool) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{voice.id}: empty text, nothing to synthesize")
    if ssml and voice.engine != "espeak":
        raise ValueError(f"{voice.id}: SSML input is only supported by espeak")
    return text.strip()


def synthesize(text: str, voice: Voice, *, ssml: bool = False, paths: EnginePaths = DEFAULT_PATHS) -> np.ndarray:
    """Text (or SSML for espeak) -> float32 (n_samples,) mono 16 kHz in [-1, 1], engine silences included."""
    return np.concatenate(list(synthesize_stream(text, voice, ssml=ssml, paths=paths, chunk_ms=1000)))


def synthesize_many(texts: Sequence[str], voice: Voice, *, paths: EnginePaths = DEFAULT_PATHS) -> list[np.ndarray]:
    """Several texts with one voice; festival runs one process for all of them (its start-up is ~0.3 s)."""
    if voice.engine == "festival":
        return _festival_many([_check_text(t, voice, False) for t in texts], voice, paths) if texts else []
    return [synthesize(t, voice, paths=paths) for t in texts]


def synthesize_stream(
    text: str, voice: Voice, chunk_ms: int = 20, *, ssml: bool = False, paths: EnginePaths = DEFAULT_PATHS
) -> Iterator[np.ndarray]:
    """Yield float32 16 kHz chunks of `chunk_ms` (the last may be shorter) as soon as the engine has them.

    espeak (library or CLI) streams while synthesizing; flite and festival synthesize the whole
    text first and then yield it in chunks.
    """
    text = _check_text(text, voice, ssml)
    chunk_n = max(1, int(SAMPLE_RATE_HZ * chunk_ms / 1000))
    if voice.engine == "flite":
        yield from _chunks(_flite(text, voice, paths), chunk_n)
        return
    if voice.engine == "festival":
        yield from _chunks(_festival_many([text], voice, paths)[0], chunk_n)
        return
    blocks = _espeak_lib_blocks(text, voice, ssml, paths) if paths.espeak_backend == "lib" else \
        _espeak_cli_blocks(text, voice, ssml, paths)
    resampler, sr_in, pending, n_out = None, 0, np.zeros(0, np.float32), 0
    for block, sr in blocks:
        if resampler is None:
            resampler, sr_in = resample_stream(sr), sr
        a = prepare_audio(block, sr, source=f"espeak {voice.name}", target_rate_hz=sr)
        pending = np.concatenate([pending, resampler.resample_chunk(a)])
        while pending.size >= chunk_n:
            yield pending[:chunk_n]
            n_out += chunk_n
            pending = pending[chunk_n:]
    if resampler is None:
        raise EngineError(f"espeak: no audio for {text[:60]!r} with voice {voice.name!r}")
    pending = np.concatenate([pending, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
    yield from _chunks(np.clip(pending, -1.0, 1.0), chunk_n)


def _chunks(audio: np.ndarray, n: int) -> Iterator[np.ndarray]:
    for i in range(0, audio.size, n):
        yield audio[i:i + n]


def _espeak_lib_blocks(text: str, voice: Voice, ssml: bool, paths: EnginePaths) -> Iterator[tuple[np.ndarray, int]]:
    """int16 blocks from libespeak-ng, produced on a worker thread while the caller consumes them."""
    eng = _espeak_lib(paths.espeak_lib)
    q: queue.Queue = queue.Queue()
    done = object()

    def work() -> None:
        try:
            eng.synth(text, voice, ssml, q.put)
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item, eng.sample_rate_hz


def text_to_ssml(text: str, *, comma_ms: int = 250, period_ms: int = 500, question_ms: int = 500) -> str:
    """Punctuated text -> espeak SSML with explicit <break time="..ms"/> after , . ; : ! ? (the mark is kept)."""
    pause = {",": comma_ms, ";": comma_ms, ":": comma_ms, ".": period_ms, "!": period_ms, "?": question_ms}
    parts = re.split(r"([,;:.!?])(?=\s|$)", text.strip())  # odd items are the marks
    esc = [p.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") for p in parts]
    out = "".join(p if i % 2 == 0 else f'{p}<break time="{pause[p]}ms"/>' for i, p in enumerate(esc))
    return f"<speak>{out}</speak>"
