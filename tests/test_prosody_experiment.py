"""End to end on tiny settings: `prosody run` through the CLI, resuming, the run folder, and notebook 04."""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from prosody.experiment import clean_reply  # noqa: E402
from vad_turn.core.runs import append_jsonl, read_jsonl

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "04_prosody_prompts.ipynb"
TINY = ["--variants", "baseline", "concise", "--voices", "espeak:en-us+f3", "--n-switchboard", "1", "--n-sbcsae", "1",
        "--n-task", "1", "--max-new-tokens", "16", "--reference-max-utterances", "3", "--n-boot", "200",
        "--save-audio-requests", "1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, data_root) -> Path:
    from prosody.cli import main

    out = tmp_path_factory.mktemp("prosody") / "run"
    assert main(["run", "--out", str(out), "--data-root", str(data_root), "--built-root", str(out / "nobuilt"), *TINY]) == 0
    return out


def test_tiny_run_writes_a_complete_run_folder(tiny_run):
    for name in ("config.json", "commit.txt", "split_ids.json", "metrics.json", "requests.json", "results.csv",
                 "results.parquet", "per_reply.parquet", "report.md", "measures.png", "effects.png"):
        assert (tiny_run / name).stat().st_size > 0, name
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["type"] == "ProsodyConfig" and cfg["variants"] == ["baseline", "concise"]
    split = json.loads((tiny_run / "split_ids.json").read_text())
    assert len(split["switchboard"]) == 1 and split["switchboard"][0].startswith("sw") and len(split["task"]) == 1
    per = pd.read_parquet(tiny_run / "per_reply.parquet")
    assert len(per) == 3 * 2 * 1  # requests x variants x voices
    assert per["f0_median_hz"].between(120, 400).all()  # a female espeak voice
    assert (per["ttfa_s"] > per["llm_first_clause_s"]).all()
    res = pd.read_csv(tiny_run / "results.csv")
    row = res[(res["variant"] == "baseline") & (res["measure"] == "f0_median_st")].iloc[0]
    assert row["ci_lo"] <= row["mean"] <= row["ci_hi"] and row["n"] == 3
    assert set(res["variant"]) == {"baseline", "concise", "real speech", "real speech (female)"}
    assert len(list((tiny_run / "audio").glob("*.wav"))) == 2  # first request, 2 variants, 1 voice
    report = (tiny_run / "report.md").read_text()
    assert "| f0_median_st |" in report and "Cohen's d_z" in report
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["n_replies"] == 6 and metrics["n_renderings"] == 6 and metrics["prompts_version"] >= 1


def test_rerun_resumes_without_new_llm_calls(tiny_run, data_root, capsys):
    from prosody.cli import main

    before = (tiny_run / "replies.jsonl").read_text()
    t0 = time.perf_counter()
    main(["run", "--out", str(tiny_run), "--data-root", str(data_root), "--built-root", str(tiny_run / "nobuilt"), *TINY])
    assert (tiny_run / "replies.jsonl").read_text() == before
    assert len(read_jsonl(tiny_run / "renders.jsonl")) == 6
    assert time.perf_counter() - t0 < 60
    # a rerun with another config into the same folder: one error line, exit 2, the run left as it was
    assert main(["run", "--out", str(tiny_run), "--data-root", str(data_root), *TINY[:-12], "--max-new-tokens", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("prosody run: error: ") and re.search("different config.*max_new_tokens", err), err
    assert (tiny_run / "replies.jsonl").read_text() == before


def test_notebook_04_runs_headless_on_the_tiny_run(tiny_run):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    for cell in nb.cells:
        assert cell.cell_type != "code" or (not cell.get("outputs") and cell.get("execution_count") is None)
    os.environ["PROSODY_RUN_DIR"] = str(tiny_run)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    finally:
        os.environ.pop("PROSODY_RUN_DIR")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2
    assert any("f0_median_st" in o.get("data", {}).get("text/markdown", "") for o in outputs)


def test_clean_reply_and_torn_logs(tmp_path):
    raw = "**Sure!** Here is how:\n1. Boil water.\n2. Add the egg and wait"
    assert clean_reply(raw) == "Sure! Here is how: Boil water."
    assert clean_reply("No end mark at all") == "No end mark at all"
    log = tmp_path / "x.jsonl"
    append_jsonl(log, {"a": 1})
    with open(log, "a") as fh:
        fh.write('{"a": 2, "b"')  # interrupted mid-line
    assert read_jsonl(log) == [{"a": 1}]
    log.write_text('{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(ValueError, match=r"x\.jsonl:2: malformed"):
        read_jsonl(log)
