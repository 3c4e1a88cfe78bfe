"""What every STT engine module shares (stt.py and the engines beside it import it; it imports none of them)."""
from __future__ import annotations

import numpy as np

from vad_turn.core.schema import Word


class STTError(RuntimeError):
    """An engine that cannot be loaded or fails, with the reason."""


def spread_words(text: str, duration_s: float) -> tuple[Word, ...]:
    """The words of `text` spread evenly over [0, duration_s] (an engine without word times)."""
    toks = text.split()
    if not toks:
        return ()
    step = duration_s / len(toks)
    return tuple(Word(w, round(i * step, 3), round((i + 1) * step, 3)) for i, w in enumerate(toks))


class BufferedUtterance:
    """The streaming interface of an engine that decodes whole utterances (Whisper, Moonshine): `accept` buffers,
    `partial` is empty, `finish` decodes the buffer with the engine's `transcribe`; each stream and utterance
    starts empty (nothing carries over)."""

    streaming = False
    _buf: list

    def new_stream(self) -> None:
        self._buf = []

    def start(self) -> None:
        self._buf = []

    def accept(self, audio: np.ndarray) -> None:
        self._buf.append(np.asarray(audio, np.float32))

    def partial(self) -> str:
        return ""

    def finish(self) -> tuple[str, tuple[Word, ...]]:
        audio = np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)
        self._buf = []
        return self.transcribe(audio)  # type: ignore[attr-defined]
