"""Base class of the bleak IMU sources: several sensors, one loop thread, events drained by poll."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.ble.connection import BleLink, BleLoop, DeviceProfile, LinkEvent, load_backend
from drivers.imu_sample import ImuSample
from drivers.raw_block import raw_block
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import RAW_IMU, raw_imu_info

STOP_TIMEOUT_S = 1.2  # on_stop budget: the supervisor kills a worker after 1.8 s


@dataclass(frozen=True)
class BleSensor:
    """One BLE sensor of a graph: `name` is the stream source (chain IMU site), `address` its MAC."""

    name: str
    address: str


def check_sensors(sensors: list[BleSensor]) -> None:
    """Raise ValueError unless there is at least one sensor and names/addresses are unique."""
    names = [s.name for s in sensors]
    addresses = [s.address.upper() for s in sensors]
    if not names:
        raise ValueError("sensors: list at least one {name, address}")
    if len(set(names)) != len(names) or len(set(addresses)) != len(addresses):
        raise ValueError(f"sensors: names and addresses must be unique, got {names} / {addresses}")


class SensorState:
    """Per-sensor bookkeeping of a BLE source: decoder, stream info, gap flag, counters."""

    def __init__(self, sensor: BleSensor, decoder: Any, info: StreamInfo) -> None:
        self.sensor = sensor
        self.decoder = decoder
        self.info = info
        self.gap_pending = False
        self.ever_connected = False
        self.reconnects = 0
        self.samples_lost = 0  # estimated from device-clock jumps (never filled)
        self.last_t_sensor = -1  # ns, device clock of the last decoded sample
        self.battery_pct: int | None = None
        self.charging: bool | None = None
        self.pending: list[tuple[ImuSample, int, bool]] = []  # sample, t_host ns, gap before it


class BleImuSource(Source):
    """Shared node logic of :class:`MovellaDot` and :class:`WitMotionBle` (not used directly).

    Subclasses set ``device_label`` and implement :meth:`make_profile`, :meth:`make_decoder`,
    :meth:`decode` (notification -> samples) and optionally :meth:`on_battery`.
    """

    outputs: tuple[str, ...] = (RAW_IMU,)
    device_label = "BLE IMU"

    # -- to implement -------------------------------------------------------------------------
    def make_profile(self, sensor: BleSensor) -> DeviceProfile:
        """The device's start/stop sequence for one sensor."""
        raise NotImplementedError

    def make_decoder(self, sensor: BleSensor) -> Any:
        """A protocol decoder with ``feed(bytes) -> list[ImuSample]`` and ``stats``."""
        raise NotImplementedError

    def decode(self, state: SensorState, event: LinkEvent) -> tuple[list[ImuSample], int]:
        """Decode a data event; return (samples, samples lost before them by the device clock)."""
        raise NotImplementedError

    def on_battery(self, state: SensorState, data: bytes) -> None:
        """Battery notification or read of one sensor."""

    def stream_meta(self) -> dict:
        """Extra StreamInfo meta of every sensor stream."""
        return {}

    @classmethod
    def sensors_out(cls, params: Any, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The configured sensors, named by the graph's ``sensors:`` map (address or name)."""
        return [context.site(s.name, s.address) for s in params.sensors]

    # -- node lifecycle -----------------------------------------------------------------------
    def setup(self) -> None:
        p = self.params
        self._backend = load_backend(p.backend)
        self._events: queue.Queue[LinkEvent] = queue.Queue()
        self._states = {
            s.name: SensorState(s, self.make_decoder(s), raw_imu_info(
                f"{self.id}/{RAW_IMU}:{self.context.site(s.name, s.address)}",
                self.context.site(s.name, s.address), float(p.rate_hz),
                device=self.device_label, address=s.address, sensor_id=s.name,
                **self.stream_meta()))
            for s in p.sensors}
        self._loop: BleLoop | None = None
        self._links: dict[str, BleLink] = {}
        self._update_stats()

    def on_start(self) -> None:
        self._loop = BleLoop(self.id)
        self._loop.submit(self._start_links()).result(5.0)

    async def _start_links(self) -> None:
        lock = asyncio.Lock()
        for s in self.params.sensors:
            link = BleLink(s.name, s.address, self._backend, self.make_profile(s), self._events,
                           lock, reconnect_max_s=self.params.reconnect_max_s,
                           scan_timeout_s=self.params.scan_timeout_s, log=self.log)
            self._links[s.name] = link
            link.start()

    def submit(self, coro: Any) -> concurrent.futures.Future:
        """Run a coroutine on the node's BLE loop (device commands from poll)."""
        return self._loop.submit(coro)

    def poll(self, timeout_s: float) -> bool:
        try:
            events = [self._events.get(timeout=timeout_s)]
        except queue.Empty:
            self._update_stats()
            return True
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                break
        self._handle(events)
        self._update_stats()
        return True

    def _handle(self, events: list[LinkEvent]) -> None:
        for ev in events:
            st = self._states[ev.sensor]
            if ev.kind == "data":
                samples, lost = self.decode(st, ev)
                for i, s in enumerate(samples):
                    gap = (lost > 0 and i == 0) or st.gap_pending
                    st.gap_pending = False
                    t = ev.t_host_ns - int((len(samples) - 1 - i) * 1e9 / self.params.rate_hz)
                    st.pending.append((s, t, gap))
                if lost > 0:
                    st.samples_lost += lost
                    self.log.warning("%s: device clock jumped: about %d samples lost (not filled)",
                                     ev.sensor, lost)
            elif ev.kind == "battery":
                self.on_battery(st, ev.data)
            elif ev.kind == "connected":
                if st.ever_connected:
                    st.reconnects += 1
                    st.gap_pending = True
                st.ever_connected = True
            elif ev.kind == "disconnected":
                st.gap_pending = True
            elif ev.kind == "failed":
                raise RuntimeError(f"node '{self.id}': sensor '{ev.sensor}' "
                                   f"({st.sensor.address}): {ev.data.decode()}; this is not a "
                                   "connection problem (those are retried): see the log above")
        for st in self._states.values():
            self._flush(st)

    def _flush(self, st: SensorState) -> None:
        """Emit a sensor's pending samples, one block per run without an interior gap."""
        pending, st.pending = st.pending, []
        start = 0
        for i in range(1, len(pending) + 1):
            if i == len(pending) or pending[i][2]:
                part = pending[start:i]
                out = raw_block([s for s, _, _ in part], np.array([t for _, t, _ in part], np.int64))
                self.emit(RAW_IMU, out, t_host=int(out["t_host"][0]),
                          t_sensor=int(out["t_sensor"][0]), info=st.info, gap=part[0][2])
                start = i

    def _update_stats(self) -> None:
        sensors = {}
        for name, st in self._states.items():
            link = self._links.get(name)
            sensors[name] = dict(
                st.decoder.stats.as_dict(), connected=bool(link and link.connected),
                reconnects=st.reconnects, connect_failures=link.failures if link else 0,
                samples_lost=st.samples_lost, battery_pct=st.battery_pct, charging=st.charging)
        self.stats.extra["sensors"] = sensors

    def on_stop(self) -> None:
        if self._loop is None:
            return
        t0 = time.monotonic()

        async def close_all() -> None:
            await asyncio.gather(*(link.close(STOP_TIMEOUT_S / 2) for link in self._links.values()))

        try:
            self.submit(close_all()).result(STOP_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            self.log.warning("BLE sensors did not stop within %.1f s; disconnecting anyway",
                             STOP_TIMEOUT_S)
        self.poll(0.0)  # emit what arrived before the stop
        self.log.info("stopped %d sensor(s) in %.2f s", len(self._links), time.monotonic() - t0)

    def teardown(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
