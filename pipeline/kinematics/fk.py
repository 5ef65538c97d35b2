"""Forward kinematics: joint coordinates or relative quaternions to world poses (numba).

World frame: earth, z up, metres. Poses: ``pos`` (n_bodies, 3) float64 m, body origin in
world; ``quat`` (n_bodies, 4) float64 w,x,y,z, body-to-world rotation. ``q`` is the flat
joint coordinate vector laid out by ``Chain.q_start`` (free: position in the joint frame
then quaternion; spherical: quaternion; hinge: angle rad; prismatic: displacement m).

The ``*_into`` kernels write into preallocated arrays and allocate nothing, so they can be
called per frame from Python; ``Kinematics`` packs a chain into the arrays they take.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.quaternion import np_qconj, np_qfrom_axis_angle, np_qmul, qmul4, qrot3

_FREE, _SPH, _HINGE, _PRISM = (int(JointType.FREE), int(JointType.SPHERICAL),
                               int(JointType.HINGE), int(JointType.PRISMATIC))


@njit(cache=True, inline="always")
def _local(i, ints, params, q):
    """Pose of body i in its parent frame from coordinates q: (px, py, pz, w, x, y, z)."""
    t, s = ints[i, 1], ints[i, 2]
    ox, oy, oz = params[i, 0], params[i, 1], params[i, 2]
    rw, rx, ry, rz = params[i, 3], params[i, 4], params[i, 5], params[i, 6]
    if t == _FREE:
        dx, dy, dz = qrot3(rw, rx, ry, rz, q[s], q[s + 1], q[s + 2])
        w, x, y, z = qmul4(rw, rx, ry, rz, q[s + 3], q[s + 4], q[s + 5], q[s + 6])
        return ox + dx, oy + dy, oz + dz, w, x, y, z
    if t == _SPH:
        w, x, y, z = qmul4(rw, rx, ry, rz, q[s], q[s + 1], q[s + 2], q[s + 3])
        return ox, oy, oz, w, x, y, z
    if t == _HINGE:
        h = 0.5 * q[s]
        sn = math.sin(h)
        w, x, y, z = qmul4(rw, rx, ry, rz, math.cos(h),
                           params[i, 7] * sn, params[i, 8] * sn, params[i, 9] * sn)
        return ox, oy, oz, w, x, y, z
    if t == _PRISM:
        d = q[s]
        dx, dy, dz = qrot3(rw, rx, ry, rz, params[i, 7] * d, params[i, 8] * d, params[i, 9] * d)
        return ox + dx, oy + dy, oz + dz, rw, rx, ry, rz
    return ox, oy, oz, rw, rx, ry, rz


@njit(cache=True)
def fk_q_into(ints: np.ndarray, params: np.ndarray, q: np.ndarray,
              pos: np.ndarray, quat: np.ndarray) -> None:
    """World poses from q (nq,) into pos (n, 3) m and quat (n, 4) wxyz; no allocation."""
    for i in range(ints.shape[0]):
        px, py, pz, w, x, y, z = _local(i, ints, params, q)
        p = ints[i, 0]
        if p < 0:
            pos[i, 0], pos[i, 1], pos[i, 2] = px, py, pz
            quat[i, 0], quat[i, 1], quat[i, 2], quat[i, 3] = w, x, y, z
        else:
            pw, pxq, pyq, pzq = quat[p, 0], quat[p, 1], quat[p, 2], quat[p, 3]
            dx, dy, dz = qrot3(pw, pxq, pyq, pzq, px, py, pz)
            pos[i, 0], pos[i, 1], pos[i, 2] = pos[p, 0] + dx, pos[p, 1] + dy, pos[p, 2] + dz
            quat[i, 0], quat[i, 1], quat[i, 2], quat[i, 3] = qmul4(pw, pxq, pyq, pzq, w, x, y, z)


@njit(cache=True)
def fk_q_batch(ints: np.ndarray, params: np.ndarray, q: np.ndarray,
               pos: np.ndarray, quat: np.ndarray) -> None:
    """Batched fk_q_into: q (T, nq) into pos (T, n, 3) m and quat (T, n, 4)."""
    for k in range(q.shape[0]):
        fk_q_into(ints, params, q[k], pos[k], quat[k])


@njit(cache=True)
def rel_q_batch(ints: np.ndarray, params: np.ndarray, q: np.ndarray,
                p_rel: np.ndarray, q_rel: np.ndarray) -> None:
    """Parent-frame poses from q (T, nq): p_rel (T, n, 3) m and q_rel (T, n, 4) body->parent."""
    for k in range(q.shape[0]):
        for i in range(ints.shape[0]):
            px, py, pz, w, x, y, z = _local(i, ints, params, q[k])
            p_rel[k, i, 0], p_rel[k, i, 1], p_rel[k, i, 2] = px, py, pz
            q_rel[k, i, 0], q_rel[k, i, 1], q_rel[k, i, 2], q_rel[k, i, 3] = w, x, y, z


@njit(cache=True)
def compose_into(parents: np.ndarray, p_rel: np.ndarray, q_rel: np.ndarray,
                 pos: np.ndarray, quat: np.ndarray) -> None:
    """World poses from parent-frame poses p_rel (n, 3) m, q_rel (n, 4); into pos, quat."""
    for i in range(parents.shape[0]):
        p = parents[i]
        w, x, y, z = q_rel[i, 0], q_rel[i, 1], q_rel[i, 2], q_rel[i, 3]
        if p < 0:
            pos[i, 0], pos[i, 1], pos[i, 2] = p_rel[i, 0], p_rel[i, 1], p_rel[i, 2]
            quat[i, 0], quat[i, 1], quat[i, 2], quat[i, 3] = w, x, y, z
        else:
            pw, pxq, pyq, pzq = quat[p, 0], quat[p, 1], quat[p, 2], quat[p, 3]
            dx, dy, dz = qrot3(pw, pxq, pyq, pzq, p_rel[i, 0], p_rel[i, 1], p_rel[i, 2])
            pos[i, 0], pos[i, 1], pos[i, 2] = pos[p, 0] + dx, pos[p, 1] + dy, pos[p, 2] + dz
            quat[i, 0], quat[i, 1], quat[i, 2], quat[i, 3] = qmul4(pw, pxq, pyq, pzq, w, x, y, z)


@njit(cache=True)
def compose_batch(parents: np.ndarray, p_rel: np.ndarray, q_rel: np.ndarray,
                  pos: np.ndarray, quat: np.ndarray) -> None:
    """Batched compose_into over a leading time axis T."""
    for k in range(q_rel.shape[0]):
        compose_into(parents, p_rel[k], q_rel[k], pos[k], quat[k])


@njit(cache=True)
def sites_batch(site_body: np.ndarray, site_params: np.ndarray, pos: np.ndarray,
                quat: np.ndarray, site_pos: np.ndarray, site_quat: np.ndarray) -> None:
    """Site poses from body poses (T, n, 3|4); site_params (m, 7) = body-frame pos m + quat."""
    for k in range(pos.shape[0]):
        for j in range(site_body.shape[0]):
            b = site_body[j]
            w, x, y, z = quat[k, b, 0], quat[k, b, 1], quat[k, b, 2], quat[k, b, 3]
            dx, dy, dz = qrot3(w, x, y, z, site_params[j, 0], site_params[j, 1], site_params[j, 2])
            site_pos[k, j, 0] = pos[k, b, 0] + dx
            site_pos[k, j, 1] = pos[k, b, 1] + dy
            site_pos[k, j, 2] = pos[k, b, 2] + dz
            sw, sx, sy, sz = qmul4(w, x, y, z, site_params[j, 3], site_params[j, 4],
                                   site_params[j, 5], site_params[j, 6])
            site_quat[k, j, 0], site_quat[k, j, 1] = sw, sx
            site_quat[k, j, 2], site_quat[k, j, 3] = sy, sz


def hinge_to_rel(angle: np.ndarray, rotation: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Relative quaternions (..., 4) of hinge angles (...) rad; rotation (4,) joint frame, axis (3,)."""
    return np_qmul(rotation, np_qfrom_axis_angle(np.asarray(axis, dtype=np.float64),
                                                 np.asarray(angle, dtype=np.float64)))


def hinge_plane_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors e1, e2 spanning the plane normal to the unit ``axis``, with e1 x e2 = axis.

    A vector's angle in that plane, ``atan2(v . e2, v . e1)``, grows by theta when the vector
    is rotated by theta about the axis (used for hinge angles from gravity).
    """
    axis = np.asarray(axis, dtype=np.float64)
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def rel_to_hinge(q_rel: np.ndarray, rotation: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Hinge angles (...) rad in (-pi, pi] from relative quaternions (..., 4) (off-axis part ignored)."""
    qj = np_qmul(np_qconj(rotation), q_rel)
    ang = 2.0 * np.arctan2(np.sum(qj[..., 1:] * np.asarray(axis, dtype=np.float64), axis=-1), qj[..., 0])
    return np.where(ang > np.pi, ang - 2 * np.pi, np.where(ang <= -np.pi, ang + 2 * np.pi, ang))


class Kinematics:
    """A chain packed for the kernels, with allocating convenience wrappers.

    Attributes:
        ints: (n, 3) int64 rows (parent, joint type code, q start).
        params: (n, 10) float64 rows (offset m (3), rotation wxyz (4), axis (3)).
        site_body: (m,) int64 IMU body indices; site_params: (m, 7) position m + rotation wxyz.
    """

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.n = chain.n_bodies
        self.ints = np.ascontiguousarray(np.stack(
            [chain.parents, chain.joint_types, chain.q_start], axis=1).astype(np.int64))
        self.params = np.ascontiguousarray(np.concatenate(
            [chain.offsets, chain.rotations, chain.axes], axis=1).astype(np.float64))
        self.parents = np.ascontiguousarray(chain.parents)
        self.set_sites(chain.imu_positions, chain.imu_rotations)

    def set_sites(self, positions: np.ndarray, rotations: np.ndarray) -> None:
        """Override IMU site positions (m, 3) m and rotations (m, 4) wxyz in body frames."""
        self.site_body = np.ascontiguousarray(self.chain.imu_bodies, dtype=np.int64)
        self.site_params = np.ascontiguousarray(np.concatenate(
            [np.asarray(positions, dtype=np.float64).reshape(-1, 3),
             np.asarray(rotations, dtype=np.float64).reshape(-1, 4)], axis=1))

    def forward(self, q: np.ndarray, out: tuple[np.ndarray, np.ndarray] | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """World poses of one frame: q (nq,) -> pos (n, 3) m, quat (n, 4) wxyz."""
        pos, quat = out if out is not None else (np.empty((self.n, 3)), np.empty((self.n, 4)))
        fk_q_into(self.ints, self.params, np.ascontiguousarray(q, dtype=np.float64), pos, quat)
        return pos, quat

    def forward_batch(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World poses over time: q (T, nq) -> pos (T, n, 3) m, quat (T, n, 4) wxyz."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        pos, quat = np.empty((len(q), self.n, 3)), np.empty((len(q), self.n, 4))
        fk_q_batch(self.ints, self.params, q, pos, quat)
        return pos, quat

    def relative_batch(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Parent-frame poses: q (T, nq) -> p_rel (T, n, 3) m, q_rel (T, n, 4) body->parent."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        p_rel, q_rel = np.empty((len(q), self.n, 3)), np.empty((len(q), self.n, 4))
        rel_q_batch(self.ints, self.params, q, p_rel, q_rel)
        return p_rel, q_rel

    def forward_rel(self, q_rel: np.ndarray, root_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World poses from q_rel ([T,] n, 4) and root position ([T,] 3) m; other bodies at their offsets."""
        q_rel = np.ascontiguousarray(q_rel, dtype=np.float64)
        single = q_rel.ndim == 2
        q_rel = q_rel[None] if single else q_rel
        p_rel = np.broadcast_to(self.chain.offsets, q_rel.shape[:-1] + (3,)).copy()
        p_rel[:, 0] = root_pos
        pos, quat = np.empty_like(p_rel), np.empty_like(q_rel)
        compose_batch(self.parents, p_rel, q_rel, pos, quat)
        return (pos[0], quat[0]) if single else (pos, quat)

    def sites(self, pos: np.ndarray, quat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """IMU site poses from body poses ([T,] n, 3|4): pos ([T,] m, 3) m, quat ([T,] m, 4) sensor->world."""
        single = np.ndim(pos) == 2
        pos = np.ascontiguousarray(pos[None] if single else pos, dtype=np.float64)
        quat = np.ascontiguousarray(quat[None] if single else quat, dtype=np.float64)
        m = len(self.site_body)
        spos, squat = np.empty((len(pos), m, 3)), np.empty((len(pos), m, 4))
        sites_batch(self.site_body, self.site_params, pos, quat, spos, squat)
        return (spos[0], squat[0]) if single else (spos, squat)

    def hinge_angles(self, q_rel: np.ndarray) -> np.ndarray:
        """Hinge angles (..., n_hinge) rad from relative quaternions (..., n, 4)."""
        hb = self.chain.hinge_bodies
        rot, ax = self.chain.rotations[hb], self.chain.axes[hb]
        return rel_to_hinge(q_rel[..., hb, :], rot, ax)
