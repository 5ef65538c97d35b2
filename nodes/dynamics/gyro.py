"""Hinge rates from gyroscopes: the joint rate is the axis component of the relative body rate.

For a hinge body ``i`` carrying an IMU whose parent carries one too (or is the earth, for a
fixed base), ``qd_i = a_i . (w_i - R_i^T w_p)`` with ``w`` the body angular rates (the sensor
rates rotated by the sensor-to-body rotation of the chain's IMU sites), ``R_i`` the body's
rotation to its parent (from the chain state of the same frame) and ``a_i`` the hinge axis.
Gyroscopes measure rates directly, so no differentiation delay or noise gain enters ``qd``, and
``qdd`` takes one derivative of it instead of two of the angle.
"""

from __future__ import annotations

import numpy as np

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.quaternion import np_qto_matrix

FRAMES_KEPT = 256  # recent imu.frame samples kept to pair with state samples by t_host


class GyroRates:
    """Pairs imu.frame samples with state frames by t_host and gives gyro-based hinge rates.

    Attributes:
        dofs: (k,) int64 velocity indices of the hinges measured by gyroscopes.
    """

    def __init__(self, chain: Chain, imus: list[str], rate_hz: float) -> None:
        site = {s.name: j for j, s in enumerate(chain.imus)}
        by_body: dict[int, int] = {}  # body -> column in the frame's gyr
        for col, name in enumerate(imus):
            if name in site:
                by_body.setdefault(int(chain.imu_bodies[site[name]]), col)
        rows = []
        for i, b in enumerate(chain.bodies):
            p = int(chain.parents[i])
            if b.joint.type != JointType.HINGE or i not in by_body:
                continue
            if p >= 0 and p not in by_body:
                continue
            rows.append((i, p))
        self.chain = chain
        self.bodies = rows
        self.dofs = np.array([chain.qd_start[i] for i, _ in rows], dtype=np.int64)
        self.col = by_body
        self.sensor_rot = {b: np_qto_matrix(chain.imu_rotations[site[imus[c]]])
                           for b, c in by_body.items()}
        self.tol_ns = int(0.5e9 / rate_hz) if rate_hz > 0 else 0
        self._t = np.full(FRAMES_KEPT, np.iinfo(np.int64).min, dtype=np.int64)
        self._gyr = np.zeros((FRAMES_KEPT, len(imus), 3))
        self._n = 0

    def keep(self, frames: np.ndarray) -> None:
        """Remember imu.frame samples (t_host, gyr rad/s sensor frame, flags)."""
        for t, g, f in zip(frames["t_host"].tolist(), frames["gyr"], frames["flags"]):
            k = self._n % FRAMES_KEPT
            self._t[k] = t
            self._gyr[k] = g
            if np.any(f & 6):  # MISSING or INVALID: unusable
                self._gyr[k] = np.nan
            self._n += 1

    def rates(self, t_host: int, q_rel: np.ndarray) -> np.ndarray | None:
        """Hinge rates (k,) rad/s of the state frame at ``t_host`` (q_rel (n, 4)); None: none."""
        if not len(self.dofs):
            return None
        k = int(np.argmin(np.abs(self._t - t_host)))
        if abs(int(self._t[k]) - t_host) > self.tol_ns:
            return None
        gyr = self._gyr[k]
        out = np.empty(len(self.bodies))
        for m, (i, p) in enumerate(self.bodies):
            w_i = self.sensor_rot[i] @ gyr[self.col[i]]
            rel = w_i
            if p >= 0:
                w_p = self.sensor_rot[p] @ gyr[self.col[p]]
                rel = w_i - np_qto_matrix(np.asarray(q_rel[i], np.float64)).T @ w_p
            out[m] = self.chain.axes[i] @ rel  # a hinge's axis has the same body/joint coordinates
        return None if not np.all(np.isfinite(out)) else out
