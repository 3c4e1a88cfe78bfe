"""The LLM protocol every engine speaks, and the checks and error they share.

Every LLM speaks `stream(messages, *, max_new_tokens, temperature, seed) -> Iterator[str]`
(text pieces as the model produces them) and `complete(...) -> str` (the joined stream).
`messages` is the OpenAI chat format: a list of {"role": "system"|"user"|"assistant",
"content": str}, oldest first. The list is passed on unchanged: what the caller writes as the
system message is exactly what the model is prompted with.
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

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
