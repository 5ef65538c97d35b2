"""Where replay time goes: replay -> sync -> filter -> recorder in one process, no bus, profiled.

Used by ``imuflow bench replay --profile N``. Nodes are wired by an emitter that
hands each emitted block straight to the subscribers' ``on_block`` (arrays made
read-only as on the bus), so the figures are the nodes' own CPU cost without
ZeroMQ, process scheduling or other nodes competing. Each node's CPU seconds
exclude the time spent in the nodes it feeds. CPU time is the process's: the
recorder's chunk compression runs in a helper thread and is counted against
whichever node runs meanwhile.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from drivers.replay import Replay
from nodes.filter import Filter
from nodes.recorder import Recorder
from nodes.sync import Sync
from pipeline.runtime.message import Block, Flag, Header, StreamInfo

RATE_HZ = 100.0


class _Ledger:
    """CPU seconds per node, a caller's share excluding the nodes it calls."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self._stack: list[str] = []

    def call(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = time.process_time()
        self._stack.append(name)
        try:
            return fn(*args)
        finally:
            self._stack.pop()
            dt = time.process_time() - t0
            self.cpu[name] += dt
            if self._stack:
                self.cpu[self._stack[-1]] -= dt


class _Wire:
    """Emitter that delivers blocks to (node, port) targets directly."""

    def __init__(self, ledger: _Ledger, targets: list[tuple[str, Any, str]]) -> None:
        self._ledger, self._targets = ledger, targets
        self._seq: dict[str, int] = {}

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int:
        seq = self._seq.get(info.stream, 0)
        self._seq[info.stream] = seq + 1
        if data is None or flags & (Flag.EOS | Flag.JSON):
            return seq
        arr = np.ascontiguousarray(data).view()
        arr.flags.writeable = False
        block = Block(topic=topic, header=Header(info=info, seq=seq, t_host=t_host,
                                                 t_sensor=t_sensor, n=len(arr), flags=flags),
                      data=arr)
        for name, node, port in self._targets:
            self._ledger.call(name, node.on_block, port, block)
        return seq


def profile_chain(session: Path, folder: Path, imus: int, top: int,
                  merge_s: float = -1.0) -> dict[str, float]:
    """Run the chain on ``session`` under cProfile; print the top functions; CPU s per node."""
    ledger = _Ledger()
    names = [f"imu{i:02d}" for i in range(imus)]
    rec = Recorder.create("recorder", path=str(folder / "profile_out.mcap"))
    sync = Sync("sync", Sync.Params(imus=names, rate_hz=RATE_HZ))
    filt = Filter("filter", Filter.Params())
    filt.setup()  # the filter loads its compiled kernel here, outside the measurement
    replay = Replay("replay", Replay.Params(path=session, speed=0, merge_s=merge_s))
    filt._emitter = _Wire(ledger, [("recorder", rec, "in")])
    sync._emitter = _Wire(ledger, [("filter", filt, "frame")])
    replay._emitter = _Wire(ledger, [("recorder", rec, "in"), ("sync", sync, "raw")])
    for node in (sync, replay):
        node.setup()
    prof = cProfile.Profile()
    wall0 = time.perf_counter()
    prof.enable()
    replay.on_start()
    while ledger.call("replay", replay.poll, 0.5):
        pass
    ledger.call("sync", sync.on_eos)
    ledger.call("filter", filt.on_eos)
    ledger.call("recorder", rec.on_eos)
    prof.disable()
    wall = time.perf_counter() - wall0
    for node in (replay, sync, filt, rec):
        node.teardown()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(out.getvalue(), file=sys.stderr)
    result = {k: round(v, 2) for k, v in sorted(ledger.cpu.items())}
    result["wall_s_under_profiler"] = round(wall, 2)
    return result
