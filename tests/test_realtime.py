"""Real-time scheduling of latency-critical groups (``realtime_groups:``)."""

from __future__ import annotations

import logging
import os
import threading

from pipeline.runtime.graph import load_graph
from pipeline.runtime.realtime import RT_PRIORITY, enter_realtime

GRAPH = """\
version: 1
realtime_groups: [live]
nodes:
  - id: src
    kind: nodes.counter.Counter
    group: live
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
