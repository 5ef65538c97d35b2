"""Soak, short version: 60 simulated seconds of 10 IMUs through the processing graph
(tools/soak.py)."""

from __future__ import annotations

import pytest

from tools.soak import RSS_GOAL_MB, run_soak


@pytest.mark.slow
def test_sixty_seconds_of_ten_imus_arrive_complete_without_loss_or_memory_growth(tmp_path):
    s = run_soak(60.0, n_imu=10, speed=10.0, block=10, warmup_s=3.0, work=tmp_path)
    assert s["exit"] == 0
    assert s["samples"] == s["samples_expected"] == 6000  # every frame reached the end
    assert s["missing_samples"] == 0  # pose time stamps step by exactly one period
    for nid, node in s["nodes"].items():
        assert node["missed"] == 0 and node["drops"] == 0, (nid, node)  # no lost messages
        assert node["bad_messages"] == 0 and node["errors"] == 0 and node["restarts"] == 0
    assert s["gaps_per_node"]["sync"] == 0  # no chunk boundary of the simulator in 60 s
    assert s["nodes"]["observer"]["held_frames"] <= 60  # <= 1 %: frames with a MISSING sensor
    assert s["rss_growth_max_mb"] is not None and s["rss_growth_max_mb"] < RSS_GOAL_MB
    # the graph runs at 10x real time; keeping up with real time (1x) is the contract, so this
    # holds with a 10x margin on a loaded 2-core CI machine (the throughput itself is measured
    # by tools/soak.py and BENCHMARKS.md, not asserted here)
    assert s["real_time_multiple"] > 1.0
