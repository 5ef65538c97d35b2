"""LSL inlet source: any Lab Streaming Layer stream of accelerometer and gyroscope samples.

Samples go out as ``imu.raw``, one stream per sensor.

The stream is found by name, content type and/or source_id with a continuous
resolver (it keeps looking in the background, so a stream may start after the
graph). Channels are mapped from the stream's channel labels (``thigh_acc_x``,
``acc_x``, ``AccX``, ``gyro_z``, or XDF ``<type>AccelerationX</type>`` with an
``<object>``) or from ``params.channels``; units from the channel ``<unit>`` or
the params (g and deg/s are converted to m/s^2 and rad/s). Time: ``t_sensor`` is
the sample's LSL time stamp (the sender's ``local_clock()``, ns) and ``t_host``
the same instant on this host's monotonic clock, through the inlet's
``time_correction()`` (LSL's own clock offset estimate), so sync's clock mapping
sees the offset LSL measured. A lost outlet (sender crashed or closed) is
resolved again, and the first block per sensor after it carries ``gap=True``.
docs/lsl.md has the details.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeoutError

from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import RAW_IMU, RAW_IMU_DTYPE, raw_imu_info

G0 = 9.80665  # standard gravity, m/s^2
RECONNECT_START_S = 0.1  # first wait after a failed open; doubles up to reconnect_max_s
TC_REFRESH_S = 0.5  # how often the inlet's time correction is read (LSL updates it every 2 s)
DEAD_UIDS_KEPT = 64  # uids of lost outlets the resolver may still list for a few seconds

_QUANTITY = {"acc": "acc", "accel": "acc", "accelerometer": "acc", "acceleration": "acc",
             "gyr": "gyr", "gyro": "gyr", "gyroscope": "gyr", "angularvelocity": "gyr",
             "angular_velocity": "gyr", "angvel": "gyr", "mag": "mag", "magnetometer": "mag",
             "magneticfield": "mag"}
_LABEL = re.compile(r"^(?:(?P<sensor>.*?)[\s_.:/\-]+)?(?P<q>" + "|".join(
    sorted(_QUANTITY, key=len, reverse=True)) + r")[\s_.:\-]*(?P<axis>[xyz])$", re.IGNORECASE)
_ACC_UNITS = {"m/s^2": 1.0, "m/s2": 1.0, "m/s**2": 1.0, "m/s²": 1.0, "ms^-2": 1.0, "ms-2": 1.0,
              "m s^-2": 1.0, "m s-2": 1.0, "meters/second^2": 1.0, "meters/second/second": 1.0,
              "g": G0, "g0": G0, "mg": G0 / 1000.0}
_GYR_UNITS = {"rad/s": 1.0, "radians/second": 1.0, "rad s^-1": 1.0, "rad s-1": 1.0, "rps": 1.0,
              "deg/s": math.pi / 180, "degrees/second": math.pi / 180, "dps": math.pi / 180,
              "°/s": math.pi / 180, "degree/s": math.pi / 180, "deg s-1": math.pi / 180}
_NP_FORMAT = {pylsl.cf_float32: np.float32, pylsl.cf_double64: np.float64,
              pylsl.cf_int8: np.int8, pylsl.cf_int16: np.int16, pylsl.cf_int32: np.int32,
              pylsl.cf_int64: np.int64}


def lsl_clock_offset_ns(tries: int = 9) -> int:
    """Offset of LSL's clock from the host monotonic clock, ns: ``lsl_ns = monotonic_ns + offset``.

    Each try reads ``time.monotonic_ns()``, ``pylsl.local_clock()``, ``time.monotonic_ns()``;
    the try with the shortest bracket wins (0 on Linux, where both are CLOCK_MONOTONIC).
    """
    best: tuple[int, int] | None = None
    for _ in range(tries):
        a = time.monotonic_ns()
        lsl_s = pylsl.local_clock()
        b = time.monotonic_ns()
        cand = (b - a, round(lsl_s * 1e9) - (a + b) // 2)
        if best is None or cand[0] < best[0]:
            best = cand
    return best[1]


@dataclass
class SensorPlan:
    """Where one sensor's values sit in an LSL sample and how to scale them to SI.

    Attributes:
        sensor: the sensor's name in the stream (label prefix, or params.sensor).
        acc, gyr: channel indices of x, y, z.
        mag: channel indices of x, y, z, or None (mag is NaN then).
        acc_scale: factor to m/s^2; gyr_scale: factor to rad/s.
        mag_unit: the stream's unit of the magnetometer channels ("" if none).
    """

    sensor: str
    acc: list[int]
    gyr: list[int]
    mag: list[int] | None = None
    acc_scale: float = 1.0
    gyr_scale: float = 1.0
    mag_unit: str = ""


def channel_info(info: pylsl.StreamInfo) -> tuple[list[str], list[str], list[str], list[str]]:
    """Labels, units, types and objects of every channel from a stream's ``<desc><channels>``."""
    n = info.channel_count()
    labels, units, types, objects = [""] * n, [""] * n, [""] * n, [""] * n
    ch = info.desc().child("channels").child("channel")
    for i in range(n):
        if ch.empty():
            break
        labels[i] = ch.child_value("label")
        units[i] = ch.child_value("unit")
        types[i] = ch.child_value("type")
        objects[i] = ch.child_value("object")
        ch = ch.next_sibling("channel")
    return labels, units, types, objects


def plan_from_labels(labels: list[str], types: list[str], objects: list[str],
                     default_sensor: str) -> dict[str, dict[str, list[int]]]:
    """sensor -> {acc|gyr|mag: [ix, iy, iz]} read from channel labels (or XDF types + objects).

    A label is ``[<sensor><sep>]<quantity>[<sep>]<axis>`` with quantity acc/accel/
    acceleration, gyr/gyro/angularvelocity or mag, axis x/y/z (case-insensitive);
    without a sensor prefix the channel belongs to ``default_sensor``.
    """
    found: dict[str, dict[str, dict[str, int]]] = {}
    for i, label in enumerate(labels):
        m = _LABEL.match(label.strip())
        if m is None and i < len(types):  # XDF style: <type>AccelerationX</type>, <object>
            m = _LABEL.match(types[i].strip())
            sensor = objects[i].strip() if m else ""
        else:
            sensor = (m.group("sensor") or "") if m else ""
        if m is None:
            continue
        q = _QUANTITY[m.group("q").lower()]
        axes = found.setdefault(sensor or default_sensor, {}).setdefault(q, {})
        axes.setdefault(m.group("axis").lower(), i)
    plan: dict[str, dict[str, list[int]]] = {}
    for sensor, quantities in found.items():
        plan[sensor] = {q: [axes[a] for a in "xyz"] for q, axes in quantities.items()
                        if all(a in axes for a in "xyz")}
    return plan


def unit_scale(units: list[str], table: dict[str, float], what: str, param: str) -> float:
    """Factor to SI for channels of ``units`` (all the same); "" (no unit) counts as SI."""
    names = {u.strip().lower() for u in units if u.strip()}
    if not names:
        return 1.0
    if len(names) > 1:
        raise ConfigError(f"the {what} channels have different units {sorted(names)}; set "
                          f"params.{param}", key=param)
    unit = names.pop()
    lowered = {k.lower(): v for k, v in table.items()}
    if unit not in lowered:
        raise ConfigError(f"unknown {what} unit '{unit}' (known: {', '.join(table)}); set "
                          f"params.{param}", key=param)
    return lowered[unit]


class LslImu(Source):
    """Read accelerometer and gyroscope samples of one LSL stream as per-sensor ``imu.raw``.

    Ports:
        imu.raw (out): per sensor (``StreamInfo.source``, after the graph's ``sensors:`` map),
            RAW_IMU_DTYPE samples: acc m/s^2, gyr rad/s, mag in the stream's unit (NaN if
            absent); t_sensor ns = the LSL time stamp on the sender's clock; t_host ns = that
            instant on this host's monotonic clock (time stamp + the inlet's
            time_correction()); counter -1 (LSL has none).
    Stats extra: ``connected``, ``stream`` (name and source_id), ``reconnects``, ``lost``,
    ``samples``, ``time_correction_ms``.
    """

    outputs = (RAW_IMU,)

    @dataclass(frozen=True)
    class Params:
        name: str = ""  # LSL stream name to take ("" = any name)
        type: str = ""  # LSL content type, e.g. "IMU" ("" = any type)
        source_id: str = ""  # LSL source_id ("" = any); the surest key: it survives restarts
        sensor: str = "imu"  # sensor name for channels whose labels carry none (acc_x, gyr_z)
        # sensor -> {acc: [x, y, z], gyr: [x, y, z], mag: [x, y, z]} as channel indices or
        # labels; {} = from the stream's channel labels
        channels: dict[str, dict[str, list[int | str]]] = field(default_factory=dict)
        acc_unit: Literal["auto", "m/s^2", "g"] = "auto"  # auto: the channels' <unit> (none: m/s^2)
        gyr_unit: Literal["auto", "rad/s", "deg/s"] = "auto"  # auto: the channels' <unit>
        rate_hz: float = 0.0  # nominal rate of imu.raw, Hz; 0 = the stream's nominal_srate
        open_timeout_s: float = 2.0  # s, for the header, the connection, the first clock offset
        reconnect_max_s: float = 5.0  # longest wait between attempts to open a stream, s
        max_buflen_s: int = 30  # seconds of samples the inlet buffers while the graph is busy
        max_chunk: int = 1024  # most samples emitted per message
        lsl_config: Path | None = None  # lsl_api.cfg to use in this process (docs/lsl.md)

        def __post_init__(self) -> None:
            keys = {"name": self.name, "type": self.type, "source_id": self.source_id}
            if not any(keys.values()):
                raise ValueError("set at least one of name, type, source_id to pick the LSL "
                                 "stream (e.g. `source_id: my-imu-1` or `type: IMU`)")
            for key, value in keys.items():
                if "'" in value:
                    raise ValueError(f"{key} must not contain a quote: {value!r}")
            for sensor, quantities in self.channels.items():
                if not {"acc", "gyr"} <= set(quantities) <= {"acc", "gyr", "mag"}:
                    raise ValueError(f"channels.{sensor} needs acc and gyr (and may have mag), "
                                     f"got {sorted(quantities)}")
                if any(len(v) != 3 for v in quantities.values()):
                    raise ValueError(f"channels.{sensor}: each of acc, gyr, mag lists the x, y, "
                                     "z channels (3 items)")
            if self.open_timeout_s <= 0 or self.reconnect_max_s <= 0 or self.rate_hz < 0:
                raise ValueError("open_timeout_s and reconnect_max_s must be > 0, rate_hz >= 0")
            if self.max_buflen_s < 1 or self.max_chunk < 1:
                raise ValueError("max_buflen_s and max_chunk must be >= 1")

        @property
        def predicate(self) -> str:
            """The XPath predicate LSL resolves with."""
            parts = [f"{k}='{v}'" for k, v in (("name", self.name), ("type", self.type),
                                               ("source_id", self.source_id)) if v]
            return " and ".join(parts)

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The sensors of ``channels`` (mapped); from labels: unknown until the stream is read."""
        if not params.channels:
            return None
        return [context.site(s) for s in params.channels]

    def setup(self) -> None:
        p = self.params
        if p.lsl_config is not None:
            path = self.context.resolve(p.lsl_config)
            if not path.is_file():
                raise ConfigError(f"node '{self.id}': lsl_config {path} is not a file (an "
                                  "lsl_api.cfg, docs/lsl.md)", key="lsl_config")
            os.environ["LSLAPICFG"] = str(path)
            setter = getattr(pylsl, "set_config_filename", None)
            if setter is not None:
                try:
                    setter(str(path))
                except NotImplementedError:
                    pass
        self._offset_ns = lsl_clock_offset_ns()
        self._resolver: pylsl.ContinuousResolver | None = None
        self._inlet: pylsl.StreamInlet | None = None
        self._uid = ""
        self._dead: list[str] = []  # uids of lost outlets (the resolver lists them a while)
        self._plans: list[SensorPlan] = []
        self._infos: dict[str, StreamInfo] = {}
        self._gap_pending: set[str] = set()
        self._buf = np.empty((0, 0))
        self._tc_s = 0.0
        self._next_tc = 0.0
        self._next_try = 0.0
        self._backoff_s = RECONNECT_START_S
        self._ever_connected = False
        self._lost_at: float | None = None
        self._waiting_logged = False
        self._looking_since = time.monotonic()
        self._stream_meta: dict[str, str] = {}
        self._reconnects = 0
        self._lost = 0
        self._samples = 0
        self._stream_desc = ""
        self._update_stats()

    def on_start(self) -> None:
        self._resolver = pylsl.ContinuousResolver(pred=self.params.predicate)
        self._looking_since = time.monotonic()
        self.log.info("looking for an LSL stream with %s", self.params.predicate)

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> bool:
        """Open an inlet on a stream the resolver lists (not a lost one); False if none opened."""
        p = self.params
        found = [s for s in self._resolver.results() if s.uid() not in self._dead]
        if not found:
            waited = time.monotonic() - self._looking_since
            if not self._waiting_logged and waited > 5.0:
                self.log.warning("no LSL stream with %s for %.0f s; still looking", p.predicate,
                                 waited)
                self._waiting_logged = True
            return False
        stream = max(found, key=lambda s: s.created_at())  # the newest, when several match
        if len(found) > 1:
            self.log.warning("%d LSL streams match %s (%s); taking '%s' (%s), the newest",
                             len(found), p.predicate,
                             ", ".join(f"{s.name()}/{s.source_id()}" for s in found),
                             stream.name(), stream.source_id())
        desc = f"'{stream.name()}' (type {stream.type()}, source_id {stream.source_id()!r}, " \
               f"host {stream.hostname()})"
        if stream.channel_format() not in _NP_FORMAT:
            raise ConfigError(f"node '{self.id}': LSL stream {desc} carries strings, not numbers; "
                              "pick an IMU stream with name/type/source_id", key="name")
        inlet = pylsl.StreamInlet(stream, max_buflen=p.max_buflen_s, recover=False)
        try:
            full = inlet.info(timeout=p.open_timeout_s)
            inlet.open_stream(timeout=p.open_timeout_s)
            self._tc_s = inlet.time_correction(timeout=p.open_timeout_s)
        except (LslTimeoutError, LostError) as exc:
            if isinstance(exc, LostError):
                self._forget(stream.uid())
            self.log.warning("cannot open LSL stream %s: %s; trying again in %.2f s", desc,
                             exc or type(exc).__name__, self._backoff_s)
            self._next_try = time.monotonic() + self._backoff_s
            self._backoff_s = min(self._backoff_s * 2, p.reconnect_max_s)
            inlet.close_stream()
            return False
        try:
            self._plans = self._plan(full, desc)
        except ConfigError:
            inlet.close_stream()
            raise
        self._stream_meta = {"lsl_name": full.name(), "lsl_type": full.type(),
                             "lsl_source_id": full.source_id(), "lsl_host": full.hostname()}
        self._infos.clear()  # rebuilt with this stream's meta (equal to the old ones if unchanged)
        self._buf = np.empty((p.max_chunk, full.channel_count()),
                             _NP_FORMAT[full.channel_format()])
        self._rate_hz = p.rate_hz or full.nominal_srate()
        self._inlet, self._uid, self._stream_desc = inlet, stream.uid(), desc
        self._next_tc = time.monotonic() + TC_REFRESH_S
        self._backoff_s = RECONNECT_START_S
        self._waiting_logged = False
        sensors = ", ".join(f"{s.sensor}: acc {s.acc} x{s.acc_scale:g}, gyr {s.gyr} "
                            f"x{s.gyr_scale:.6g}" for s in self._plans)
        if self._ever_connected:
            self._reconnects += 1
            self._gap_pending = {s.sensor for s in self._plans}
            down = time.monotonic() - self._lost_at if self._lost_at else 0.0
            self.log.warning("LSL stream %s open again after %.2f s; the next block per sensor "
                             "is marked as a gap", desc, down)
        else:
            self.log.info("LSL stream %s open: %d channels at %g Hz, time correction %+.3f ms; "
                          "%s", desc, full.channel_count(), full.nominal_srate(),
                          self._tc_s * 1e3, sensors)
        self._ever_connected = True
        self._lost_at = None
        self._update_stats()
        return True

    def _plan(self, full: pylsl.StreamInfo, desc: str) -> list[SensorPlan]:
        """Channel indices and unit factors per sensor, from params.channels or the labels."""
        p = self.params
        labels, units, types, objects = channel_info(full)
        if p.channels:
            index = {label: i for i, label in enumerate(labels) if label}
            raw: dict[str, dict[str, list[int]]] = {}
            for sensor, quantities in p.channels.items():
                raw[sensor] = {}
                for q, chans in quantities.items():
                    idx = []
                    for c in chans:
                        i = index.get(c, -1) if isinstance(c, str) else c
                        if not 0 <= i < full.channel_count():
                            raise ConfigError(
                                f"node '{self.id}': channels.{sensor}.{q}: {c!r} is not a "
                                f"channel of LSL stream {desc} ({full.channel_count()} channels:"
                                f" {labels})", key="channels")
                        idx.append(i)
                    raw[sensor][q] = idx
        else:
            raw = plan_from_labels(labels, types, objects, p.sensor)
        plans = []
        for sensor, q in raw.items():
            if "acc" not in q or "gyr" not in q:
                continue
            try:
                acc_scale = (unit_scale([units[i] for i in q["acc"]], _ACC_UNITS, "acc",
                                        "acc_unit") if p.acc_unit == "auto"
                             else _ACC_UNITS[p.acc_unit])
                gyr_scale = (unit_scale([units[i] for i in q["gyr"]], _GYR_UNITS, "gyr",
                                        "gyr_unit") if p.gyr_unit == "auto"
                             else _GYR_UNITS[p.gyr_unit])
            except ConfigError as exc:
                raise ConfigError(f"node '{self.id}': LSL stream {desc}, sensor '{sensor}': "
                                  f"{exc.bare_message}", key=exc.key) from None
            mag = q.get("mag")
            plans.append(SensorPlan(sensor, q["acc"], q["gyr"], mag, acc_scale, gyr_scale,
                                    units[mag[0]] if mag else ""))
        if not plans:
            raise ConfigError(
                f"node '{self.id}': LSL stream {desc} has no accelerometer and gyroscope x/y/z "
                f"channels by its labels {labels}; name them like thigh_acc_x, gyr_z (or "
                "give params.channels: {thigh: {acc: [0, 1, 2], gyr: [3, 4, 5]}})",
                key="channels")
        return plans

    def _forget(self, uid: str) -> None:
        self._dead.append(uid)
        del self._dead[:-DEAD_UIDS_KEPT]

    def _lose(self, why: str) -> None:
        self._lost += 1
        self.log.warning("lost LSL stream %s (%s); looking for it again", self._stream_desc, why)
        self._forget(self._uid)
        inlet, self._inlet = self._inlet, None
        try:
            inlet.close_stream()
        except (LostError, LslTimeoutError, RuntimeError) as exc:  # already gone
            self.log.debug("closing the lost inlet: %s", exc)
        self._lost_at = self._looking_since = time.monotonic()
        self._next_try = self._lost_at
        self._update_stats()

    # -- data ------------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        if self._inlet is None:
            if time.monotonic() >= self._next_try and not self._connect():
                self._next_try = max(self._next_try, time.monotonic() + RECONNECT_START_S)
            if self._inlet is None:
                time.sleep(max(min(deadline, self._next_try) - time.monotonic(), 0.0))
                return True
        try:
            self._read(deadline)
        except LostError as exc:
            self._lose(str(exc) or "outlet gone")
        return True

    def _read(self, deadline: float) -> None:
        """Wait for the first sample up to ``deadline`` (monotonic s), take what else is there."""
        inlet = self._inlet
        first, stamp = inlet.pull_sample(timeout=max(deadline - time.monotonic(), 0.0))
        if first is None:
            return
        buf = self._buf
        buf[0] = first
        more: list[float] = []
        if len(buf) > 1:
            _, more = inlet.pull_chunk(timeout=0.0, max_samples=len(buf) - 1, dest_obj=buf[1:])
        stamps = np.empty(1 + len(more), np.float64)
        stamps[0] = stamp
        stamps[1:] = more
        now = time.monotonic()
        if now >= self._next_tc:
            try:
                self._tc_s = inlet.time_correction(timeout=0.0)
            except LslTimeoutError:
                pass  # keep the last estimate
            self._next_tc = now + TC_REFRESH_S
        self._emit(buf[:len(stamps)], stamps)

    def _emit(self, values: np.ndarray, stamps: np.ndarray) -> None:
        """Emit (n, channels) values with LSL time stamps (s, sender clock) per sensor."""
        n = len(stamps)
        t_sensor = np.round(stamps * 1e9).astype(np.int64)
        t_host = np.round((stamps + self._tc_s) * 1e9).astype(np.int64) - self._offset_ns
        x = values.astype(np.float64, copy=False)
        for plan in self._plans:
            out = np.empty(n, RAW_IMU_DTYPE)
            out["t_sensor"] = t_sensor
            out["t_host"] = t_host
            out["counter"] = -1
            out["acc"] = x[:, plan.acc] * plan.acc_scale
            out["gyr"] = x[:, plan.gyr] * plan.gyr_scale
            out["mag"] = x[:, plan.mag] if plan.mag else np.nan
            gap = plan.sensor in self._gap_pending
            self._gap_pending.discard(plan.sensor)
            self.emit(RAW_IMU, out, t_host=int(t_host[0]), t_sensor=int(t_sensor[0]),
                      info=self._info(plan), gap=gap)
        self._samples += n
        self._update_stats()

    def _info(self, plan: SensorPlan) -> StreamInfo:
        info = self._infos.get(plan.sensor)
        if info is None or info.rate_hz != self._rate_hz:
            site = self.context.site(plan.sensor)  # the graph's sensors: map
            info = self._infos[plan.sensor] = raw_imu_info(
                f"{self.id}/{RAW_IMU}:{site}", site, self._rate_hz, device="lsl",
                sensor_id=plan.sensor, **self._stream_meta, mag_units=plan.mag_unit or "none",
                t_sensor="LSL time stamp (sender's local_clock), ns",
                t_host="LSL time stamp + time_correction(), host monotonic ns")
        return info

    def _update_stats(self) -> None:
        extra = self.stats.extra
        extra["connected"] = self._inlet is not None
        extra["stream"] = self._stream_desc
        extra["reconnects"] = self._reconnects
        extra["lost"] = self._lost
        extra["samples"] = self._samples
        extra["time_correction_ms"] = round(self._tc_s * 1e3, 4)

    def on_stop(self) -> None:
        self._update_stats()

    def teardown(self) -> None:
        inlet, self._inlet = getattr(self, "_inlet", None), None
        if inlet is not None:
            try:
                inlet.close_stream()
            except (LostError, LslTimeoutError, RuntimeError) as exc:
                self.log.debug("closing the inlet: %s", exc)
        self._resolver = None
