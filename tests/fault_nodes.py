"""Test-only node kinds for fault injection (importable as tests.fault_nodes.X)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node, Source
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import RAW_IMU


class CorruptValues(Node):
    """Pass imu.raw through, writing NaN or absurd values into chosen samples of each sensor.

    Sample ``k`` (by its ``counter``) of every sensor is replaced when ``k % every`` is in
    ``nan_at`` (NaN acc and gyr) or ``absurd_at`` (1e6 m/s^2 and 1e4 rad/s).
    """

    inputs = {"raw": Input(accepts=(RAW_IMU,), many=True)}
    outputs = (RAW_IMU,)

    @dataclass(frozen=True)
    class Params:
        every: int = 100
        nan_at: list[int] = field(default_factory=lambda: [10, 11, 12])
        absurd_at: list[int] = field(default_factory=lambda: [50])

    def setup(self) -> None:
        self.replaced = 0
        self._infos: dict = {}

    def on_block(self, port: str, block: Block) -> None:
        data = block.data.copy()
        k = data["counter"] % self.params.every
        nan = np.isin(k, self.params.nan_at)
        absurd = np.isin(k, self.params.absurd_at)
        data["acc"][nan] = np.nan
        data["gyr"][nan] = np.nan
        data["acc"][absurd] = 1e6
        data["gyr"][absurd] = 1e4
        self.stats.extra["replaced"] = self.replaced = self.replaced + int(nan.sum() + absurd.sum())
        info = self._infos.get(block.info.source)
        if info is None:
            info = self._infos[block.info.source] = replace(
                block.info, stream=f"{self.id}/{RAW_IMU}:{block.info.source}")
        self.emit(RAW_IMU, data, t_host=block.t_host, t_sensor=block.header.t_sensor, info=info,
                  gap=block.gap)


class ArrayLog(Node):
    """Append every received sample of one port to a .npy-per-stream folder at the end."""

    inputs = {"in": Input(accepts=("*",), many=True)}

    @dataclass(frozen=True)
    class Params:
        folder: Path

    def setup(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}
        self._gaps = 0

    def on_block(self, port: str, block: Block) -> None:
        self._parts.setdefault(block.info.stream, []).append(np.array(block.data))
        self._gaps += int(block.gap)

    def on_eos(self) -> None:
        self._write()

    def teardown(self) -> None:
        self._write()

    def _write(self) -> None:
        folder = self.params.folder
        folder.mkdir(parents=True, exist_ok=True)
        for stream, parts in self._parts.items():
            np.save(folder / (stream.replace("/", "__").replace(":", "_") + ".npy"),
                    np.concatenate(parts))
        (folder / "gaps.json").write_text(json.dumps({"gaps": self._gaps}))


class CrashAfter(Source):
    """Count at ``rate_hz`` on ``count`` and raise after ``after`` samples (a node that dies)."""

    outputs = ("count",)

    @dataclass(frozen=True)
    class Params:
        after: int = 20
        rate_hz: float = 100.0
        total: int = 0  # end the stream after this many samples; 0 = endless
        marker: str = ""  # file made before crashing; when it exists the node does not crash

    def setup(self) -> None:
        self._n = 0
        self._crash = not (self.params.marker and Path(self.params.marker).exists())
        self.declare("count", StreamInfo.for_array(f"{self.id}/count", "count", np.int64,
                                                   rate_hz=self.params.rate_hz))

    def poll(self, timeout_s: float) -> bool:
        if self.params.total and self._n >= self.params.total:
            return False
        if self._crash and self._n >= self.params.after:
            if self.params.marker:
                Path(self.params.marker).touch()
            raise RuntimeError(f"node '{self.id}': crashing on purpose after {self._n} samples")
        self.emit("count", np.array([self._n], np.int64), t_host=time.monotonic_ns())
        self._n += 1
        time.sleep(min(timeout_s, 1.0 / self.params.rate_hz))
        return True


class HangOnStop(Source):
    """Count at ``rate_hz`` on ``count``; its teardown never returns (a shutdown that hangs)."""

    outputs = ("count",)

    @dataclass(frozen=True)
    class Params:
        rate_hz: float = 100.0

    def setup(self) -> None:
        self._n = 0
        self.declare("count", StreamInfo.for_array(f"{self.id}/count", "count", np.int64,
                                                   rate_hz=self.params.rate_hz))

    def poll(self, timeout_s: float) -> bool:
        self.emit("count", np.array([self._n], np.int64), t_host=time.monotonic_ns())
        self._n += 1
        time.sleep(min(timeout_s, 1.0 / self.params.rate_hz))
        return True

    def teardown(self) -> None:
        threading.Event().wait()  # blocks for ever
