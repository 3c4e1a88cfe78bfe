"""report.md of an agent-text run (`vad-turn agent-text`): formatting of its metrics.json and config.json
only (no metric is computed here), so a report can be regenerated from a run folder:

    report(json.loads((run / "metrics.json").read_text()), json.loads((run / "config.json").read_text()))
"""
from __future__ import annotations

TITLES = {"asr": "STT-style text (lower case, no punctuation)", "punctuated": "Diagnostic: punctuated, cased text"}


def _f(x, pct: bool = False) -> str:
    return "—" if x is None else (f"{100 * x:.1f}%" if pct else f"{x:.3f}")


def report(metrics: dict, cfg: dict) -> str:
    """report.md: one table per text variant (corpus x detector), the worst prefixes, counts, definitions."""
    corpora, detectors, variants = list(cfg["corpora"]), list(cfg["detectors"]), list(cfg["variants"])
    n, wall_s = cfg["max_turns_per_corpus"], sum(metrics["wall_s_scoring"].values())
    lines = ["# Agent-directed text completeness", "",
             f"Split {cfg['split']}; {n or 'all'} user turns per corpus (seed {cfg['seed']}); "
             f"words {cfg['word_s']:g} s each, back to back; every prefix queried {cfg['silence_s']:g} s after its "
             f"last word with a {cfg['transcript_lag_s']:g} s transcript lag (all its words visible); the "
             f"dialogue's earlier turns as messages; `fused` in text mode (no audio). Scoring wall time {wall_s:.0f} s "
             f"(summed over parts), this run {metrics['wall_s']:.0f} s.", ""]
    for variant in variants:
        rows = sorted((r for r in metrics["results"] if r["variant"] == variant),
                      key=lambda r: ([*corpora, "all"].index(r["corpus"]), detectors.index(r["detector"])))
        if not rows:
            continue
        final = "" if variant == "asr" else (" (final mark kept)" if cfg["keep_final_punct"] else
                                             " (each prefix's final mark removed)")
        lines += [f"## {TITLES[variant]}{final}", "",
                  "| corpus | detector | AUC | FER@95 | FER@99 | cut@95 | cut@99 | turns | prefixes |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['corpus']} | {r['detector']} | {_f(r['auc'])} | {_f(r['fer@95'], True)} | "
                  f"{_f(r['fer@99'], True)} | {_f(r['cut@95'], True)} | {_f(r['cut@99'], True)} | {r['n_turns']} | "
                  f"{r['n_prefixes']} |" for r in rows]
        if variant == "punctuated":
            lines.append("\nTurns whose text is the same in both variants keep their scores (DSTC2's and SLURP's "
                         "transcripts are already lower case and unpunctuated).")
        lines.append("")
    lines += [f"## Worst prefixes ({variants[0]}: highest-scored non-final prefixes)", ""]
    for c in corpora:
        lines += [f"### {c}", ""]
        rows = [r for r in metrics["results"] if r["variant"] == variants[0] and r["corpus"] == c]
        for r in sorted(rows, key=lambda r: detectors.index(r["detector"])):
            for w in r["worst"]:
                ctx = " ".join(w["context"].split()[-12:])
                lines.append(f"- {r['detector']} p={w['p_eot']:.3f}: \"{w['prefix']}\" of \"{w['turn']}\""
                             + (f" (after: \"{ctx}\")" if ctx else ""))
        lines.append("")
    lines += ["## Counts", "", "| corpus | dialogues | user turns | sampled |", "|---|---|---|---|"]
    lines += [f"| {c} | {v['n_dialogues']} | {v['n_user_turns']} | {v['n_sampled']} |"
              for c, v in metrics["counts"].items()]
    lines += ["", "## Definitions", "", metrics["definitions"], ""]
    return "\n".join(lines)
