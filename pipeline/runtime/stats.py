"""Per-node statistics published on the ``status`` topic about once a second."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class NodeStats:
    """Counters of one node; rates and latencies are computed per reporting interval.

    Latency is the age of the data when this node publishes it: now minus the
    ``t_host`` of the block's first sample (int64 ns, monotonic), so at the end
    of the graph it is the end-to-end latency from the driver's receive time.
    """

    blocks_in: int = 0
    samples_in: int = 0
    blocks_out: int = 0
    samples_out: int = 0
    gaps: int = 0  # input messages flagged or detected as following lost data
    missed: int = 0  # input messages known to be lost (sequence gaps)
    drops: int = 0  # messages dropped by drop_oldest input queues
    bad_messages: int = 0  # malformed messages received and skipped
    errors: int = 0
    busy_ns: int = 0  # wall time in on_block, without direct consumers' share (ns)
    extra: dict[str, Any] = field(default_factory=dict)  # node-specific (parser counters, model)
    _lat_ns: list[int] = field(default_factory=list)
    _last_t: float = field(default_factory=time.monotonic)
    _last_in: int = 0
    _last_out: int = 0
    _last_busy: int = 0

    def record_in(self, n: int) -> None:
        """Count an input block of ``n`` samples."""
        self.blocks_in += 1
        self.samples_in += n

    def record_out(self, n: int, t_host: int, now_ns: int) -> None:
        """Count an output block of ``n`` samples whose first sample was received at ``t_host``."""
        self.blocks_out += 1
        self.samples_out += n
        if t_host > 0 and len(self._lat_ns) < 100_000:
            self._lat_ns.append(now_ns - t_host)

    def snapshot(self) -> dict[str, Any]:
        """Return the counters and this interval's rates (samples/s) and latency (ms)."""
        now = time.monotonic()
        dt = max(now - self._last_t, 1e-9)
        lat = np.asarray(self._lat_ns, dtype=np.float64) / 1e6
        snap = {
            "blocks_in": self.blocks_in, "samples_in": self.samples_in,
            "blocks_out": self.blocks_out, "samples_out": self.samples_out,
            "rate_in_hz": (self.samples_in - self._last_in) / dt,
            "rate_out_hz": (self.samples_out - self._last_out) / dt,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
            "latency_ms_max": float(lat.max()) if lat.size else None,
            "gaps": self.gaps, "missed": self.missed, "drops": self.drops,
            "bad_messages": self.bad_messages, "errors": self.errors,
            "busy_percent": round(100.0 * (self.busy_ns - self._last_busy) / 1e9 / dt, 2),
            **self.extra,
        }
        self._last_t, self._last_in, self._last_out = now, self.samples_in, self.samples_out
        self._last_busy = self.busy_ns
        self._lat_ns.clear()
        return snap
