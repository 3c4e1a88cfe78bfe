"""The local LLMs (SmolLM2-135M-Instruct, the default, or Gemma 3 270M) on the CPU via transformers.

`LocalLLM` loads the safetensors copy of a model's GGUF (`gguf`) inside `load()` (called on first use), never
at import. Text streams after every token (`speed.TokenStreamer`) from a generation thread. A prefix KV cache
(`speed.PrefixKVCache`, on by default) reuses the previous call's keys/values for the longest common token
prefix, so only new tokens are prefilled; `warm(messages)` pre-fills it (e.g. with the system prompt).
`quantize="int8"` makes every Linear int8 (faster decode, different replies: see `speed`). `temperature == 0`
is greedy decoding; otherwise sampling seeded by `seed`. `model="gemma3-270m"` loads Gemma 3 270M instead
(not installed by `make setup`: `benchmarks/llm_compare.py` measured it against SmolLM2, which stays the default).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Iterator

from .base import LLMError, check_messages
from .gguf import GEMMA_CHAT_TEMPLATE, ensure_gemma3_cache, ensure_smollm2_cache

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
        self._kv = None  # speed.PrefixKVCache, created at load
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


# local model key -> (LocalLLM name, cache maker, chat template when the GGUF has none); SmolLM2 is the default
# (benchmarks/llm_compare.py measures both)
LOCAL_MODELS = {"smollm2-135m": ("smollm2-135m-instruct", ensure_smollm2_cache, None),
                "gemma3-270m": ("gemma3-270m", ensure_gemma3_cache, GEMMA_CHAT_TEMPLATE)}
