"""CPU speed-ups for the local LLM: a prefix KV cache, a per-token streamer, optional int8 quantization.

`PrefixKVCache` keeps the transformers KV cache of the previous call together with the token ids
it holds (prompt + the reply tokens fed back so far). The next call reuses the longest common
token prefix (the system prompt and the unchanged history) and prefills only the new tokens. The
cache is cropped to that prefix, never trusted beyond it, so a cancelled or partial generation
(a barge-in, a discarded preemptive start, the loser of a hedge) leaves a cache that is still
exact for the ids it records. Not thread-safe by itself: `LocalLLM` uses it under its lock.

`TokenStreamer` hands generated text to the consumer after every token. transformers'
`TextIteratorStreamer` holds text back until a space, i.e. until the next word has begun, which
costs one decode step (~60 ms on this CPU) before the first piece; this one only holds back an
incomplete UTF-8 character (decoded text ending in U+FFFD).

`quantize_int8(model)` replaces every `nn.Linear` (attention and MLP projections and the LM head)
by `torch.ao.quantization.quantize_dynamic`'s int8 version with per-channel weight scales
(activations quantized per call); embeddings and norms stay fp32. `quantize="bf16"` instead casts
the whole model to bfloat16 (the weights are a de-quantized Q4_1 GGUF, so fp32 is not the original
either); it uses the CPU's AVX512-BF16 kernels where present.
"""
from __future__ import annotations

import queue

QUANTIZE_CHOICES = ("none", "int8", "bf16", "auto")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    """True when the CPU advertises native bfloat16 arithmetic (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open(cpuinfo_path) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def resolve_quantize(choice: str, cpuinfo_path: str = "/proc/cpuinfo") -> str:
    """"auto" -> "bf16" where the CPU has native bf16 (faster, same quality on the bench), else "none" (fp32);
    any other choice is returned as is."""
    if choice not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be one of {QUANTIZE_CHOICES}, got {choice!r}")
    if choice != "auto":
        return choice
    return "bf16" if cpu_has_bf16(cpuinfo_path) else "none"


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """Number of leading positions where `a` and `b` hold the same token id."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixKVCache:
    """One reusable KV cache and the token ids (0..n-1) whose keys/values it holds.

    `take(ids)` -> (cache, n_reused): a cache cropped to the longest common prefix of `ids` and
    the cached ids (at most len(ids) - 1, so at least one token is fed and yields logits), or a
    fresh empty cache with n_reused 0. `store(cache, seq)` records a cache after a call; `seq` is
    every id the call saw (prompt + generated), of which the first cache-length are in the cache.
    """

    def __init__(self, config=None):
        self.config = config
        self.ids: list[int] = []
        self.kv = None
        self.n_calls = 0
        self.n_reused_total = 0

    def _fresh(self):
        from transformers import DynamicCache

        return DynamicCache(config=self.config)

    def take(self, ids: list[int]):
        self.n_calls += 1
        kv, cached = self.kv, self.ids
        self.kv, self.ids = None, []  # handed out: a failure before store() leaves no stale cache
        if kv is None or not ids:
            return self._fresh(), 0
        keep = min(common_prefix_len(cached, ids), len(ids) - 1, kv.get_seq_length())
        if keep <= 0:
            return self._fresh(), 0
        drop = kv.get_seq_length() - keep
        if drop:
            kv.crop(-drop)
        self.n_reused_total += keep
        return kv, keep

    def store(self, kv, seq: list[int]) -> None:
        n = kv.get_seq_length()
        if n > len(seq):
            raise ValueError(f"cache holds {n} positions but only {len(seq)} token ids were given")
        self.kv, self.ids = kv, list(seq[:n])

    def clear(self) -> None:
        self.kv, self.ids = None, []

    @property
    def n_cached(self) -> int:
        return len(self.ids)


def quantize_int8(model):
    """`model` with every nn.Linear dynamically quantized to int8 (in place on a CPU fp32 model); returned."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    return quantize_dynamic(model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)


class TokenStreamer:
    """A transformers streamer (`put(ids)` / `end()`) that yields new text after every generated token.

    The first `put` is the prompt and is skipped. Text is the decode of all generated ids so far
    (special tokens skipped), so pieces concatenate to exactly `tokenizer.decode(generated)`.
    Iterating blocks up to `timeout_s` per piece (queue.Empty after that).
    """

    _END = object()

    def __init__(self, tokenizer, *, timeout_s: float = 120.0):
        self.tok, self.timeout_s = tokenizer, float(timeout_s)
        self.q: queue.Queue = queue.Queue()
        self.ids: list[int] = []
        self._sent = 0
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.ids += [int(v) for v in value.reshape(-1).tolist()]
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return
        if len(text) > self._sent:
            self.q.put(text[self._sent:])
            self._sent = len(text)

    def end(self) -> None:
        text = self.tok.decode(self.ids, skip_special_tokens=True) if self.ids else ""
        if len(text) > self._sent:
            self.q.put(text[self._sent:])
            self._sent = len(text)
        self.q.put(self._END)

    def __iter__(self):
        while (item := self.q.get(timeout=self.timeout_s)) is not self._END:
            yield item
