"""Issue 11 #3: agent-directed text completeness - corpus readers on the real files, prefix queries
(labels, normalisation, no leakage of the current or later turns), the metrics on hand-made scores,
the zero-shot one-pass prefix scoring against `p_end`, and an end-to-end run with the LR floor."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import require_data

from vad_turn.data.corpora.agent_text import READERS, Dialogue, detokenize, sample_turns
from vad_turn.harness.agent_text import (
    AgentTextConfig,
    auc,
    corpus_metrics,
    end_threshold,
    false_end_rate,
    run,
    turn_cut_rate,
    turn_queries,
)


@pytest.fixture(scope="module")
def agent_root():
    return require_data("agent_text")


@pytest.fixture(scope="module")
def test_splits(agent_root):
    return {c: READERS[c](agent_root, "test") for c in READERS}


# (dialogues, user turns) of the test splits: README's counts (DSTC2 1,117 test dialogues, SLURP 2,974 test
# utterances of 5,007, MultiWOZ 1,000 of 1,999 dialogues, SGD 2,921 test dialogues), user turns counted here;
# DSTC2 loses 445 of its 9,890 user turns that are only transcription tags (sil, noise, unintelligible, ...).
EXPECTED = {"dstc2": ((1117, 1117), (9300, 9890)), "slurp": ((2974, 2974), (2974, 2974)),
            "multiwoz": ((1000, 1000), (7000, 7500)), "sgd": ((2921, 2921), (24000, 25500))}
FIRST_TURNS = {"dstc2": ("dstc2_2118", "halo food"), "slurp": ("slurp-9054", "event reminder mona tuesday"),
               "multiwoz": ("MUL0003",
                            "I'm looking for a place to stay. It needs to be a guesthouse and include free wifi."),
               "sgd": ("1_00000", "Hi, could you get me a restaurant booking on the 8th please?")}


@pytest.mark.parametrize("corpus", list(READERS))
def test_readers_give_the_test_splits(test_splits, corpus):
    dialogues = test_splits[corpus]
    (lo_d, hi_d), (lo_u, hi_u) = EXPECTED[corpus]
    n_user = sum(r == "user" for d in dialogues for r, _ in d.turns)
    assert lo_d <= len(dialogues) <= hi_d and lo_u <= n_user <= hi_u, (len(dialogues), n_user)
    assert {d.split for d in dialogues} == {"test"} and {d.corpus for d in dialogues} == {corpus}
    assert len({d.dialogue_id for d in dialogues}) == len(dialogues)
    assert all(r in ("user", "assistant") and t.strip() for d in dialogues for r, t in d.turns)
    did, text = FIRST_TURNS[corpus]
    d = next(d for d in dialogues if d.dialogue_id == did)
    assert d.turns[0] == ("user", text)
    if corpus in ("multiwoz", "sgd"):
        assert all(r == ("user", "assistant")[i % 2] for i, (r, _) in enumerate(d.turns))
    if corpus == "dstc2":
        words = {w for d in dialogues for r, t in d.turns if r == "user" for w in t.split()}
        assert not words & {"sil", "noise", "unintelligible", "breath"}


def test_detokenize_multiwoz():
    assert detokenize("I 'm looking for Saint John 's college . Is it free ?") == \
        "I'm looking for Saint John's college. Is it free?"
    assert detokenize("we don't  ( really ) care , thanks") == "we don't (really) care, thanks"


DIALOGUE = Dialogue("sgd", "x_1", "test", (
    ("user", "Hi, I'd like a table."), ("assistant", "Sure. Where?"), ("user", "In San Jose, please!"),
    ("assistant", "LATER SYSTEM TURN"), ("user", "LATER USER TURN")))


def test_prefix_queries_labels_normalisation_and_no_leakage():
    tq = turn_queries(DIALOGUE, 2, "asr", word_s=0.3, silence_s=0.5)
    assert tq.turn_id == "x_1#2"
    assert tq.texts == ("in", "in san", "in san jose", "in san jose please")
    assert tq.labels.tolist() == [0, 0, 0, 1]
    for k, q in enumerate(tq.queries, 1):
        assert [w.word for w in q.words] == ["in", "san", "jose", "please"][:k]
        np.testing.assert_allclose([(w.start, w.end) for w in q.words], [(0.3 * i, 0.3 * (i + 1)) for i in range(k)])
        assert q.silence_s == 0.5 and q.audio is None
        # the earlier turns only: user turns as the STT emits them, the agent's text as written
        assert [(m.role, m.content) for m in q.messages] == [("user", "hi i'd like a table"),
                                                             ("assistant", "Sure. Where?")]
    assert tq.context == "Sure. Where?"
    flat = " ".join(m.content for q in tq.queries for m in q.messages).lower()
    assert "later" not in flat and "jose" not in flat and "please" not in flat
    first = turn_queries(DIALOGUE, 0, "asr")
    assert first.queries[0].messages == () and first.texts[-1] == "hi i'd like a table"
    with pytest.raises(ValueError, match="assistant turn"):
        turn_queries(DIALOGUE, 1, "asr")


def test_punctuated_prefixes_lose_only_their_final_mark():
    tq = turn_queries(DIALOGUE, 2, "punctuated")
    assert tq.texts == ("In", "In San", "In San Jose", "In San Jose, please")
    assert [m.content for m in tq.queries[0].messages] == ["Hi, I'd like a table.", "Sure. Where?"]
    kept = turn_queries(DIALOGUE, 2, "punctuated", keep_final_punct=True)
    assert kept.texts[-2:] == ("In San Jose,", "In San Jose, please!")
    assert turn_queries(DIALOGUE, 0, "punctuated").texts == ("Hi", "Hi, I'd", "Hi, I'd like", "Hi, I'd like a",
                                                             "Hi, I'd like a table")


def test_sample_is_seeded_and_skips_empty_turns():
    turns = (("user", "yes please"), ("assistant", "ok"), ("user", " - "))
    ds = [Dialogue("x", f"d{i}", "test", turns) for i in range(50)]
    all_turns = sample_turns(ds, None, 0)
    assert len(all_turns) == 50 and all(j == 0 for _, j in all_turns)  # " - " normalises to no word
    a, b = sample_turns(ds, 10, 3), sample_turns(ds, 10, 3)
    assert a == b and len(a) == 10 and a == sorted(a) and a != sample_turns(ds, 10, 4)


def test_metrics_on_hand_made_scores():
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1, 0.3, 0.65, 0.85, 0.5, 0.05])
    assert auc(y, p) == pytest.approx(22 / 30)  # pairs (end > prefix): 6 + 5 + 5 + 4 + 2 of 5 x 6
    # 5 ends: ceil(0.95 * 5) = ceil(0.99 * 5) = 5 -> theta = the lowest end, 0.2; prefixes >= 0.2: 4 of 6
    assert end_threshold(y, p, 0.95) == 0.2 and false_end_rate(y, p, 0.95) == pytest.approx(4 / 6)
    assert false_end_rate(y, p, 0.99) == pytest.approx(4 / 6)
    # 20 ends at 0.025, 0.075, ..., 0.975: 95% -> the 19th highest (0.075; 0.95 * 20 is 19.000000000000004 in
    # floating point and must not round up to 20), 99% -> the 20th (0.025)
    ends = np.arange(20) / 20 + 0.025
    negs = np.array([0.05, 0.08, 0.5, 0.01])
    y2, p2 = np.r_[np.ones(20), np.zeros(4)], np.r_[ends, negs]
    assert end_threshold(y2, p2, 0.95) == pytest.approx(0.075) and end_threshold(y2, p2, 0.99) == pytest.approx(0.025)
    assert false_end_rate(y2, p2, 0.95) == 0.5 and false_end_rate(y2, p2, 0.99) == 0.75
    assert auc(y2, p2) == pytest.approx(np.mean([e > n for e in ends for n in negs]))
    assert auc(np.ones(3), np.ones(3)) is None and false_end_rate(np.ones(2), np.ones(2), 0.95) is None
    frame = pd.DataFrame({"turn_id": ["a", "a", "a", "b", "b", "c"], "label": [0, 0, 1, 0, 1, 1],
                          "p_eot": [0.1, 0.7, 0.9, 0.2, 0.6, 0.8], "prefix_text": ["i", "i want", "i want it", "no",
                                                                                    "no thanks", "yes"],
                          "turn_text": ["i want it"] * 3 + ["no thanks"] * 2 + ["yes"], "context": [""] * 6})
    assert turn_cut_rate(frame, 0.6) == 0.5  # turn a has a prefix at 0.7; b's 0.2 stays below; c has one word
    m = corpus_metrics(frame, n_worst=2)
    assert m["n_turns"] == 3 and m["n_prefixes"] == 6 and m["auc"] == pytest.approx(8 / 9)  # 0.7 > end 0.6
    assert m["threshold@95"] == 0.6 and m["fer@95"] == pytest.approx(1 / 3) and m["cut@95"] == 0.5
    assert [w["prefix"] for w in m["worst"]] == ["i want", "no"] and m["worst"][0]["turn"] == "i want it"


@pytest.mark.slow  # SmolLM2 over every prefix twice (~2-4 min on 2 cores): a baseline's equivalence, not the product path
def test_zero_shot_one_pass_equals_p_end_per_prefix(test_splits):
    """The one-forward-pass prefix scoring of the zero-shot LM is `p_end` on every prefix, asr and punctuated
    (whose prefixes are not prefixes of the whole turn's words: each drops its own final mark)."""
    from vad_turn.lexical.baselines import ZeroShotDetector

    sgd = next(d for d in test_splits["sgd"] if d.dialogue_id == "1_00000")
    asr = ZeroShotDetector(batch_size=2)
    raw = ZeroShotDetector(text_style="raw")
    raw._model, raw._tok, raw._end_id = asr.load()._model, asr._tok, asr._end_id  # one copy of the weights
    for det, variant in ((asr, "asr"), (raw, "punctuated")):
        tqs = [turn_queries(sgd, 2, variant), turn_queries(sgd, 0, variant)]
        fast = det.p_end_prefixes([([q.words for q in t.queries], t.queries[0].messages) for t in tqs])
        for t, f in zip(tqs, fast):
            ref = det.p_end([det.user_text(q.words) for q in t.queries], [q.messages for q in t.queries])
            assert f.shape == (len(t.queries),)
            np.testing.assert_allclose(np.log(f), np.log(ref), atol=1e-3)


def test_end_to_end_with_the_lr_floor(agent_root, tmp_path):
    out = tmp_path / "run"
    cfg = AgentTextConfig(data_root=agent_root, detectors=("lexical-lr",), punctuated_detectors=("lexical-lr",),
                          max_turns_per_corpus=5, out=out)
    metrics = run(cfg)
    for name in ("config.json", "commit.txt", "split_ids.json", "metrics.json", "report.md", "prefixes.parquet"):
        assert (out / name).exists(), name
    assert not (out / "parts").exists()
    assert json.loads((out / "config.json").read_text())["max_turns_per_corpus"] == 5
    ids = json.loads((out / "split_ids.json").read_text())
    assert sorted(ids) == sorted(READERS) and all(len(v) == 5 for v in ids.values())
    rows = {(r["variant"], r["corpus"]): r for r in metrics["results"]}
    assert set(rows) == {(v, c) for v in ("asr", "punctuated") for c in [*READERS, "all"]}
    for r in metrics["results"]:
        assert r["n_turns"] == (20 if r["corpus"] == "all" else 5) and r["n_prefixes"] >= r["n_turns"]
        for key in ("auc", "fer@95", "fer@99", "cut@95", "cut@99"):
            assert r[key] is None or 0.0 <= r[key] <= 1.0, (key, r)
        assert r["fer@95"] is None or r["fer@95"] <= r["fer@99"]
    pre = pd.read_parquet(out / "prefixes.parquet")
    assert pre["p_eot"].between(0, 1).all() and pre.groupby(["variant", "turn_id"])["label"].sum().eq(1).all()
    last = pre[pre["label"] == 1]
    assert (last["k"] == last["n_words"]).all()
    assert metrics["counts"]["sgd"]["n_dialogues"] == 2921 and metrics["counts"]["dstc2"]["n_sampled"] == 5
    # the LR normalises its words: punctuated text scores as the STT-style text does
    a, p = (pre[pre["variant"] == v].set_index(["turn_id", "k"])["p_eot"].sort_index() for v in ("asr", "punctuated"))
    np.testing.assert_allclose(a.to_numpy(), p.to_numpy(), atol=1e-12)
    report = (out / "report.md").read_text()
    assert "| sgd | lexical-lr |" in report and "## Worst prefixes" in report
    # an interrupted run folder with another config is refused, not mixed
    (out / "parts").mkdir()
    with pytest.raises(ValueError, match="different config"):
        run(AgentTextConfig(data_root=agent_root, detectors=("lexical-lr",), max_turns_per_corpus=6, out=out))


def test_resume_refuses_parts_of_another_model(agent_root, tmp_path, monkeypatch):
    """A run interrupted after its parts were scored resumes only with the same model files: a re-shipped or
    retrained model would otherwise mix its old scores into the new run's metrics."""
    import shutil

    from vad_turn.harness import agent_text

    model = tmp_path / "lexical"
    shutil.copytree(agent_text.__file__.rsplit("/harness/", 1)[0] + "/models/lexical", model)
    out = tmp_path / "run"
    cfg = AgentTextConfig(data_root=agent_root, corpora=("dstc2", "sgd"), detectors=("lexical",),
                          variants=("asr",), max_turns_per_corpus=3, lexical_model=model, out=out)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(agent_text, "corpus_metrics", interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(cfg)
    parts = sorted(p.name for p in (out / "parts").glob("*.parquet"))
    assert parts == ["asr--lexical--dstc2.parquet", "asr--lexical--sgd.parquet"]
    scored = pd.read_parquet(out / "parts" / parts[0])["model_fingerprint"]
    assert scored.nunique() == 1 and len(scored.iloc[0]) == 64
    head = (model / "lexical_head.onnx").read_bytes()
    (model / "lexical_head.onnx").write_bytes(head + b"\0")  # "retrained": other bytes
    with pytest.raises(ValueError, match=r"asr--lexical--dstc2.parquet: scored by lexical model files [0-9a-f]{64}, "
                                         r"but lexical now reads [0-9a-f]{64}; resume with the same model"):
        run(cfg)
    assert sorted(p.name for p in (out / "parts").glob("*.parquet")) == parts  # nothing written is lost
    (model / "lexical_head.onnx").write_bytes(head)
    metrics = run(cfg)  # the same model again: resumes from the parts
    assert not (out / "parts").exists()
    assert {r["corpus"] for r in metrics["results"]} == {"dstc2", "sgd", "all"}
    assert "model_fingerprint" not in pd.read_parquet(out / "prefixes.parquet").columns


@pytest.mark.parametrize("opts,message", [
    ({"transcript_lag_s": 0.6}, "--transcript-lag-s: 0.6 is outside [0.0, 0.5]"),
    ({"corpora": ("dstc2", "nope")}, "--corpora: ['nope']"),
    ({"max_turns_per_corpus": 0}, "--max-turns-per-corpus must be >= 1"),
    ({"word_s": 0.0}, "--word-s: 0.0 is outside (0.0, 5.0]"),
    ({"split": "train"}, "--split: ['train']"),
])
def test_bad_options_fail_before_any_work(opts, message):
    with pytest.raises(ValueError) as e:
        AgentTextConfig(**opts)
    assert message in str(e.value)


def test_cli_option_errors_are_one_line(capsys, tmp_path):
    from vad_turn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["agent-text", "--silence-s", "0.2", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--transcript-lag-s: 0.5 is outside [0.0, 0.2]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
