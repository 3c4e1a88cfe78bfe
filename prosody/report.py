"""Aggregate a prosody run folder into the results table, report.md and plots.

Unit of analysis: the request. A measure's value for (variant, request) is the mean over voices
(text measures are the same for every voice), so bootstrap resampling is over requests, and the
paired effects compare the same request under a variant and under the baseline. Per-voice results
(unit: request within a voice) are in results_by_voice.csv. Real speech has no transcript here,
so its row and the distances exist for the Praat measures only.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from vad_turn.core.runs import atomic_write_text

from .stats import bootstrap_mean_ci, paired_effect, reference_distance

TABLE_MEASURES = (
    "words_per_sentence", "punct_per_word", "filler_rate", "first_clause_words",
    "f0_median_st", "f0_range_st", "f0_sd_st", "declination_st_per_s", "n_pauses", "pause_mean_s",
    "speech_rate_syl_per_s", "intensity_sd_db", "ttfa_s",
)
EXTRA_MEASURES = ("n_words", "pauses_per_min", "articulation_rate_syl_per_s", "tts_first_audio_s", "llm_first_clause_s")
REFERENCE = "real speech"
LOCAL_LLM_CAVEAT = (
    "**Caveat: the LLM is SmolLM2-135M-Instruct.** A 135M-parameter model follows style instructions "
    "weakly (compare the text measures, e.g. filler_rate under 'disfluent', with what the prompt asks), so "
    "the effects below measure what this model does with the prompts, not what prompt wording can do "
    "with a capable LLM; rerun with `--llm-backend openai` for that."
)
REFERENCE_FEMALE = "real speech (female)"  # AMI participant ids start with F/M; the default voices are female


def female_reference(reference: pd.DataFrame) -> pd.DataFrame:
    """Reference rows of female AMI speakers (id "ami:<uri>:<start>:<speaker>", speaker "F...")."""
    if reference.empty or "id" not in reference:
        return reference
    spk = reference["id"].str.split(":").str[-1]
    return reference[(reference["source"] == "ami") & spk.str.startswith("F")]


def _jsonl(path: Path) -> pd.DataFrame:
    from vad_turn.core.runs import read_jsonl

    return pd.DataFrame(read_jsonl(path))


def per_reply_table(run_dir: Path) -> pd.DataFrame:
    """renders.jsonl joined with the reply's LLM timings: one row per (variant, request, voice)."""
    run_dir = Path(run_dir)
    renders, replies = _jsonl(run_dir / "renders.jsonl"), _jsonl(run_dir / "replies.jsonl")
    if renders.empty:
        raise ValueError(f"{run_dir}: no rendered replies (renders.jsonl is empty or missing)")
    cols = ["variant", "request_id", "llm_first_clause_s", "llm_total_s", "text"]
    return renders.merge(replies[cols], on=["variant", "request_id"], how="left")


def summarize(per_reply: pd.DataFrame, reference: pd.DataFrame, variants: list[str], request_ids: list[str],
              *, measures=TABLE_MEASURES + EXTRA_MEASURES, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Long results table: one row per (variant, measure) plus the real-speech rows (all, female).

    Distances are to all reference utterances; the female subset is shown for context (F0 level
    depends on speaker sex, the default TTS voices are female).

    Columns: variant, measure, n, mean, ci_lo, ci_hi, diff, diff_lo, diff_hi (variant - baseline),
    dz, dz_lo, dz_hi (Cohen's d_z), dist, dist_lo, dist_hi (standardized distance to real speech).
    """
    rows = []
    kw = dict(n_boot=n_boot, seed=seed)
    for m in measures:
        if m not in per_reply:
            continue
        wide = per_reply.groupby(["variant", "request_id"])[m].mean().unstack("variant")
        wide = wide.reindex(index=request_ids, columns=variants)
        ref = reference[m].to_numpy(float) if m in reference else None
        for v in variants:
            est = bootstrap_mean_ci(wide[v], **kw)
            row = {"variant": v, "measure": m, "n": est.n, "mean": est.value, "ci_lo": est.lo, "ci_hi": est.hi}
            if v != "baseline":
                diff, dz = paired_effect(wide["baseline"], wide[v], **kw)
                row.update(diff=diff.value, diff_lo=diff.lo, diff_hi=diff.hi, dz=dz.value, dz_lo=dz.lo, dz_hi=dz.hi)
            if ref is not None:
                d = reference_distance(wide[v], ref, **kw)
                row.update(dist=d.value, dist_lo=d.lo, dist_hi=d.hi)
            rows.append(row)
        if ref is not None:
            for name, vals in ((REFERENCE, ref), (REFERENCE_FEMALE, female_reference(reference)[m].to_numpy(float))):
                est = bootstrap_mean_ci(vals, **kw)
                rows.append({"variant": name, "measure": m, "n": est.n, "mean": est.value, "ci_lo": est.lo,
                             "ci_hi": est.hi, "ref_sd": float(np.nanstd(vals, ddof=1)) if est.n > 1 else np.nan})
    out = pd.DataFrame(rows)
    for c in ("diff", "diff_lo", "diff_hi", "dz", "dz_lo", "dz_hi", "dist", "dist_lo", "dist_hi", "ref_sd"):
        if c not in out:
            out[c] = np.nan
    return out


SMALL_MEASURES = frozenset({"punct_per_word", "filler_rate", "pause_mean_s"})


def _cell(row: pd.Series, key: str, digits: int = 2) -> str:
    v, lo, hi = row.get(key), row.get(f"{key}_lo" if key != "mean" else "ci_lo"), row.get(f"{key}_hi" if key != "mean" else "ci_hi")
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_table(results: pd.DataFrame, key: str, variants: list[str], measures=TABLE_MEASURES) -> str:
    """Measures as rows, variants as columns; cells 'value [95% CI]' for key mean | dz | dist."""
    cols = list(variants) + [r for r in (REFERENCE, REFERENCE_FEMALE) if key == "mean" and r in set(results["variant"])]
    if key == "dz":
        cols = [v for v in variants if v != "baseline"]
    lines = ["| measure | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    idx = results.set_index(["measure", "variant"])
    for m in measures:
        if m not in set(results["measure"]):
            continue
        digits = 3 if key == "mean" and m in SMALL_MEASURES else 2
        cells = [_cell(idx.loc[(m, c)], key, digits) if (m, c) in idx.index else "n/a" for c in cols]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _df_markdown(df: pd.DataFrame) -> str:
    """A DataFrame (index may be a MultiIndex) as a markdown table, without the tabulate package."""
    names = [str(n) for n in df.index.names]
    lines = ["| " + " | ".join(names + [str(c) for c in df.columns]) + " |", "|---" * (len(names) + len(df.columns)) + "|"]
    for idx, row in df.iterrows():
        keys = idx if isinstance(idx, tuple) else (idx,)
        lines.append("| " + " | ".join([str(k) for k in keys] + [f"{v:.2f}" for v in row]) + " |")
    return "\n".join(lines)


def plot_measures(results: pd.DataFrame, variants: list[str], path: Path | None = None, measures=TABLE_MEASURES):
    """One panel per measure: variant means with 95% CIs; real speech mean +/- 1 SD as a band."""
    import matplotlib

    matplotlib.use("Agg") if path is not None else None
    import matplotlib.pyplot as plt

    ms = [m for m in measures if m in set(results["measure"])]
    ncol = 4
    fig, axes = plt.subplots(int(np.ceil(len(ms) / ncol)), ncol, figsize=(4 * ncol, 2.8 * np.ceil(len(ms) / ncol)))
    for ax, m in zip(np.ravel(axes), ms):
        r = results[results["measure"] == m].set_index("variant")
        x = np.arange(len(variants))
        mean = r.reindex(variants)["mean"].to_numpy(float)
        err = np.abs(np.vstack([mean - r.reindex(variants)["ci_lo"], r.reindex(variants)["ci_hi"] - mean]))
        ax.errorbar(x, mean, yerr=err, fmt="o", capsize=3)
        if REFERENCE in r.index:
            ref_m, ref_sd = r.loc[REFERENCE, "mean"], r.loc[REFERENCE, "ref_sd"]
            ax.axhline(ref_m, color="k", ls="--", lw=1, label="real speech")
            ax.axhspan(ref_m - ref_sd, ref_m + ref_sd, color="0.85", zorder=0)
        ax.set_title(m, fontsize=9)
        ax.set_xticks(x, [v.replace("+", "+\n") for v in variants], fontsize=6)
    for ax in np.ravel(axes)[len(ms):]:
        ax.axis("off")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig


def plot_effects(results: pd.DataFrame, variants: list[str], path: Path | None = None, measures=TABLE_MEASURES):
    """Cohen's d_z vs baseline with 95% CIs, one row per measure, one marker per variant."""
    import matplotlib.pyplot as plt

    others = [v for v in variants if v != "baseline"]
    ms = [m for m in measures if m in set(results["measure"])]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(ms) + 1.5))
    for j, v in enumerate(others):
        r = results[results["variant"] == v].set_index("measure").reindex(ms)
        y = np.arange(len(ms)) + (j - (len(others) - 1) / 2) * 0.15
        err = np.abs(np.vstack([r["dz"] - r["dz_lo"], r["dz_hi"] - r["dz"]]))
        ax.errorbar(r["dz"], y, xerr=err, fmt="o", ms=4, capsize=2, label=v)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(np.arange(len(ms)), ms, fontsize=8)
    ax.set_xlabel("Cohen's d_z vs baseline (paired by request), 95% bootstrap CI")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        import matplotlib.pyplot as plt2

        plt2.close(fig)
    return fig


def load_run(run_dir: Path) -> dict:
    """{config, metrics, results, per_reply, reference, variants} of a finished run folder."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.csv").exists():
        raise FileNotFoundError(f"{run_dir}: no results.csv (run `prosody run` first)")
    cfg = json.loads((run_dir / "config.json").read_text())
    return {
        "config": cfg,
        "metrics": json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").exists() else {},
        "results": pd.read_csv(run_dir / "results.csv"),
        "per_reply": pd.read_parquet(run_dir / "per_reply.parquet"),
        "reference": _jsonl(run_dir / "reference.jsonl"),
        "variants": list(cfg["variants"]),
    }


def write_report(run_dir: Path, cfg, prompts, variants: list[str], request_ids: list[str]) -> dict:
    """Write per_reply.parquet, results.csv/.parquet, results_by_voice.csv, report.md, plots; return metrics."""
    run_dir = Path(run_dir)
    per = per_reply_table(run_dir)
    ref = _jsonl(run_dir / "reference.jsonl")
    per.to_parquet(run_dir / "per_reply.parquet", index=False)
    res = summarize(per, ref, variants, request_ids, n_boot=cfg.n_boot, seed=cfg.seed)
    res.to_csv(run_dir / "results.csv", index=False)
    res.to_parquet(run_dir / "results.parquet", index=False)
    by_voice = [summarize(g, ref, variants, request_ids, n_boot=cfg.n_boot, seed=cfg.seed).assign(voice=voice)
                for voice, g in per.groupby("voice")]
    pd.concat(by_voice).to_csv(run_dir / "results_by_voice.csv", index=False)
    plot_measures(res, variants, run_dir / "measures.png")
    plot_effects(res, variants, run_dir / "effects.png")
    replies = _jsonl(run_dir / "replies.jsonl")
    metrics = {
        "prompts_version": prompts.version, "prompts_sha256": prompts.sha256,
        "llm": cfg.llm_backend if cfg.llm_backend != "openai" else f"{cfg.llm_model}@{cfg.llm_base_url}",
        "n_requests": len(request_ids), "n_variants": len(variants), "voices": sorted(per["voice"].unique()),
        "n_replies": int(len(replies)), "n_empty_replies": int((replies["text"].str.strip() == "").sum()),
        "n_renderings": int(len(per)), "n_reference_utterances": int(len(ref)),
        "llm_total_s_sum": float(replies["llm_total_s"].sum()),
        "table": {f"{r.variant}/{r.measure}": {"mean": r.mean, "ci_lo": r.ci_lo, "ci_hi": r.ci_hi, "dz": r.dz,
                                                "dist": r.dist} for r in res.itertuples()},
    }
    per_voice = pd.concat(by_voice)
    pv = per_voice[~per_voice["variant"].isin([REFERENCE, REFERENCE_FEMALE])].pivot_table(index=["voice", "variant"], columns="measure", values="mean")
    pv = pv[[m for m in TABLE_MEASURES[4:] if m in pv.columns]].round(2)
    examples = replies[replies["request_id"] == request_ids[0]][["variant", "text"]]
    md = [
        f"# Prompt-level prosody: {run_dir.name}",
        "",
        f"LLM: {metrics['llm']}; prompts version {prompts.version} (sha256 {prompts.sha256[:12]}); "
        f"{len(request_ids)} requests x {len(variants)} variants x {len(metrics['voices'])} voices "
        f"({', '.join(metrics['voices'])}); real speech: {len(ref)} utterances ({', '.join(cfg.reference_sources)}).",
        "Means with 95% percentile-bootstrap CIs over requests (each request's value is its mean over voices).",
        "",
        *([LOCAL_LLM_CAVEAT, ""] if cfg.llm_backend == "local" else []),
        "## Means per variant",
        "", markdown_table(res, "mean", variants), "",
        "## Paired effect vs baseline (Cohen's d_z, 95% CI)",
        "", markdown_table(res, "dz", variants), "",
        "## Distance to real speech ((variant mean - real mean) / real SD, 95% CI)",
        "", markdown_table(res, "dist", variants, measures=[m for m in TABLE_MEASURES if m in ref]), "",
        "## Means per voice (Praat measures)", "", _df_markdown(pv), "",
        "## Example replies (first request)", "",
        *[f"- **{r.variant}**: {r.text}" for r in examples.itertuples()], "",
        "![measures](measures.png)", "", "![effects](effects.png)", "",
    ]
    atomic_write_text(run_dir / "report.md", "\n".join(md))
    return metrics
