"""The LLM engines: one small protocol (`base`), the local models (`local`: SmolLM2, Gemma 3, their GGUF weights
cached by `gguf`, sped up by `speed`) and an OpenAI-compatible streaming client (`http`); `load_llm` picks one.

Models load on first use, never at import.
"""
from __future__ import annotations

from .base import LLM, LLMError


def load_llm(backend: str = "local", *, base_url: str = "", model: str = "", api_key_env: str = "OPENAI_API_KEY",
             n_threads: int | None = None, prefix_cache: bool = True, quantize: str = "none") -> LLM:
    """`backend` "local" -> LocalLLM(n_threads=..., prefix_cache, quantize); "openai" -> OpenAIChatLLM(base_url, model)."""
    if backend == "local":
        from .local import LocalLLM

        return LocalLLM(n_threads=n_threads, prefix_cache=prefix_cache, quantize=quantize)
    if backend == "openai":
        if not base_url or not model:
            raise LLMError("backend 'openai' needs base_url and model (e.g. http://127.0.0.1:8000/v1, my-model)")
        from .http import OpenAIChatLLM

        return OpenAIChatLLM(base_url, model, api_key_env=api_key_env)
    raise LLMError(f"unknown LLM backend {backend!r}: use 'local' or 'openai'")
