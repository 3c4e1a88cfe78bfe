"""`vad-turn plot-pareto` (notebook 03's figures): several detectors' Pareto frontiers on one set, read from
evaluation run folders. The points drawn are exactly each sweep's Pareto frontier, and VAD-only's is the one
scored on the same spans."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import require_built

from vad_turn.harness.detectors import DETECTORS
from vad_turn.harness.metrics import pareto_frontier
from vad_turn.harness.pareto_plot import find_runs, headline_sets, load_frontiers, plot_frontiers

SET = "switchboard:val"
POLICY = ["threshold", "action_delay_s", "timeout_s"]


@pytest.fixture(scope="module")
def headline(tmp_path_factory):
    """A tiny headline: VAD-only and the lexical GRU on 30 Switchboard val turns (about 10 s)."""
    from vad_turn.harness.headline import HeadlineConfig, run

    require_built("switchboard")
    out = tmp_path_factory.mktemp("pareto") / "headline"
    run(HeadlineConfig(sets=(SET,), detectors=("vad-only", "lexical"), max_turns=30, n_boot=0, cpu_queries=0,
                       out=out, agent_text_run=out / "no-agent-text"))
    return out


def _sweep_frontier(run_dir, detector: str) -> pd.DataFrame:
    sweep = pd.read_parquet(run_dir / "sweep.parquet")
    return pareto_frontier(sweep[sweep["detector"] == detector].drop(columns="detector"))


def test_plotted_points_are_the_pareto_frontier_of_each_sweep(headline):
    import matplotlib.pyplot as plt

    assert find_runs(headline) == {(SET, "vad-only"): headline / "switchboard-val-vad-only",
                                   (SET, "lexical"): headline / "switchboard-val-lexical"}
    assert headline_sets(headline) == [SET]
    points, notes = load_frontiers(headline, [SET], ("vad-only", "smart-turn", "lexical"))
    assert notes == [f"smart-turn: no run on {SET} in {headline}"]
    fig = plot_frontiers(points)
    shown = {DETECTORS[d].display_name: d for d in ("vad-only", "lexical")}  # labelled with the spec's display name
    lines = {shown[ln.get_label()]: ln for ln in fig.axes[0].lines if not ln.get_label().startswith("_")}
    assert set(lines) == {"vad-only", "lexical"} and fig.axes[0].get_title() == f"{SET} (30 turns)"
    for det in ("vad-only", "lexical"):
        front = _sweep_frontier(headline / f"switchboard-val-{det}", det)
        assert len(front) >= 3
        np.testing.assert_allclose(lines[det].get_xdata(), front["mean_latency_s"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(lines[det].get_ydata(), 100 * front["false_cutoff_rate"], rtol=0, atol=1e-12)
        got = points[points["detector"] == det]
        assert got[POLICY].to_numpy().tolist() == front[POLICY].to_numpy().tolist()
        assert (got["n_turns"] == 30).all()
        # a frontier: latency never falls and every further point cuts off fewer turns
        assert (np.diff(front["mean_latency_s"]) >= 0).all() and (np.diff(front["false_cutoff_rate"]) < 0).all()
    # VAD-only scored beside the lexical run, on the same spans, has the same frontier as the vad-only run
    beside = _sweep_frontier(headline / "switchboard-val-lexical", "vad-only")
    np.testing.assert_allclose(lines["vad-only"].get_ydata(), 100 * beside["false_cutoff_rate"], rtol=0, atol=1e-12)
    # without a vad-only run, VAD-only comes from beside the first detector's run: the same points
    no_vad, _ = load_frontiers(headline, [SET], ("lexical", "vad-only"))
    pd.testing.assert_frame_equal(no_vad[no_vad["detector"] == "vad-only"].drop(columns="run").reset_index(drop=True),
                                  points[points["detector"] == "vad-only"].drop(columns="run").reset_index(drop=True))
    plt.close("all")


def test_cli_writes_the_figure_and_the_points_it_draws(headline, tmp_path):
    from vad_turn.cli import main

    out = tmp_path / "fig" / "pareto.png"
    assert main(["plot-pareto", "--runs-root", str(headline), "--sets", SET, "--detectors", "vad-only", "lexical",
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    saved = json.loads(out.with_suffix(".json").read_text())
    points, _ = load_frontiers(headline, [SET], ("vad-only", "lexical"))
    assert saved["notes"] == []
    pd.testing.assert_frame_equal(pd.DataFrame(saved["points"]), points, check_dtype=False)


def test_bad_sets_missing_runs_and_duplicate_runs_are_errors(headline, tmp_path, capsys):
    from vad_turn.cli import main

    with pytest.raises(SystemExit) as e:
        main(["plot-pareto", "--runs-root", str(headline), "--sets", "switchboard"])
    assert e.value.code == 2 and "must look like dataset:split" in capsys.readouterr().err
    assert main(["plot-pareto", "--runs-root", str(headline), "--sets", "ami:none",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"no evaluation run of ami:none (sets here: {SET})" in err and not (tmp_path / "x.png").exists()
    assert main(["plot-pareto", "--runs-root", str(headline), "--sets", SET, "--detectors", "smart-turn",
                 "--out", str(tmp_path / "x.png")]) == 2
    assert "no frontier to draw" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    for copy in ("a", "b"):  # two lexical runs on one set: which to draw is ambiguous
        (tmp_path / "root" / copy).mkdir(parents=True)
        for name in ("config.json", "metrics.json"):
            shutil.copy(headline / "switchboard-val-lexical" / name, tmp_path / "root" / copy / name)
    with pytest.raises(ValueError, match=f"two runs of lexical on {SET} \\(a, b\\)"):
        find_runs(tmp_path / "root")
