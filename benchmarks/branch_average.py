"""The simplest fusion, measured: the two branches' logits averaged with one weight, no timing terms.

    p = sigmoid((1 - w) * logit(p_acoustic) + w * logit(p_lexical))

A control for the shipped fusion (`vad_turn/models/turn/fusion.json`: one logistic regression per input mode
with silence terms, fitted on rendered Switchboard), which trails its own branches on real calls. w is chosen
on one pair of dev runs by the criterion of the accuracy-first variant (`vad_turn.fusion.stacked.choose_alpha`:
the largest same-silence AUC, ties to the smaller w) and applied unchanged to the other pairs, each written as
a `vad-turn evaluate`-style run folder (detector "acoustic+lexical") for `paired_operating_points.py`.

    python benchmarks/branch_average.py --choose-on runs/gg-full-eval/dev-acoustic runs/gg-full-eval/dev-lexical \\
        --apply runs/gg-full-eval/test-acoustic runs/gg-full-eval/test-lexical runs/gg-full-eval/test-branch-avg \\
        --json runs/branch-average.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vad_turn.core.runs import atomic_write_json  # noqa: E402

NAME = "acoustic+lexical"


def main(argv=None) -> int:
    from vad_turn.fusion.stacked import choose_alpha, mixed_run

    ap = argparse.ArgumentParser(prog="branch_average", description=__doc__.splitlines()[0])
    ap.add_argument("--choose-on", type=Path, nargs=2, metavar=("ACOUSTIC_RUN", "LEXICAL_RUN"), required=True,
                    help="dev runs of the two branches on the same spans")
    ap.add_argument("--apply", type=Path, nargs=3, action="append", default=[],
                    metavar=("ACOUSTIC_RUN", "LEXICAL_RUN", "OUT"), help="a pair of runs to mix into OUT (repeatable)")
    ap.add_argument("--json", type=Path, default=None, help="write the choice and each run's operating points here")
    a = ap.parse_args(argv)
    try:
        rec = choose_alpha(*a.choose_on)
    except ValueError as e:
        ap.error(str(e))
    w = rec["alpha"]
    for r in rec["table"]:
        print(f"w {r['alpha']:.1f}: AUC {r['auc']:.3f}, same-silence AUC {r['auc_same_silence']:.3f}")
    print(f"chosen w (lexical share) {w}")
    runs = {}
    for ac, lex, out in a.apply:
        try:
            m = mixed_run(ac, lex, w, out, name=NAME)
        except ValueError as e:
            ap.error(str(e))
        runs[str(out)] = {"acoustic": str(ac), "lexical": str(lex), "operating_points": m["operating_points"]}
        print(f"{out}: " + ", ".join(f"{o['name']} {o['false_cutoff_rate'] if o['name'].startswith('fcr') else o['mean_latency_s']}"
                                     for o in m["operating_points"]))
    if a.json is not None:
        atomic_write_json(a.json, {"w": w, "choice": rec, "runs": runs})
    return 0


if __name__ == "__main__":
    sys.exit(main())
