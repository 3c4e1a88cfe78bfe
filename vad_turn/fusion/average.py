"""The branch-average fusion as a turn model folder: the live fused detector runs it.

    with audio:     z = (1 - w) * ac_logit + w * lex_logit
    text only:      z = lex_logit
    p_eot = sigmoid(z)                      (temperature 1)

With `lexical_max_unheard_s` (fusion.json; `--max-unheard-s`), a query whose visible words end more than that
before the speech does (`runtime.unheard_s`: words not yet shown under the STT's lag) is in the acoustic mode.

By default the lexical branch is an input even before a word is visible (`lexical_without_words` in fusion.json):
it still reads the agent's last message and the silence, as the lexical detector does, and only the first two
rows are reached. With `--no-lexical-without-words` it is an input from the first visible word on, as in the
fitted fusions; before that the query is in the acoustic mode (ac_logit alone). The timing row (neither input)
is the source model's.

It is `fusion.json`'s own format (`runtime.FUSION_FEATURES` x `runtime.MODES` weights plus that flag), so
`TurnModel`, the harness's `fused` detector and the pipeline run it as they run the fitted fusion.
Written over a lexical model folder and the source model's acoustic graph. w is chosen by
`benchmarks/branch_average.py` on dev runs of the two branches (docs/turn-model-v3.md section 5), or for words
from a new domain by `vad-turn domain-shift` (section 12: the shipped default).

    python -m vad_turn.fusion.average --w 0.5 --lexical-dir runs/lexical-v3b/model --out runs/turn-avg-v3b \\
        --chosen-on runs/branch-average-v3b.json
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from vad_turn.core.model_files import SHIPPED_TURN_DIR
from vad_turn.core.runs import atomic_write_json
from vad_turn.core.schema import MAX_SILENCE_S

from .runtime import FUSION_FEATURES, MODES


def average_weights(w: float, timing_row) -> np.ndarray:
    """(len(MODES), len(FUSION_FEATURES)) weights of the branch average with lexical share `w` in [0, 1];
    `timing_row`: the weights used when neither branch has an input (its own row of a fitted model)."""
    if not 0.0 <= float(w) <= 1.0:
        raise ValueError(f"w (the lexical share) must be in [0, 1], got {w!r}")
    W = np.zeros((len(MODES), len(FUSION_FEATURES)))
    lex, ac = FUSION_FEATURES.index("lex_logit"), FUSION_FEATURES.index("ac_logit")
    W[MODES.index("both"), lex], W[MODES.index("both"), ac] = float(w), 1.0 - float(w)
    W[MODES.index("lexical"), lex] = 1.0
    W[MODES.index("acoustic"), ac] = 1.0
    timing = np.asarray(timing_row, dtype=np.float64).reshape(-1)
    if timing.shape != (len(FUSION_FEATURES),) or not np.isfinite(timing).all():
        raise ValueError(f"timing_row must be {len(FUSION_FEATURES)} finite weights, got {timing_row!r}")
    W[MODES.index("timing")] = timing
    return W


def _rel(target: Path, folder: Path) -> str:
    return os.path.relpath(Path(target).resolve(), Path(folder).resolve())


def write_average_model(w: float, lexical_dir: Path, out: Path, source: Path = SHIPPED_TURN_DIR,
                        chosen_on: Path | None = None, max_unheard_s: float | None = None,
                        lexical_without_words: bool = True, acoustic_dir: Path | None = None) -> dict:
    """Write `out`/fusion.json: the branch average over `lexical_dir` and `source`'s acoustic graph, with
    `source`'s timing row, window and transcript lag (`source` may be `out` itself: its fusion.json is read
    before it is replaced). `acoustic_dir`: another acoustic model folder of the same recipe (its model.onnx and,
    where present, model.int8.onnx), e.g. a cross-fit fold's, instead of `source`'s graph. `max_unheard_s`: drop
    the lexical input (acoustic mode) while the visible words end more than this before the speech does (`runtime.unheard_s`); None: never. `lexical_without_words`: the
    lexical branch is an input before any word is visible too (False: from the first visible word on, as in the
    fitted fusions). Returns the written dict."""
    if max_unheard_s is not None and not 0.0 <= float(max_unheard_s) <= MAX_SILENCE_S:
        raise ValueError(f"max_unheard_s must be in [0, {MAX_SILENCE_S:g}] s or None, got {max_unheard_s!r}")
    src = json.loads((Path(source) / "fusion.json").read_text())
    if tuple(src["features"]) != FUSION_FEATURES or tuple(src["modes"]) != MODES:
        raise ValueError(f"{source}/fusion.json: features/modes differ from this code's")
    if not (Path(lexical_dir) / "lexical_head.onnx").is_file():
        raise FileNotFoundError(f"{lexical_dir}: no lexical_head.onnx (not a lexical model folder)")
    # the acoustic graphs: the source's, or another folder's of the same recipe (same window)
    graphs = {k: (Path(source) / src[k]) for k in ("acoustic_onnx", "acoustic_int8_onnx") if k in src}
    if acoustic_dir is not None:
        from .train import _acoustic_window_s

        if not (Path(acoustic_dir) / "model.onnx").is_file():
            raise FileNotFoundError(f"{acoustic_dir}: no model.onnx (not an acoustic model folder)")
        window_s = _acoustic_window_s(acoustic_dir)
        if abs(window_s - float(src["acoustic_window_s"])) > 1e-9:
            raise ValueError(f"{acoustic_dir}: its window ({window_s:g} s) is not the source's "
                             f"({float(src['acoustic_window_s']):g} s): another recipe")
        graphs = {k: Path(acoustic_dir) / f for k, f in (("acoustic_onnx", "model.onnx"),
                                                         ("acoustic_int8_onnx", "model.int8.onnx"))
                  if (Path(acoustic_dir) / f).is_file()}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timing = np.asarray(src["weights"], dtype=np.float64).reshape(len(MODES), -1)[MODES.index("timing")]
    meta = {k: src[k] for k in ("features", "modes", "acoustic_window_s", "transcript_lag_s")}
    # the timing row's origin: the source folder, or (written over itself) the run that fitted the source
    same = Path(source).resolve() == out.resolve()
    timing_from = (src.get("timing_from") or src.get("train", {}).get("run")) if same else _rel(source, out)
    meta.update(weights=average_weights(w, timing).tolist(), temperature=1.0, threshold=0.5,
                lexical_dir=_rel(lexical_dir, out),
                **{k: _rel(path, out) for k, path in graphs.items()},
                lexical_without_words=bool(lexical_without_words), fusion="branch-average", w=float(w),
                timing_from=timing_from,
                lexical_max_unheard_s=None if max_unheard_s is None else float(max_unheard_s),
                chosen_on=(json.loads(Path(chosen_on).read_text()) if chosen_on else None))
    atomic_write_json(out / "fusion.json", meta)
    return meta


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vad_turn.fusion.average", description=__doc__.splitlines()[0])
    ap.add_argument("--w", type=float, required=True, help="the lexical share in [0, 1]")
    ap.add_argument("--lexical-dir", type=Path, required=True, help="lexical model folder")
    ap.add_argument("--source", type=Path, default=SHIPPED_TURN_DIR,
                    help="turn model whose acoustic graph, timing row and lag are kept")
    ap.add_argument("--acoustic-dir", type=Path, default=None,
                    help="acoustic model folder of the same recipe to use instead of --source's graph (a cross-fit fold's)")
    ap.add_argument("--max-unheard-s", type=float, default=None,
                    help="acoustic only while the visible words end more than this many seconds before the speech "
                         "(stale words under a transcript lag); default: never")
    ap.add_argument("--lexical-without-words", action=argparse.BooleanOptionalAction, default=True,
                    help="the lexical branch is an input before any word is visible (--no-...: from the first word on)")
    ap.add_argument("--chosen-on", type=Path, default=None,
                    help="the record of the choice (benchmarks/branch_average.py --json, a domain-shift metrics.json)")
    ap.add_argument("--out", type=Path, required=True, help="turn model folder to write")
    a = ap.parse_args(argv)
    try:
        meta = write_average_model(a.w, a.lexical_dir, a.out, a.source, a.chosen_on, a.max_unheard_s,
                                   a.lexical_without_words, a.acoustic_dir)
    except (ValueError, FileNotFoundError) as e:
        ap.error(str(e))
    print(f"{a.out}/fusion.json: branch average, w {meta['w']}, lexical {meta['lexical_dir']}, "
          f"max unheard {meta['lexical_max_unheard_s']} s, lexical without words {meta['lexical_without_words']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
