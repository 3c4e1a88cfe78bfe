"""Pause-length distributions of holds vs ends of turn, per corpus (notebook 01 and `vad-turn explore`).

A hold is a silence inside a turn; the end-of-turn "pause" is the gap from the end of the turn's
last word to the next speaker's start (zero when the next speaker overlaps).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vad_turn.core.config import default_built_root, default_runs_root
from vad_turn.core.runs import RunFolder

CORPORA = ("switchboard", "sbcsae", "ami")


@dataclass(frozen=True)
class ExploreConfig:
    built_root: Path = field(default_factory=default_built_root, metadata={"help": "folder of built datasets"})
    corpora: tuple[str, ...] = field(default=CORPORA, metadata={"help": "corpora to include (those built)"})
    max_pause_s: float = field(default=3.0, metadata={"help": "x-axis limit of the histograms"})
    out: Path | None = field(default=None, metadata={"help": "run folder (default runs/explore-turns)"})


def pause_table(built_root: Path, corpora: tuple[str, ...] = CORPORA):
    """One row per silence span: corpus, split, kind ("hold" | "end"), duration_s, pause_context, n_words.

    Corpora that have not been built are skipped; raises FileNotFoundError when none is built.
    """
    import pandas as pd

    from .dataset import load_turns

    rows = []
    for corpus in corpora:
        path = Path(built_root) / corpus
        if not path.exists():
            continue
        ds = load_turns(path).select_columns(["silence_spans", "pause_context", "n_words", "split"])
        for r in ds:
            spans = r["silence_spans"]
            for i, s in enumerate(spans):
                rows.append(
                    {
                        "corpus": corpus,
                        "split": r["split"],
                        "kind": "end" if i == len(spans) - 1 else "hold",
                        "duration_s": s["end"] - s["start"],
                        "pause_context": r["pause_context"][i],
                        "n_words": r["n_words"],
                    }
                )
    if not rows:
        raise FileNotFoundError(f"{built_root}: none of {list(corpora)} is built; run `vad-turn build-data` first")
    return pd.DataFrame(rows)


def summarize(df):
    """Per corpus and kind: count, median, P90 duration, and share of holds longer than 0.6 s."""
    g = df.groupby(["corpus", "kind"])["duration_s"]
    out = g.agg(count="count", median_s="median", p90_s=lambda x: float(np.quantile(x, 0.9)))
    out["share_over_0.6s"] = g.apply(lambda x: float(np.mean(x > 0.6)))
    return out.reset_index()


def plot_pause_distributions(df, max_pause_s: float = 3.0):
    """Histograms (density) of hold vs end-of-turn pause lengths, one panel per corpus."""
    import matplotlib.pyplot as plt

    corpora = list(dict.fromkeys(df["corpus"]))
    fig, axes = plt.subplots(1, len(corpora), figsize=(4.5 * len(corpora), 3.4), squeeze=False)
    bins = np.linspace(0, max_pause_s, 61)
    for ax, corpus in zip(axes[0], corpora):
        sub = df[df["corpus"] == corpus]
        for kind, color in (("hold", "tab:blue"), ("end", "tab:red")):
            d = sub.loc[sub["kind"] == kind, "duration_s"].clip(upper=max_pause_s)
            if len(d):
                ax.hist(d, bins=bins, density=True, alpha=0.55, color=color, label=f"{kind} (n={len(d)})")
        ax.axvline(0.6, color="k", ls="--", lw=1, label="0.6 s VAD stop")
        ax.set_title(corpus)
        ax.set_xlabel("pause length (s)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    fig.tight_layout()
    return fig


def run(cfg: ExploreConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")  # headless CLI; notebooks keep their inline backend
    df = pause_table(cfg.built_root, cfg.corpora)
    folder = RunFolder(cfg.out or default_runs_root() / "explore-turns", cfg)
    table = summarize(df)
    fig = plot_pause_distributions(df, cfg.max_pause_s)
    fig.savefig(folder.file("pause_lengths.png"), dpi=120)
    folder.write_metrics({"summary": table.to_dict(orient="records")})
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"figure: {folder.file('pause_lengths.png')}")
