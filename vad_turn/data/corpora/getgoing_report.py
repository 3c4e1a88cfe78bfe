"""Label quality of a GetGoing build: what was aligned, what was dropped and why, holds, ASR vs log.

`label_quality(results, ...)` -> a JSON-ready dict (written into build_info.json and
label_quality.json); `quality_table` prints its headline figures. The ASR-vs-log check lists
`n_check` random rows and `n_check` random rows whose recognised words differ from the log line
(to read: the same utterance heard differently, extra or missing words, or a misplaced turn).
"""
from __future__ import annotations

import random
from collections import Counter

import numpy as np

from .getgoing import CallResult
from .getgoing_log import word_errors
from .turns import span_counts

HOLD_BINS_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, float("inf"))
PERCENTILES = (10, 25, 50, 75, 90)
PROMPT_WORDS_PER_S = 6.0  # faster than any TTS voice (~2.5-3.5 words/s)


def _pct(values) -> dict:
    if not len(values):
        return {}
    return {f"p{p}": round(float(np.percentile(values, p)), 3) for p in PERCENTILES}


def _hist(values) -> list[dict]:
    v = np.asarray(values, dtype=float)
    return [{"from_s": a, "to_s": None if b == float("inf") else b, "n": int(((v >= a - 1e-9) & (v < b - 1e-9)).sum())}
            for a, b in zip(HOLD_BINS_S[:-1], HOLD_BINS_S[1:])]


def label_quality(results: list[CallResult], *, n_check: int = 50, seed: int = 0, tail_s: float = 2.0) -> dict:
    """Label-quality figures of a build (see the module docstring). results: one per call processed."""
    drops = Counter(r.drop_reason for r in results if r.drop_reason)
    dropped_calls = {k: sorted(r.uuid for r in results if r.drop_reason == k) for k in sorted(drops)}
    n_lines_total = sum(r.n_user_lines for r in results)
    kept = [r for r in results if r.drop_reason is None]
    aligned_lines = sum(len(lt.log.texts) for r in kept for lt in r.located if lt.status == "aligned")
    kept_lines = sum(r.n_user_lines for r in kept)
    located = [lt for r in results if r.drop_reason not in ("no_user_lines", "spam") for lt in r.located]
    status = Counter(lt.status for lt in located)
    status_kept = Counter(lt.status for r in kept for lt in r.located)
    per_split = {}
    for split in dict.fromkeys(r.split for r in results):
        rs = [r for r in results if r.split == split]
        recs = [rec for r in rs for rec in r.records]
        per_split[split] = {"calls": len(rs), "calls_kept": sum(r.drop_reason is None for r in rs),
                            "audio_h": round(sum(r.audio_s for r in rs) / 3600, 2), **span_counts(recs),
                            "joined_split": sum(i["joined_split"] for r in rs for i in r.infos)}
    recs = [rec for r in kept for rec in r.records]
    infos = [i for r in kept for i in r.infos]
    holds = [s.duration_s for rec in recs for s in rec.silence_spans[:-1]]
    ep = [rec.silence_spans[k].duration_s for rec, i in zip(recs, infos) for k in i["endpointer_holds"]]
    ends = np.array([rec.silence_spans[-1].duration_s for rec in recs]) if recs else np.zeros(0)
    gaps = [(b.regions[0][0] - a.regions[-1][1], b.prompt_words_before) for r in kept
            for a, b in zip(r.located, r.located[1:]) if a.status == b.status == "aligned"]
    errs = [word_errors(i["log_text"], i["recognised_text"]) for i in infos]
    def row(k: int) -> dict:
        return {"id": infos[k]["id"], "log": infos[k]["log_text"], "recognised": infos[k]["recognised_text"],
                "wer": round(errs[k][0] / max(errs[k][1], 1), 3), "similarity": infos[k]["similarity"]}

    pick = sorted(random.Random(seed).sample(range(len(infos)), min(n_check, len(infos))))
    check = [row(k) for k in pick]
    differ = [k for k, (e, _) in enumerate(errs) if e]
    pick_d = sorted(random.Random(seed + 1).sample(differ, min(n_check, len(differ))))
    sims = np.array([infos[k]["similarity"] for k in differ])
    disagree = {"rows": len(differ), "share": round(len(differ) / max(len(infos), 1), 4),
                "by_similarity": {"0.9-1": int((sims >= 0.9).sum()), "0.7-0.9": int(((sims >= 0.7) & (sims < 0.9)).sum()),
                                  "0.5-0.7": int((sims < 0.7).sum())},
                "sample": sorted((row(k) for k in pick_d), key=lambda c: c["similarity"])}
    ce = sum(errs[k][0] for k in pick)
    cn = sum(errs[k][1] for k in pick)
    return {
        "calls": {"processed": len(results), "kept": len(kept), "dropped": dict(drops), "dropped_calls": dropped_calls},
        "user_lines": {"system_inserted_dropped": sum(r.n_inserted_lines for r in results), "total": n_lines_total,
                       "in_kept_calls": kept_lines, "aligned": aligned_lines,
                       "aligned_share_of_all": round(aligned_lines / max(n_lines_total, 1), 4),
                       "aligned_share_in_kept_calls": round(aligned_lines / max(kept_lines, 1), 4)},
        "user_turns": {"located": len(located), "by_status": dict(status), "in_kept_calls_by_status": dict(status_kept),
                       "joined_split_rows": sum(i["joined_split"] for i in infos)},
        "per_split": per_split,
        "holds": {"n": len(holds), "turns_with_holds": sum(len(rec.silence_spans) > 1 for rec in recs),
                  "percentiles_s": _pct(holds), "histogram": _hist(holds),
                  "endpointer_holds": {"n": len(ep), "percentiles_s": _pct(ep), "histogram": _hist(ep)}},
        "prompt_timing": {
            "note": "consecutive aligned user turns of a call: the silence between them on the caller's channel vs "
                    f"the words of the TTS prompts between them; shorter than the prompts at {PROMPT_WORDS_PER_S:g} "
                    "words/s means a barge-in or a misplaced turn",
            "pairs": len(gaps),
            "shorter_than_prompts": sum(g < w / PROMPT_WORDS_PER_S for g, w in gaps)},
        "end_spans": {"n": int(ends.size), "median_s": round(float(np.median(ends)), 3) if ends.size else None,
                      "share_full_tail": round(float(np.mean(ends >= tail_s - 1e-6)), 4) if ends.size else None,
                      "share_below_0.5s": round(float(np.mean(ends < 0.5)), 4) if ends.size else None},
        "asr_vs_log": {
            "note": "log line (Google ASR, 2019) as reference, faster-whisper tiny.en words of the row as hypothesis; "
                    "align_tokens normalisation (lower case, no punctuation, numbers spelled out)",
            "wer_all_rows": round(sum(e for e, _ in errs) / max(sum(n for _, n in errs), 1), 4),
            "exact_share_all_rows": round(float(np.mean([e == 0 for e, _ in errs])), 4) if errs else None,
            "similarity_percentiles": _pct([i["similarity"] for i in infos]),
            "check": {"n": len(pick), "seed": seed, "wer": round(ce / max(cn, 1), 4),
                      "exact": sum(c["wer"] == 0 for c in check),
                      "turns": sorted(check, key=lambda c: -c["wer"])},
            "disagreements": disagree,
        },
    }


def quality_table(q: dict) -> str:
    """The headline label-quality figures as text lines."""
    c, u, h, a = q["calls"], q["user_lines"], q["holds"], q["asr_vs_log"]
    lines = [f"calls: {c['processed']} processed, {c['kept']} kept, dropped {c['dropped']}",
             f"USER lines aligned: {u['aligned']}/{u['total']} ({100 * u['aligned_share_of_all']:.1f} % of all, "
             f"{100 * u['aligned_share_in_kept_calls']:.1f} % in kept calls)",
             f"user turns located: {q['user_turns']['by_status']}",
             f"holds: {h['n']} in {h['turns_with_holds']} turns, percentiles {h['percentiles_s']}; "
             f"endpointer holds {h['endpointer_holds']['n']}",
             f"prompt timing: {q['prompt_timing']['shorter_than_prompts']}/{q['prompt_timing']['pairs']} consecutive "
             f"turn pairs closer than their prompts could be spoken",
             f"ASR vs log: WER {a['wer_all_rows']:.3f} over all rows, check of {a['check']['n']}: WER "
             f"{a['check']['wer']:.3f}, {a['check']['exact']} exact"]
    lines.append("split  calls kept  audio_h  turns  holds  holds_0.2-5s  joined")
    for s, d in q["per_split"].items():
        lines.append(f"{s:5}  {d['calls']:5} {d['calls_kept']:4}  {d['audio_h']:7}  {d['turns']:5}  {d['holds']:5}  "
                     f"{d['holds_0.2-5s']:12}  {d['joined_split']:6}")
    return "\n".join(lines)
