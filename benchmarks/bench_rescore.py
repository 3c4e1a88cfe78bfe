"""Re-summarise a `pipeline bench` run folder from its turns.jsonl, in small committed form.

Recomputes each row's overload verdict from its recorded lags with the current rule
(`pipeline.bench.e2e.OVERLOAD_LAG_S` on the decision lag and the audio lag; the detector answers' lag is counted
less the answer's own CPU time since `TurnProcessor._answered` measures it so, and runs recorded before that hold
the answers' wall lag, which for a detector slow by itself is its compute, not the machine falling behind), then
writes the per-set summaries and the paired bootstrap comparisons (`pipeline.bench.stats`) as JSON, and prints the
headline rows.

    python benchmarks/bench_rescore.py runs/bench-issue24 --out docs/bench-issue24.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    from pipeline.bench.e2e import OVERLOAD_LAG_S, summarize_sets
    from pipeline.bench.stats import comparisons
    from vad_turn.core.config import without_server_paths
    from vad_turn.core.runs import atomic_write_json, read_jsonl

    ap = argparse.ArgumentParser(prog="bench_rescore")
    ap.add_argument("run", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--boot", type=int, default=2000)
    a = ap.parse_args(argv)
    rows = read_jsonl(a.run / "turns.jsonl")
    if not rows:
        raise SystemExit(f"{a.run}: no turns.jsonl rows")
    for r in rows:
        lags = [r.get("decision_lag_s"), r.get("audio_lag_s")]
        r["overloaded"] = any(x is not None and x > OVERLOAD_LAG_S for x in lags)
    by_set = summarize_sets(rows)
    paired = {n: comparisons([r for r in rows if (r.get("set") or "festival") == n], n_boot=a.boot) for n in by_set}
    cfg = json.loads((a.run / "config.json").read_text())
    info = json.loads((a.run / "metrics.json").read_text()).get("info", {}) if (a.run / "metrics.json").is_file() else {}
    keep = ("e2e_s", "endpoint_s", "processing_s", "stt_final_s", "llm_ttft_s", "tts_first_s")
    small = {s: {c: {**{m: v[m] for m in keep}, "n_turns": v["n_turns"], "n_overloaded": v["n_overloaded"],
                     "false_cutoff_rate": v["false_cutoff_rate"], "stt_wer": v.get("stt_wer")}
                 for c, v in summ.items()} for s, summ in by_set.items()}
    out = {"run": str(a.run), "config": cfg, "info": info, "by_set": small, "paired": paired,
           "overload_rule": f"decision or audio lag > {OVERLOAD_LAG_S} s"}
    atomic_write_json(a.out, json.loads(without_server_paths(json.dumps(out))))  # committed: no server folders
    for s, summ in small.items():
        print(f"## {s}")
        for c, v in summ.items():
            f = lambda m: "-" if v[m]["p50"] is None else f"{1000 * v[m]['p50']:.0f}/{1000 * v[m]['p99']:.0f}"  # noqa: E731
            print(f"{c:32s} n={v['n_turns']:3d} ovl={v['n_overloaded']:2d} e2e {f('e2e_s'):>11s} endpoint "
                  f"{f('endpoint_s'):>11s} processing {f('processing_s'):>11s} ttft {f('llm_ttft_s'):>11s} "
                  f"cut-offs {100 * (v['false_cutoff_rate'] or 0):.1f}%")
        for p in paired[s]:
            lo, hi = p["ratio_ci95"]
            dlo, dhi = p["cutoff_diff_ci95"]
            print(f"  {p['a']} vs {p['b']} {p['metric']}: ratio {p['ratio_p50']:.2f} [{lo:.2f}, {hi:.2f}], cut-off "
                  f"diff {100 * p['cutoff_diff']:+.1f} pt [{100 * dlo:+.1f}, {100 * dhi:+.1f}] ({p['n_turns']} turns, "
                  f"{p['n_calls']} calls)")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
