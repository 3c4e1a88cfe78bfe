"""The Markdown report of a `pipeline bench` run: its tables over all scenarios, then per scenario set.

`report_md(summary, info, by_set)` takes `e2e.summarize`'s summary (every scenario) and, per scenario
set ("festival": rendered turns, "getgoing": real callers; `e2e.summarize_sets`), the same summary
over that set's scenarios only; `ratios(summary)` are the P50 ratios the report ends with.
"""
from __future__ import annotations

from .stats import comparison_lines

# the per-turn latencies bench.score writes and summarize reports, seconds
TURN_METRICS = ("e2e_s", "endpoint_s", "processing_s", "stt_final_s", "llm_ttft_s", "tts_first_s", "preempt_hidden_s")


SET_NOTES = {
    "festival": ("Real Switchboard dev / SBCSAE test turns rendered by festival with their real pauses; "
                 "barge-in and backchannel scenarios.", ""),
    "getgoing": ("Real callers' turns (GetGoing test split, reporting only), their 8 kHz telephone audio played as "
                 "recorded, with 1 s of real lead-in and the real tail; one turn per scenario, the call's earlier "
                 "turns as history (`pipeline.bench.getgoing_scenarios`).", ""),
}


def _ms(x) -> str:
    return "-" if x is None else f"{1000 * x:.0f}"


def _pc(x) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def report_md(summary: dict, info: dict, by_set: dict | None = None, paired: dict | None = None) -> str:
    """The report: header (machine, detector, policy, engines), `tables(summary)`, then `tables` per set of
    `by_set` ({set name: summary over its scenarios}), the ratios and the command."""
    src = info.get("policy_source") or {}
    shipped = (f" (shipped beside the model; evaluated in `{src.get('evaluated_run')}` at commit {src.get('commit')}"
               f", model sha256 {str(src.get('model_sha256'))[:16]}...)") if src.get("policy_from") == "shipped" else ""
    why = (f"operating point `{src.get('operating_point')}` of `{src.get('source')}`{shipped} ({src.get('dataset')} "
           f"{src.get('split')}: false cut-offs {_pc(src.get('false_cutoff_rate'))}, mean latency "
           f"{_ms(src.get('mean_latency_s'))} ms; VAD-only there: {_pc((src.get('vad_only') or {}).get('false_cutoff_rate'))}"
           f" at {_ms((src.get('vad_only') or {}).get('mean_latency_s'))} ms)") if src.get("dataset") else \
        src.get("source", "unrecorded")
    lines = ["# Pipeline latency benchmark", "", f"Machine: {info.get('machine', '')}", "",
             f"Detector for the semantic strategy: `{info.get('detector')}` with policy {info.get('semantic_policy')}, "
             f"from the {why}; VAD-only stops after {info.get('vad_stop_silence_s')} s of silence. "
             f"STT `{info.get('stt')}`; user voices {info.get('voices')}; "
             f"LLM `{info.get('llm')}`; first TTS chunk after {info.get('first_clause_words')} words; "
             f"voice `{info.get('voice')}`.", "",
             "Times in ms, P50 / P99 over user turns (n in brackets). e2e = end of user speech -> first agent audio; "
             "endpoint = end of speech -> end-of-turn decision; processing = decision -> first agent audio.", "",
             f"e2e confident = e2e on the turns decided at p_eot >= {info.get('confident_p_eot')}. STT WER = "
             "word error rate of the pipeline's final transcripts against the turn's text (festival: the words "
             "rendered; getgoing: the call log's Google-ASR line), `vad_turn.engines.stt.word_error_rate`.", ""]
    lines += tables(summary)
    for name, s in (by_set or {}).items():
        lines += ["", f"## Scenario set `{name}`", "", *SET_NOTES.get(name, ()), *tables(s)]
        if (paired or {}).get(name):
            lines += ["", "Paired on the same turns, 95% bootstrap intervals by call (`pipeline.bench.stats`):", "",
                      *comparison_lines(paired[name])]
    ratios_ = info.get("ratios", {})
    if ratios_:
        lines += ["", "Ratios (P50): " + "; ".join(f"{k} = {v:.2f}" for k, v in ratios_.items() if v is not None)]
    lines += ["", f"Command: `{info.get('command', '')}`", ""]
    return "\n".join(lines)


def tables(summary: dict) -> list[str]:
    """The latency table (one row per config) and, when there were any, the barge-in / backchannel table."""
    lines = ["| config | n | e2e | endpoint | processing | STT final | LLM TTFT | TTS first | preempt hidden | "
             "e2e confident | false cut-off | STT WER |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        cells = [f"{_ms(s[m]['p50'])} / {_ms(s[m]['p99'])} ({s[m]['n']})" for m in TURN_METRICS]
        c = s.get("e2e_confident_s") or {"p50": None, "p99": None, "n": 0}
        cells.append(f"{_ms(c['p50'])} / {_ms(c['p99'])} ({c['n']})")
        w = s.get("stt_wer") or {}
        wer = "-" if w.get("wer") is None else f"{w['wer']:.2f} ({w['n_ref_words']} words)"
        lines.append(f"| {name} | {s['n_turns']} | " + " | ".join(cells) + f" | {_pc(s['false_cutoff_rate'])} | {wer} |")
    pre = {n: s["preemptive"] for n, s in summary.items() if (s.get("preemptive") or {}).get("starts")}
    if pre:
        lines += ["", "Preemptive generation (LLM started in the silence): " + "; ".join(
            f"{n}: {p['starts']} starts, {p['confirmed']} confirmed, {p['discarded']} discarded (wasted LLM work)"
            for n, p in pre.items())]
    if not any(s.get("barge_in") or s.get("backchannel") for s in summary.values()):
        return lines  # no interjection scenario (e.g. the getgoing set)
    lines += ["", "| config | barge-in n | success | reaction P50 / P99 ms | backchannel n | false interruptions | "
              "pause P50 / max ms |", "|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        b, c = s.get("barge_in"), s.get("backchannel")
        if not (b or c):
            continue
        bcells = (f"{b['n']} | {100 * b['success_rate']:.0f}% | {_ms(b['reaction_p50_s'])} / {_ms(b['reaction_p99_s'])}"
                  if b else "0 | - | -")
        ccells = (f"{c['n']} | {c['false_interruptions']} | {_ms(c['pause_p50_s'])} / {_ms(c['pause_max_s'])}"
                  if c else "0 | - | -")
        lines.append(f"| {name} | {bcells} | {ccells} |")
    return lines


def ratios(summary: dict) -> dict:
    """P50 ratios between configs (cascade / streaming processing, semantic / VAD-only e2e and false cut-offs)."""
    def g(c, m, q="p50"):
        return (summary.get(c) or {}).get(m, {}).get(q)

    out = {}
    baselines = ("streaming-vad", "streaming-vad-matched", "streaming-vad-preempt", "streaming-vad-eval",
                 "streaming-smart-turn")
    pairs = [("cascade-vad", "streaming-vad", "processing_s"), ("cascade-semantic", "streaming-semantic", "processing_s")]
    pairs += [("streaming-semantic", b, m) for b in baselines for m in ("e2e_s", "processing_s")]
    for a, b, m in pairs:
        x, y = g(a, m), g(b, m)
        if a in summary and b in summary:
            out[f"{a}/{b} {m}"] = (x / y) if x and y else None
    for base in baselines:
        if "streaming-semantic" in summary and base in summary:
            fa, fb = ((summary.get(c) or {}).get("false_cutoff_rate") for c in ("streaming-semantic", base))
            out[f"streaming-semantic/{base} false_cutoff_rate"] = (fa / fb) if fa is not None and fb else None
    return out
