"""JointHeading: heading offset between two segments joined by two orthogonal hinges, streaming.

Two IMUs with 6D orientation filters (VQF, no magnetometer) each have their own earth frame;
the two differ by a rotation ``delta`` about the vertical that drifts slowly. A joint with
two rotation axes leaves only certain relative orientations possible (the axes stay
orthogonal), and ``delta`` is the heading offset that makes the measured ones fit (Laidig,
Seel et al.). This is the streaming, causal form of ``qmt.headingCorrection`` for 2-DoF
joints with its 'backward' window and default settings: every ``1 / estimation_hz`` s the
offset is estimated from the last ``window_s`` s sampled at ``data_hz`` (qmt's Gauss-Newton
fit, compiled in ``heading_fit.py``), held through rests (qmt's stillness correction), and
smoothed by qmt's heading filter one estimation at a time. Where qmt interpolates between
two estimations (looking up to one interval ahead) this holds the last filtered value, so
every output depends on past samples only. The filtered offsets equal qmt's at its
estimation instants (tests/test_joint_heading.py).

Units: quaternions w, x, y, z (segment to its filter's earth frame, z up); gyr rad/s in the
segment frames; axes unit vectors (axis 1 in segment 1's frame, axis 2 in segment 2's);
delta rad: ``Rz(delta) * q2`` is segment 2 in segment 1's earth frame.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.estimation.heading_fit import fit_delta_2d
from pipeline.kinematics.quaternion import np_qconj, np_qfrom_axis_angle, np_qmul

STARTUP, REGULAR, STILL = 2, 1, 3  # qmt's state codes
Z = np.array([0.0, 0.0, 1.0])


def wrap_pi(angle: float) -> float:
    """Angle wrapped to [-pi, pi), rad."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class JointHeading:
    """Heading offset (rad about earth z) of segment 2's filter frame to segment 1's.

    Args:
        axes: (2, 3): axis 1 fixed in segment 1, axis 2 fixed in segment 2 (unit vectors).
        rate_hz: sample rate of the inputs, Hz; must be a multiple of ``data_hz``.
        Other arguments are qmt's estimation settings, with its defaults.
    """

    def __init__(self, axes: np.ndarray, rate_hz: float, *, window_s: float = 8.0,
                 estimation_hz: float = 1.0, data_hz: float = 5.0, tau_delta_s: float = 5.0,
                 tau_bias_s: float = 5.0, rating_min: float = 0.4, still_s: float = 3.0,
                 still_rad_s: float = math.radians(4.0), optimizer_steps: int = 5) -> None:
        self.axes = np.ascontiguousarray(axes, dtype=np.float64)
        if self.axes.shape != (2, 3):
            raise ValueError(f"axes must be (2, 3), got {self.axes.shape}")
        self.data_step = round(rate_hz / data_hz)
        if self.data_step < 1 or not math.isclose(rate_hz / data_hz, self.data_step):
            raise ValueError(f"rate {rate_hz} Hz is not a multiple of data_hz {data_hz} Hz")
        self.est_step = round(rate_hz / estimation_hz)
        self.window_steps = round(window_s * rate_hz)
        self.still_rad_s, self.rating_min, self.steps = still_rad_s, rating_min, optimizer_steps
        ts = 1.0 / estimation_hz
        # qmt's headingFilter receives its two time constants swapped (and the start-up ones)
        self._k_delta = 1 - math.exp(-ts * math.log(2) / tau_bias_s)
        self._k_bias = 1 - math.exp(-ts * math.log(2) / tau_delta_s)
        self._k_delta_startup = 1 - math.exp(-ts * math.log(2) / 1.0)
        self._lead = window_s * estimation_hz / 2  # the backward window's lag, in estimations
        self._bias_clip = math.radians(2) * ts
        # what the estimations read, written by take_frames (also from prior_frame.py's kernel):
        # data-rate orientations q1, q2 and the gyro norms (rad/s) of both segments, each a
        # ring; counts: frames taken, data-rate samples taken (both since the start or the last
        # restart), 1 while a restart waits for the next estimation to reset the filter
        self.win_ring = np.zeros((2, self.window_steps // self.data_step + 1, 4))
        self.norm_ring = np.zeros((round(still_s * rate_hz) + 1, 2))
        self.counts = np.zeros(3, np.int64)
        self._n_est = 0      # estimation instants passed (qmt's k)
        self._n_regular = 0  # of them after start-up (qmt's j)
        self._delta = 0.0    # last raw estimate
        self._state = 0
        self._still_ref: tuple[np.ndarray, float] | None = None  # rest: relative q, delta
        self._out = self._bias = 0.0
        self.value = 0.0     # the filtered, lag-compensated offset now applied, rad
        self.rating = 0.0

    def update(self, q1: np.ndarray, q2: np.ndarray, gyr1: np.ndarray, gyr2: np.ndarray,
               restart: np.ndarray | None = None) -> np.ndarray:
        """Take n frames ((n, 4) quaternions, (n, 3) gyr); return (n,) delta rad per frame.

        ``restart`` (n,) bool: frames at which a segment's filter started again after a sensor
        gap (``Vqf6DBank.restarted``); its heading jumped by an unknown amount, so the
        estimation starts again there (start-up of the window, its filter reset at the next
        estimation), holding the last offset until then.
        """
        n = len(q1)
        out = np.empty(n)
        restart = np.zeros(n, np.bool_) if restart is None else restart
        restarts = np.flatnonzero(restart).tolist()
        start = 0
        while start < n:
            if restarts and restarts[0] == start:  # a segment starts at each restart frame:
                restarts.pop(0)                     # the next event counts from it
                self.counts[0] = self.counts[1] = 0
            stop = min(n, start + self._to_next_event(), restarts[0] if restarts else n)
            take_frames(self.win_ring, self.norm_ring, self.counts, self.data_step,
                        q1[start:stop], q2[start:stop], gyr1[start:stop], gyr2[start:stop],
                        restart[start:stop], restart[start:stop])
            out[start:stop] = self.value  # held until the estimation instant
            if self._is_event(self._k - 1):
                self._estimate(q1[stop - 1], q2[stop - 1])
                out[stop - 1] = self.value
            start = stop
        return out

    @property
    def _k(self) -> int:
        """Frames taken."""
        return int(self.counts[0])

    def next_is_event(self) -> bool:
        """True when the next frame is an estimation instant (compiled code that takes it with
        :func:`take_frames` then calls :meth:`estimate_now`)."""
        return self._is_event(self._k)

    def estimate_now(self, q1_now: np.ndarray, q2_now: np.ndarray) -> None:
        """The estimation instant of the frame just taken with :func:`take_frames` ((4,)
        orientations of both segments at it), as :meth:`update` runs it; nothing when that
        frame restarted the estimation instead (``take_frames``' restart flags)."""
        if not self._is_event(self._k - 1):
            if self.counts[2] and self._k == 1:
                return  # restarted by this very frame: the first frame of a start-up
            raise ValueError(f"frame {self._k - 1} is no estimation instant of the heading")
        self._estimate(q1_now, q2_now)

    # -- frames -----------------------------------------------------------------------------------
    def _is_event(self, index: int) -> bool:
        """An estimation instant: each data step in start-up, then each estimation step."""
        if index < self.data_step:
            return False
        if index < self.window_steps:
            return index % self.data_step == 0
        return (index - self.window_steps) % self.est_step == 0

    def _to_next_event(self) -> int:
        """Frames from the next one up to and including the next estimation instant."""
        k = self._k
        if k < self.window_steps:
            nxt = min(max(self.data_step, -(-k // self.data_step) * self.data_step),
                      self.window_steps)
        else:
            nxt = self.window_steps + -(-(k - self.window_steps) // self.est_step) * self.est_step
        return nxt - k + 1

    def _window(self) -> tuple[np.ndarray, np.ndarray]:
        """The window's orientations in time order, (m, 4) each."""
        cap, taken = len(self.win_ring[0]), int(self.counts[1])
        if taken <= cap:
            return self.win_ring[0, :taken], self.win_ring[1, :taken]
        start = taken % cap
        return (np.concatenate((self.win_ring[0, start:], self.win_ring[0, :start])),
                np.concatenate((self.win_ring[1, start:], self.win_ring[1, :start])))

    # -- estimation -------------------------------------------------------------------------------
    def _estimate(self, q1_now: np.ndarray, q2_now: np.ndarray) -> None:
        """One estimation instant at the newest frame, then one step of the heading filter."""
        index = self._k - 1
        if self.counts[2]:  # restarted after a gap: the filter starts again, seeded as it is
            self.counts[2] = 0
            self._n_est = self._n_regular = self._state = 0
            self._still_ref, self._bias = None, 0.0
        self._n_est += 1
        if self._n_est == 1:  # qmt's first instant only seeds the filter (delta 0)
            return
        startup = index < self.window_steps
        state, rating, previous = (STARTUP if startup else REGULAR), 1.0, self._delta
        if not startup and index > len(self.norm_ring) - 1 and self._is_still():
            trigger = self._state == REGULAR
            self._delta, state = self._hold_still(q1_now, q2_now, trigger), STILL
        else:
            self._delta, rating = self._fit(self._delta, startup)
        self._state = state
        self._filter(previous, rating, startup)

    def _is_still(self) -> bool:
        """qmt's stillness test: mean gyro norm of both segments under the threshold."""
        mean = self.norm_ring.mean(axis=0)
        return bool(mean[0] < self.still_rad_s and mean[1] < self.still_rad_s)

    def _hold_still(self, q1: np.ndarray, q2: np.ndarray, trigger: bool) -> float:
        """qmt's stillness correction: keep the relative orientation held when rest began."""
        if self._still_ref is None or trigger:
            turn = np_qfrom_axis_angle(Z, self._delta)
            self._still_ref = (np_qmul(np_qconj(q1), np_qmul(turn, q2)), self._delta)
        ref, delta_still = self._still_ref
        e2e1 = np_qmul(np_qmul(q1, ref), np_qconj(q2))
        rel = np_qmul(np_qconj(np_qfrom_axis_angle(Z, delta_still)), e2e1)
        return delta_still + 2.0 * math.atan2(rel[3], rel[0])

    def _fit(self, previous: float, startup: bool) -> tuple[float, float]:
        """Gauss-Newton fit over the window (in start-up also from delta + pi, the lower cost)."""
        q1, q2 = self._window()
        j1, j2 = self.axes
        delta, rating, cost = fit_delta_2d(q1, q2, j1, j2, previous, self.steps)
        if startup:
            delta2, _, cost2 = fit_delta_2d(q1, q2, j1, j2, previous + math.pi, self.steps)
            if cost2 < cost:
                delta = delta2
            rating = 1.0  # qmt's start rating
        return delta, rating

    def _filter(self, previous: float, rating: float, startup: bool) -> None:
        """qmt's heading filter, one estimation: slope-tracking low-pass of delta."""
        rating = rating if rating >= self.rating_min else 0.0
        if startup:
            k_bias = 0.0
            k_delta = max(rating * self._k_delta_startup, 1 / self._n_est)
        else:
            k_bias = rating * self._k_bias
            k_delta = max(rating * self._k_delta, 1 / (self._n_regular + 1))
            self._n_regular += 1
        clip = self._bias_clip
        diff = min(max(wrap_pi(self._delta - previous), -clip), clip)
        self._bias = min(max(self._bias + k_bias * (diff - self._bias), -clip), clip)
        self._out += self._bias + k_delta * (wrap_pi(self._delta - self._out) - self._bias)
        self.value = self._out + self._lead * self._bias
        self.rating = rating


@njit(cache=True)
def take_frames(win_ring, norm_ring, counts, data_step, q1, q2, g1, g2, restart1,
                restart2):  # pragma: no cover
    """Keep what the heading's next estimation needs from (n, 4) orientations and (n, 3) gyr
    rad/s of both segments: every ``data_step``-th frame's orientations into the window ring,
    every frame's gyro norms into the norm ring; ``counts`` (frames, data-rate samples)
    advanced in place. A frame
    flagged in ``restart1`` or ``restart2`` (n,) bool (a segment's filter restarted there)
    first starts the window again and sets ``counts[2]`` (:meth:`JointHeading.update` also
    resets the counts before it, to count the next estimation instant from there)."""
    cap = win_ring.shape[1]
    for t in range(q1.shape[0]):
        if restart1[t] or restart2[t]:
            counts[0] = counts[1] = 0
            counts[2] = 1
        k = counts[0]
        if k % data_step == 0:
            win_ring[0, counts[1] % cap] = q1[t]
            win_ring[1, counts[1] % cap] = q2[t]
            counts[1] += 1
        row = k % norm_ring.shape[0]
        norm_ring[row, 0] = _norm3(g1[t])
        norm_ring[row, 1] = _norm3(g2[t])
        counts[0] = k + 1


@njit(cache=True, inline="always")
def _norm3(v):  # pragma: no cover - numba
    """|v| of a 3-vector, in float64."""
    x, y, z = np.float64(v[0]), np.float64(v[1]), np.float64(v[2])
    return math.sqrt(x * x + y * y + z * z)
