"""Map one sensor's clock onto the host's monotonic clock (offset and drift), like LSL's dejitter.

Transport (USB, BLE, the OS scheduler) only ever adds delay, so for every sample
``t_host - t_sensor = offset(t) + delay`` with ``delay >= 0``. The lower envelope
of ``d = t_host - t_sensor`` over sensor time is therefore the clock relation
itself. :class:`ClockMapper` keeps the minimum of ``d`` per bin of sensor time
(``bin_s``, default 0.5 s), fits a line through the bin minima of the last
``window_s`` seconds (least squares, then bins far above the line are dropped
as delay bursts and the line is fitted again), and maps sensor times with the
line. The fit changes only when a bin closes, and that depends on sensor time
alone, so the mapping of every sample is the same whatever block sizes the
samples arrive in.

Clock resets: a sensor time that goes backwards, a sample that would have
arrived *before* it was captured by more than ``reset_s``, or samples that all
arrive more than ``reset_s`` late for ``reset_after_s`` of sensor time restart
the estimation (the count is in :attr:`ClockMapper.resets`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger("imuflow.clock_mapper")

_NS = 1e9


@dataclass(frozen=True)
class ClockFit:
    """Current clock relation: ``t_host = t_sensor + offset_ns + drift * (t_sensor - t_ref_ns)``."""

    t_ref_ns: int
    offset_ns: float
    drift: float  # dimensionless (1e-6 = 1 ppm), host clock runs faster than the sensor's if > 0


class ClockMapper:
    """Online estimate of one sensor clock's offset and drift against host time.

    Args:
        bin_s: length of a bin of sensor time whose minimum delay is kept, s.
        window_s: how much sensor time the line is fitted over, s.
        reset_s: a residual beyond this (s) signals a clock reset (see module docstring).
        reset_after_s: how long all samples may arrive later than ``reset_s`` before resetting, s.
        outlier_s: bins whose minimum lies this far (s) above the fitted line are dropped.
    """

    def __init__(self, *, bin_s: float = 0.5, window_s: float = 30.0, reset_s: float = 0.5,
                 reset_after_s: float = 2.0, outlier_s: float = 0.002) -> None:
        if bin_s <= 0 or window_s < 2 * bin_s or reset_s <= 0 or reset_after_s <= 0:
            raise ValueError("ClockMapper: need bin_s > 0, window_s >= 2*bin_s, reset_s > 0, "
                             f"reset_after_s > 0; got bin_s={bin_s}, window_s={window_s}, "
                             f"reset_s={reset_s}, reset_after_s={reset_after_s}")
        self.bin_ns = int(bin_s * _NS)
        self.max_bins = max(2, round(window_s / bin_s))
        self.reset_ns = reset_s * _NS
        self.reset_after_ns = int(reset_after_s * _NS)
        self.outlier_ns = outlier_s * _NS
        self.resets = 0
        self._clear()

    def _clear(self) -> None:
        self._t_ref: int | None = None  # first sensor time since the last reset
        self._bins_t: list[float] = []  # closed bins: sensor time of the minimum (rel. t_ref)
        self._bins_d: list[float] = []  # closed bins: minimum of t_host - t_sensor (rel. d_ref)
        self._d_ref = 0
        self._cur_bin = 0  # index of the open bin
        self._cur_t = 0.0
        self._cur_d = np.inf
        self._offset = np.inf  # relative to d_ref, ns
        self._drift = 0.0
        self._last_t: int | None = None
        self._late_since: int | None = None  # sensor time since which every sample was late

    @property
    def fit(self) -> ClockFit | None:
        """The current line, None before the first sample."""
        if self._t_ref is None:
            return None
        return ClockFit(self._t_ref, self._d_ref + self._offset, self._drift)

    def update(self, t_sensor_ns: np.ndarray, t_host_ns: np.ndarray) -> np.ndarray:
        """Feed samples (int64 ns, sensor and host clocks) and return their host-time estimates.

        Each sample is mapped with the fit known when it arrived (the open bin's running
        minimum takes part before the first bin closes). Returns (n,) int64 ns, host clock.
        """
        ts = np.asarray(t_sensor_ns, dtype=np.int64)
        th = np.asarray(t_host_ns, dtype=np.int64)
        if ts.shape != th.shape or ts.ndim != 1:
            raise ValueError(f"ClockMapper.update: t_sensor {ts.shape} and t_host {th.shape} "
                             "must be 1-D arrays of the same length")
        if len(ts) == 1:  # live streams: one sample per message; same result, ~5x cheaper
            return np.array([self.map_one(int(ts[0]), int(th[0]))], dtype=np.int64)
        out = np.empty(len(ts), dtype=np.int64)
        i, tried = 0, False
        while i < len(ts):
            if not tried and self._bins_t:  # a line exists: the rest of the block at once
                tried = True
                if self._block(ts[i:], th[i:], out[i:]):
                    break
            i = self._segment(ts, th, i, out)
        return out

    def _block(self, ts: np.ndarray, th: np.ndarray, out: np.ndarray) -> bool:
        """A whole block at once, if nothing unusual happens in it; False (state untouched) if not.

        The usual case offline: a line exists, sensor time never goes backwards, no sample
        is more than ``reset_s`` early or late. The samples are cut where bins change; the
        bins that close in the block are fitted one after the other (:meth:`_fit_closes`,
        the same arithmetic as :meth:`_close_bin`) and every sample is mapped with the fit
        of the bins closed before it: exactly what :meth:`_segment` and :meth:`map_one`
        compute sample by sample. Anything else (first bin, reset) goes the general way.
        """
        if not self._bins_t or (self._last_t is not None and ts[0] < self._last_t):
            return False
        n = len(ts)
        if n > 1 and (ts[1:] < ts[:-1]).any():
            return False
        rel = ts - self._t_ref
        b = rel // self.bin_ns
        d = th - ts - self._d_ref
        cut = (b[1:] != b[:-1]).nonzero()[0]
        bounds = np.empty(len(cut) + 2, np.intp)  # segments: [bounds[s], bounds[s + 1])
        bounds[0], bounds[-1] = 0, n
        np.add(cut, 1, out=bounds[1:-1])
        starts = bounds[:-1]
        lens = bounds[1:] - starts
        mins = np.minimum.reduceat(d, starts)  # per segment: first minimum of d and its time
        where = (d == mins.repeat(lens)).nonzero()[0]
        tmin = rel[where[where.searchsorted(starts)]]
        seg_d, seg_t = mins.tolist(), tmin.tolist()
        # bins that close in this block, in order; the last segment's bin stays open
        close_t: list[float] = []
        close_d: list[float] = []
        cur_t, cur_d = self._cur_t, self._cur_d
        first_bin = int(b[0])
        if first_bin != self._cur_bin:
            if math.isfinite(cur_d):
                close_t.append(cur_t)
                close_d.append(cur_d)
            cur_t, cur_d = float(seg_t[0]), float(seg_d[0])
        elif seg_d[0] < cur_d:
            cur_t, cur_d = float(seg_t[0]), float(seg_d[0])
        ahead = len(close_t)  # closes before segment 0
        for s in range(1, len(starts)):
            close_t.append(cur_t)
            close_d.append(cur_d)
            cur_t, cur_d = float(seg_t[s]), float(seg_d[s])
        offsets, drifts = self._fit_closes(close_t, close_d)
        # fit per segment: segment s follows ahead + s closes (0: the current fit)
        seg_off = np.array(([self._offset] + offsets)[ahead:])
        seg_dr = np.array(([self._drift] + drifts)[ahead:])
        if len(starts) == 1:
            pred = seg_off[0] + seg_dr[0] * rel.astype(np.float64)
        else:
            pred = seg_off.repeat(lens) + seg_dr.repeat(lens) * rel.astype(np.float64)
        resid = d.astype(np.float64) - pred
        if np.abs(resid).max() > self.reset_ns:
            return False  # early or late samples: the general path decides (resets)
        # commit
        if close_t:
            keep = self.max_bins
            self._bins_t = (self._bins_t + close_t)[-keep:]
            self._bins_d = (self._bins_d + close_d)[-keep:]
            self._offset, self._drift = offsets[-1], drifts[-1]
        self._cur_bin = int(b[-1])
        self._cur_t, self._cur_d = cur_t, cur_d
        self._last_t = int(ts[-1])
        self._late_since = None
        np.add(ts + self._d_ref, np.rint(pred).astype(np.int64), out=out)
        return True

    def _fit_closes(self, close_t: list[float], close_d: list[float]
                    ) -> tuple[list[float], list[float]]:
        """Offsets and drifts after each of the bins ``close_t``/``close_d`` closes, in one
        :func:`_fit_windows` call (no state changes; :meth:`_refit` fits one window the same way).
        """
        if not close_t:
            return [], []
        w = self.max_bins
        first, m = len(self._bins_t), len(close_t)
        pad = [0.0] * (w - 1)
        win_t = _windows(np.array(pad + self._bins_t + close_t), first, m, w)
        win_d = _windows(np.array(pad + self._bins_d + close_d), first, m, w)
        if first + 1 >= w:  # every window full
            return _fit_windows(win_t, win_d, None, self.bin_ns, self.outlier_ns, full=True)
        count = np.minimum(np.arange(first + 1, first + m + 1), w)  # bins in each window
        valid = np.arange(w) >= (w - count)[:, None]
        return _fit_windows(win_t, win_d, valid, self.bin_ns, self.outlier_ns)

    def _segment(self, ts: np.ndarray, th: np.ndarray, i: int, out: np.ndarray) -> int:
        """Process samples from ``i`` up to a bin boundary or a reset; return the next index."""
        if self._t_ref is None:
            self._start(int(ts[i]), int(th[i]))
        if self._last_t is not None and ts[i] < self._last_t:
            self._reset(int(ts[i]), int(th[i]), "sensor time went backwards")
            return i
        # the segment ends where the sensor time leaves the open bin or goes backwards
        rel = ts[i:] - self._t_ref
        bins = rel // self.bin_ns
        ends = np.flatnonzero(bins != self._cur_bin)
        stop = i + int(ends[0]) if len(ends) else len(ts)
        back = np.flatnonzero(np.diff(ts[i:stop]) < 0)
        if len(back):
            stop = i + int(back[0]) + 1
        if stop == i:  # a new bin starts here
            self._close_bin(int(bins[0]))
            return i
        seg_t = rel[: stop - i].astype(np.float64)
        seg_d = (th[i:stop] - ts[i:stop] - self._d_ref).astype(np.float64)
        seg_min = np.minimum.accumulate(np.minimum(seg_d, self._cur_d))
        if self._bins_t:  # a line exists
            pred = self._offset + self._drift * seg_t
        else:  # first bin: the running minimum, no drift
            pred = seg_min
        resid = seg_d - pred
        early = np.flatnonzero(resid < -self.reset_ns)
        k = int(early[0]) if len(early) else stop - i  # samples before the first early one
        if k == 0:
            self._reset(int(ts[i]), int(th[i]), f"sample arrived {-resid[0] / 1e6:.1f} ms before "
                        "its capture time (sensor clock jumped)")
            return i
        late = resid[:k] > self.reset_ns
        j = self._late_check(late, ts[i:i + k]) if late.any() else -1
        if j == 0:
            self._reset(int(ts[i]), int(th[i]), f"samples arrived > {self.reset_ns / 1e6:.0f} ms "
                        "late for too long (sensor clock jumped back or host stalled)")
            return i
        if j < 0:
            j = k
            if not late[-1]:
                self._late_since = None  # the last sample was on time
        self._absorb(seg_t[:j], seg_d[:j], pred[:j], ts[i:i + j], out, i)
        return i + j

    def map_one(self, ts: int, th: int) -> int:
        """:meth:`update` for one sample, Python ints in and out (ns; the steps of ``_segment``)."""
        while True:
            if self._t_ref is None:
                self._start(ts, th)
            if self._last_t is not None and ts < self._last_t:
                self._reset(ts, th, "sensor time went backwards")
                continue
            rel = ts - self._t_ref
            b = rel // self.bin_ns
            if b != self._cur_bin:  # a new bin starts here
                self._close_bin(b)
                continue
            seg_t, seg_d = float(rel), float(th - ts - self._d_ref)
            pred = self._offset + self._drift * seg_t if self._bins_t else min(seg_d, self._cur_d)
            resid = seg_d - pred
            if resid < -self.reset_ns:
                self._reset(ts, th, f"sample arrived {-resid / 1e6:.1f} ms before its capture "
                            "time (sensor clock jumped)")
                continue
            if resid > self.reset_ns:
                if self._late_since is None:
                    self._late_since = ts
                elif ts - self._late_since >= self.reset_after_ns:
                    self._reset(ts, th, f"samples arrived > {self.reset_ns / 1e6:.0f} ms late for "
                                "too long (sensor clock jumped back or host stalled)")
                    continue
            elif self._late_since is not None:  # on time: a run of late samples ends
                self._late_since = None
            if seg_d < self._cur_d:
                self._cur_d, self._cur_t = seg_d, seg_t
            if not self._bins_t:
                self._offset = min(self._offset, self._cur_d)
            self._last_t = ts
            return ts + self._d_ref + round(pred)  # round half to even, as np.rint

    def _absorb(self, seg_t: np.ndarray, seg_d: np.ndarray, pred: np.ndarray, ts: np.ndarray,
                out: np.ndarray, i: int) -> None:
        n = len(seg_t)
        out[i:i + n] = ts + self._d_ref + np.rint(pred).astype(np.int64)
        k = int(np.argmin(seg_d))
        if seg_d[k] < self._cur_d:
            self._cur_d, self._cur_t = float(seg_d[k]), float(seg_t[k])
        if not self._bins_t:
            self._offset = min(self._offset, self._cur_d)
        self._last_t = int(ts[-1])

    def _late_check(self, late: np.ndarray, ts: np.ndarray) -> int:
        """Track runs of late samples; index where a run reached reset_after_ns, else -1."""
        for k, (flag, t) in enumerate(zip(late, ts)):  # only reached while samples are late
            if not flag:
                self._late_since = None
            elif self._late_since is None:
                self._late_since = int(t)
            elif t - self._late_since >= self.reset_after_ns:
                return k
        return -1

    def _start(self, t_sensor: int, t_host: int) -> None:
        self._t_ref = t_sensor
        self._d_ref = t_host - t_sensor
        self._cur_bin = 0

    def _reset(self, t_sensor: int, t_host: int, why: str) -> None:
        self.resets += 1
        log.info("clock reset #%d: %s; estimating offset and drift again", self.resets, why)
        self._clear()
        self._start(t_sensor, t_host)

    def _close_bin(self, new_bin: int) -> None:
        if math.isfinite(self._cur_d):
            self._bins_t.append(self._cur_t)
            self._bins_d.append(self._cur_d)
            if len(self._bins_t) > self.max_bins:
                del self._bins_t[0], self._bins_d[0]
            self._refit()
        self._cur_bin, self._cur_d, self._cur_t = new_bin, np.inf, 0.0

    def _refit(self) -> None:
        """Line through the closed bins' minima (see the module docstring).

        One window: Python floats, the same operations in the same order as
        :func:`_fit_windows` (so the same bits as a block's fits), ~4x cheaper than
        arrays; a window with outliers goes to :func:`_fit_windows` itself.
        """
        t, d = self._bins_t, self._bins_d
        k = len(t)
        if k < 2 or t[-1] - t[0] < self.bin_ns:
            self._offset, self._drift = float(min(d)), 0.0
            return
        t0, d0 = t[-1], d[-1]
        su = sv = 0.0
        for x, y in zip(t, d):
            su += x - t0
            sv += y - d0
        mu, mv = su / k, sv / k
        suu = suv = 0.0
        for x, y in zip(t, d):
            uc = (x - t0) - mu
            suv += uc * (y - d0)
            suu += uc * uc
        drift = suv / suu
        offset = (d0 + mv) - drift * (t0 + mu)
        resid = [y - (offset + drift * x) for x, y in zip(t, d)]
        if max(resid) <= self.outlier_ns:
            self._offset, self._drift = offset + min(0.0, min(resid)), drift
            return
        w = self.max_bins
        pad = [0.0] * (w - k)
        off, dr = _fit_windows(np.array([pad + t]), np.array([pad + d]),
                               (np.arange(w) >= w - k)[None], self.bin_ns, self.outlier_ns)
        self._offset, self._drift = off[0], dr[0]

    def map(self, t_sensor_ns: np.ndarray) -> np.ndarray:
        """Host-time estimate (int64 ns) of sensor times (int64 ns) with the current fit."""
        if self._t_ref is None:
            raise RuntimeError("ClockMapper.map: no samples yet; call update() first")
        ts = np.asarray(t_sensor_ns, dtype=np.int64)
        rel = (ts - self._t_ref).astype(np.float64)
        return ts + self._d_ref + np.rint(self._offset + self._drift * rel).astype(np.int64)


def _windows(x: np.ndarray, first: int, m: int, w: int) -> np.ndarray:
    """Read-only (m, w) view of contiguous float64 ``x``: row j = ``x[first + j:first + j + w]``
    (sliding_window_view's result without its ~50 us of argument handling)."""
    return np.ndarray((m, w), np.float64, x, first * 8, (8, 8))


def _fit_windows(t: np.ndarray, d: np.ndarray, valid: np.ndarray | None, bin_ns: float,
                 outlier_ns: float, full: bool = False) -> tuple[list[float], list[float]]:
    """Clock lines through windows of bin minima, one window per row: (offsets, drifts).

    ``t`` (sensor time of each bin's minimum, rel. t_ref) and ``d`` (the minimum) are
    (m, w) float arrays of whole nanoseconds; ``valid`` marks the bins present (a
    window holds its bins at its right end, the newest last). Per row, as the module
    docstring says: fewer than two bins or less than a bin's span: the lowest minimum,
    no drift; else a least-squares line, bins more than ``outlier_ns`` above it dropped
    and the line fitted again (up to 3 fits), then shifted down onto the lowest kept
    bin. Every operation is elementwise or a per-row reduction (sums by sequential
    accumulation), so a row's result does not depend on the other rows: a window fitted
    alone (one bin closing, live) and among others (a block) gives the same bits.
    ``full``: every bin is present (``valid`` None; the usual case, fewer operations).
    """
    m, w = t.shape
    if full:  # every window full: no padding, and usually no outlier (same ops, fewer)
        t0, d0 = t[:, -1:], d[:, -1:]
        u = t - t0
        v = d - d0
        mu = np.add.accumulate(u, axis=1)[:, -1] / w
        mv = np.add.accumulate(v, axis=1)[:, -1] / w
        uc = u - mu[:, None]
        drift = np.add.accumulate(uc * v, axis=1)[:, -1] / np.add.accumulate(uc * uc,
                                                                              axis=1)[:, -1]
        offset = (d0[:, 0] + mv) - drift * (t0[:, 0] + mu)
        resid = d - (offset[:, None] + drift[:, None] * t)
        if resid.max() <= outlier_ns:
            return (offset + np.minimum(0.0, resid.min(axis=1))).tolist(), drift.tolist()
        valid = np.ones((m, w), bool)
    rows = np.arange(m)
    k = valid.sum(axis=1)
    t_first = t[rows, w - k]
    short = (k < 2) | (t[:, -1] - t_first < bin_ns)
    keep = valid
    done = short.copy()
    off = np.zeros(m)
    drift = np.zeros(m)
    lo = np.zeros(m)
    for it in range(3):
        o, r = _fit_rows(t, d, keep)
        resid = d - (o[:, None] + r[:, None] * t)
        new_keep = valid & (resid <= outlier_ns)
        n_new = new_keep.sum(axis=1)
        same = (new_keep == keep).all(axis=1)
        stop = (n_new < 2) | same
        open_ = ~done
        if open_.all() and stop.all():  # the usual case: no outliers anywhere
            off, drift = o, r
            lo = np.where(keep, resid, np.inf).min(axis=1)
            break
        off = np.where(open_, o, off)
        drift = np.where(open_, r, drift)
        lo_keep = np.where(keep, resid, np.inf).min(axis=1)
        go_on = open_ & ~stop
        if it == 2:  # the last fit: its residuals over the last kept set (as the loop leaves it)
            lo_keep = np.where(go_on, np.where(new_keep, resid, np.inf).min(axis=1), lo_keep)
        lo = np.where(open_, lo_keep, lo)
        done = done | stop
        keep = np.where(go_on[:, None], new_keep, keep)
        if done.all():
            break
    off = off + np.minimum(0.0, lo)
    if short.any():
        off = np.where(short, np.where(valid, d, np.inf).min(axis=1), off)
        drift = np.where(short, 0.0, drift)
    return off.tolist(), drift.tolist()


def _fit_rows(t: np.ndarray, d: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line ``d = offset + drift * t`` through the kept points of each row.

    Centred on each row's newest bin and then on the kept points' mean (two passes: no
    cancellation); sums are sequential accumulations along the row, so each row's result
    is the same whatever rows it is computed with. Rows with fewer than 2 distinct kept
    times give NaN/inf (the caller uses those rows' minima instead).
    """
    t0, d0 = t[:, -1:], d[:, -1:]
    k = keep.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(keep, t - t0, 0.0)
        v = np.where(keep, d - d0, 0.0)
        mu = np.add.accumulate(u, axis=1)[:, -1] / k
        mv = np.add.accumulate(v, axis=1)[:, -1] / k
        uc = np.where(keep, u - mu[:, None], 0.0)
        drift = np.add.accumulate(uc * v, axis=1)[:, -1] / np.add.accumulate(uc * uc, axis=1)[:, -1]
        offset = (d0[:, 0] + mv) - drift * (t0[:, 0] + mu)
    return offset, drift


def _line_fit(t: np.ndarray | list[float], d: np.ndarray | list[float]) -> tuple[float, float]:
    """Least-squares line through the points ``t``, ``d`` (floats): (drift, offset)."""
    t, d = np.asarray(t, dtype=np.float64)[None], np.asarray(d, dtype=np.float64)[None]
    offset, drift = _fit_rows(t, d, np.ones(t.shape, bool))
    return float(drift[0]), float(offset[0])
