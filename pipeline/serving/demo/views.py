"""What each pane shows, as plain values the Gradio app puts on the page (testable without a browser).

`pane_view(result)` -> {"title", "timeline" (PIL image), "transcript", "audio" ((16000, float32 array)),
"verdict" (markdown, one line per user turn with its cut-off and latencies)}; `running_table(history)`
-> rows of P50/P99 latency and false cut-offs per pane over the session's runs so far.
"""
from __future__ import annotations

import io

from pipeline.bench.timeline import plot_timelines
from vad_turn.core.audio import SAMPLE_RATE_HZ

from .session import PANE_TITLES, PANES, PaneResult, summary_row

TABLE_HEADERS = ["pane", "detector", "turns", "e2e P50 ms", "e2e P99 ms", "endpoint P50 ms", "endpoint P99 ms",
                 "false cut-offs", "overloaded"]


def figure_image(fig):
    """A matplotlib Figure as a PIL image (PNG-encoded at 90 dpi)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _ms(x) -> str:
    return "-" if x is None else f"{1000 * x:.0f} ms"


def verdict_md(r: PaneResult) -> str:
    """One line per user turn: CUT OFF / no cut-off / unknown, endpoint and end-to-end latency."""
    lines = []
    for i, (row, tl) in enumerate(zip(r.rows, r.timelines + [None] * len(r.rows))):
        if row.get("overloaded"):
            behind = "; ".join(f"{what} {_ms(row.get(k))} behind the audio" for k, what in (
                ("decision_lag_s", "the decision"), ("audio_lag_s", "the audio reached the VAD"),
                ("answer_lag_s", "the detector's answers came")) if row.get(k) is not None)
            lines.append(f"- turn {i + 1} \"{row.get('text', '')}\": **no verdict: the machine was overloaded** "
                         f"({behind}); run it again when it is idle")
            continue
        cut = row.get("cutoff")
        state = {True: "**CUT OFF**", False: "**no cut-off**", None: "cut-off unknown (no ground truth)"}[cut]
        if cut and tl is not None and tl.holds:
            first = min(t for t, tent, c in tl.eots if c and not tent)
            inside = [t0 for t0, t1 in tl.holds if t0 <= first <= t1 + 0.05]
            if inside:
                state += f" ({first - inside[0]:.2f} s into a {tl.holds[0][1] - tl.holds[0][0]:.1f} s pause)"
        lines.append(f"- turn {i + 1} \"{row.get('text', '')}\": {state}; endpoint {_ms(row.get('endpoint_s'))}, "
                     f"end of speech -> agent audio {_ms(row.get('e2e_s'))}")
    if not lines:
        lines.append("- no user turn was answered")
    return "\n".join(lines)


def pane_view(r: PaneResult) -> dict:
    title = PANE_TITLES[r.pane]
    head = (f"### {title}: `{r.detector}`, threshold {r.threshold:g}" if r.pane == "semantic"
            else f"### {title}: silence only")
    fig = plot_timelines(r.timelines, title)
    transcript = "\n".join(f"{who}: {text}" for who, text in r.transcript) or "(nothing was said)"
    if r.log:
        transcript += "\n" + "\n".join(f"[log] {x}" for x in r.log)
    return {"title": head, "timeline": figure_image(fig), "transcript": transcript,
            "audio": (SAMPLE_RATE_HZ, r.audio), "verdict": verdict_md(r)}


def add_to_history(history: dict, results: dict[str, PaneResult]) -> dict:
    """A new session history {pane: {"detector", "rows"}} with this run's rows appended (the old one is not changed)."""
    out = {p: {"detector": v["detector"], "rows": list(v["rows"])} for p, v in (history or {}).items()}
    for pane, r in results.items():
        h = out.setdefault(pane, {"detector": r.detector, "rows": []})
        h["detector"] = r.detector
        h["rows"] += r.rows
    return out


def running_table(history: dict) -> list[list]:
    rows = []
    for pane in PANES:
        if pane in (history or {}):
            s = summary_row(pane, history[pane]["detector"], history[pane]["rows"])
            rows.append(["-" if s[k] is None else s[k] for k in TABLE_HEADERS])
    return rows
