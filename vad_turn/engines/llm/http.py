"""An OpenAI-compatible streaming client: `POST {base_url}/chat/completions` with `"stream": true`.

`OpenAIChatLLM` parses the server-sent events (`parse_sse_deltas`); one persistent `httpx.Client` keeps the
connection open between turns. The API key comes from the environment variable named by `api_key_env`. A dead
endpoint raises `LLMError` naming the URL within `connect_timeout_s`.
"""
from __future__ import annotations

import json
import os
from typing import Iterator

from .base import LLMError, check_messages

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
