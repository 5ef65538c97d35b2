"""Preallocated time-stamped ring buffers for the rolling plots, filled from the bus thread."""

from __future__ import annotations

import threading

import numpy as np


class SampleRing:
    """Fixed-capacity ring of (t_host ns, values) rows; writers and readers share one lock.

    ``values`` rows are float32 of width ``width`` in the unit the caller chose (the plots
    document theirs). Old rows are overwritten when the ring is full.
    """

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 2 or width < 1:
            raise ValueError(f"SampleRing needs capacity >= 2 and width >= 1, got {capacity}, {width}")
        self._lock = threading.Lock()
        self._t = np.zeros(capacity, np.int64)
        self._v = np.full((capacity, width), np.nan, np.float32)
        self._head = 0  # next row to write
        self._count = 0
        self.total = 0  # rows ever written
        self.capacity, self.width = capacity, width

    def extend(self, t_host: np.ndarray, values: np.ndarray) -> None:
        """Append rows: t_host (n,) int64 ns, values (n, width) float32."""
        t_host = np.asarray(t_host, np.int64).reshape(-1)
        values = np.asarray(values, np.float32).reshape(len(t_host), self.width)
        n = len(t_host)
        if n > self.capacity:
            t_host, values, n = t_host[-self.capacity:], values[-self.capacity:], self.capacity
        with self._lock:
            first = min(n, self.capacity - self._head)
            self._t[self._head:self._head + first] = t_host[:first]
            self._v[self._head:self._head + first] = values[:first]
            rest = n - first
            if rest:
                self._t[:rest] = t_host[first:]
                self._v[:rest] = values[first:]
            self._head = (self._head + n) % self.capacity
            self._count = min(self._count + n, self.capacity)
            self.total += n

    def snapshot(self, since_ns: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Rows in time order with t_host >= since_ns: (t (k,) int64 ns, values (k, width))."""
        with self._lock:
            start = (self._head - self._count) % self.capacity
            idx = (start + np.arange(self._count)) % self.capacity
            t, v = self._t[idx], self._v[idx]
        keep = t >= since_ns
        return t[keep], v[keep]


def ring_capacity(window_s: float, rate_hz: float) -> int:
    """Rows needed to hold ``window_s`` s at ``rate_hz`` Hz with margin (unknown rate: 1 kHz)."""
    rate = rate_hz if rate_hz > 0 else 1000.0
    return int(min(max(window_s * rate * 1.25 + 16, 64), 200_000))


class SampleRings:
    """Ring buffers keyed by name, created on first use (thread-safe registry).

    IMU rings hold (acc m/s^2 xyz, gyr rad/s xyz) per sensor; the ``angle`` and ``truth``
    rings hold hinge angles in rad in chain order; the ``torque`` ring (key "tau") holds the
    generalised forces of a ``chain.torque`` stream (N m, or N for translations), named and
    united by ``torque_dofs`` / ``torque_units``.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._lock = threading.Lock()
        self.imu: dict[str, SampleRing] = {}
        self.angle: dict[str, SampleRing] = {}
        self.torque: dict[str, SampleRing] = {}
        self.torque_dofs: tuple[str, ...] = ()
        self.torque_units: tuple[str, ...] = ()

    def _ring(self, table: dict[str, SampleRing], name: str, width: int,
              rate_hz: float) -> SampleRing:
        ring = table.get(name)
        if ring is None or ring.width != width:
            with self._lock:
                ring = table[name] = SampleRing(ring_capacity(self.window_s, rate_hz), width)
        return ring

    def add_imu(self, name: str, t_host: np.ndarray, acc: np.ndarray, gyr: np.ndarray,
                rate_hz: float) -> None:
        """Append samples of sensor ``name``: t_host (n,) ns, acc (n, 3) m/s^2, gyr (n, 3) rad/s."""
        ring = self._ring(self.imu, name, 6, rate_hz)
        ring.extend(t_host, np.concatenate([acc, gyr], axis=1))

    def add_angles(self, kind: str, t_host: np.ndarray, angle: np.ndarray, rate_hz: float) -> None:
        """Append hinge angles (n, n_hinge) rad; ``kind`` is "estimate" or "truth"."""
        ring = self._ring(self.angle, kind, angle.shape[1], rate_hz)
        ring.extend(t_host, angle)

    def add_torques(self, t_host: np.ndarray, tau: np.ndarray, rate_hz: float,
                    dofs: list[str] | None = None, units: list[str] | None = None) -> None:
        """Append generalised forces (n, n_dof); ``dofs``/``units`` from the stream's meta."""
        n_dof = tau.shape[1]
        if len(self.torque_dofs) != n_dof:
            names = list(dofs or [])
            self.torque_dofs = tuple(names if len(names) == n_dof
                                     else [f"dof {j}" for j in range(n_dof)])
            u = list(units or [])
            self.torque_units = tuple(u if len(u) == n_dof else ["N m"] * n_dof)
        ring = self._ring(self.torque, "tau", n_dof, rate_hz)
        ring.extend(t_host, tau)

    def names(self) -> list[str]:
        """Sensor names seen so far, in arrival order."""
        with self._lock:
            return list(self.imu)
