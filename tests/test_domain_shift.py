"""`vad-turn domain-shift` (`vad_turn.fusion.domain_shift`): a cross-fit's calls scored again with a lexical branch
that never read the corpus. Each row keeps its own fusion, the branch average's w is chosen for the worse of the
two domains, and the unseen-domain words are the lexical branch's own logits (parity with the branch table)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vad_turn.fusion.domain_shift import DomainShiftConfig, average_p, choose_w, run, swap_lexical, words_cache
from vad_turn.fusion.runtime import MODES, fused_logits, sigmoid

SHIPPED = json.loads((Path(__file__).resolve().parent.parent / "vad_turn/models/turn/fusion.json").read_text())
TIMING = np.asarray(SHIPPED["weights"])[MODES.index("timing")]


def _calls(n_calls: int, prefix: str, seed: int, unseen_signal: float) -> pd.DataFrame:
    """A scored table of synthetic calls, 4 turns each: a 0.4 s hold then an end, grid points every 0.1 s. The
    in-domain lexical logit and the acoustic one carry the label; the unseen-domain one `unseen_signal` of it."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(n_calls):
        for t in range(4):
            for span, (label, n) in enumerate(((0, 4), (1, 10))):
                for g in range(n):
                    rows.append({"turn_id": f"{prefix}{c}-{t}", "conversation": f"{prefix}{c}", "span_index": span,
                                 "timestamp": 0.4 + span * 0.8 + 0.1 * g, "silence_s": 0.1 * g, "label": label,
                                 "span_dur": 0.4 if label == 0 else 3.0, "n_seen": 1 + span, "n_words": 2,
                                 "audio_condition": "real", "pause_context": "none", "unit_punct": "",
                                 "source": "synthetic", "backchannel_context": False, "weight": 1.0,
                                 "has_lex": True, "has_ac": True})
    t = pd.DataFrame(rows)
    s = 2.0 * t["label"].to_numpy() - 1.0
    t["lex_logit"] = 2.0 * s + rng.normal(0, 1.5, len(t))
    t["ac_logit"] = 0.7 * s + rng.normal(0, 1.5, len(t))
    t["lex_unseen"] = unseen_signal * 2.0 * s + rng.normal(0, 1.5, len(t))
    return t


def _crossfit(tmp_path: Path, unseen_signal: float) -> Path:
    """A finished crossfit folder (2 folds, dev, test) over a real text dataset of the same turns, and the
    unseen-domain words cache a run would write."""
    from vad_turn.core.schema import TurnRecord, Word, silence_spans_from_words
    from vad_turn.data.dataset import write_turns

    src, out = tmp_path / "crossfit", tmp_path / "out"
    model = tmp_path / "shipped"
    model.mkdir(parents=True)
    (model / "fusion.json").write_text(json.dumps(SHIPPED))
    parts = {"fold0": _calls(6, "a", 0, unseen_signal), "fold1": _calls(6, "b", 1, unseen_signal),
             "dev": _calls(8, "d", 2, unseen_signal), "test": _calls(4, "t", 3, unseen_signal)}
    recs = []
    for name, t in parts.items():
        meta = SHIPPED if name in ("dev", "test") else {**SHIPPED, "temperature": 1.3 if name == "fold0" else 0.8}
        z = fused_logits(t, np.asarray(meta["weights"])) / meta["temperature"]
        scored = t.drop(columns=["lex_unseen"]).assign(p_fused=sigmoid(z), p_acoustic=sigmoid(t["ac_logit"]))
        if name.startswith("fold"):
            (src / name / "fusion" / "model").mkdir(parents=True)
            (src / name / "fusion" / "model" / "fusion.json").write_text(json.dumps(meta))
            scored.to_parquet(src / name / "heldout-scored.parquet")
        else:
            src.mkdir(exist_ok=True)
            scored.to_parquet(src / f"{name}-shipped-scored.parquet")
        for tid in t["turn_id"].unique():
            words = [Word("yes", 0.0, 0.4), Word("no", 0.8, 1.2)]
            recs.append(TurnRecord(id=tid, source="getgoing", split="test", words=words, conversation=tid.split("-")[0],
                                   silence_spans=silence_spans_from_words(words, 4.2), messages=[]))
    ds = write_turns(recs, tmp_path / "ds")
    (src / "config.json").write_text(json.dumps({"k": 2, "dataset": str(ds), "shipped_model": str(model)}))
    out.mkdir()
    words = pd.concat(parts.values())[["turn_id", "span_index", "timestamp", "lex_unseen", "has_lex"]]
    words.rename(columns={"lex_unseen": "lex_logit"}).to_parquet(words_cache(out, tmp_path / "unused", SHIPPED["transcript_lag_s"]))
    return src


def test_each_row_keeps_its_fusion_and_w_is_chosen_for_the_worse_domain(tmp_path, capsys):
    """Unseen-domain words that carry no signal: the fitted fusion over them is each row's own fusion (fold 0 with
    its temperature, dev with the shipped one), and the chosen w is small; every run folder covers every call."""
    src = _crossfit(tmp_path, unseen_signal=0.0)
    m = run(DomainShiftConfig(crossfit=src, lexical_dir=tmp_path / "unused", out=tmp_path / "out", report_w=(0.5,)))
    capsys.readouterr()
    assert m["choice"]["w"] <= 0.2
    by_w = {r["w"]: r for r in m["choice"]["table"]}
    assert by_w[0.0]["auc_same_silence_in_domain"] == pytest.approx(by_w[0.0]["auc_same_silence_unseen"])
    assert by_w[0.8]["auc_same_silence_unseen"] < by_w[0.0]["auc_same_silence_unseen"] - 0.05
    assert m["n_turns"] == 4 * (6 + 6 + 8 + 4)
    words = pd.read_parquet(words_cache(tmp_path / "out", tmp_path / "unused", SHIPPED["transcript_lag_s"]))
    fold0 = pd.read_parquet(src / "fold0" / "heldout-scored.parquet")
    want = sigmoid(fused_logits(fold0.assign(lex_logit=words["lex_logit"].to_numpy()[:len(fold0)]),
                                np.asarray(SHIPPED["weights"])) / 1.3)
    got = pd.read_parquet(tmp_path / "out" / "fused-unseen" / "predictions.parquet")
    got = got.set_index(["id", "span_index", "timestamp"]).loc[list(zip(fold0.turn_id, fold0.span_index, fold0.timestamp))]
    np.testing.assert_allclose(got["p_eot"].to_numpy(), want, atol=1e-12)
    for name in ("fused-unseen", "lexical-unseen", "average", "average-unseen", "average-w0.5", "average-w0.5-unseen"):
        mm = json.loads((tmp_path / "out" / name / "metrics.json").read_text())
        assert mm["counts"]["n_turns"] == 96 and mm["operating_points"]
    # the shipped model re-shipped since the cross-fit: its dev and test rows are refused, the old file accepted
    old = tmp_path / "old-fusion.json"
    old.write_text((tmp_path / "shipped" / "fusion.json").read_text())
    w2 = np.asarray(SHIPPED["weights"]) * 0.5
    (tmp_path / "shipped" / "fusion.json").write_text(json.dumps({**SHIPPED, "weights": w2.tolist()}))
    again = dict(crossfit=src, lexical_dir=tmp_path / "unused", out=tmp_path / "out")
    with pytest.raises(ValueError, match=r"does not reproduce their p_fused.*--dev-test-fusion"):
        run(DomainShiftConfig(**again))
    assert run(DomainShiftConfig(**again, dev_test_fusion=old))["choice"] == m["choice"]
    capsys.readouterr()
    half = pd.read_parquet(tmp_path / "out" / "average-w0.5-unseen" / "predictions.parquet")
    assert json.loads((tmp_path / "out" / "average-w0.5-unseen" / "config.json").read_text())["detector_opts"][-1] == "w=0.5"
    t = pd.concat([pd.read_parquet(src / f"fold{j}" / "heldout-scored.parquet") for j in (0, 1)]
                  + [pd.read_parquet(src / f"{s}-shipped-scored.parquet") for s in ("dev", "test")])
    t = t.merge(words.rename(columns={"lex_logit": "lex_unseen"}).drop(columns="has_lex"), on=["turn_id", "span_index", "timestamp"])
    t = t.set_index(["turn_id", "span_index", "timestamp"]).loc[list(zip(half.id, half.span_index, half.timestamp))]
    np.testing.assert_allclose(half["p_eot"].to_numpy(), sigmoid(0.5 * t["ac_logit"] + 0.5 * t["lex_unseen"]), atol=1e-12)


def test_words_that_hold_their_signal_get_a_larger_share():
    dev = _calls(12, "d", 4, unseen_signal=1.0)
    assert choose_w(dev, TIMING)["w"] >= 0.4
    # no visible word: the acoustic logit alone, whatever w
    none = dev.assign(has_lex=False)
    np.testing.assert_allclose(average_p(none, 0.7, TIMING), sigmoid(none["ac_logit"]), atol=1e-12)


def test_a_query_the_words_table_lacks_is_named(tmp_path):
    t = _calls(2, "a", 0, 0.0)
    words = t[["turn_id", "span_index", "timestamp", "lex_unseen", "has_lex"]].rename(columns={"lex_unseen": "lex_logit"})
    with pytest.raises(ValueError, match=r"query a1-3 span 1 at 2\.100 s: the unseen-domain words table lacks it"):
        swap_lexical([(t.drop(columns=["lex_unseen"]), SHIPPED)], words.iloc[:-1])
    # the words cache is per lexical model and lag: another model or lag under the same --out is scored again
    one = words_cache(tmp_path, tmp_path / "lex-a", 0.5)
    assert one == words_cache(tmp_path, tmp_path / "lex-a", 0.5)
    assert len({one, words_cache(tmp_path, tmp_path / "lex-b", 0.5), words_cache(tmp_path, tmp_path / "lex-a", 0.7)}) == 3
    with pytest.raises(ValueError, match="--crossfit and --out are required"):
        DomainShiftConfig(out=tmp_path)
    with pytest.raises(ValueError, match="lexical shares in"):
        DomainShiftConfig(crossfit=tmp_path, out=tmp_path, w_grid=(0.5, 1.5))
    with pytest.raises(ValueError, match="--report-w: lexical shares in"):
        DomainShiftConfig(crossfit=tmp_path, out=tmp_path, report_w=(-0.1,))


@pytest.mark.slow
def test_the_unseen_words_are_the_lexical_branchs_own_logits(tiny_getgoing):
    """Parity: the words-only scoring gives the lexical logits the full branch table (audio and words) gives on
    the same real GetGoing turns."""
    from vad_turn.core.model_files import SHIPPED_ACOUSTIC_DIR
    from vad_turn.data.dataset import load_turns
    from vad_turn.fusion.domain_shift import words_table
    from vad_turn.fusion.runtime import Branches
    from vad_turn.fusion.train import branch_table

    lex = Path(__file__).resolve().parent.parent / "vad_turn/models/lexical"
    ds_path = tiny_getgoing / "getgoing"
    words = words_table(ds_path, lex, 0.5, splits=("test",))
    full = branch_table(load_turns(ds_path), "test", Branches(lex, SHIPPED_ACOUSTIC_DIR / "model.onnx", 4.0),
                        max_turns=None, points_per_span=None, seed=0, transcript_lag_s=0.5)
    keys = ["turn_id", "span_index", "timestamp"]
    m = full.merge(words, on=keys, suffixes=("", "_w"), validate="one_to_one")
    assert len(m) == len(full) == len(words) > 50
    assert (m["has_lex"] == m["has_lex_w"]).all() and m["has_lex"].sum() > 20
    np.testing.assert_allclose(m.loc[m.has_lex, "lex_logit_w"], m.loc[m.has_lex, "lex_logit"], atol=1e-5)


def _pool_run(path: Path, filler_cutoffs: int) -> Path:
    point = {"name": "lat@fcr<=vad-0.6s", "threshold": 0.5, "action_delay_s": 0.0, "timeout_s": 1.5,
             "false_cutoff_rate": 0.05, "mean_latency_s": 0.4}
    sl = {"slice": "pause_context", "value": "filler", "operating_point": "lat@fcr<=vad-0.6s", "n_turns": 16,
          "n_cutoff": filler_cutoffs, "vad_only_n_cutoff": 12}
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({"operating_points": [point], "slices": [sl]}))
    return path


def test_the_product_constraint_picks_the_best_w_that_holds_as_many_filler_pauses(tmp_path):
    from vad_turn.fusion.domain_shift import constrained_choice, main

    choice = {"criterion": "c", "table": [{"w": 0.1, "worse_of_the_two": 0.70}, {"w": 0.2, "worse_of_the_two": 0.69},
                                          {"w": 0.3, "worse_of_the_two": 0.66}]}
    ref = _pool_run(tmp_path / "ref", 6)
    pools = {0.1: _pool_run(tmp_path / "a", 10), 0.2: _pool_run(tmp_path / "b", 5), 0.3: _pool_run(tmp_path / "c", 6)}
    rec = constrained_choice(choice, pools, ref)
    assert rec["w"] == 0.2 and [r["holds_the_promise"] for r in rec["candidates"]] == [False, True, True]
    with pytest.raises(ValueError, match=r"no w of \[0.1\] cuts off at most 6 filler pauses"):
        constrained_choice(choice, {0.1: pools[0.1]}, ref)
    with pytest.raises(ValueError, match="w 0.5 is not in the choice table"):
        constrained_choice(choice, {0.5: pools[0.1]}, ref)
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "metrics.json").write_text(json.dumps({"choice": choice}))
    with pytest.raises(SystemExit):
        main(["--domain-shift", str(tmp_path / "ds"), "--pool", f"0.2={tmp_path / 'nowhere'}", "--reference", str(ref),
              "--out", str(tmp_path / "rec.json")])
    assert not (tmp_path / "rec.json").exists()
    assert main(["--domain-shift", str(tmp_path / "ds"), "--pool", f"0.2={pools[0.2]}", "--reference", str(ref),
                 "--out", str(tmp_path / "rec.json")]) == 0
    assert json.loads((tmp_path / "rec.json").read_text())["w"] == 0.2
