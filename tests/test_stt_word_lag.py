"""The STT word-lag benchmark: settle / word-count / emitted lags on hand-made partial tracks, the
pipeline's partial read cadence, and one real PocketSphinx run on a rendered Switchboard turn
(from `make test-data`)."""
from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from conftest import require_built  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from stt_word_lag import SttLagConfig, emitted_lag, read_times, settle_lags, summarize, turn_records  # noqa: E402

TIMES = np.round(np.arange(1, 51) * 0.02, 4)  # chunk ends 0.02 .. 1.00 s


def track(changes: list[tuple[float, tuple[str, ...]]]) -> list[tuple[str, ...]]:
    """The partial at each chunk end: the last (from_s, words) entry with from_s <= t."""
    out = []
    for t in TIMES:
        cur = ()
        for t0, words in changes:
            if t >= t0 - 1e-9:
                cur = words
        out.append(cur)
    return out


def test_settle_and_count_lags_by_hand():
    # speech ends (span start) at 0.50 s; "word" is corrected to "world" at 0.58 s
    hyps = track([(0.22, ("hello",)), (0.46, ("hello", "word")), (0.58, ("hello", "world"))])
    lag = settle_lags(TIMES, hyps, start_s=0.5, from_s=0.0, horizon_s=1.0)
    assert lag == {"n_final_words": 2, "settle_lag_s": pytest.approx(0.08), "count_lag_s": pytest.approx(-0.04)}
    # the pipeline reads the partial every 0.2 s: 0.2, 0.4, 0.6, ... -> the settled text arrives at 0.6
    reads = read_times(TIMES, 0.2)
    assert reads == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert emitted_lag(lag["settle_lag_s"], 0.5, reads) == pytest.approx(0.1)
    assert np.isnan(emitted_lag(0.6, 0.5, reads))  # no read after 1.1 s


def test_a_hypothesis_that_changes_back_settles_at_its_last_change():
    hyps = track([(0.3, ("yes",)), (0.7, ("yet",)), (0.8, ("yes",))])
    lag = settle_lags(TIMES, hyps, start_s=0.4, from_s=0.1, horizon_s=1.0)
    assert lag["settle_lag_s"] == pytest.approx(0.4) and lag["count_lag_s"] == pytest.approx(-0.1)
    # the horizon decides the final hypothesis: read at 0.74 s it is "yet"
    assert settle_lags(TIMES, hyps, start_s=0.4, from_s=0.1, horizon_s=0.74)["settle_lag_s"] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="no chunk ends between 1.100 and 1.200 s"):
        settle_lags(TIMES, hyps, start_s=1.1, from_s=1.1, horizon_s=1.2)


def test_summary_percentiles():
    recs = [{"kind": "end" if i % 2 else "hold", "voice": "v", "settle_lag_s": 0.01 * i, "count_lag_s": 0.0,
             "emitted_lag_s": float("nan") if i == 0 else 0.2} for i in range(11)]
    s = summarize(recs)
    assert s["all"]["n_spans"] == 11 and s["all"]["settle_lag_s"]["p50"] == pytest.approx(0.05)
    assert s["all"]["settle_lag_s"]["p90"] == pytest.approx(0.09)
    assert s["all"]["emitted_lag_s"]["frac_le_0.2"] == 1.0  # the nan is left out
    assert s["kind=hold"]["settle_lag_s"]["mean"] == pytest.approx(0.05) and s["voice=v"]["n_spans"] == 11


def test_pocketsphinx_on_a_rendered_turn():
    from vad_turn.engines.stt import PocketsphinxSTT
    from vad_turn.data.dataset import load_turns

    ds = load_turns(require_built("switchboard-rendered"))
    row = next(r for r in ds.select(range(min(len(ds), 200))) if r["n_words"] >= 5 and r["audio_condition"] == "clean")
    recs = turn_records(row, PocketsphinxSTT(), SttLagConfig())
    end = recs[-1]
    assert end["kind"] == "end" and end["n_final_words"] >= 2
    # the hypothesis settles within half a second of the speech end on clean TTS speech (measured: P90 ~0.13 s)
    assert -0.5 <= end["settle_lag_s"] <= 0.5 and end["count_lag_s"] <= end["settle_lag_s"] + 1e-9
    assert end["settle_lag_s"] <= end["emitted_lag_s"] < end["settle_lag_s"] + 0.2 + 1e-6
