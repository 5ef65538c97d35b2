"""LatencyProbe: latency from the frame time and from the completing packet's arrival."""

from __future__ import annotations

import json
import time

import numpy as np

from nodes.latency_probe import LatencyProbe
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import ARRIVAL, ARRIVAL_DTYPE, POSE, pose_dtype
from pipeline.runtime.testing import make_block

PERIOD = 10_000_000  # ns


def _probe(tmp_path, wired: bool) -> LatencyProbe:
    sources = {"in": ["fk/chain.pose"], **({"arrival": ["sync/frame.arrival"]} if wired else {})}
    return LatencyProbe.create("probe", context=GraphContext(sources=sources),
                               report=tmp_path / "probe.json")


def _pose(t: int) -> np.ndarray:
    out = np.zeros(1, pose_dtype(2))
    out["t_host"] = t
    return out


def test_latency_from_arrival_pairs_each_result_with_its_frame(tmp_path):
    probe = _probe(tmp_path, wired=True)
    pose_info = StreamInfo.for_array("fk/chain.pose", POSE, pose_dtype(2), rate_hz=100.0)
    arr_info = StreamInfo.for_array("sync/frame.arrival", ARRIVAL, ARRIVAL_DTYPE, rate_hz=100.0)
    now = time.monotonic_ns()
    grid = now - 50_000_000 + np.arange(3) * PERIOD  # frame times 50, 40, 30 ms ago
    arrival = np.zeros(3, ARRIVAL_DTYPE)
    arrival["t_host"] = grid
    arrival["t_arrival"] = grid + 4_000_000  # each completed 4 ms after its frame time
    probe.on_block("arrival", make_block(arr_info, arrival[:2], t_host=int(grid[0])))
    for g in grid:  # the third frame's arrival record comes after its result (bus order)
        probe.on_block("in", make_block(pose_info, _pose(int(g)), t_host=int(g)))
    probe.on_block("arrival", make_block(arr_info, arrival[2:], t_host=int(grid[2])))
    probe.on_block("in", make_block(pose_info, _pose(int(grid[-1]) + PERIOD),
                                    t_host=int(grid[-1]) + PERIOD))  # no arrival for this one
    probe.on_eos()
    report = json.loads((tmp_path / "probe.json").read_text())
    from_frame = np.load(tmp_path / "probe.npy")
    from_arrival = np.load(tmp_path / "probe.arrival.npy")
    assert report["latency_count"] == 4 and report["latency_from_arrival_count"] == 3
    assert report["unmatched_arrivals"] == 1 and report["missing_samples"] == 0
    np.testing.assert_array_equal(from_frame[:3] - from_arrival, 4_000_000)
    assert (from_arrival > 0).all() and from_arrival.max() < 1e9


def test_without_the_arrival_input_nothing_is_unmatched(tmp_path):
    probe = _probe(tmp_path, wired=False)
    info = StreamInfo.for_array("fk/chain.pose", POSE, pose_dtype(2), rate_hz=100.0)
    t = time.monotonic_ns() - PERIOD
    probe.on_block("in", make_block(info, _pose(t), t_host=t))
    summary = probe.summary()
    assert summary["latency_count"] == 1 and summary["latency_from_arrival_count"] == 0
    assert summary["unmatched_arrivals"] == 0
