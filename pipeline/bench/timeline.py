"""The per-turn timeline: what happened when, in each user turn of a pipeline run.

`turn_timelines(frames, scores, start_s=...)` cuts a run's frame log (`observers.FrameLog`) into one
`TurnTimeline` per user turn: the VAD's user speech segments, the real pauses (scripted input), the
p_eot curve the semantic detector produced during silences with its threshold, the end-of-turn
decisions (a decision before the user really finished is a cut-off), the LLM tokens, the agent's
audio as played, and interrupts (barge-ins, responses cancelled because the user went on).
`plot_timelines(timelines)` draws them as a matplotlib figure, one pair of axes per turn; it is
used by the demo and works the same in a notebook. All times are seconds since `start_s`, the
clock time of input stream time 0, so stream times and clock times share one axis.

`RecordingDetector` wraps any detector and records (clock time, silence_s, p_eot) of every query:
the pipeline publishes only the deciding score, the curve needs all of them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from pipeline.runtime.frames import (AgentSpeaking, EndOfTurn, Interrupt, LLMToken, UserStartedSpeaking, UserStoppedSpeaking)
from pipeline.runtime.observers import FrameLog


class RecordingDetector:
    """A detector that forwards to `inner` and appends (t_asked, t_answered, silence_s, p_eot) to `scores`,
    times from `clock` (time.monotonic: the wall clock's base, so they line up with frames on a `WallClock`)."""

    def __init__(self, inner, clock=time.monotonic):
        self.inner, self.clock = inner, clock
        self.name = getattr(inner, "name", type(inner).__name__)
        self.needs_audio = getattr(inner, "needs_audio", False)
        self.needs_words = getattr(inner, "needs_words", True)
        self.scores: list[tuple[float, float, float]] = []
        self._lock = threading.Lock()

    def predict(self, audio, words, messages, silence_s: float) -> float:
        t = self.clock()
        p = float(self.inner.predict(audio, words, messages, silence_s))
        with self._lock:
            self.scores.append((t, self.clock(), float(silence_s), p))
        return p


@dataclass
class TurnTimeline:
    """One user turn. Times are seconds since the run's stream start; (start, end) pairs are intervals.

    window: the span shown; speech: the VAD's user speech; holds: the real mid-turn pauses (scripted
    input only); truth_end: when the user really finished (None if unknown); p_eot: (t, p) detector
    scores in [0, 1]; eots: (t, tentative, cutoff) decisions, cutoff None if unknown; tokens: LLM token
    times; agent_audio: intervals of agent audio played; interrupts: (t, reason).
    """

    label: str
    window: tuple[float, float]
    speech: list[tuple[float, float]] = field(default_factory=list)
    holds: list[tuple[float, float]] = field(default_factory=list)
    truth_end: float | None = None
    p_eot: list[tuple[float, float]] = field(default_factory=list)
    threshold: float | None = None
    stop_silence_s: float | None = None
    eots: list[tuple[float, bool, bool | None]] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    agent_audio: list[tuple[float, float]] = field(default_factory=list)
    interrupts: list[tuple[float, str]] = field(default_factory=list)
    transcript: str = ""

    @property
    def cut_off(self) -> bool | None:
        """True when a (non-tentative) decision came before the real end of the turn; None if unknown."""
        final = [c for _, tent, c in self.eots if not tent]
        if not final or any(c is None for c in final):
            return None
        return any(final)


def _intervals(starts_stops: list[tuple[float, bool]], end_s: float) -> list[tuple[float, float]]:
    out, open_at = [], None
    for t, on in sorted(starts_stops, key=lambda x: x[0]):
        if on and open_at is None:
            open_at = t
        elif not on and open_at is not None:
            out.append((open_at, t))
            open_at = None
    if open_at is not None:
        out.append((open_at, end_s))
    return out


def turn_timelines(frames: FrameLog, scores=(), *, start_s: float, truths=(), threshold: float | None = None,
                   stop_silence_s: float | None = None, margin_s: float = 0.3) -> list[TurnTimeline]:
    """Per-turn timelines of one run (see the module docstring).

    truths: the scripted turns' clock times ({"start", "end", "holds", "text"}, as the demo and the
    bench record them); without them, turns are cut at the end-of-turn decisions (cut-offs unknown).
    scores: (t_asked, t_answered, silence_s, p_eot) from a RecordingDetector; plotted when answered.
    """
    rel = lambda t: t - start_s  # noqa: E731
    log = frames.frames
    end_all = max((rel(t) for t, _, _ in log), default=0.0)
    speech = _intervals([(f.stream_t_s, True) for f in frames.of(UserStartedSpeaking)]
                        + [(f.stream_t_s, False) for f in frames.of(UserStoppedSpeaking)], end_all)
    eots = [f for t, src, f in log if isinstance(f, EndOfTurn) and src == "turn"]
    agent = _intervals([(rel(f.t_s), f.speaking) for f in frames.of(AgentSpeaking)], end_all)
    if truths:
        starts = [rel(tr["start"]) - margin_s for tr in truths] + [end_all + 1e-6]
        windows = [(max(starts[i], 0.0), starts[i + 1]) for i in range(len(truths))]
    else:
        finals = sorted(rel(f.t_s) for f in eots if not f.tentative)
        bounds, prev = [], 0.0
        for e in finals:
            onsets = [a for a, _ in speech if a >= prev]
            bounds.append(max((onsets[0] if onsets else prev) - margin_s, 0.0))
            prev = e
        windows = [(bounds[i], bounds[i + 1] if i + 1 < len(bounds) else end_all + 1e-6) for i in range(len(bounds))]
        if not windows and speech:
            windows = [(max(speech[0][0] - margin_s, 0.0), end_all + 1e-6)]

    def inside(t, w):
        return w[0] <= t < w[1]

    out = []
    for i, w in enumerate(windows):
        tr = truths[i] if truths else None
        truth_end = rel(tr["end"]) if tr else None
        tl = TurnTimeline(label=(tr.get("text", "") if tr else f"turn {i + 1}"), window=(w[0], w[1]),
                          truth_end=truth_end, threshold=threshold, stop_silence_s=stop_silence_s)
        tl.speech = [(a, min(b, w[1])) for a, b in speech if inside(a, w)]
        tl.holds = [(rel(a), rel(b)) for a, b in (tr.get("holds", []) if tr else [])]
        tl.p_eot = [(rel(t), p) for _, t, _, p in scores if inside(rel(t), w)]
        mine = [f for f in eots if inside(rel(f.t_s), w)]
        tl.eots = [(rel(f.t_s), f.tentative, None if truth_end is None else rel(f.t_s) < truth_end) for f in mine]
        finals = [f for f in mine if not f.tentative]
        tl.transcript = finals[-1].text if finals else ""
        tl.tokens = [rel(t) for t, src, f in log if isinstance(f, LLMToken) and src == "llm" and inside(rel(t), w)]
        tl.agent_audio = [(a, min(b, w[1])) for a, b in agent if inside(a, w)]
        tl.interrupts = [(rel(f.t_s), f.reason) for f in frames.of(Interrupt) if inside(rel(f.t_s), w)]
        tl.window = (w[0], min(w[1], max([w[0] + 1.0, *[b for _, b in tl.agent_audio], *[e for _, e in tl.speech],
                                            *[t for t, _, _ in tl.eots]]) + 0.3))
        out.append(tl)
    return out


def plot_timelines(timelines: list[TurnTimeline], title: str = "", *, width_in: float = 9.0):
    """A matplotlib Figure: per turn, a lane axis (user speech, pauses, agent audio, tokens,
    decisions, interrupts) over a p_eot axis (curve, threshold; log scale for thresholds < 0.01)."""
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    n = max(len(timelines), 1)
    fig = Figure(figsize=(width_in, 2.9 * n), layout="constrained")
    gs = fig.add_gridspec(2 * n, 1, height_ratios=[1.3, 1.0] * n)
    if not timelines:
        ax = fig.add_subplot(gs[0])
        ax.text(0.5, 0.5, "no user turn was detected", ha="center", va="center")
        ax.set_axis_off()
        return fig
    for i, tl in enumerate(timelines):
        ax, axp = fig.add_subplot(gs[2 * i]), None
        axp = fig.add_subplot(gs[2 * i + 1], sharex=ax)
        for a, b in tl.speech:
            ax.broken_barh([(a, b - a)], (2.1, 0.8), color="tab:blue", alpha=0.8)
        for a, b in tl.holds:
            ax.broken_barh([(a, b - a)], (2.1, 0.8), facecolor="none", edgecolor="tab:blue", hatch="//")
            ax.text((a + b) / 2, 3.05, f"pause {b - a:.1f} s", ha="center", fontsize=7)
        for a, b in tl.agent_audio:
            ax.broken_barh([(a, b - a)], (0.1, 0.8), color="tab:green", alpha=0.8)
        ax.vlines(tl.tokens, 1.15, 1.85, color="tab:purple", lw=0.8)
        for t, reason in tl.interrupts:
            ax.plot([t], [1.5], marker="X", ms=9, color="tab:orange", ls="none")
            ax.text(t, 1.9, reason, fontsize=7, color="tab:orange")
        if tl.truth_end is not None:
            for a in (ax, axp):
                a.axvline(tl.truth_end, color="black", ls=":", lw=1)
        for t, tent, cut in tl.eots:
            color = "grey" if tent else ("tab:red" if cut else "tab:green" if cut is False else "black")
            for a in (ax, axp):
                a.axvline(t, color=color, ls="--" if tent else "-", lw=1.8)
            ax.text(t, 3.35, "cut-off" if cut and not tent else ("early" if tent else "EOT"), color=color,
                    fontsize=8, ha="center")
        ax.set_yticks([0.5, 1.5, 2.5], ["agent audio", "LLM tokens", "user"])
        ax.set_ylim(0, 3.7)
        ax.set_xlim(*tl.window)
        state = {True: "CUT OFF", False: "no cut-off", None: ""}[tl.cut_off]
        ax.set_title(f"{title}  turn {i + 1}: {tl.label!r}  {state}".strip(), fontsize=9, loc="left")
        ax.tick_params(labelbottom=False)
        if tl.p_eot:
            ts, ps = zip(*tl.p_eot)
            axp.plot(ts, ps, marker=".", color="tab:red", lw=1)
        log_scale = tl.threshold is not None and 0 < tl.threshold < 0.01
        if tl.threshold is not None and tl.stop_silence_s is None:
            axp.axhline(tl.threshold, color="tab:red", ls=":", lw=1)
            axp.text(tl.window[0], tl.threshold, f" threshold {tl.threshold:g}", fontsize=7, va="bottom")
        if log_scale:
            axp.set_yscale("log")
            axp.set_ylim(min([tl.threshold / 1e4, *[p for _, p in tl.p_eot if p > 0]]) / 2, 1.0)
        else:
            axp.set_ylim(-0.05, 1.05)
        if tl.stop_silence_s is not None:
            axp.text(0.01, 0.5, f"VAD-only: the turn ends after {tl.stop_silence_s:g} s of silence (no p_eot)",
                     transform=axp.transAxes, fontsize=8, va="center")
        axp.set_ylabel("p_eot", fontsize=8)
        axp.set_xlabel("seconds since the input started", fontsize=8)
    return fig
