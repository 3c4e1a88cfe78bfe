"""Requests: deterministic question-like turns from the real corpora (via the builders) plus task requests."""
from __future__ import annotations

import pytest

from prosody.requests import TASK_REQUESTS, is_question_like, load_requests, select_corpus_requests


def _row(turn_id: str, text: str, conv: str, punct: str = "") -> dict:
    return {"id": turn_id, "words": [{"word": w, "start": 0.0, "end": 0.0} for w in text.split()],
            "unit_punct": [punct], "conversation": conv}


def test_question_rules():
    assert is_question_like("uh do you have any particular ideas".split())
    assert is_question_like("well what kind of music".split())
    assert is_question_like("so you don't need to go".split(), final_mark="?")
    assert not is_question_like("i think it's important that we".split())
    assert not is_question_like("do the hooves".split())  # auxiliary not followed by a pronoun


def test_selection_is_deterministic_capped_per_conversation_and_never_short():
    rows = [_row(f"c{c}-{i}", "what do you think about the weather there", f"c{c}") for c in range(3) for i in range(4)]
    rows += [_row("c9-0", "i like it a lot over there", "c9"), _row("c9-1", "do you", "c9")]  # not questions / too short
    a = select_corpus_requests(rows, "switchboard", 5, seed=1)
    assert [r.id for r in a] == [r.id for r in select_corpus_requests(rows, "switchboard", 5, seed=1)]
    assert len(a) == 5 and all(r.text == "what do you think about the weather there" for r in a)
    assert max(sum(r.conversation == f"c{c}" for r in a) for c in range(3)) == 2
    assert [r.id for r in select_corpus_requests(rows, "switchboard", 5, seed=2)] != [r.id for r in a]
    with pytest.raises(ValueError, match="only 6 question-like turns"):
        select_corpus_requests(rows, "switchboard", 7)


def test_real_corpus_requests(data_root, tmp_path):
    reqs, notes = load_requests(4, 3, 2, data_root=data_root, built_root=tmp_path / "none", max_conversations=8)
    again, _ = load_requests(4, 3, 2, data_root=data_root, built_root=tmp_path / "none", max_conversations=8)
    assert [r.id for r in reqs] == [r.id for r in again]
    assert [r.source for r in reqs] == ["switchboard"] * 4 + ["sbcsae"] * 3 + ["task"] * 2
    assert all(r.id.startswith("sw") for r in reqs[:4]) and all(r.id.startswith("SBC") for r in reqs[4:7])
    for r in reqs[:7]:
        assert 6 <= len(r.text.split()) <= 30 and r.text == r.text.lower()
    assert "builder" in notes["switchboard_origin"]
    assert reqs[-1].text == TASK_REQUESTS[1][1]
    assert len(TASK_REQUESTS) >= 18 and len({t for _, t in TASK_REQUESTS}) == len(TASK_REQUESTS)


def test_built_dataset_and_in_memory_builder_give_the_same_rows(data_root, tmp_path):
    from prosody.requests import corpus_rows
    from vad_turn.data.corpora import corpus_builder, load_recipe
    from vad_turn.data.dataset import write_turns

    splits, _ = corpus_builder("switchboard")(data_root, load_recipe("switchboard"), max_conversations=3)
    write_turns([r for recs in splits.values() for r in recs], tmp_path / "built" / "switchboard")
    built, origin = corpus_rows("switchboard", built_root=tmp_path / "built", data_root=data_root, max_conversations=2)
    fresh, _ = corpus_rows("switchboard", built_root=tmp_path / "none", data_root=data_root, max_conversations=2)
    assert "built dataset" in origin
    assert [r["id"] for r in built] == [r["id"] for r in fresh] and len(built) > 50
    assert len({r["conversation"] for r in built}) == 4  # 2 per split, train and dev
