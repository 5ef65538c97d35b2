"""Serial IMU source: an MTi (Xbus), a WitMotion WT901 or a DIY board ($IMU lines) on one port.

The port is a device path (``/dev/ttyUSB0``, ``/dev/serial/by-id/...``, ``COM3``)
or any pyserial URL (``loop://``, ``socket://host:port``, ``rfc2217://...``).
Reads use a short timeout; the protocol parser (``drivers/serial``) skips and
counts corrupt bytes; every decoded sample is emitted, none is invented. A
port that fails (unplugged cable, vanished device path) is closed and reopened
with exponential backoff while ``poll`` keeps returning; the first block after
a reconnect carries ``gap=True``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import serial

from drivers.imu_sample import ImuSample
from drivers.mti_configure import MtiConfigurator
from drivers.raw_block import backdated_t_host, raw_block
from drivers.serial import witmotion
from drivers.serial.line_protocol import LineParser
from drivers.serial.witmotion import WitSerialParser
from drivers.serial.xbus import XbusParser
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import RAW_IMU, raw_imu_info

RECONNECT_START_S = 0.25
_MAG_UNITS = {"xbus": "a.u. (earth field = 1)", "witmotion": "raw counts", "line": "none"}


class SerialImu(Source):
    """Stream one serial IMU (or a DIY board with several) as ``imu.raw``.

    Ports:
        imu.raw (out): per sensor (``StreamInfo.source``), RAW_IMU_DTYPE samples: acc m/s^2,
            gyr rad/s, mag (see ``meta.mag_units``), sensor frame; t_sensor ns of the
            unwrapped device clock (-1 if none), t_host ns at receipt (back-dated within
            a read by device time, else by the nominal period), counter (-1 if none).
    Stats extra: the parser counters (bytes_in, frames_ok, checksum_errors,
    bytes_discarded, resyncs, length_errors, ...), ``connected``, ``reconnects``.
    """

    outputs = (RAW_IMU,)

    @dataclass(frozen=True)
    class Params:
        port: str  # device path or pyserial URL (loop://, socket://host:port)
        protocol: Literal["xbus", "witmotion", "line"]  # Xsens MTi, WitMotion, DIY text lines
        sensor: str = "imu"  # stream source name: the chain's IMU site, e.g. "thigh"
        baudrate: int = 115200  # serial line speed, bit/s
        rate_hz: float = 100.0  # nominal sample rate, Hz (and the rate `configure` sets)
        reconnect_max_s: float = 5.0  # longest wait between reopen attempts, s
        configure: bool = False  # xbus: GoToConfig/SetOutputConfiguration/GoToMeasurement;
        # witmotion: unlock + output rate (not saved)
        read_timeout_s: float = 0.01  # serial read timeout, s
        line_names: dict[str, str] = field(default_factory=dict)  # line: board id -> sensor

        def __post_init__(self) -> None:
            if self.baudrate <= 0 or self.rate_hz <= 0 or self.reconnect_max_s <= 0:
                raise ValueError("baudrate, rate_hz and reconnect_max_s must be > 0")
            if not 0 < self.read_timeout_s <= 0.5:
                raise ValueError("read_timeout_s must be in (0, 0.5]")
            if self.configure and self.protocol == "line":
                raise ValueError("configure: true needs protocol xbus or witmotion "
                                 "(the $IMU line protocol has no commands)")
            if self.configure and self.protocol == "witmotion":
                witmotion.set_rate(self.rate_hz)  # raises ValueError naming the valid rates
            if self.configure and self.protocol == "xbus" and self.rate_hz != int(self.rate_hz):
                raise ValueError("configure with xbus needs an integer rate_hz")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """One sensor (``sensor``, mapped); a line-protocol board may add any: unknown."""
        if params.protocol == "line":
            return None
        return [context.site(params.sensor)]

    def setup(self) -> None:
        p = self.params
        self._parser: Any = {"xbus": XbusParser, "witmotion": WitSerialParser,
                             "line": LineParser}[p.protocol]()
        self._infos: dict[str, StreamInfo] = {}
        self._ser: serial.SerialBase | None = None
        self._is_path = "://" not in p.port
        self._next_open = 0.0
        self._backoff_s = RECONNECT_START_S
        self._lost_at: float | None = None
        self._gap_pending: set[str] = set()
        self._first_line_id: str | None = None
        self._ever_opened = False
        self._reconnects = 0
        self._open_failures = 0
        self._mti = MtiConfigurator(int(p.rate_hz)) if p.configure and p.protocol == "xbus" else None
        self._period_ns = 1e9 / p.rate_hz
        self._update_stats()

    @property
    def serial_port(self) -> serial.SerialBase | None:
        """The open pyserial port object (None while disconnected); tests write into loop://."""
        return self._ser

    def on_start(self) -> None:
        self._open()

    # -- port handling ------------------------------------------------------------------------
    def _open(self) -> bool:
        p = self.params
        try:
            ser = serial.serial_for_url(p.port, baudrate=p.baudrate, timeout=p.read_timeout_s)
        except (serial.SerialException, OSError, ValueError) as exc:
            self._open_failures += 1
            level = self.log.warning if self._open_failures == 1 else self.log.debug
            level("cannot open %s (%s); retrying in %.2f s (backoff up to %g s)", p.port, exc,
                  self._backoff_s, p.reconnect_max_s)
            self._next_open = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, p.reconnect_max_s)
            return False
        self._ser = ser
        self._backoff_s = RECONNECT_START_S
        self._open_failures = 0
        if self._ever_opened:
            self._reconnects += 1
            self._gap_pending = set(self._infos) | {"*"}
            down = time.monotonic() - self._lost_at if self._lost_at else 0.0
            self.log.warning("reopened %s after %.2f s; the next block is marked as a gap",
                             p.port, down)
        else:
            self.log.info("opened %s at %d baud (%s protocol)", p.port, p.baudrate, p.protocol)
        self._ever_opened = True
        self._lost_at = None
        self._configure_device()
        return True

    def _configure_device(self) -> None:
        p = self.params
        if self._mti is not None:
            self._parser.messages.clear()
            self._mti.begin(self._write)
        elif p.configure and p.protocol == "witmotion":
            self._write(witmotion.unlock())
            self._write(witmotion.set_rate(p.rate_hz))
            self.log.info("WitMotion output rate set to %g Hz (not saved to flash)", p.rate_hz)

    def _write(self, data: bytes) -> None:
        if self._ser is not None:
            self._ser.write(data)

    def _lose(self, why: str) -> None:
        self.log.warning("lost %s: %s; closing and reopening with backoff", self.params.port, why)
        try:
            if self._ser is not None:
                self._ser.close()
        except (serial.SerialException, OSError) as exc:
            self.log.debug("closing %s failed too: %s", self.params.port, exc)
        self._ser = None
        self._lost_at = time.monotonic()
        self._next_open = self._lost_at + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.params.reconnect_max_s)

    # -- data ------------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            if self._ser is None:
                if now >= self._next_open:
                    self._open()
                if self._ser is None:
                    time.sleep(max(min(deadline, self._next_open) - time.monotonic(), 0.0))
                    self._update_stats()
                    return True
            self._read_once()
            if time.monotonic() >= deadline:
                self._update_stats()
                return True

    def _read_once(self) -> None:
        ser = self._ser
        try:
            if self._is_path and not os.path.exists(self.params.port):
                raise serial.SerialException(f"device path {self.params.port} vanished")
            data = ser.read(max(ser.in_waiting, 1))
            if data and ser.in_waiting:  # the rest of what arrived while waiting
                data += ser.read(ser.in_waiting)
        except (serial.SerialException, OSError) as exc:
            self._lose(str(exc))
            return
        t_read = time.monotonic_ns()
        if not data:
            return
        samples = self._parser.feed(data)
        if self._mti is not None and not self._mti.done:
            self._mti.step(self._parser.messages, self._write)
        elif self._mti is not None:
            self._parser.messages.clear()
        if samples:
            self._emit_samples(samples, t_read)

    def _emit_samples(self, samples: list[ImuSample], t_read: int) -> None:
        t_sensor = np.fromiter((s.t_sensor_ns for s in samples), np.int64, len(samples))
        t_host = backdated_t_host(t_read, t_sensor, self._period_ns)
        if self.params.protocol == "line":
            groups: dict[str, list[int]] = {}
            for i, s in enumerate(samples):
                groups.setdefault(self._line_name(s.extra["sensor_id"]), []).append(i)
        else:
            groups = {self.params.sensor: list(range(len(samples)))}
        for name, idx in groups.items():
            part = samples if len(idx) == len(samples) else [samples[i] for i in idx]
            out = raw_block(part, t_host[idx])
            gap = bool(self._gap_pending & {name, "*"})
            self._gap_pending.discard(name)
            self.emit(RAW_IMU, out, t_host=int(out["t_host"][0]), t_sensor=int(out["t_sensor"][0]),
                      info=self._info(name), gap=gap)
        self._gap_pending.discard("*")

    def _line_name(self, sensor_id: str) -> str:
        """Sensor name of a $IMU board id: line_names, else `sensor` for the first id seen."""
        names = self.params.line_names
        if names:
            return names.get(sensor_id, sensor_id)
        if self._first_line_id is None:
            self._first_line_id = sensor_id
        if sensor_id == self._first_line_id:
            return self.params.sensor
        return sensor_id

    def _info(self, name: str) -> StreamInfo:
        info = self._infos.get(name)
        if info is None:
            p = self.params
            site = self.context.site(name)  # the graph's sensors: map
            info = self._infos[name] = raw_imu_info(
                f"{self.id}/{RAW_IMU}:{site}", site, p.rate_hz, device=p.protocol, port=p.port,
                sensor_id=name,
                mag_units=_MAG_UNITS[p.protocol])
            if len(self._infos) > 1:
                self.log.info("new sensor stream '%s' on %s", name, p.port)
        return info

    def _update_stats(self) -> None:
        extra = self.stats.extra
        extra.update(self._parser.stats.as_dict())
        extra["connected"] = self._ser is not None
        extra["reconnects"] = self._reconnects

    def on_stop(self) -> None:
        self._update_stats()

    def teardown(self) -> None:
        if self._ser is not None:
            try:
                self._ser.close()
            finally:
                self._ser = None
