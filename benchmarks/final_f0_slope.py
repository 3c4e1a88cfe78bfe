"""Do holds sound like holds? Praat's F0 slope over the last 300 ms of speech before holds vs before turn ends.

In speech, a turn end usually falls in pitch and a hold stays level or rises (continuation). A rendered set
whose inter-pausal units were synthesised one by one ends every unit like a sentence, so holds fall as ends
do; a whole-turn render (`vad-turn render --whole-turn`) should keep the difference. Per dataset:
the median slope (semitones / s) before holds and before ends, the share of falling ones (< -5 st/s), and the
AUC of -slope for telling ends from holds (0.5 = the intonation says nothing). Writes a JSON report.

    python benchmarks/final_f0_slope.py --sets switchboard-rendered:dev:clean switchboard-rendered-utt:dev:clean \
        getgoing:dev --max-turns 200 --json runs/final-f0-slope.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prosody.measures import final_f0_slope_st_per_s  # noqa: E402
from vad_turn.core.audio import decode_audio_bytes  # noqa: E402
from vad_turn.core.config import default_built_root  # noqa: E402
from vad_turn.core.runs import atomic_write_json  # noqa: E402
from vad_turn.core.schema import row_spans  # noqa: E402
from vad_turn.harness.metrics import roc_auc  # noqa: E402

FALL_ST_PER_S = -5.0


def set_slopes(spec: str, max_turns: int, seed: int = 0, built_root: Path | None = None) -> dict:
    """Slopes before every hold and end of a seeded sample of `max_turns` turns of "dataset:split[:condition]"."""
    from vad_turn.data.dataset import load_turns

    name, split, *cond = spec.split(":")
    ds = load_turns(Path(built_root or default_built_root()) / name)
    keep = [i for i, (s, c) in enumerate(zip(ds["split"], ds["audio_condition"]))
            if s == split and (not cond or c == cond[0])]
    if not keep:
        raise ValueError(f"{spec}: no rows")
    pick = sorted(np.random.default_rng(seed).permutation(keep)[:max_turns].tolist())
    slopes, labels = [], []
    for row in ds.select(pick):
        audio = decode_audio_bytes(row["audio"]["bytes"], source=row["id"])
        spans = row_spans(row)
        for k, sp in enumerate(spans):
            slopes.append(final_f0_slope_st_per_s(audio, sp.start, source=row["id"]))
            labels.append(int(k == len(spans) - 1))
    s, y = np.array(slopes), np.array(labels)
    ok = np.isfinite(s)
    out = {"set": spec, "n_turns": len(pick), "n_holds": int((y == 0).sum()), "n_ends": int((y == 1).sum()),
           "n_voiced_holds": int(((y == 0) & ok).sum()), "n_voiced_ends": int(((y == 1) & ok).sum())}
    for lab, name_ in ((0, "hold"), (1, "end")):
        v = s[(y == lab) & ok]
        out[f"median_slope_before_{name_}_st_per_s"] = float(np.median(v)) if v.size else None
        out[f"falling_share_before_{name_}"] = float(np.mean(v < FALL_ST_PER_S)) if v.size else None
    out["auc_end_vs_hold_by_fall"] = roc_auc(y[ok], -s[ok], one_class=None)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", nargs="+", required=True, help="dataset:split[:condition] under the built root")
    ap.add_argument("--max-turns", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    rows = [set_slopes(s, a.max_turns, a.seed) for s in a.sets]
    print("| set | turns | holds / ends voiced | median slope before holds | before ends (st/s) | falling holds | "
          "falling ends | AUC end vs hold by fall |\n|---|---|---|---|---|---|---|---|")
    for r in rows:
        f = lambda x, p=False: "-" if x is None else (f"{100 * x:.0f}%" if p else f"{x:.1f}")  # noqa: E731
        auc = "-" if r["auc_end_vs_hold_by_fall"] is None else f"{r['auc_end_vs_hold_by_fall']:.3f}"
        print(f"| {r['set']} | {r['n_turns']} | {r['n_voiced_holds']} / {r['n_voiced_ends']} | "
              f"{f(r['median_slope_before_hold_st_per_s'])} | {f(r['median_slope_before_end_st_per_s'])} | "
              f"{f(r['falling_share_before_hold'], True)} | {f(r['falling_share_before_end'], True)} | {auc} |")
    if a.json:
        atomic_write_json(a.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
