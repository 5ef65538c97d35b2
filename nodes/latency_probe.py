"""LatencyProbe: a sink that measures end-to-end latency and checks frame continuity of a stream."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.runtime.message import Block
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import ARRIVAL

_MAX_KEPT = 2_000_000  # latencies kept for the report (20000 s at 100 Hz)


class _LatencyLog:
    """Latencies (int64 ns) in a growing array, up to _MAX_KEPT."""

    def __init__(self) -> None:
        self.values = np.empty(1024, np.int64)
        self.n = 0

    def add(self, ns: int) -> None:
        """Keep one latency, ns."""
        if self.n == _MAX_KEPT:
            return
        if self.n == len(self.values):
            self.values = np.concatenate([self.values, np.empty(len(self.values), np.int64)])
        self.values[self.n] = ns
        self.n += 1

    def kept(self) -> np.ndarray:
        """The latencies so far, int64 ns."""
        return self.values[:self.n]

    def summary(self, prefix: str) -> dict:
        """Count, p50, p99 and max in ms, keys starting with ``prefix``."""
        lat = self.kept() / 1e6
        out = {f"{prefix}count": int(lat.size)}
        if lat.size:
            out.update({f"{prefix}ms_p50": float(np.percentile(lat, 50)),
                        f"{prefix}ms_p99": float(np.percentile(lat, 99)),
                        f"{prefix}ms_max": float(lat.max())})
        return out


class LatencyProbe(Node):
    """Record, per message, receive time minus ``t_host`` and check the sample times are regular.

    Latency is ``time.monotonic_ns()`` at receipt minus the block's ``t_host``
    (int64 ns, first sample, as passed through the graph: for results of
    ``imu.frame`` that is the frame's grid time), so at the end of a graph it is the
    end-to-end latency including the last bus hop. With the optional ``arrival``
    input wired to sync's ``frame.arrival`` (sync param ``arrival: true``), the
    latency is also taken from the receive time of the sensor message that
    completed each frame: the time from a packet arriving at a driver to the
    result (``latency_from_arrival_*`` in the report).
    Continuity: consecutive sample times (``data["t_host"]``) must step by one
    nominal period (``info.rate_hz``); larger steps count as missing samples.

    Ports:
        in: any stream whose samples have a ``t_host`` field (chain.pose, chain.state, imu.frame).
        arrival: frame.arrival of the sync that made the frames (optional).

    The report (``report`` param, JSON) has samples, messages, gaps flagged by the
    runtime, missing samples found from the time stamps, latency p50/p99/max in ms and,
    if ``latencies`` is set, every latency (ns) in an ``.npy`` file beside it
    (``<report>.npy``; from arrival: ``<report>.arrival.npy``).
    """

    inputs = {"in": Input(accepts=("*",)),
              "arrival": Input(accepts=(ARRIVAL,), required=False)}

    @dataclass(frozen=True)
    class Params:
        report: Path  # JSON report, written at end of stream and at teardown
        latencies: bool = True  # also write every latency (int64 ns) to <report>.npy
        skip_s: float = 0.0  # ignore the latencies of the first skip_s seconds (warm-up)

    def setup(self) -> None:
        self._lat = _LatencyLog()  # from t_host
        self._lat_arrival = _LatencyLog()  # from the completing message's receive time
        self._arrivals: dict[int, int] = {}  # frame t_host -> completing message's receipt, ns
        self._early: dict[int, int] = {}  # frame t_host -> our receipt of a result without one
        self._first_ns: int | None = None
        self._skip_ns = int(self.params.skip_s * 1e9)
        self._r = {"samples": 0, "messages": 0, "gaps_flagged": 0, "missing_samples": 0,
                   "irregular_steps": 0, "unmatched_arrivals": 0}
        self._last_t: int | None = None
        self._written = False
        self._wired_arrival = bool(self.context.sources.get("arrival"))

    def on_block(self, port: str, block: Block) -> None:
        now = time.monotonic_ns()
        if port == "arrival":
            self._note_arrivals(block.data)
            return
        r = self._r
        r["messages"] += 1
        r["samples"] += block.n
        r["gaps_flagged"] += int(block.gap)
        if block.n == 0:
            return
        if self._first_ns is None:
            self._first_ns = now
        if now - self._first_ns >= self._skip_ns:
            self._lat.add(now - block.t_host)
            if self._wired_arrival:
                self._from_arrival(block.t_host, now)
        self._check_steps(block)

    def _from_arrival(self, t_host: int, now: int) -> None:
        """Latency of a result from its frame's completing message, now or when that comes."""
        arrival = self._arrivals.pop(t_host, None)
        if arrival is None:  # over the bus the arrival record may come after the result
            self._early[t_host] = now
            if len(self._early) > 10_000:
                self._r["unmatched_arrivals"] += len(self._early)
                self._early.clear()
        elif arrival >= 0:  # -1: the frame was completed by the end of the stream
            self._lat_arrival.add(now - arrival)

    def _note_arrivals(self, records: np.ndarray) -> None:
        """Remember each frame's completing-message receive time until its result comes."""
        if len(self._arrivals) > 100_000:  # results that never came (dropped): forget them
            self._arrivals.clear()
        for t, arrival in zip(records["t_host"].tolist(), records["t_arrival"].tolist()):
            received = self._early.pop(t, None)
            if received is None:
                self._arrivals[t] = arrival
            elif arrival >= 0:
                self._lat_arrival.add(received - arrival)

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
        unmatched = self._r["unmatched_arrivals"] + len(self._early)
        return {**self._r, "unmatched_arrivals": unmatched, **self._lat.summary("latency_"),
                **self._lat_arrival.summary("latency_from_arrival_")}

    def on_eos(self) -> None:
        self._write()

    def teardown(self) -> None:
        if not self._written:
            self._write()

    def _write(self) -> None:
        path = Path(self.params.report)
        if self.params.latencies:
            np.save(path.with_suffix(".npy"), self._lat.kept())
            if self._lat_arrival.n:
                np.save(path.with_suffix(".arrival.npy"), self._lat_arrival.kept())
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.summary(), indent=1))
        tmp.replace(path)
        self._written = True
