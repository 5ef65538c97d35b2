"""Counter: a test source that emits consecutive integers, for runtime tests and the bus bench."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import Source


class Counter(Source):
    """Emit the integers 0, 1, 2, ... as int64 samples on ``count``, in blocks.

    Ports:
        count (out): (n,) int64 samples, value = sample index; ``t_host`` ns at emission.
    """

    outputs = ("count",)

    @dataclass(frozen=True)
    class Params:
        total: int = 1000  # samples to emit before ending the stream; 0 = endless
        block: int = 1  # samples per message
        rate_hz: float = 0.0  # sample rate; 0 = as fast as possible

        def __post_init__(self) -> None:
            if self.block < 1 or self.total < 0 or self.rate_hz < 0:
                raise ValueError("block must be >= 1, total and rate_hz >= 0")

    def setup(self) -> None:
        self._next = 0
        self._t0 = 0.0
        self.declare("count", StreamInfo.for_array(f"{self.id}/count", "count", np.int64,
                                                   rate_hz=self.params.rate_hz,
                                                   channels=("index",), units=("1",)))

    def on_start(self) -> None:
        self._t0 = time.monotonic()

    def poll(self, timeout_s: float) -> bool:
        p = self.params
        deadline = time.monotonic() + timeout_s
        while p.total == 0 or self._next < p.total:
            n = p.block if p.total == 0 else min(p.block, p.total - self._next)
            if p.rate_hz > 0:
                due = self._t0 + (self._next + n) / p.rate_hz
                wait = due - time.monotonic()
                if wait > 0:
                    if due > deadline:
                        time.sleep(max(deadline - time.monotonic(), 0))
                        return True
                    time.sleep(wait)
            self.emit("count", np.arange(self._next, self._next + n, dtype=np.int64),
                      t_host=time.monotonic_ns())
            self._next += n
            if time.monotonic() >= deadline:
                return True
        return False
