from vad_turn.headline import format_headline, headline_rows


def _op(name, kind, fcr, lat, ratio=None, reachable=True):
    return {"name": name, "kind": kind, "false_cutoff_rate": fcr, "mean_latency_s": lat,
            "ratio_to_vad_only": ratio, "reachable": reachable}


def test_headline_rows_pick_operating_points_slices_and_ratios():
    metrics = {
        "detector": "lexical", "counts": {"n_turns": 10, "n_holds_kept": 7},
        "operating_points": [
            _op("fcr@lat<=0.3s", "min_fcr_at_latency", 0.4, 0.3, 0.8),
            _op("fcr@lat<=0.6s", "min_fcr_at_latency", 0.2, 0.6, 0.5),
            _op("lat@fcr<=5%", "min_latency_at_fcr", None, None, None, reachable=False),
            _op("lat@fcr<=10%", "min_latency_at_fcr", 0.09, 1.2, 0.75),
        ],
        "slices": [{"slice": "turn_length_bin", "value": "1-10", "operating_point": "fcr@lat<=0.6s",
                    "false_cutoff_rate": 0.05}],
    }
    (row,) = headline_rows([{"set": "switchboard:val", "metrics": metrics}])
    assert row["fcr@lat<=0.6s"] == 0.2 and row["fcr@lat<=0.6s:ratio"] == 0.5
    assert row["lat@fcr<=5%"] is None and row["lat@fcr<=10%"] == 1.2
    assert row["fcr@lat<=0.6s (1-10 words)"] == 0.05
    table = format_headline([row])
    assert "| switchboard:val | lexical | 10 | 7 | 40.0% (0.80x) | 20.0% (0.50x) | 5.0% | n/r | 1.20 s (0.75x) |" in table
