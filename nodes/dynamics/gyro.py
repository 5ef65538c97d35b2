"""Hinge rates from gyroscopes: the joint rate is the axis component of the relative body rate.

For a hinge body ``i`` carrying an IMU whose parent carries one too (or is the earth, for a
fixed base), ``qd_i = a_i . (w_i - R_i^T w_p)`` with ``w`` the body angular rates (the sensor
rates rotated by the sensor-to-body rotation of the chain's IMU sites), ``R_i`` the body's
rotation to its parent (from the chain state of the same frame) and ``a_i`` the hinge axis.
Gyroscopes measure rates directly, so no differentiation delay or noise gain enters ``qd``, and
``qdd`` takes one derivative of it instead of two of the angle.

A free root carrying an IMU also gets its linear acceleration from that IMU (``chain.state``
has no positions): the site's acceleration is ``R_b (R_bs f) + g`` with ``f`` the specific
force (sensor frame), and the root origin's follows by removing the lever arm,
``a_o = a_site - alpha x p - w x (w x p)`` (body frame, ``p`` the site position), with the
root rate ``w`` from the same IMU's gyroscope and ``alpha`` its derivative.
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
        self._acc = np.zeros((FRAMES_KEPT, len(imus), 3))
        self._n = 0
        root_free = chain.joint_types[0] == JointType.FREE
        self.root_col = by_body.get(0, -1) if root_free else -1  # frame column of the root IMU
        if self.root_col >= 0:
            j = site[imus[self.root_col]]
            self.root_site = np.asarray(chain.imu_positions[j], np.float64)  # m, body frame

    def keep(self, frames: np.ndarray) -> None:
        """Remember imu.frame samples (t_host, gyr rad/s sensor frame, flags)."""
        for t, g, a, f in zip(frames["t_host"].tolist(), frames["gyr"], frames["acc"],
                              frames["flags"]):
            k = self._n % FRAMES_KEPT
            self._t[k] = t
            self._gyr[k], self._acc[k] = g, a
            if np.any(f & 6):  # MISSING or INVALID: unusable
                self._gyr[k] = self._acc[k] = np.nan
            self._n += 1

    def _slot(self, t_host: int) -> int:
        """Index of the kept frame at ``t_host`` (within half a period), else -1."""
        k = int(np.argmin(np.abs(self._t - t_host)))
        return k if abs(int(self._t[k]) - t_host) <= self.tol_ns else -1

    def root_imu(self, t_host: int) -> np.ndarray | None:
        """The root IMU at ``t_host`` in root body axes: specific force (3,) m/s^2 then angular
        rate (3,) rad/s; None when the root is not free, carries no IMU, or no usable frame
        pairs."""
        k = self._slot(t_host) if self.root_col >= 0 else -1
        if k < 0:
            return None
        rot = self.sensor_rot[0]
        out = np.concatenate([rot @ self._acc[k, self.root_col], rot @ self._gyr[k, self.root_col]])
        return out if np.all(np.isfinite(out)) else None

    def rates(self, t_host: int, q_rel: np.ndarray) -> np.ndarray | None:
        """Hinge rates (k,) rad/s of the state frame at ``t_host`` (q_rel (n, 4)); None: none."""
        if not len(self.dofs):
            return None
        k = self._slot(t_host)
        if k < 0:
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


def root_acceleration(f_body: np.ndarray, q_root: np.ndarray, w: np.ndarray, alpha: np.ndarray,
                      site: np.ndarray, gravity: np.ndarray) -> np.ndarray:
    """Linear acceleration (3,) m/s^2 of the root origin in the earth frame from the root IMU's
    specific force ``f_body`` (body axes), the root orientation ``q_root`` w,x,y,z (body to
    earth), its rate ``w`` and angular acceleration
    ``alpha`` (rad/s, rad/s^2, body axes), the site position ``site`` (m, body) and
    ``gravity`` (3,) m/s^2 (earth, e.g. (0, 0, -9.81))."""
    r = np_qto_matrix(np.asarray(q_root, np.float64))
    a_site = f_body + r.T @ gravity
    a_origin = a_site - np.cross(alpha, site) - np.cross(w, np.cross(w, site))
    return r @ a_origin
