"""LatencyProbe: a sink that measures end-to-end latency and checks frame continuity of a stream."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.message import Block
from pipeline.node import Node
from pipeline.ports import Input

_MAX_KEPT = 2_000_000  # latencies kept for the report (20000 s at 100 Hz)


class LatencyProbe(Node):
    """Record, per message, receive time minus ``t_host`` and check the sample times are regular.

    Latency is ``time.monotonic_ns()`` at receipt minus the block's ``t_host``
    (int64 ns, first sample; the driver's receive time as passed through the graph),
    so at the end of a graph it is the end-to-end latency including the last bus hop.
    Continuity: consecutive sample times (``data["t_host"]``) must step by one
    nominal period (``info.rate_hz``); larger steps count as missing samples.

    Ports:
        in: any stream whose samples have a ``t_host`` field (chain.pose, chain.state, imu.frame).

    The report (``report`` param, JSON) has samples, messages, gaps flagged by the
    runtime, missing samples found from the time stamps, latency p50/p99/max in ms and,
    if ``latencies`` is set, every latency (ns) in an ``.npy`` file beside it.
    """

    inputs = {"in": Input(accepts=("*",))}

    @dataclass(frozen=True)
    class Params:
        report: Path  # JSON report, written at end of stream and at teardown
        latencies: bool = True  # also write every latency (int64 ns) to <report>.npy
        skip_s: float = 0.0  # ignore the latencies of the first skip_s seconds (warm-up)

    def setup(self) -> None:
        self._lat = np.empty(1024, np.int64)
        self._n_lat = 0
        self._first_ns: int | None = None
        self._skip_ns = int(self.params.skip_s * 1e9)
        self._r = {"samples": 0, "messages": 0, "gaps_flagged": 0, "missing_samples": 0,
                   "irregular_steps": 0}
        self._last_t: int | None = None
        self._written = False

    def on_block(self, port: str, block: Block) -> None:
        now = time.monotonic_ns()
        r = self._r
        r["messages"] += 1
        r["samples"] += block.n
        r["gaps_flagged"] += int(block.gap)
        if block.n == 0:
            return
        if self._first_ns is None:
            self._first_ns = now
        if now - self._first_ns >= self._skip_ns and self._n_lat < _MAX_KEPT:
            if self._n_lat == len(self._lat):
                self._lat = np.concatenate([self._lat, np.empty(len(self._lat), np.int64)])
            self._lat[self._n_lat] = now - block.t_host
            self._n_lat += 1
        self._check_steps(block)

    def _check_steps(self, block: Block) -> None:
        """Count missing samples from jumps in ``t_host`` (ns) beyond 1.5 nominal periods."""
        rate = block.info.rate_hz
        t = block.data["t_host"]
        if rate <= 0:
            return
        period = 1e9 / rate
        steps = np.diff(t) if self._last_t is None else np.diff(t, prepend=self._last_t)
        self._last_t = int(t[-1])
        bad = np.abs(steps - period) > 0.5 * period
        if bad.any():
            self._r["irregular_steps"] += int(bad.sum())
            self._r["missing_samples"] += int(np.maximum(np.rint(steps[bad] / period) - 1,
                                                         0).sum())

    def summary(self) -> dict:
        """Counts plus latency p50/p99/max (ms) of the kept latencies."""
        lat = self._lat[:self._n_lat] / 1e6
        out = dict(self._r, latency_count=int(lat.size))
        if lat.size:
            out.update(latency_ms_p50=float(np.percentile(lat, 50)),
                       latency_ms_p99=float(np.percentile(lat, 99)),
                       latency_ms_max=float(lat.max()))
        return out

    def on_eos(self) -> None:
        self._write()

    def teardown(self) -> None:
        if not self._written:
            self._write()

    def _write(self) -> None:
        path = Path(self.params.report)
        if self.params.latencies:
            np.save(path.with_suffix(".npy"), self._lat[:self._n_lat])
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.summary(), indent=1))
        tmp.replace(path)
        self._written = True
