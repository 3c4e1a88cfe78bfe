"""The variants file and its use: prompts reach the LLM verbatim as the system message."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from prosody.prompts import PromptFileError, chat_messages, load_variants  # noqa: E402
from prosody.requests import Request  # noqa: E402


def test_variants_file_is_versioned_and_combinations_are_consistent():
    p = load_variants()
    assert isinstance(p.version, int) and p.version >= 1 and len(p.sha256) == 64
    assert {"baseline", "concise", "disfluent", "punctuated", "concise+disfluent+punctuated"} <= set(p.variants)
    base = p.variants["baseline"].system_prompt
    combo = p.variants["concise+disfluent+punctuated"].system_prompt
    for part in ("concise", "disfluent", "punctuated"):
        extra = p.variants[part].system_prompt[len(base) + 1:]
        assert extra and extra in combo
    with pytest.raises(KeyError, match="unknown variant"):
        p.select(["baseline", "shouty"])


def _write(tmp_path, body: str):
    path = tmp_path / "v.toml"
    path.write_text(body)
    return path


def test_broken_variant_files_are_refused_naming_the_file(tmp_path):
    base = 'version = 1\n[[variant]]\nname = "baseline"\nsystem_prompt = "Be brief."\n'
    with pytest.raises(PromptFileError, match=r"v\.toml: needs an integer `version`"):
        load_variants(_write(tmp_path, base.replace("version = 1", "version = 'one'")))
    with pytest.raises(PromptFileError, match="defined twice"):
        load_variants(_write(tmp_path, base + base.split("\n", 1)[1]))
    bad_combo = base + (
        '[[variant]]\nname = "concise"\ncomponents = ["concise"]\nsystem_prompt = "Be brief. Short."\n'
        '[[variant]]\nname = "punctuated"\ncomponents = ["punctuated"]\nsystem_prompt = "Be brief. Commas."\n'
        '[[variant]]\nname = "both"\ncomponents = ["concise", "punctuated"]\nsystem_prompt = "Be brief. Commas. Short."\n'
    )
    with pytest.raises(PromptFileError, match="'both' is not the baseline"):
        load_variants(_write(tmp_path, bad_combo))
    with pytest.raises(PromptFileError, match="not found"):
        load_variants(tmp_path / "missing.toml")


def test_variant_prompt_is_the_system_message_the_model_receives():
    """Through the experiment's own reply function, a real local SmolLM2 call and the HTTP path."""
    from pipeline.serving.llm_server import serve_llm
    from prosody.experiment import ProsodyConfig, generate_reply
    from vad_turn.engines.llm.http import OpenAIChatLLM
    from vad_turn.engines.llm.local import LocalLLM

    variant = load_variants().variants["disfluent"]
    request = Request("task-x", "Is it raining?", "task")
    cfg = ProsodyConfig(max_new_tokens=6)
    llm = LocalLLM(n_threads=1)
    row = generate_reply(llm, variant, request, cfg)
    assert llm.last_messages == chat_messages(variant, "Is it raining?")
    assert llm.last_messages[0] == {"role": "system", "content": variant.system_prompt}
    assert f"<|im_start|>system\n{variant.system_prompt}<|im_end|>\n<|im_start|>user\nIs it raining?<|im_end|>" in llm.last_prompt
    assert row["system_prompt"] == variant.system_prompt and row["raw"].strip()
    with serve_llm(llm) as (url, server), OpenAIChatLLM(url, "smollm2") as client:
        generate_reply(client, variant, request, cfg)
        assert server.requests[0]["messages"][0] == {"role": "system", "content": variant.system_prompt}
