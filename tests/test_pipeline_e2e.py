"""Real-time end-to-end runs (wall clock, real models): a tiny bench run, its report, the notebook on it,
and (slow) the semantic strategy with barge-in scenarios."""
from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
from conftest import emitted_silence_bounds, endpoint_bounds, require_built  # noqa: E402

from pipeline.bench.e2e import BenchConfig, pipeline_config, run  # noqa: E402


@pytest.fixture(scope="module")
def built_turns():
    """The bench plays real turns from the built Switchboard and SBCSAE datasets."""
    for name in ("switchboard", "sbcsae"):
        require_built(name)


@pytest.fixture(scope="module")
def tiny_bench(built_turns, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    res = run(BenchConfig(out=out, configs=("streaming-vad",), n_conversation_turns=1, turns_per_conversation=1,
                          n_barge_in=0, n_backchannel=1, max_new_tokens=8))
    return out, res


@pytest.mark.timeout(300)
def test_real_time_run_answers_and_ignores_a_backchannel(tiny_bench):
    out, res = tiny_bench
    rows = [json.loads(line) for line in (out / "turns.jsonl").read_text().splitlines()]
    conv = [r for r in rows if r["kind"] == "conversation"]
    assert len(conv) == 1 and conv[0]["answered"] and conv[0]["transcript"].strip()
    r = conv[0]
    # VAD-only decides at the stop silence of the policy in force (the bench's streaming-vad config), counted
    # from the VAD's speech edge; the agent's first audio comes after that decision (how long after is the
    # machine's speed: `pipeline bench` measures it, no test budgets it)
    stop_s = pipeline_config(BenchConfig(), "streaming-vad").turn_policy().stop_silence_s
    assert r["stop_silence_s"] == stop_s
    lo, hi = emitted_silence_bounds(stop_s, stop_s, r)
    assert lo <= r["eot_silence_s"] <= hi, r
    lo, hi = endpoint_bounds(stop_s, stop_s, r)
    assert lo <= r["endpoint_s"] <= hi, r
    assert r["e2e_s"] == pytest.approx(r["endpoint_s"] + r["processing_s"], abs=1e-6)
    assert r["processing_s"] > 0.0 and 0.0 <= r["tts_first_s"] < 1.0
    bc = [x for x in rows if x["kind"] == "backchannel"]
    assert len(bc) == 1 and bc[0]["agent_was_speaking"] is True, bc  # the backchannel came while the agent spoke
    assert bc[0]["interrupted"] is False and bc[0]["reaction_s"] < 0.2
    s = res["summary"]["streaming-vad"]
    assert s["n_turns"] == 1 and s["e2e_s"]["p50"] == pytest.approx(r["e2e_s"])
    report = (out / "report.md").read_text()
    assert "streaming-vad" in report and (out / "metrics.json").exists() and (out / "config.json").exists()


@pytest.mark.timeout(300)
def test_notebook_05_runs_on_the_tiny_bench(tiny_bench):
    from pathlib import Path

    from test_notebooks import NOTEBOOKS, execute

    out, _ = tiny_bench
    nb = execute(NOTEBOOKS / "05_pipeline_latency.ipynb", {"PIPELINE_BENCH_DIR": str(Path(out))})
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.timeout(300)
def test_bench_draws_the_notebooks_figures_and_plot_bench_redraws_them(tiny_bench, capsys):
    """The figures notebook 05 shows are written by `pipeline bench` and redrawn by `pipeline plot-bench`."""
    from pipeline.bench.plots import FIGURES
    from pipeline.cli import main as pipeline_main

    out, _ = tiny_bench
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        (out / name).unlink()
    capsys.readouterr()
    assert pipeline_main(["plot-bench", "--run", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# Pipeline latency benchmark" in printed and "streaming-vad" in printed
    assert all((out / name).stat().st_size > 1000 for name in FIGURES)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_semantic_streaming_with_barge_in(built_turns, tmp_path, monkeypatch):
    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path / "runs"))  # as on a fresh clone: no evaluation runs
    res = run(BenchConfig(out=tmp_path / "bench", configs=("streaming-semantic", "cascade-vad"), n_conversation_turns=2,
                          turns_per_conversation=2, n_barge_in=1, n_backchannel=1, max_new_tokens=12))
    assert res["info"]["policy_source"]["policy_from"] == "shipped"  # the operating points beside the model
    s = res["summary"]["streaming-semantic"]
    assert s["n_turns"] == 2 and s["answered_rate"] == 1.0
    # the interjections came while the agent spoke (summarize counts only those), so they were tested
    assert s.get("barge_in", {}).get("n") == 1 and s.get("backchannel", {}).get("n") == 1, s
    assert s["barge_in"]["success_rate"] == 1.0 and s["barge_in"]["reaction_p99_s"] < 0.2
    assert s["backchannel"]["false_interruptions"] == 0
