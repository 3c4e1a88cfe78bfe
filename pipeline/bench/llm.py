"""LLM-side latency on the bench's user turns: prefix cache, int8, per-token streaming, first TTS chunk.

Conversations of the real user turns the pipeline bench plays (`scenarios.scenario_texts`, in
conversations of `turns_per_conversation`, prompts built like `LLMProcessor`: system prompt +
history window) go through one `LocalLLM` per variant, the variants taking turns conversation by
conversation so a shared CPU's load falls on all of them alike. Per variant and call we record the
time to the first streamed piece (TTFT, prompt prefill + one step), the tokens in the prompt and
those the prefix cache supplied, decode ms per later token, and the reply. Reported:
- TTFT P50 / P99 and decode ms/token per variant;
- replies identical to the reference variant (the first in `variants`) per variant (greedy);
- for each `first_clause_words`, the tokens `ClauseAggregator` needs before the first TTS chunk
  (`speech.first_chunk_pieces`, on the reference replies) and the time that takes
  (TTFT + (tokens - 1) x decode), i.e. the LLM's part of decision -> first audio.

Variants are "cache-fp32", "nocache-fp32", "cache-int8", "nocache-int8", "cache-bf16", "nocache-bf16".
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.config import default_runs_root
from vad_turn.core.runs import RunFolder, atomic_write_text
from vad_turn.harness.percentiles import percentile

VARIANTS = ("nocache-fp32", "cache-fp32", "cache-int8", "nocache-int8", "cache-bf16", "nocache-bf16")


@dataclass(frozen=True)
class LLMBenchConfig:
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/llm-bench-<time>)"})
    variants: tuple[str, ...] = field(default=VARIANTS[:3], metadata={"help": f"of {', '.join(VARIANTS)}; the first is the reference"})
    n_turns: int = field(default=16, metadata={"help": "user turns (the bench's conversation turns)"})
    turns_per_conversation: int = field(default=4, metadata={"help": "user turns per conversation (history)"})
    max_history: int = field(default=6, metadata={"help": "history window, as LLMProcessor"})
    max_new_tokens: int = field(default=16, metadata={"help": "reply length cap, as the bench's"})
    threads: int = field(default=1, metadata={"help": "torch threads"})
    first_clause_words: tuple[int, ...] = field(default=(1, 2, 3, 4, 6), metadata={"help": "first-chunk cuts to score"})
    seed: int = field(default=0, metadata={"help": "seed of the turn selection"})


def _variant(name: str):
    from vad_turn.engines.llm.local import LocalLLM

    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")
    cache, quant = name.split("-")
    return LocalLLM(prefix_cache=cache == "cache", quantize={"fp32": "none"}.get(quant, quant))


def timed_call(llm, messages: list[dict], max_new_tokens: int) -> dict:
    """One streamed call: {ttft_s, decode_s_per_token, pieces, reply, prompt_tokens, reused_tokens}."""
    t0 = time.perf_counter()
    pieces, times = [], []
    for piece in llm.stream(messages, max_new_tokens=max_new_tokens):
        times.append(time.perf_counter() - t0)
        pieces.append(piece)
    per = float(np.mean(np.diff(times))) if len(times) > 1 else None
    return {"ttft_s": times[0] if times else None, "decode_s_per_token": per, "pieces": pieces,
            "reply": "".join(pieces), "prompt_tokens": llm.last_prompt_tokens, "reused_tokens": llm.last_reused_tokens}


def text_nll(llm, system: dict, texts: list[str]) -> dict:
    """Teacher-forced mean negative log-likelihood (nats/token) of each text as a user turn after `system`.

    A quality check of a variant that does not depend on greedy decoding: the scored tokens are each
    text's own tokens plus the end-of-turn marker that follows it, read off the logits of one forward
    pass over the chat-templated prompt. Returns {nll_per_token, n_tokens}."""
    import torch

    tok, model = llm.load()._tok, llm._model
    total, n = 0.0, 0
    with llm._lock, torch.inference_mode():
        for text in texts:
            ids = tok.apply_chat_template([system, {"role": "user", "content": text}], tokenize=True, return_tensors="pt")
            ids = ids if isinstance(ids, torch.Tensor) else ids["input_ids"]
            logp = torch.log_softmax(model(ids).logits.float()[0, :-1], dim=-1)
            tok_logp = logp.gather(1, ids[0, 1:, None])[:, 0]
            k = min(len(tok(text, add_special_tokens=False)["input_ids"]) + 2, tok_logp.numel())  # + <|im_end|> + newline
            total += -float(tok_logp[-k:].sum())
            n += k
    return {"nll_per_token": total / max(n, 1), "n_tokens": n}


def run(cfg: LLMBenchConfig) -> dict:
    import torch
    from tqdm import tqdm

    from pipeline.runtime.processors.llm_proc import LLMProcessor
    from pipeline.runtime.processors.speech import first_chunk_pieces
    from pipeline.runtime.runner import SYSTEM_PROMPT
    from .scenarios import scenario_texts

    torch.set_num_threads(cfg.threads)
    folder = RunFolder(cfg.out or default_runs_root() / f"llm-bench-{time.strftime('%Y%m%d-%H%M%S')}", cfg)
    texts = scenario_texts(n_conversation_turns=cfg.n_turns, seed=cfg.seed)
    system = {"role": "system", "content": SYSTEM_PROMPT}
    llms = {v: _variant(v).load() for v in cfg.variants}
    for llm in llms.values():
        llm.warm([system])
        llm.complete([system, {"role": "user", "content": "Hi"}], max_new_tokens=2)
    calls: dict[str, list[dict]] = {v: [] for v in cfg.variants}
    convs = [texts[i:i + cfg.turns_per_conversation] for i in range(0, len(texts), cfg.turns_per_conversation)]
    for conv in tqdm(convs, desc="llm bench", unit="conversation"):
        for v, llm in llms.items():
            window = LLMProcessor(llm, max_history=cfg.max_history)  # only its history window is used
            history: list[dict] = []
            for text in conv:
                history.append({"role": "user", "content": text})
                rec = timed_call(llm, [system] + window._window(history), cfg.max_new_tokens)
                calls[v].append({"user": text, **rec})
                history.append({"role": "assistant", "content": rec["reply"].strip()})
    ref = cfg.variants[0]
    summary = {}
    for v, cs in calls.items():
        tt = [c["ttft_s"] for c in cs if c["ttft_s"] is not None]
        dec = [c["decode_s_per_token"] for c in cs if c["decode_s_per_token"] is not None]
        summary[v] = {"n_calls": len(cs), "ttft_p50_s": percentile(tt, 50), "ttft_p99_s": percentile(tt, 99),
                      "decode_ms_per_token_p50": 1000 * percentile(dec, 50),
                      "prompt_tokens_mean": float(np.mean([c["prompt_tokens"] for c in cs])),
                      "reused_tokens_mean": float(np.mean([c["reused_tokens"] for c in cs])),
                      "identical_to_ref": sum(a["reply"] == b["reply"] for a, b in zip(cs, calls[ref]))}
        chunks = {}
        for k in cfg.first_clause_words:
            n = [first_chunk_pieces(c["pieces"], k) for c in cs]
            est = [c["ttft_s"] + (m - 1) * (c["decode_s_per_token"] or 0.0) for c, m in zip(cs, n)]
            chunks[str(k)] = {"tokens_p50": percentile(n, 50), "tokens_mean": float(np.mean(n)),
                              "first_chunk_p50_s": percentile(est, 50), "first_chunk_p99_s": percentile(est, 99)}
        summary[v]["first_chunk"] = chunks
        summary[v]["user_text_nll"] = text_nll(llms[v], system, texts)
    atomic_write_text(folder.file("calls.json"), json.dumps(calls, indent=1))
    folder.write_metrics({"summary": summary, "reference": ref, "n_turns": len(texts)})
    md = report_md(summary, ref, cfg)
    atomic_write_text(folder.file("report.md"), md)
    print(md)
    print(f"wrote {folder.path}")
    return {"summary": summary, "out": str(folder.path)}


def report_md(summary: dict, ref: str, cfg: LLMBenchConfig) -> str:
    lines = ["# LLM latency on the bench's user turns", "",
             f"{cfg.n_turns} turns in conversations of {cfg.turns_per_conversation}, {cfg.max_new_tokens} new tokens, "
             f"{cfg.threads} thread(s). TTFT = time to the first streamed piece.", "",
             "| variant | calls | prompt tokens (mean) | reused by cache (mean) | TTFT P50 / P99 ms | decode ms/token | "
             f"identical to {ref} | NLL/token of the user turns |", "|---|---|---|---|---|---|---|---|"]
    for v, s in summary.items():
        lines.append(f"| {v} | {s['n_calls']} | {s['prompt_tokens_mean']:.0f} | {s['reused_tokens_mean']:.0f} | "
                     f"{1000 * s['ttft_p50_s']:.0f} / {1000 * s['ttft_p99_s']:.0f} | {s['decode_ms_per_token_p50']:.0f} | "
                     f"{s['identical_to_ref']}/{s['n_calls']} | {s['user_text_nll']['nll_per_token']:.3f} |")
    lines += ["", "NLL: teacher-forced, the user turns after the system prompt (a quality check independent of "
              "greedy decoding; lower is better).", "", "First TTS chunk (ClauseAggregator): tokens needed P50 (mean) and estimated LLM time to it, "
              "P50 / P99 ms", "", "| variant | " + " | ".join(f"first_clause_words={k}" for k in cfg.first_clause_words)
              + " |", "|---|" + "---|" * len(cfg.first_clause_words)]
    for v, s in summary.items():
        cells = [f"{c['tokens_p50']:.0f} ({c['tokens_mean']:.1f}) tok, {1000 * c['first_chunk_p50_s']:.0f} / "
                 f"{1000 * c['first_chunk_p99_s']:.0f}" for c in s["first_chunk"].values()]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
