"""A tiny OpenAI-compatible chat-completions server around any `LLM` (e.g. the local SmolLM2).

`POST /v1/chat/completions` with `"stream": true` answers server-sent events
(`data: {chat.completion.chunk}` ... `data: [DONE]`) using HTTP/1.1 chunked transfer encoding, so
clients keep one persistent connection; `"stream": false` answers one `chat.completion` JSON.
`GET /v1/models` lists the model. Every request body is appended to `server.requests`, so
callers can check exactly which messages reached the model.

It exists to test `OpenAIChatLLM` against a real server and to let the pipeline talk to the local
model over HTTP; it is single-model, binds 127.0.0.1 by default and is not meant for production.

    with serve_llm(LocalLLM()) as (base_url, server):
        OpenAIChatLLM(base_url, "smollm2").complete([{"role": "user", "content": "hi"}])
"""
from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from vad_turn.engines.llm.base import LLM, LLMError


class LLMHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], llm: LLM, model_name: str):
        super().__init__(addr, _Handler)
        self.llm = llm
        self.model_name = model_name
        self.requests: list[dict] = []
        self.n_connections = 0  # TCP connections accepted (a keep-alive client uses one for many requests)

    def process_request(self, request, client_address) -> None:
        self.n_connections += 1
        super().process_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LLMHTTPServer

    def log_message(self, fmt: str, *args) -> None:  # keep test output quiet
        pass

    def _send_json(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": self.server.model_name, "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            messages = body["messages"]
        except (ValueError, KeyError) as e:
            self._send_json(400, {"error": {"message": f"bad request body: {e!r}"}})
            return
        self.server.requests.append(body)
        kwargs = dict(
            max_new_tokens=int(body.get("max_tokens") or 128),
            temperature=float(body.get("temperature") or 0.0),
            seed=int(body.get("seed") or 0),
        )
        cid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        if not body.get("stream"):
            try:
                text = self.server.llm.complete(messages, **kwargs)
            except LLMError as e:
                self._send_json(500, {"error": {"message": str(e)}})
                return
            self._send_json(200, {
                "id": cid, "object": "chat.completion", "created": int(time.time()), "model": self.server.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            })
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for event in self._events(cid, messages, kwargs):
            self._chunk(f"data: {event}\n\n".encode())
        self._chunk(b"")  # final zero-length chunk ends the response; the connection stays open

    def _events(self, cid: str, messages: list[dict], kwargs: dict) -> Iterator[str]:
        def chunk(delta: dict, finish: str | None = None) -> str:
            return json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": self.server.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })

        yield chunk({"role": "assistant"})
        try:
            for piece in self.server.llm.stream(messages, **kwargs):
                yield chunk({"content": piece})
        except LLMError as e:
            yield json.dumps({"error": {"message": str(e)}})
            return
        yield chunk({}, "stop")
        yield "[DONE]"


@contextlib.contextmanager
def serve_llm(llm: LLM, *, host: str = "127.0.0.1", port: int = 0, model_name: str = "smollm2") -> Iterator[tuple[str, LLMHTTPServer]]:
    """Run the server in a background thread; yield (base_url ending in /v1, server). Port 0 = a free port."""
    server = LLMHTTPServer((host, port), llm, model_name)
    thread = threading.Thread(target=server.serve_forever, name="llm-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/v1", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass(frozen=True)
class ServeConfig:
    """Serve the local SmolLM2 over an OpenAI-compatible HTTP API until interrupted."""

    host: str = field(default="127.0.0.1", metadata={"help": "address to bind (127.0.0.1: this machine only)"})
    port: int = field(default=8000, metadata={"help": "port (0: any free port)"})

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}")


def serve(cfg: ServeConfig) -> int:
    from vad_turn.engines.llm.local import LocalLLM

    with serve_llm(LocalLLM().load(), host=cfg.host, port=cfg.port) as (url, _):
        print(f"serving SmolLM2 at {url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m pipeline.serving.llm_server --port 8000`: serve the local SmolLM2 until interrupted."""
    from vad_turn.core.config import config_main

    return config_main(ServeConfig, serve, argv, ServeConfig.__doc__, prog="python -m pipeline.serving.llm_server")


if __name__ == "__main__":
    raise SystemExit(main())
