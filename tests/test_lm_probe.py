"""benchmarks/lm_probe.py's pure pieces: word prefix -> token position, the turn encoding, the probe fit, the AUC table."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

_spec = importlib.util.spec_from_file_location("lm_probe", Path(__file__).resolve().parents[1] / "benchmarks" / "lm_probe.py")
lp = importlib.util.module_from_spec(_spec)
sys.modules["lm_probe"] = lp  # dataclasses resolve string annotations through sys.modules
_spec.loader.exec_module(lp)


def test_word_token_positions_hand_example():
    # prefix of 5 tokens (last at 4); words of 1, 2, 0 (normalised away) and 3 tokens
    np.testing.assert_array_equal(lp.word_token_positions(5, [1, 2, 0, 3]), [4, 5, 7, 7, 10])
    np.testing.assert_array_equal(lp.word_token_positions(1, []), [0])
    with pytest.raises(ValueError, match="at least one token"):
        lp.word_token_positions(0, [1])
    with pytest.raises(ValueError, match=">= 0"):
        lp.word_token_positions(3, [1, -1])


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from vad_turn.engines.llm.gguf import ensure_smollm2_cache

    return AutoTokenizer.from_pretrained(str(ensure_smollm2_cache()))


def test_turn_tokens_positions_end_at_each_word(tok):
    row = {"messages": [{"role": "user", "content": "earlier"}, {"role": "assistant", "content": "So, what do you THINK?"}],
           "words": [{"word": w, "start": i * 0.3, "end": i * 0.3 + 0.25}
                     for i, w in enumerate(["Well,", "<UNK>", "I", "don't", "know", "uh-huh"])]}
    ids, pos = lp.turn_tokens(tok, row, max_words=6, context_words=24)
    full = tok.apply_chat_template([{"role": "assistant", "content": "so what do you think"},
                                    {"role": "user", "content": "well i don't know uh-huh"}], tokenize=False)
    prefix = full[: full.rfind("<|im_end|>")]
    assert tok.decode(ids) == prefix  # the piecewise words rebuild the chat text exactly
    assert pos.shape == (7,)
    assert tok.decode(ids[: pos[0] + 1]).endswith("<|im_start|>user\n")
    assert pos[2] == pos[1]  # <UNK> normalises away: no tokens, same state
    for k, text in [(1, "user\nwell"), (3, "well i"), (4, "i don't"), (5, "don't know"), (6, "know uh-huh")]:
        assert tok.decode(ids[: pos[k] + 1]).endswith(text), k
    assert pos[6] == len(ids) - 1
    ids3, pos3 = lp.turn_tokens(tok, row, max_words=3, context_words=2)  # truncation and a shorter context
    assert pos3.shape == (4,) and "you think" in tok.decode(ids3) and "what do" not in tok.decode(ids3)
    assert tok.decode(ids3).endswith("user\nwell i")


def test_fit_probe_and_auc_table_numbers():
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 2, n)
    x = np.column_stack([y * 1.5 + rng.normal(size=n), rng.normal(size=n)])  # one informative feature
    groups = np.repeat(np.arange(200), 10)
    model, losses = lp.fit_probe(x, y, groups, cs=(1e-4, 1.0))
    assert set(losses) == {1e-4, 1.0} and losses[1.0] < losses[1e-4] and model[-1].C == 1.0
    p = model.predict_proba(x)[:, 1]
    table = pd.DataFrame({"label": y, "silence_s": np.tile([0.1, 0.2], n // 2), "turn_index": groups,
                          "n_words": np.where(groups < 100, 5, 20)})
    res = lp.auc_rows({"probe": p, "perfect": y.astype(float)}, table)
    assert res["all"]["perfect"]["auc"] == pytest.approx(1.0)
    assert res["all"]["perfect"]["same_silence_auc"] == pytest.approx(1.0)
    assert 0.83 < res["all"]["probe"]["auc"] < 0.89  # Phi(1.5 / sqrt(2)) = 0.856
    assert res["1-10 words"]["probe"]["n"] == 1000 and res["1-10 words"]["probe"]["n_turns"] == 100
    assert res["all"]["probe"]["n_end"] == int(y.sum())


def test_cap_words_drops_long_prefixes():
    from vad_turn.harness.examples import Examples

    ex = Examples(table=pd.DataFrame({"n_seen": [0, 3, 41, 40, 50], "label": [0, 0, 1, 1, 0]}), queries=None,
                  rows=[], turn_ids=[])
    capped = lp.cap_words(ex, 40)
    assert capped.table["n_seen"].tolist() == [0, 3, 40] and capped.table.index.tolist() == [0, 1, 2]


def test_paired_bootstrap_interval_brackets_the_true_difference():
    rng = np.random.default_rng(1)
    turns = np.repeat(np.arange(300), 6)
    y = rng.integers(0, 2, turns.size)
    table = pd.DataFrame({"label": y, "silence_s": np.tile([0.2, 0.4], turns.size // 2), "turn_index": turns})
    perfect, noise = y + 0.0, rng.random(turns.size)
    res = lp.paired_bootstrap(perfect, noise, table, n_resamples=60)
    mean, lo, hi = res["auc_diff"]
    assert 0.45 < lo <= mean <= hi < 0.55  # AUC 1.0 vs about 0.5
    same = lp.paired_bootstrap(noise, noise, table, n_resamples=20)
    assert same["same_silence_auc_diff"] == [0.0, 0.0, 0.0]
