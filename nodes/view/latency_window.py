"""End-to-end latency of the poses the viewer receives: now minus the sample's t_host."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class LatencyWindow:
    """Keeps the last ``size`` latencies (ns) under a lock; :meth:`p99_ms` summarises them."""

    def __init__(self, size: int = 300) -> None:
        self._lock = threading.Lock()
        self._ns: deque[int] = deque(maxlen=size)

    def record(self, t_host: int, now_ns: int | None = None) -> None:
        """Add one sample's latency: ``now_ns`` (default: monotonic now) minus ``t_host`` ns."""
        if t_host > 0:
            with self._lock:
                self._ns.append((time.monotonic_ns() if now_ns is None else now_ns) - t_host)

    def p99_ms(self) -> float | None:
        """99th percentile latency in ms over the window, None before the first sample."""
        with self._lock:
            if not self._ns:
                return None
            arr = np.fromiter(self._ns, np.float64, len(self._ns))
        return float(np.percentile(arr, 99)) / 1e6
