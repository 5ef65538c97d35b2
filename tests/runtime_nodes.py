"""Test-only node kinds used by the runtime tests (importable as tests.runtime_nodes.X)."""

from __future__ import annotations

import struct
import time

import numpy as np

from pipeline.runtime.message import SCHEMA_VERSION, StreamInfo
from pipeline.runtime.node import Source


class MalformedSource(Source):
    """Send one good block, three malformed messages, then good blocks at 100 Hz forever."""

    outputs = ("count",)

    def setup(self) -> None:
        self._n = 0
        self.declare("count", StreamInfo.for_array(f"{self.id}/count", "count", np.int64))

    def poll(self, timeout_s: float) -> bool:
        if self._n == 1:
            topic = f"{self.id}/count".encode()
            bad_schema = struct.pack("<HHIQqqII", SCHEMA_VERSION + 5, 0, 1, 0, 0, 0, 1, 0)
            self._emitter.send_frames([topic, bad_schema, b"\0" * 8])  # other schema version
            self._emitter.send_frames([topic, b"xx"])  # two frames only
            short = struct.pack("<HHIQqqII", SCHEMA_VERSION, 0, 1, 0, 0, 0, 3, 2) + b"{}"
            self._emitter.send_frames([topic, short, b"\0" * 8])  # info JSON lacks fields
        self.emit("count", np.array([self._n], np.int64), t_host=time.monotonic_ns())
        self._n += 1
        time.sleep(min(timeout_s, 0.01))
        return True
