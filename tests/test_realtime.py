"""Real-time scheduling of latency-critical groups (``realtime_groups:``)."""

from __future__ import annotations

import logging
import os
import threading
import time

import pytest

from pipeline.runtime.graph import load_graph
from pipeline.runtime.realtime import (
    CPU_LATENCY_DEVICE,
    RT_PRIORITY,
    CpuWakeLatency,
    current_cpu_wake_latency_us,
    enter_realtime,
    hold_cpu_awake,
)
from pipeline.runtime.supervisor import Supervisor

GRAPH = """\
version: 1
realtime_groups: [live]
nodes:
  - id: src
    kind: nodes.counter.Counter
    group: live
    params: {total: 0, rate_hz: 100}
  - id: sink
    kind: relay
    group: other
    inputs: {in: src/count}
"""


def _in_thread(fn):
    out = {}
    t = threading.Thread(target=lambda: out.update(result=fn()))
    t.start()
    t.join()
    return out["result"]


def test_enter_realtime_sets_fifo_for_the_calling_thread_only(caplog):
    if not hasattr(os, "sched_setscheduler"):  # no scheduling API: a warning, normal priority
        with caplog.at_level(logging.WARNING):
            assert not enter_realtime("node_x")
        assert "node_x" in caplog.text and "not available" in caplog.text
        return
    before = os.sched_getscheduler(0)

    def switch() -> tuple[bool, int, int]:
        ok = enter_realtime("node_x")
        return ok, os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    with caplog.at_level(logging.WARNING):
        ok, policy, priority = _in_thread(switch)
    if os.geteuid() == 0:  # permitted: the thread runs FIFO at our priority
        assert ok and policy == os.SCHED_FIFO and priority == RT_PRIORITY
    else:  # refused: a warning that names the node and the fix, normal priority
        assert not ok and policy == before
        assert "node_x" in caplog.text and "rtprio" in caplog.text
    assert os.sched_getscheduler(0) == before  # other threads keep their policy


def test_realtime_groups_are_read_from_the_graph(write_graph):
    graph = load_graph(write_graph(GRAPH))
    assert graph.realtime_groups == {"live"}


def _may_request_wake_latency() -> bool:
    """True where this process may write the PM QoS file (Linux, root or a udev rule)."""
    return os.access(CPU_LATENCY_DEVICE, os.W_OK) and current_cpu_wake_latency_us() is not None


def test_a_wake_latency_request_holds_until_released():
    if not _may_request_wake_latency():  # no PM QoS here, or not ours to write: refused loudly
        with pytest.raises(OSError):
            CpuWakeLatency(0)
        return
    before = current_cpu_wake_latency_us()
    with CpuWakeLatency(0):
        assert current_cpu_wake_latency_us() == 0
    assert current_cpu_wake_latency_us() == before


def test_hold_cpu_awake_warns_with_the_fix_where_it_cannot(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        assert not hold_cpu_awake("node_x", tmp_path / "absent")
        assert not hold_cpu_awake("node_x", tmp_path)  # a folder: the kernel refuses the write
        assert not hold_cpu_awake("node_y", tmp_path)  # the process was told once: no repeat
    absent, refused = (r.getMessage() for r in caplog.records)
    assert "node_x" in absent and "does not exist" in absent
    assert "node_x" in refused and "cannot keep the CPUs awake" in refused and "udev" in refused


def test_a_realtime_group_keeps_the_cpus_awake_while_it_runs(write_graph):
    """Where the kernel permits it, the PM QoS target reads 0 while the group runs and its old
    value after; where it does not, the graph runs on at normal latency (warn, not fail)."""
    permitted = _may_request_wake_latency()
    before = current_cpu_wake_latency_us()
    sup = Supervisor(load_graph(write_graph(GRAPH)))
    sup.start()
    seen = []

    def done() -> bool:
        seen.append(current_cpu_wake_latency_us())
        arrived = sup.snapshot()["nodes"]["sink"].get("samples_in", 0) >= 50
        return arrived and (seen[-1] == 0 or not permitted)

    try:
        t0 = time.monotonic()
        sup.run(until=lambda: done() or time.monotonic() - t0 > 30)
        ran = sup.snapshot()["nodes"]["sink"].get("samples_in", 0)
    finally:
        sup.stop()
    assert ran > 0, "the realtime group's samples never reached the sink"
    if permitted:
        assert seen[-1] == 0, f"the PM QoS target stayed {seen[-1]} us while the graph ran"
    else:
        assert set(seen) == {before}  # refused: nothing changed, and the graph ran anyway
    assert current_cpu_wake_latency_us() == before  # the worker's exit ended the request
