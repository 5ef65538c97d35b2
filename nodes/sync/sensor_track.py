"""One sensor's samples on host time, for the sync node: clock mapping, validity, resampling."""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from nodes.sync.clock_mapper import ClockMapper
from pipeline.runtime.streams import RAW_IMU_DTYPE, FrameFlag

G0 = 9.80665  # m/s^2, standard gravity
SATURATION = 0.999  # an acc axis at or above this fraction of the range is SATURATED
BEYOND_RANGE = 2.0  # an acc axis above this multiple of the range is INVALID (not physical)
_OK, _MISSING, _INVALID, _INTERPOLATED, _SATURATED = (np.uint8(f) for f in (
    FrameFlag.OK, FrameFlag.MISSING, FrameFlag.INVALID, FrameFlag.INTERPOLATED,
    FrameFlag.SATURATED))
_F_OK, _F_MISSING, _F_INVALID, _F_INTERPOLATED, _F_SATURATED = (int(f) for f in (  # scalar path
    FrameFlag.OK, FrameFlag.MISSING, FrameFlag.INVALID, FrameFlag.INTERPOLATED,
    FrameFlag.SATURATED))
_NAN6 = (math.nan,) * 6
_T_MIN = int(np.iinfo(np.int64).min)
_CAPACITY0 = 256  # samples; the buffers double when full
_HOST_T = itemgetter(0)  # host time of a pending sample (t, state, values)


def _raw_struct() -> struct.Struct:
    """Reads t_sensor, t_host, counter (int), acc, gyr (3 floats each) of one imu.raw record."""
    s = struct.Struct("<qqq3f3f")
    probe = np.array([(1, 2, 3, (4, 5, 6), (7, 8, 9), (0, 0, 0))], RAW_IMU_DTYPE)
    if s.unpack_from(probe) != (1, 2, 3, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0):
        raise ImportError("RAW_IMU_DTYPE changed: update sensor_track._raw_struct")
    return s


_RAW_ONE = _raw_struct()  # one call instead of item() and two tolist() on the live path


@dataclass(frozen=True)
class Limits:
    """Sensor range: ``acc_range`` m/s^2 per axis (the accelerometer's full scale), ``gyr_max``
    rad/s (vector norm).

    An acc axis at or above ``SATURATION * acc_range`` is SATURATED (kept: the true value is
    at least that); above ``BEYOND_RANGE * acc_range``, a gyr norm above ``gyr_max`` or a
    non-finite value is INVALID (no sensor of that range reads it: a corrupt sample).
    """

    acc_range: float = 16 * G0
    gyr_max: float = 35.0


def acc_range_from_meta(meta: dict) -> float | None:
    """The accelerometer range (m/s^2, per axis) a raw stream's info states, else None:
    ``meta["acc_range_g"]`` in g0 or ``meta["acc_range"]`` in m/s^2; ValueError if not > 0."""
    for key, scale in (("acc_range", 1.0), ("acc_range_g", G0)):
        value = meta.get(key)
        if value is not None:
            try:
                rng = float(value) * scale
            except (TypeError, ValueError):
                rng = math.nan
            if not rng > 0 or math.isinf(rng):
                raise ValueError(f"stream meta {key}={value!r} is not a positive range")
            return rng
    return None


class SensorTrack:
    """Buffered samples of one sensor with host-time stamps (int64 ns) and a validity mask.

    Samples live in preallocated buffers (``[start, end)`` is in use; trimming moves
    ``start``, a full buffer is compacted or doubled). Samples added one at a time (live
    streams) are kept as Python tuples after them until an array operation needs them
    (:meth:`_flush`): resampling one frame and trimming then take no numpy call.

    Args:
        name: sensor (IMU site) name.
        max_gap_ns: longest interval without samples that is still interpolated, ns.
        dejitter: map the sensor clock with a :class:`ClockMapper`; else use ``t_host`` as is.
        limits: the sensor's range: samples at it SATURATED, far beyond it or non-finite INVALID.
        clock_window_s: window of the clock fit, s.
    """

    def __init__(self, name: str, *, max_gap_ns: int, dejitter: bool, limits: Limits,
                 clock_window_s: float = 30.0) -> None:
        self.name = name
        self.max_gap_ns = max_gap_ns
        self.set_limits(limits)
        self.mapper = ClockMapper(window_s=clock_window_s) if dejitter else None
        self.period_ns = 0  # nominal sample period from the stream info, 0 if unknown
        self._rate_hz = 0.0
        self._t = np.empty(_CAPACITY0, np.int64)  # host-time stamps, non-decreasing
        self._ag = np.empty((_CAPACITY0, 2, 3), np.float64)  # [:, 0] acc m/s^2, [:, 1] gyr rad/s
        self._state = np.empty(_CAPACITY0, np.uint8)  # per sample 0, INVALID or SATURATED
        self._start = self._end = 0
        self._pend: list[tuple[int, int, tuple[float, ...]]] = []  # (t, state, acc+gyr) after end
        self.last_t: int | None = None  # host time (ns) of the newest sample, None before the first
        self.last_arrival_ns: int | None = None  # wall clock (monotonic) of the last block
        self.samples = 0
        self.invalid_samples = 0
        self.saturated_samples = 0
        self._next_index = 0  # sample index, for sensors without a clock

    @property
    def t(self) -> np.ndarray:
        """Host-time stamps (int64 ns) of the buffered samples, non-decreasing."""
        self._flush()
        return self._t[self._start:self._end]

    @property
    def acc(self) -> np.ndarray:
        """Buffered acc (n, 3) float64, m/s^2, sensor frame."""
        self._flush()
        return self._ag[self._start:self._end, 0]

    @property
    def gyr(self) -> np.ndarray:
        """Buffered gyr (n, 3) float64, rad/s, sensor frame."""
        self._flush()
        return self._ag[self._start:self._end, 1]

    @property
    def valid(self) -> np.ndarray:
        """(n,) bool: buffered samples that are finite and within the limits (maybe saturated)."""
        return self.state & _INVALID == 0

    @property
    def state(self) -> np.ndarray:
        """(n,) uint8: per buffered sample 0, FrameFlag.INVALID or FrameFlag.SATURATED."""
        self._flush()
        return self._state[self._start:self._end]

    def set_limits(self, limits: Limits) -> None:
        """Use ``limits`` for the samples added from now on."""
        self.limits = limits
        self._acc_sat = SATURATION * limits.acc_range  # m/s^2, per axis
        self._acc_abs_max = BEYOND_RANGE * limits.acc_range
        # squared limits: the usual sample is told apart by its squared norms, no sqrt (an
        # axis at the range has a squared norm >= _acc2_sat; only those are looked at per axis)
        self._acc2_sat = self._acc_sat ** 2
        self._gyr2_max = limits.gyr_max ** 2

    def add(self, raw: np.ndarray, rate_hz: float, now_ns: int) -> None:
        """Append a block of ``imu.raw`` samples (RAW_IMU_DTYPE) received at wall time ``now_ns``."""
        if rate_hz != self._rate_hz:
            self._rate_hz = rate_hz
            if rate_hz > 0:
                self.period_ns = round(1e9 / rate_hz)
        n = len(raw)
        if n == 1:
            self._add_one(raw, now_ns)
            return
        self._flush()
        t_host = raw["t_host"]
        t_sensor = self._sensor_times(raw)
        if self.mapper is not None and t_sensor is not None:
            t = self.mapper.update(t_sensor, t_host)
        else:
            t = t_host
        a, b = self._reserve(n)
        floor = self.last_t if self.last_t is not None else _T_MIN
        if n == 1:
            self._t[a] = max(int(t[0]), floor)
        else:  # monotonize across clock refits
            np.maximum.accumulate(np.maximum(t, floor), out=self._t[a:b])
        ag = self._ag[a:b]
        ag[:, 0] = raw["acc"]
        ag[:, 1] = raw["gyr"]
        self._classify(ag, self._state[a:b])
        self._end = b
        self.last_t = int(self._t[b - 1]) if n else self.last_t
        self.last_arrival_ns = now_ns
        self.samples += n

    def _classify(self, ag: np.ndarray, state: np.ndarray) -> None:
        """Sample states (0, INVALID, SATURATED) of ``ag`` (n, 2, 3) acc m/s^2, gyr rad/s into
        ``state``; counts them. Same decisions as :meth:`_add_one`: squared norms summed x, y,
        z (NaN compares False, inf exceeds any limit), then per axis where acc may be at the
        range."""
        sq = ag * ag
        norm2 = sq[:, :, 0] + sq[:, :, 1]
        norm2 += sq[:, :, 2]
        with np.errstate(invalid="ignore"):
            np.multiply(~(norm2[:, 1] <= self._gyr2_max), _INVALID, out=state)
            high = ~(norm2[:, 0] < self._acc2_sat)  # an axis may be at the range (or NaN)
        if high.any():
            rows = np.flatnonzero(high)
            acc_abs = np.abs(ag[rows, 0]).max(axis=1)  # NaN if an axis is NaN
            with np.errstate(invalid="ignore"):
                beyond = ~(acc_abs <= self._acc_abs_max)
                at_range = ~beyond & (acc_abs >= self._acc_sat) & (state[rows] == 0)
            state[rows[beyond]] = _INVALID
            state[rows[at_range]] = _SATURATED
            self.saturated_samples += int(np.count_nonzero(at_range))
        self.invalid_samples += int(np.count_nonzero(state == _INVALID))

    def _add_one(self, raw: np.ndarray, now_ns: int) -> None:
        """:meth:`add` for a one-sample block (live streams), with Python scalars."""
        ts, th, _, ax, ay, az, gx, gy, gz = _RAW_ONE.unpack_from(raw)
        t = th
        if self.mapper is not None:
            if ts < 0:  # no device clock: sample count times the nominal period
                ts = self._sensor_times(raw)
                ts = None if ts is None else int(ts[0])
            if ts is not None:
                t = self.mapper.map_one(ts, th)
        last = self.last_t
        if last is not None and t < last:
            t = last  # monotonic across clock refits
        # NaN compares False and inf exceeds any limit: one test covers finiteness and range
        g_ok = gx * gx + gy * gy + gz * gz <= self._gyr2_max
        if ax * ax + ay * ay + az * az < self._acc2_sat and g_ok:
            state = 0  # the usual sample
        else:
            state = self._state_one(ax, ay, az, g_ok)
        self._pend.append((t, state, (ax, ay, az, gx, gy, gz)))
        self.last_t = t
        self.last_arrival_ns = now_ns
        self.samples += 1

    def _state_one(self, ax: float, ay: float, az: float, g_ok: bool) -> int:
        """State of a sample whose acc (m/s^2) may be at or beyond the range, or whose gyr is
        not ``g_ok``: per axis, as :meth:`_classify`; counted."""
        lim, sat = self._acc_abs_max, self._acc_sat
        if not (g_ok and abs(ax) <= lim and abs(ay) <= lim and abs(az) <= lim):
            self.invalid_samples += 1
            return _F_INVALID
        if abs(ax) >= sat or abs(ay) >= sat or abs(az) >= sat:
            self.saturated_samples += 1
            return _F_SATURATED
        return 0

    def _flush(self) -> None:
        """Move the samples added one at a time into the arrays (before any array operation)."""
        pend = self._pend
        if pend:
            a, b = self._reserve(len(pend))
            t, state, vals = zip(*pend)
            self._t[a:b] = t
            self._state[a:b] = state
            self._ag[a:b] = np.reshape(vals, (-1, 2, 3))
            self._end = b
            pend.clear()

    def _reserve(self, n: int) -> tuple[int, int]:
        """Room for ``n`` more samples at the end: returns the slice ``[end, end + n)``."""
        if self._end + n > len(self._t):
            used = self._end - self._start
            cap = len(self._t)
            while used + n > cap // 2:
                cap *= 2
            if cap != len(self._t):
                t, ag, state = (np.empty(cap, np.int64), np.empty((cap, 2, 3), np.float64),
                                np.empty(cap, np.uint8))
            else:
                t, ag, state = self._t, self._ag, self._state
            t[:used] = self._t[self._start:self._end]
            ag[:used] = self._ag[self._start:self._end]
            state[:used] = self._state[self._start:self._end]
            self._t, self._ag, self._state = t, ag, state
            self._start, self._end = 0, used
        return self._end, self._end + n

    def _sensor_times(self, raw: np.ndarray) -> np.ndarray | None:
        """Device times (ns); from the sample count and nominal rate if the device has no clock."""
        ts = raw["t_sensor"]
        n = len(ts)
        if n and ts.min() >= 0:
            return ts
        if self.period_ns <= 0:
            return None  # nothing to dejitter against: use t_host
        counter = raw["counter"].astype(np.int64)
        idx = counter if n and (counter >= 0).all() else np.arange(n) + self._next_index
        self._next_index = int(idx[-1]) + 1 if n else self._next_index
        return idx * self.period_ns

    def resample(self, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values at host times ``grid`` (int64 ns): acc (m, 3), gyr (m, 3), flags (m,) uint8.

        Linear interpolation between the samples around each grid time. Where the
        samples around it are further apart than ``max_gap_ns`` or there is none on
        one side: NaN and MISSING. Where one of them is invalid: NaN and INVALID.
        Where one of them is saturated: the interpolated values and SATURATED.
        Across lost samples (spacing > 1.5 nominal periods, <= max_gap_ns): INTERPOLATED.
        """
        ag, flags = self.resample_into(grid)
        return ag[:, 0], ag[:, 1], flags

    def resample_into(self, grid: np.ndarray, ag: np.ndarray | None = None,
                      flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`resample`, into ``ag`` (m, 2, 3) float (acc, gyr) and ``flags`` (m,) uint8."""
        m = len(grid)
        ag = np.empty((m, 2, 3)) if ag is None else ag
        flags = np.empty(m, np.uint8) if flags is None else flags
        if m == 1:
            vals, flags[0] = self.sample_at(int(grid[0]))
            ag[0] = vals[:3], vals[3:]
            return ag, flags
        self._flush()
        n = self._end - self._start
        if n == 0:
            ag[...] = np.nan
            flags[...] = _MISSING
            return ag, flags
        t, vals, state = self.t, self._ag[self._start:self._end], self.state
        j = t.searchsorted(grid, side="right") - 1  # last sample at or before grid
        if j[0] >= 0 and (j[-1] < n - 1 or t[-1] == grid[-1]):
            # every grid time has samples on both sides (or, the last, one at its time)
            jn = np.minimum(j + 1, n - 1)
            tp = t.take(j)
            span = t.take(jn) - tp
            exact = tp == grid
            if ((span <= self.max_gap_ns) | exact).all() and not state.take(j).any() and (
                    not state.take(jn).any()):
                # the usual case: every grid time interpolated between two good samples
                w = (grid - tp) / np.maximum(span, 1)
                vp = vals.take(j, axis=0)  # take: ~5x faster than fancy indexing here
                res = ag if ag.flags.c_contiguous else np.empty(ag.shape)
                np.subtract(vals.take(jn, axis=0), vp, out=res)
                flat = res.reshape(-1)  # flat loops: ~2x faster than broadcasting over (2, 3)
                flat *= w.repeat(6)
                flat += vp.reshape(-1)  # vp + w * (vn - vp), as _resample_one computes it
                hit = exact.any()
                if hit:  # a sample at the grid time: taken as it is
                    np.copyto(flat, vp.reshape(-1), where=exact.repeat(6))
                if res is not ag:
                    ag[...] = res
                if self.period_ns > 0:
                    lost = span > 1.5 * self.period_ns  # samples lost in between
                    if hit:
                        lost &= ~exact
                    np.multiply(lost, _INTERPOLATED, out=flags)
                else:
                    flags[...] = _OK
                return ag, flags
        return self._resample_general(grid, j, ag, flags)

    def _resample_general(self, grid: np.ndarray, j: np.ndarray, ag: np.ndarray,
                          flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`resample_into` with gaps, invalid or saturated samples or grid times outside
        the samples."""
        n = self._end - self._start
        t, vals, state = self.t, self._ag[self._start:self._end], self.state
        has_prev = j >= 0
        jp = np.clip(j, 0, n - 1)
        jn = np.clip(j + 1, 0, n - 1)
        exact = has_prev & (t[jp] == grid)
        has_next = has_prev & (j + 1 < n)
        span = np.where(has_next, t[jn] - t[jp], 0)
        bridged = has_next & ~exact & (span <= self.max_gap_ns)
        ok = exact | bridged
        w = np.where(bridged, (grid - t[jp]) / np.maximum(span, 1), 0.0)[:, None, None]
        st = state[jp] | np.where(exact, _OK, state[jn])  # of the samples used
        valid = st & _INVALID == 0
        use = ok & valid
        ag[...] = np.nan
        ag[use & exact] = vals[jp][use & exact]
        mid = use & bridged
        with np.errstate(invalid="ignore"):  # inf - inf next to an INVALID sample: not used
            ag[mid] = (vals[jp] + w * (vals[jn] - vals[jp]))[mid]
        flags[...] = _MISSING
        flags[ok] = _OK
        flags[ok & ~valid] = _INVALID
        flags[use] |= st[use] & _SATURATED
        if self.period_ns > 0:
            lost = bridged & (span > 1.5 * self.period_ns)
            flags[lost] |= _INTERPOLATED
        return ag, flags

    def sample_at(self, g: int) -> tuple[Sequence[float], int]:
        """:meth:`resample` at one host time ``g`` (ns) in Python scalars: the values (acc x,
        y, z in m/s^2, gyr x, y, z in rad/s; NaN if MISSING or INVALID) and the flags."""
        pend = self._pend
        if not pend or pend[0][0] > g:  # the sample before g (if any) is in the arrays
            return self._sample_at_arrays(g)
        j = bisect_right(pend, g, key=_HOST_T) - 1
        tp, sp, vp = pend[j]
        if tp == g:  # a sample at the grid time: taken as it is
            return (_NAN6, _F_INVALID) if sp & _F_INVALID else (vp, sp)
        if j + 1 == len(pend):
            return _NAN6, _F_MISSING
        tn, sn, vn = pend[j + 1]
        return self._between(g, tp, sp, vp, tn, sn, vn)

    def _sample_at_arrays(self, g: int) -> tuple[Sequence[float], int]:
        """:meth:`sample_at` when no pending sample is at or before ``g``."""
        s, e = self._start, self._end
        t = self._t
        jp = s + int(t[s:e].searchsorted(g, side="right")) - 1
        if jp < s:  # before the first sample
            return _NAN6, _F_MISSING
        tp, sp, vp = int(t[jp]), int(self._state[jp]), self._ag[jp].ravel().tolist()
        if tp == g:
            return (_NAN6, _F_INVALID) if sp & _F_INVALID else (vp, sp)
        jn = jp + 1
        if jn < e:
            nxt = int(t[jn]), int(self._state[jn]), self._ag[jn].ravel().tolist()
        elif self._pend:  # the next sample is the first pending one
            nxt = self._pend[0]
        else:
            return _NAN6, _F_MISSING
        return self._between(g, tp, sp, vp, *nxt)

    def _between(self, g: int, tp: int, sp: int, vp: Sequence[float], tn: int, sn: int,
                 vn: Sequence[float]) -> tuple[Sequence[float], int]:
        """Values and flags at ``g`` strictly between samples at ``tp`` and ``tn`` (ns) whose
        states (0, INVALID or SATURATED) are ``sp`` and ``sn``."""
        span = tn - tp
        if span > self.max_gap_ns:
            return _NAN6, _F_MISSING
        lost = _F_INTERPOLATED if self.period_ns > 0 and span > 1.5 * self.period_ns else _F_OK
        st = sp | sn
        if st & _F_INVALID:
            return _NAN6, _F_INVALID | lost
        w = (g - tp) / max(span, 1)
        return [p + w * (q - p) for p, q in zip(vp, vn)], lost | st

    def trim_before(self, t_ns: int) -> None:
        """Drop samples not needed for grid times >= ``t_ns`` (keeps the one before it)."""
        pend = self._pend
        if pend and pend[0][0] <= t_ns:  # the sample to keep is a pending one
            self._start = self._end
            j = bisect_right(pend, t_ns, key=_HOST_T) - 1
            if j:
                del pend[:j]
            return
        j = int(self._t[self._start:self._end].searchsorted(t_ns, side="right")) - 1
        if j > 0:
            self._start += j
