"""Sync: align the ``imu.raw`` streams of a chain's sensors on host time and resample them."""

from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass, field

import numpy as np

from nodes.sync.sensor_track import BEYOND_RANGE, G0, Limits, SensorTrack, acc_range_from_meta
from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.sensor_check import require_sensors
from pipeline.runtime.streams import (
    ARRIVAL,
    ARRIVAL_DTYPE,
    FRAME,
    RAW_IMU,
    FrameFlag,
    frame_dtype,
    frame_info,
)

CLOCK_STATS_PERIOD_NS = 250_000_000  # refresh the per-sensor clock figures in status this often
_COUNTED = (int(FrameFlag.MISSING), int(FrameFlag.INTERPOLATED), int(FrameFlag.INVALID),
            int(FrameFlag.SATURATED))


def _frame_struct(dtype: np.dtype, n_imu: int) -> struct.Struct:
    """Packs one imu.frame record (t_host, acc and gyr of every sensor, flags) into bytes."""
    s = struct.Struct(f"<q{6 * n_imu}f{n_imu}B")
    probe = np.zeros(1, dtype)
    probe["t_host"], probe["acc"], probe["gyr"], probe["flags"] = 1, 2.0, 3.0, 4
    if s.size != dtype.itemsize or s.pack(1, *[2.0] * (3 * n_imu), *[3.0] * (3 * n_imu),
                                          *[4] * n_imu) != probe.tobytes():
        raise RuntimeError("frame_dtype changed: update sync._frame_struct")
    return s


class Sync(Node):
    """Map each sensor clock onto host time, align all sensors and resample to ``rate_hz``.

    Every sensor's ``t_sensor`` is mapped onto the host clock by its own
    :class:`~nodes.sync.clock_mapper.ClockMapper` (offset and drift, lower envelope of
    the receive delays). acc and gyr are linearly interpolated onto the grid of
    host times ``round(k * 1e9 / rate_hz)`` ns. A frame is emitted once every
    sensor has a sample at or after its time, or once a sensor has sent nothing
    for ``latency_s`` of wall-clock time (it then counts as stalled and does not
    hold frames back; a sensor whose data is less than ``latency_s`` plus the span of
    the newest sensor's last message behind the newest sample is not stalled, so a busy
    host catching up on queued messages, or a replay sending each sensor's next seconds
    in turn, does not mark sensors missing). Per sensor and frame:

    - gap between the samples around the frame time <= ``max_gap_s``: interpolated
      (flag INTERPOLATED if samples were lost, i.e. the gap exceeds 1.5 periods);
    - longer gap, before the first sample, or stalled: NaN with flag MISSING;
    - an acc axis at the sensor's range (>= 0.999 of it): the values as they are, with
      flag SATURATED (the first time per sensor logged); the range is the raw stream's
      ``meta.acc_range_g`` (g0) or ``meta.acc_range`` (m/s^2), else ``acc_max``;
    - NaN input, an acc axis beyond twice the range or |gyr| > ``gyr_max``: NaN with flag
      INVALID.

    Output never depends on the input block sizes (as long as no sensor stalls).

    Ports:
        raw: imu.raw from one or more sensors (``info.source`` = IMU name); acc m/s^2,
            gyr rad/s, sensor frame; t_sensor/t_host int64 ns.
        imu.frame (out): frames of all ``imus`` at ``rate_hz``; t_host = frame time on
            the host clock (estimated capture time), int64 ns; several frames per
            message when input arrives in large blocks.
        frame.arrival (out, with ``arrival: true``): ARRIVAL_DTYPE, per frame its t_host and
            the receive time (header t_host) of the sensor message that completed it, ns.
    """

    inputs = {"raw": Input(accepts=(RAW_IMU,), many=True)}
    outputs = (FRAME, ARRIVAL)

    @dataclass(frozen=True)
    class Params:
        imus: list[str] = field(default_factory=list)  # output order; [] = chain file's IMUs
        rate_hz: float = 100.0  # output (model) rate, Hz
        max_gap_s: float = 0.1  # interpolate across gaps up to this long, s
        latency_s: float = 0.1  # wait this long (wall clock) for a late sensor, s
        dejitter: bool = True  # map sensor clocks onto host time (else use t_host as is)
        # m/s^2, acc range per axis where the stream's info states none: at it SATURATED,
        # beyond twice it INVALID
        acc_max: float = 16 * G0
        gyr_max: float = 35.0  # rad/s, larger |gyr| is INVALID
        clock_window_s: float = 30.0  # s of sensor time the clock fit spans
        # also publish frame.arrival: per frame, the receive time of the sensor message that
        # completed it (end-to-end latency from packet arrival, tools/bench_e2e.py)
        arrival: bool = False

        def __post_init__(self) -> None:
            if self.rate_hz <= 0 or self.max_gap_s < 0 or self.latency_s < 0:
                raise ValueError(f"rate_hz must be > 0 and max_gap_s, latency_s >= 0; got "
                                 f"rate_hz={self.rate_hz}, max_gap_s={self.max_gap_s}, "
                                 f"latency_s={self.latency_s}")
            if not self.acc_max > 0 or not self.gyr_max > 0:
                raise ValueError(f"acc_max and gyr_max must be > 0; got acc_max={self.acc_max}, "
                                 f"gyr_max={self.gyr_max}")
            if len(set(self.imus)) != len(self.imus):
                raise ValueError(f"imus has duplicate names: {self.imus}")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """Frames carry ``imus`` (or the chain's IMUs), each of which must arrive on ``raw``."""
        names = list(params.imus)
        if not names:
            if context.chain_file is None:
                return None  # setup says that imus or a chain is needed
            try:
                names = list(load_chain(context.resolve(context.chain_file)).imu_names)
            except (ChainError, OSError):
                return None  # setup reports the chain file's problem
        require_sensors("needs imus", names, upstream)
        return names

    def setup(self) -> None:
        p = self.params
        names = list(p.imus) or self._chain_imus()
        limits = Limits(acc_range=p.acc_max, gyr_max=p.gyr_max)
        max_gap_ns = round(p.max_gap_s * 1e9)
        self._tracks = [SensorTrack(n, max_gap_ns=max_gap_ns, dejitter=p.dejitter, limits=limits,
                                    clock_window_s=p.clock_window_s) for n in names]
        self._by_name = {t.name: t for t in self._tracks}
        self._dtype = frame_dtype(len(names))
        self._pack = _frame_struct(self._dtype, len(names))
        self._k_next: int | None = None  # index of the next grid time to emit
        self._next_t = 0  # its host time, ns
        self._blocker: SensorTrack | None = None  # the sensor that limited the last horizon
        self._latency_ns = int(p.latency_s * 1e9)
        self._arrival_ns = -1  # receive time (header t_host) of the message being handled
        self._started_ns: int | None = None  # wall time of the first block: sensors that sent
        # nothing count as stalled latency_s after data started flowing, not after setup
        self._unknown: set[str] = set()
        self._span: dict[str, int] = {}  # per sensor: t_host span of its last message, ns
        self._first_t = 0  # host time of the first sample of any sensor, ns
        self._counts = {"frames": 0, "missing": 0, "interpolated": 0, "invalid": 0,
                        "saturated": 0}
        self._infos: dict[str, StreamInfo] = {}  # per sensor: the stream info its limits follow
        self._saturated: set[str] = set()  # sensors whose first saturated sample was logged
        self._period_ns = 1e9 / p.rate_hz
        self._clock_due_ns = 0  # next wall time (monotonic ns) the clock stats are refreshed
        self.declare(FRAME, frame_info(f"{self.id}/{FRAME}", names, p.rate_hz,
                                       clock="host", dejitter=p.dejitter))
        self.declare(ARRIVAL, StreamInfo.for_array(
            f"{self.id}/{ARRIVAL}", ARRIVAL, ARRIVAL_DTYPE, rate_hz=p.rate_hz,
            channels=ARRIVAL_DTYPE.names, units=("ns", "ns")))

    def _chain_imus(self) -> list[str]:
        chain_file = self.context.chain_file
        if chain_file is None:
            raise ConfigError(f"node '{self.id}': parameter 'imus' is empty and the graph names no "
                              "'chain:' file; list the sensor names in params.imus", key="imus")
        try:
            names = list(load_chain(self.context.resolve(chain_file)).imu_names)
        except ChainError as exc:
            raise ConfigError(f"node '{self.id}': cannot take the IMU names from the chain: {exc}",
                              file=str(chain_file), key="imus") from exc
        if not names:
            raise ConfigError(f"node '{self.id}': chain file has no 'imus'; list the sensor names "
                              "in params.imus", file=str(chain_file), key="imus")
        return names

    def grid_time(self, k: np.ndarray | int) -> np.ndarray:
        """Host time (int64 ns) of grid index ``k``."""
        return np.rint(np.asarray(k, dtype=np.float64) * self._period_ns).astype(np.int64)

    def _grid_time_one(self, k: int) -> int:
        """Host time (int64 ns) of one grid index, as :meth:`grid_time` computes it."""
        return round(k * self._period_ns)  # round half to even, as np.rint

    def on_block(self, port: str, block: Block) -> None:
        n = block.n
        if n == 0:
            return
        info = block.info
        name = info.source
        track = self._by_name.get(name)
        if track is None:
            if name not in self._unknown:
                self._unknown.add(name)
                self.log.warning("ignoring sensor '%s' (stream %s): not in imus %s", name,
                                 info.stream, [t.name for t in self._tracks])
                self.stats.extra["ignored_sensors"] = sorted(self._unknown)
            return
        now = time.monotonic_ns()
        if self._started_ns is None:
            self._started_ns = now
        raw = block.data
        if self._infos.get(name) is not info:
            self._follow_info(track, info)
        track.add(raw, info.rate_hz, now)
        if track.saturated_samples and name not in self._saturated:
            self._saturated.add(name)
            self.log.warning("sensor '%s': acc at its range (%.4g g0 per axis): samples kept and "
                             "flagged SATURATED, the true acceleration may be larger; counted "
                             "in status 'saturated'", name, track.limits.acc_range / G0)
        if n > 1 or self._span.get(name):  # the data span of this sensor's last message
            self._span[name] = int(raw["t_host"][-1]) - int(raw["t_host"][0])
        if self._k_next is None:
            self._first_t = int(track.t[0])
            self._k_next = math.ceil(self._first_t * self.params.rate_hz / 1e9)
            self._next_t = self._grid_time_one(self._k_next)
        if not self._held_back(now):
            horizon = self._horizon(now)
            if horizon >= self._next_t:  # else no grid time is due yet
                self._arrival_ns = block.t_host
                self._emit_ready(horizon)

    def _follow_info(self, track: SensorTrack, info: StreamInfo) -> None:
        """Take the sensor's acc range (m/s^2 per axis) from its raw stream info, if stated."""
        self._infos[track.name] = info
        try:
            rng = acc_range_from_meta(info.meta)
        except ValueError as exc:
            self.log.warning("sensor '%s' (stream %s): %s; acc range stays %.4g g0", track.name,
                             info.stream, exc, track.limits.acc_range / G0)
            return
        rng = self.params.acc_max if rng is None else rng
        if rng != track.limits.acc_range:
            track.set_limits(Limits(acc_range=rng, gyr_max=self.params.gyr_max))
            self.log.info("sensor '%s': acc range %.4g g0 per axis (stream %s): SATURATED from "
                          "%.4g g0, INVALID beyond %.4g g0", track.name, rng / G0, info.stream,
                          0.999 * rng / G0, BEYOND_RANGE * rng / G0)

    def on_eos(self) -> None:
        """Inputs ended: emit the frames up to the newest sample of any sensor."""
        ends = [t.last_t for t in self._tracks if t.last_t is not None]
        if ends and self._k_next is not None:
            self._arrival_ns = -1  # completed by the end of the stream, not by a message
            self._emit_ready(max(ends))

    def _held_back(self, now_ns: int) -> bool:
        """True if the sensor that limited the last horizon has no sample at the next grid
        time yet and is not stalled: no frame is due (the usual case, cheaper than _horizon)."""
        b = self._blocker
        return (b is not None and b.last_t < self._next_t
                and now_ns - b.last_arrival_ns <= self._latency_ns)

    def _horizon(self, now_ns: int) -> int:
        """Latest host time (ns) up to which frames can be emitted now.

        A sensor is stalled (not waited for) when nothing came from it for ``latency_s`` of
        wall-clock time and its data lags the newest sample by more than ``latency_s`` plus
        the span of the message that brought that newest sample: sensors sent in turn in
        large blocks (offline replay) lag each other by up to a block, not a stall.
        """
        horizon, limit = None, None
        newest, span = None, 0
        for track in self._tracks:
            if track.last_t is not None and (newest is None or track.last_t > newest):
                newest, span = track.last_t, self._span.get(track.name, 0)
        allow = self._latency_ns + span
        for track in self._tracks:
            arrived = track.last_arrival_ns
            last = track.last_t
            if (now_ns - (self._started_ns if arrived is None else arrived) > self._latency_ns
                    and newest - (self._first_t if last is None else last) > allow):
                continue  # stalled (no message for latency_s and its data lags): not waited for
            if last is None:
                self._blocker = None
                return -(2 ** 62)
            if horizon is None or last < horizon:
                horizon, limit = last, track
        self._blocker = limit
        if horizon is None:  # every sensor stalled: up to the newest sample
            horizon = newest
        return horizon

    def _emit_ready(self, horizon_ns: int) -> None:
        k0 = self._k_next
        k1 = math.floor(horizon_ns * self.params.rate_hz / 1e9)  # last index with time <= horizon
        while k1 >= k0 and self._grid_time_one(k1) > horizon_ns:
            k1 -= 1
        if k1 == k0:
            self._emit_one(k0)
        elif k1 > k0:
            self._emit_frames(k0, k1)

    def _emit_one(self, k: int) -> None:
        """Emit the frame of grid index ``k`` (live streams: one per message), in Python scalars."""
        g = self._grid_time_one(k)
        next_t = self._grid_time_one(k + 1)
        acc: list[float] = []
        gyr: list[float] = []
        flags: list[int] = []
        for track in self._tracks:
            vals, flag = track.sample_at(g)
            track.trim_before(next_t)
            acc += vals[:3]
            gyr += vals[3:]
            flags.append(flag)
        out = np.frombuffer(self._pack.pack(g, *acc, *gyr, *flags), self._dtype)
        self._k_next, self._next_t = k + 1, next_t
        if any(flags):
            self._count(1, *(sum(1 for f in flags if f & bit) for bit in _COUNTED))
        else:
            self._count(1, 0, 0, 0, 0)
        if self.params.arrival:
            self._emit_arrival(np.array([(g, self._arrival_ns)], ARRIVAL_DTYPE), g)
        self.emit(FRAME, out, t_host=g)

    def _emit_frames(self, k0: int, k1: int) -> None:
        """Emit the frames of grid indices ``k0`` to ``k1`` (several) in one message."""
        grid = self.grid_time(np.arange(k0, k1 + 1))
        m = len(grid)
        ag = np.empty((len(self._tracks), m, 2, 3))  # acc, gyr per sensor (float64)
        flags = np.empty((len(self._tracks), m), np.uint8)
        for i, track in enumerate(self._tracks):  # each sensor into contiguous memory
            track.resample_into(grid, ag[i], flags[i])
        out = np.empty(m, self._dtype)
        out["t_host"] = grid
        out["acc"] = ag[:, :, 0].transpose(1, 0, 2)
        out["gyr"] = ag[:, :, 1].transpose(1, 0, 2)
        flags = flags.T
        out["flags"] = flags
        self._k_next = k1 + 1
        self._next_t = next_t = self._grid_time_one(self._k_next)
        for track in self._tracks:
            track.trim_before(next_t)
        if flags.any():
            self._count(m, *(int(np.count_nonzero(flags & bit)) for bit in _COUNTED))
        else:
            self._count(m, 0, 0, 0, 0)
        if self.params.arrival:
            arrival = np.empty(m, ARRIVAL_DTYPE)
            arrival["t_host"] = grid
            arrival["t_arrival"] = self._arrival_ns
            self._emit_arrival(arrival, int(grid[0]))
        self.emit(FRAME, out, t_host=int(grid[0]))

    def _emit_arrival(self, records: np.ndarray, t_host: int) -> None:
        """frame.arrival records of the frames about to go out (before them, so a probe has
        the arrival when the frame's results reach it)."""
        self.emit(ARRIVAL, records, t_host=t_host)

    def _count(self, frames: int, missing: int, interpolated: int, invalid: int,
               saturated: int) -> None:
        """Add to the frame and flag counts (sensor-frames per flag) in the node's stats."""
        c = self._counts
        c["frames"] += frames
        c["missing"] += missing
        c["interpolated"] += interpolated
        c["invalid"] += invalid
        c["saturated"] += saturated
        extra = self.stats.extra
        extra.update(c)
        now = time.monotonic_ns()
        if now >= self._clock_due_ns:  # status goes out about once a second
            self._clock_due_ns = now + CLOCK_STATS_PERIOD_NS
            extra["clock"] = self._clock_figures()

    def _clock_figures(self) -> dict:
        """Per sensor: clock drift (ppm) and clock resets so far."""
        return {t.name: {"drift_ppm": round(t.mapper.fit.drift * 1e6, 2),
                         "resets": t.mapper.resets}
                for t in self._tracks if t.mapper is not None and t.mapper.fit is not None}

    def on_command(self, command: str, args: dict) -> dict:
        if command == "clocks":
            return {"ok": True, "clocks": self._clock_figures()}
        return super().on_command(command, args)
