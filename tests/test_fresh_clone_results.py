"""Issue 15 #5: a fresh clone (runs/ empty) has a policy and results to show.

Shipped operating points (`vad-turn ship-operating-points`) give the same policy as their run, and are
refused once the model changed; the committed results (`vad-turn publish-results`) fill the demo's tabs."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vad_turn.harness.operating_points import OperatingPointError, StaleOperatingPoints, policy_from_eval
from vad_turn.cli import main as vad_turn_main
from vad_turn.core.config import REPO_ROOT, SHIPPED_MODELS_DIR
from vad_turn.core.model_files import write_checksums
from vad_turn.harness.operating_points import eval_run, load_shipped, shipped_model_fingerprint, shipped_detectors
from vad_turn.harness.results import COMMITTED_RESULTS_DIR, read_provenance

PROVENANCE_ONLY = ("source", "policy_from", "evaluated_run", "commit", "model_sha256")


def _models(root: Path) -> Path:
    """A models dir shaped like vad_turn/models: turn/, lexical/, acoustic/, each one file + checksums.json."""
    for sub in ("turn", "lexical", "acoustic"):
        (root / sub).mkdir(parents=True)
        (root / sub / "weights.bin").write_bytes(sub.encode() * 100)
        write_checksums(root / sub, ["weights.bin"])
        os.utime(root / sub / "weights.bin", (1e9, 1e9))  # older than any run below
    return root


def _run(folder: Path, detector: str = "fused", opts=()) -> Path:
    folder.mkdir(parents=True)
    ops = [{"name": "lat@fcr<=10%", "reachable": True, "threshold": 0.35, "action_delay_s": 0.4, "timeout_s": 1.5,
            "false_cutoff_rate": 0.098, "mean_latency_s": 0.52,
            "vad_only": {"threshold": 0.05, "action_delay_s": 0.8, "timeout_s": 1.0, "false_cutoff_rate": 0.097,
                         "mean_latency_s": 0.8}},
           {"name": "fcr@lat<=0.6s", "reachable": True, "threshold": 0.5, "action_delay_s": 0.2, "timeout_s": 1.0,
            "false_cutoff_rate": 0.2, "mean_latency_s": 0.6, "vad_only": {"action_delay_s": 0.6}}]
    (folder / "metrics.json").write_text(json.dumps({"detector": detector, "dataset": "data/built/x", "split": "dev",
                                                     "counts": {"n_turns": 300}, "operating_points": ops}))
    (folder / "config.json").write_text(json.dumps({"type": "EvalConfig", "detector": detector,
                                                    "detector_opts": list(opts)}))
    (folder / "commit.txt").write_text("abc123\n")
    return folder


def _ship(detector: str, run: Path, models: Path, *extra: str) -> int:
    return vad_turn_main(["ship-operating-points", "--detector", detector, "--run", str(run),
                          "--models-dir", str(models), *extra])


def test_the_shipped_fallback_gives_the_runs_policy_and_says_which(tmp_path):
    models = _models(tmp_path / "models")
    runs = tmp_path / "runs"
    run = _run(runs / eval_run("fused", "conversation"))
    assert _ship("fused", run, models) == 0
    shipped = models / "turn" / "operating_points.json"
    first = shipped.read_bytes()
    assert _ship("fused", run, models) == 0 and shipped.read_bytes() == first  # idempotent: same bytes
    rec = json.loads(first)
    assert rec["model_files"].keys() == {"turn/weights.bin", "lexical/weights.bin", "acoustic/weights.bin"}
    assert rec["commit"] == "abc123" and rec["n_turns"] == 300 and rec["config"]["detector"] == "fused"
    for op in ("lat@fcr<=10%", "fcr@lat<=0.6s"):
        from_run = policy_from_eval("fused", op, profile="conversation", runs_root=runs, models_dir=models)
        from_ship = policy_from_eval("fused", op, profile="conversation", runs_root=tmp_path / "empty", models_dir=models)
        assert (from_run["policy_from"], from_ship["policy_from"]) == ("run", "shipped")
        assert from_ship["source"].endswith("turn/operating_points.json") and from_ship["commit"] == "abc123"
        same = lambda p: {k: v for k, v in p.items() if k not in PROVENANCE_ONLY}  # noqa: E731
        assert same(from_run) == same(from_ship)
    assert from_ship["threshold"] == 0.5 and from_ship["vad_only"]["stop_silence_s"] == 0.6


def test_a_changed_model_makes_its_shipped_points_stale(tmp_path):
    models = _models(tmp_path / "models")
    run = _run(tmp_path / "runs" / "x", detector="lexical")
    assert _ship("lexical", run, models) == 0
    old, _ = shipped_model_fingerprint("lexical", models)
    (models / "lexical" / "weights.bin").write_bytes(b"re-trained")
    new, _ = shipped_model_fingerprint("lexical", models)
    with pytest.raises(StaleOperatingPoints) as e:
        policy_from_eval("lexical", profile="conversation", runs_root=tmp_path / "empty", models_dir=models)
    msg = str(e.value)
    assert old in msg and new in msg and "changed: lexical/weights.bin" in msg and "ship-operating-points" in msg
    # the fused model loads the lexical branch too: its shipped points go stale with it
    assert _ship("fused", _run(tmp_path / "runs" / "y"), models, "--allow-older-run") == 0
    load_shipped("fused", models)
    (models / "acoustic" / "weights.bin").write_bytes(b"re-exported")
    with pytest.raises(StaleOperatingPoints, match="changed: acoustic/weights.bin"):
        load_shipped("fused", models)


def test_shipping_refuses_a_run_that_is_not_the_shipped_model(tmp_path, capsys):
    models = _models(tmp_path / "models")
    assert _ship("acoustic", _run(tmp_path / "a", detector="fused"), models) == 2
    assert _ship("fused", _run(tmp_path / "b", opts=["model=runs/other/model"]), models) == 2
    run = _run(tmp_path / "c")
    os.utime(run / "metrics.json", (1e9, 1e9))  # evaluated when the model files were written ...
    os.utime(models / "lexical" / "weights.bin")  # ... and one of them re-shipped since
    assert _ship("fused", run, models) == 2
    err = capsys.readouterr().err.splitlines()
    assert "evaluates detector 'fused', not 'acoustic'" in err[0] and "--detector-opts model=" in err[1]
    assert "older than the model files lexical/weights.bin" in err[2]
    assert not list(models.glob("*/operating_points.json"))


def test_no_run_and_no_shipped_points_is_an_error_naming_both(tmp_path):
    models = _models(tmp_path / "models")
    with pytest.raises(OperatingPointError) as e:
        policy_from_eval("acoustic", profile="conversation", runs_root=tmp_path / "runs", models_dir=models)
    msg = str(e.value)
    assert str(tmp_path / "runs" / eval_run("acoustic", "conversation") / "metrics.json") in msg
    assert str(models / "acoustic" / "operating_points.json") in msg
    with pytest.raises(OperatingPointError, match="has no shipped model"):
        policy_from_eval("lexical-zeroshot", profile="conversation", runs_root=tmp_path / "runs", models_dir=models)


def test_the_shipped_operating_points_are_those_of_the_shipped_models(monkeypatch, tmp_path):
    """Fails after a model is re-shipped until `vad-turn ship-operating-points` is rerun on its new evaluation."""
    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path))  # a fresh clone: runs/ is empty
    for det in shipped_detectors():
        rec = load_shipped(det)
        names = {op["name"] for op in rec["operating_points"]}
        assert rec["detector"] == det and {"fcr@lat<=0.3s", "fcr@lat<=0.6s", "lat@fcr<=5%", "lat@fcr<=10%"} <= names
        p = policy_from_eval(det, profile="conversation")
        assert p["policy_from"] == "shipped" and 0.0 <= p["threshold"] <= 1.0 and p["timeout_s"] >= p["action_delay_s"]
        assert 0.0 <= p["false_cutoff_rate"] <= 0.10 and p["vad_only"]["stop_silence_s"] > 0  # lat@fcr<=10%
    files = {Path(f).resolve() for f in __import__("glob").glob(str(SHIPPED_MODELS_DIR / "**" / "*"), recursive=True)}
    assert all((SHIPPED_MODELS_DIR / d / "operating_points.json").resolve() in files for d in ("turn", "lexical", "acoustic"))
    assert '"*" = ["models/**/*"' in (REPO_ROOT / "pyproject.toml").read_text()  # package data: ships in the wheel


# ----------------------------------------------------------------------------- committed results


def test_the_demo_tabs_show_the_committed_results_when_runs_is_empty(monkeypatch, tmp_path):
    from pipeline.serving.demo.reports import eval_source, eval_view, prosody_source, run_label

    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path))
    runs, root, note = eval_source()
    assert root == COMMITTED_RESULTS_DIR and len(runs) >= 4
    prov = read_provenance()
    assert "Committed results" in note and prov["headline"]["commits"][0][:10] in note and prov["headline"]["date"] in note
    # the evaluation the default (voice-agent) operating point was chosen on comes first, then the headline's runs
    assert run_label(runs[0], root) == "eval-fused-voice-agent-dev"
    assert "eval-fused-getgoing-dev-lag0.7" in {run_label(r, root) for r in runs}
    assert any(run_label(r, root).startswith("headline/") for r in runs)
    assert prov["voice_agent"]["commits"][0][:10] in note
    shipped = json.loads((SHIPPED_MODELS_DIR / "turn" / "operating_points.voice-agent.json").read_text())
    committed = json.loads((runs[0] / "metrics.json").read_text())
    assert [op["threshold"] for op in committed["operating_points"]] == [
        op["threshold"] for op in shipped["operating_points"]]  # the very run the shipped point came from
    for r in runs:  # the runs record absolute paths: none of the server's folders reaches the page
        shown_text = eval_view(r)["title"] + eval_view(r)["markdown"]
        assert str(REPO_ROOT) not in shown_text and str(REPO_ROOT.resolve()) not in shown_text, r
    v = eval_view(runs[0])
    assert len(v["ops"]) >= 5 and all(isinstance(r[2], float) for r in v["ops"] if r[1] is not None)
    assert "operating point" in v["markdown"].lower() and Path(v["pareto"]).stat().st_size > 10_000
    pr, pnote = prosody_source()
    if (COMMITTED_RESULTS_DIR / "prosody-default").is_dir():
        assert pr is not None and "Committed results" in pnote
    (tmp_path / "eval-mine").mkdir()  # a run of one's own comes first, without the note
    for f in ("metrics.json", "report.md"):
        (tmp_path / "eval-mine" / f).write_text((runs[0] / f).read_text())
    assert eval_source() == ([tmp_path / "eval-mine"], tmp_path, "")


def test_publish_results_copies_small_files_with_provenance(tmp_path, capsys):
    from pipeline.serving.demo.reports import prosody_source

    head = tmp_path / "runs" / "headline-x"
    for run in ("set-fused", "set-vad-only"):
        (head / run).mkdir(parents=True)
        for f, text in (("report.md", "# r"), ("metrics.json", '{"detector": "fused", "operating_points": []}'),
                        ("commit.txt", "c0ffee\n"), ("predictions.parquet", "big")):
            (head / run / f).write_text(text)
    (head / "headline.md").write_text("# headline")
    pro = tmp_path / "runs" / "prosody-default"
    pro.mkdir()
    for f in ("report.md", "measures.png", "commit.txt", "per_reply.parquet"):
        (pro / f).write_text("beef\n" if f == "commit.txt" else f)
    voice = tmp_path / "runs" / "eval-pool"
    voice.mkdir()
    for f, text in (("report.md", "# pool"), ("metrics.json", '{"detector": "fused"}'), ("commit.txt", "d00d\n"),
                    ("predictions.parquet", "big")):
        (voice / f).write_text(text)
    out = tmp_path / "committed"
    argv = ["publish-results", "--headline", str(head), "--runs", "set-fused", "set-vad-only", "--prosody", str(pro),
            "--voice-agent-runs", str(voice), "--out", str(out)]
    assert vad_turn_main(argv) == 0
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["eval-pool/commit.txt", "eval-pool/metrics.json", "eval-pool/report.md",
                   "headline/headline.md", *[f"headline/set-{d}/{f}" for d in ("fused", "vad-only")
                                             for f in ("commit.txt", "metrics.json", "report.md")],
                   "prosody-default/commit.txt", "prosody-default/measures.png", "prosody-default/report.md",
                   "provenance.json"]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["headline"]["commits"] == ["c0ffee"] and prov["prosody"]["commits"] == ["beef"]
    assert prov["voice_agent"]["commits"] == ["d00d"] and prov["voice_agent"]["source"] == [str(voice)]
    first = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert vad_turn_main(argv) == 0 and {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first
    found, note = prosody_source(tmp_path / "empty", out)
    assert found == out / "prosody-default" and "beef" in note
    (head / "set-fused" / "pareto.png").write_bytes(b"x" * 3_000_000)
    assert vad_turn_main(argv) == 2 and vad_turn_main([*argv[:-2], "--out", str(tmp_path / "runs")]) == 2
    assert vad_turn_main([*argv[:5], "set-nope", *argv[6:]]) == 2
    assert vad_turn_main([*argv[:9], str(tmp_path / "runs" / "eval-none"), *argv[10:]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "over --max-total-mb 2.5" in err[-4] and "headline/set-fused/pareto.png (3000 kB)" in err[-4]
    assert "is not a results folder" in err[-3] and "set-nope/report.md: not found" in err[-2]
    assert "eval-none/report.md: not found (the run behind the shipped voice-agent point" in err[-1]
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == first  # refused: left as it was


def test_the_committed_results_are_small_and_not_git_ignored():
    files = [p for p in COMMITTED_RESULTS_DIR.rglob("*") if p.is_file()]
    assert files and sum(p.stat().st_size for p in files) < 2.5e6
    assert not [p for p in files if p.suffix in (".parquet", ".wav", ".npz")]
    prov = read_provenance()
    assert set(prov["files"]) == {str(p.relative_to(COMMITTED_RESULTS_DIR)) for p in files} - {"provenance.json"}
    ignored = subprocess.run(["git", "check-ignore", "-q", str(COMMITTED_RESULTS_DIR / "provenance.json")], cwd=REPO_ROOT)
    assert ignored.returncode == 1, "data/committed-results is git-ignored"


def test_shipping_checks_the_fingerprint_the_evaluation_recorded(tmp_path, capsys):
    from vad_turn.harness.operating_points import shipped_model_fingerprint

    models = _models(tmp_path / "models")
    digest = shipped_model_fingerprint("fused", models)[0]
    run = _run(tmp_path / "r")
    (run / "model_fingerprint.txt").write_text("0" * 64 + "\n")  # evaluated another model, times notwithstanding
    assert _ship("fused", run, models) == 2
    assert f"evaluated model sha256 {'0' * 64}, but the shipped fused model is now sha256 {digest}" in \
        capsys.readouterr().err
    (run / "model_fingerprint.txt").write_text(digest + "\n")
    os.utime(models / "lexical" / "weights.bin")  # newer than the run, but the recorded digest says it is the same
    assert _ship("fused", run, models) == 0
    assert json.loads((models / "turn" / "operating_points.json").read_text())["model_sha256"] == digest


def test_a_run_of_another_model_in_runs_gives_way_to_the_shipped_points(tmp_path):
    from vad_turn.harness.operating_points import shipped_model_fingerprint

    models = _models(tmp_path / "models")
    runs = tmp_path / "runs"
    run = _run(runs / eval_run("fused", "conversation"))
    (run / "model_fingerprint.txt").write_text(shipped_model_fingerprint("fused", models)[0] + "\n")
    assert _ship("fused", run, models) == 0
    assert policy_from_eval("fused", profile="conversation", runs_root=runs, models_dir=models)["policy_from"] == "run"
    (run / "model_fingerprint.txt").write_text("f" * 64 + "\n")  # the run scored another model
    assert policy_from_eval("fused", profile="conversation", runs_root=runs, models_dir=models)["policy_from"] == "shipped"


def test_the_voice_agent_point_is_the_default_of_pipeline_bench_and_demo(monkeypatch, tmp_path):
    """Issue 24: the agent a user runs uses the shipped voice-agent operating point, chosen on agent-directed dev data
    only (GetGoing dev + agent-holds whole-turn renders' dev): on each set, no more cut-offs than VAD-only at 0.6 s
    and at most 0.1 s later on average; fewer cut-offs than VAD-only on the two pooled."""
    from pipeline.bench.e2e import BenchConfig, bench_policy, pipeline_config
    from pipeline.serving.demo.session import DemoSettings, pane_config
    from pipeline.runtime.runner import PipelineConfig
    from vad_turn.harness.operating_points import VOICE_AGENT_LATENCY_TOLERANCE_S, VOICE_AGENT_POINT, shipped_policy

    monkeypatch.setenv("VAD_TURN_RUNS_ROOT", str(tmp_path))  # a fresh clone: runs/ is empty
    rec = load_shipped("fused", profile="voice-agent")
    assert rec["profile"] == "voice-agent" and {r["split"] for r in rec["pooled_runs"]} == {"dev"}
    assert [r["dataset"].split("/")[-1] for r in rec["pooled_runs"]] == ["getgoing", "agent-holds-rendered-utt"]
    p = shipped_policy("fused", None, profile="voice-agent")
    from vad_turn.engines.stt import stt_word_lag

    # evaluated with the default STT's measured lag of the words before a pause (P90), as the pipeline shows them
    lag = stt_word_lag(PipelineConfig().stt)["segment_end_final_p90_s"]
    assert p["operating_point"] == VOICE_AGENT_POINT and lag <= p["transcript_lag_s"] <= lag + 0.1
    assert p["false_cutoff_rate"] < p["vad_only"]["false_cutoff_rate"] and p["vad_only"]["stop_silence_s"] == 0.6
    assert p["mean_latency_s"] <= p["vad_only"]["mean_latency_s"] + VOICE_AGENT_LATENCY_TOLERANCE_S + 1e-9
    point = next(o for o in rec["operating_points"] if o["name"] == VOICE_AGENT_POINT)
    assert [r["run"].split("/")[-1] for r in point["runs"]] == [r["run"].split("/")[-1] for r in rec["pooled_runs"]]
    for r in point["runs"]:  # safe on real callers and on the renders apart, not only pooled
        assert r["n_cutoff"] <= r["vad_only_n_cutoff"], r
        assert r["mean_latency_s"] <= r["vad_only_mean_latency_s"] + VOICE_AGENT_LATENCY_TOLERANCE_S + 1e-9, r
    want = (p["threshold"], p["action_delay_s"], p["timeout_s"], p["transcript_lag_s"])
    got = lambda pol: (pol.threshold, pol.action_delay_s, pol.timeout_s, pol.transcript_lag_s)  # noqa: E731
    assert got(PipelineConfig().policy) == want
    assert got(pane_config(DemoSettings(), "semantic").turn_policy("fused")) == want
    bench = BenchConfig()
    assert got(pipeline_config(bench, "streaming-semantic", bench_policy(bench, "fused")).turn_policy("fused")) == want


def test_publish_results_can_keep_the_committed_prosody_part(tmp_path, capsys):
    """`--prosody keep` refreshes the rest without rerunning the prosody study: its files and provenance stay."""
    head = tmp_path / "headline"
    (head / "set-fused").mkdir(parents=True)
    (head / "headline.md").write_text("# v1")
    for f, text in (("report.md", "# r"), ("metrics.json", "{}"), ("commit.txt", "aaa\n")):
        (head / "set-fused" / f).write_text(text)
    pro = tmp_path / "prosody-run"
    pro.mkdir()
    for f in ("report.md", "measures.png", "commit.txt"):
        (pro / f).write_text("beef\n" if f == "commit.txt" else f)
    out = tmp_path / "committed"
    base = ["publish-results", "--headline", str(head), "--runs", "set-fused", "--no-voice-agent", "--out", str(out)]
    assert vad_turn_main([*base, "--prosody", "keep"]) == 2  # nothing to keep yet
    assert "no prosody part to keep" in capsys.readouterr().err
    assert vad_turn_main([*base, "--prosody", str(pro)]) == 0
    before = json.loads((out / "provenance.json").read_text())
    kept = {p.name: p.read_bytes() for p in (out / "prosody-default").iterdir()}
    (head / "headline.md").write_text("# v2")
    assert vad_turn_main([*base, "--prosody", "keep"]) == 0
    after = json.loads((out / "provenance.json").read_text())
    assert (out / "headline" / "headline.md").read_text() == "# v2"
    assert after["prosody"] == before["prosody"] and {p.name: p.read_bytes() for p in (out / "prosody-default").iterdir()} == kept
    assert {k: v for k, v in after["files"].items() if k.startswith("prosody-default/")} == {
        k: v for k, v in before["files"].items() if k.startswith("prosody-default/")}


def test_the_committed_bench_summaries_name_no_server_folders():
    """`benchmarks/bench_rescore.py` writes the committed docs/bench-*.json through `without_server_paths`: the
    runs a bench read are named repository-relative, not by the folders of the machine it ran on."""
    import re

    from vad_turn.core.config import REPO_ROOT, without_server_paths

    files = sorted((REPO_ROOT / "docs").glob("bench-*.json"))
    assert files
    for p in files:
        assert not re.search(r'"/[^"]*/(runs|data/built)/', p.read_text()), p
    assert without_server_paths(json.dumps({"source": f"{REPO_ROOT}/runs/x"})) == '{"source": "runs/x"}'
