"""A chain with its segment inertia packed for the Newton-Euler kernels, with convenience calls.

Units: SI (kg, m, s, N, N m); coordinate layout as in :mod:`pipeline.dynamics.newton_euler`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.dynamics.newton_euler import N_WORK, rnea_batch, rnea_into
from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.inertia import ChainInertia, Subject, chain_inertia

GRAVITY = (0.0, 0.0, -9.81)  # m/s^2, earth frame (z up), as in pipeline.kinematics.imu_synth


def dof_names(chain: Chain) -> list[str]:
    """Names of the generalised coordinates (velocity layout): body, or body.component."""
    names: list[str] = []
    for b in chain.bodies:
        t = b.joint.type
        if t == JointType.FREE:
            names += [f"{b.name}.{c}" for c in ("fx", "fy", "fz", "mx", "my", "mz")]
        elif t == JointType.SPHERICAL:
            names += [f"{b.name}.{c}" for c in ("x", "y", "z")]
        elif t in (JointType.HINGE, JointType.PRISMATIC):
            names.append(b.name)
    return names


def dof_units(chain: Chain) -> list[str]:
    """Unit of each generalised force: N m for rotations, N for translations."""
    units: list[str] = []
    for b in chain.bodies:
        t = b.joint.type
        if t == JointType.FREE:
            units += ["N"] * 3 + ["N m"] * 3
        elif t == JointType.SPHERICAL:
            units += ["N m"] * 3
        elif t == JointType.HINGE:
            units.append("N m")
        elif t == JointType.PRISMATIC:
            units.append("N")
    return units


class InverseDynamics:
    """Joint torques from q, qd, qdd (and external wrenches) by recursive Newton-Euler.

    Args:
        chain: the kinematic chain (bodies parents first).
        inertia: resolved inertia (default: from the chain file; MissingInertia if absent).
        external: names of the bodies that external wrenches act on, in the order their rows
            come in ``ext`` (e.g. the feet for ground reaction forces).
        gravity: (3,) m/s^2 in the earth frame.
        subject: overrides the chain's subject for anthropometric inertia.

    Attributes:
        ints: (n, 4) int64 (parent, joint type, q start, qd start).
        params: (n, 10) float64 (offset m, joint rotation w,x,y,z, axis).
        inert: (n, 10) float64 (mass kg, com m, Ixx Iyy Izz Ixy Ixz Iyz kg m^2 about the CoM).
    """

    def __init__(self, chain: Chain, inertia: ChainInertia | None = None,
                 external: Sequence[str] = (), gravity: Sequence[float] = GRAVITY,
                 subject: Subject | None = None) -> None:
        self.chain = chain
        self.inertia = inertia if inertia is not None else chain_inertia(chain, subject)
        n = chain.n_bodies
        self.n, self.nq, self.nqd = n, chain.nq, chain.nqd
        self.ints = np.ascontiguousarray(np.stack(
            [chain.parents, chain.joint_types, chain.q_start, chain.qd_start], axis=1
        ).astype(np.int64))
        self.params = np.ascontiguousarray(np.concatenate(
            [chain.offsets, chain.rotations, chain.axes], axis=1).astype(np.float64))
        t = self.inertia.tensor
        self.inert = np.ascontiguousarray(np.column_stack([
            self.inertia.mass, self.inertia.com, t[:, 0, 0], t[:, 1, 1], t[:, 2, 2],
            t[:, 0, 1], t[:, 0, 2], t[:, 1, 2]]).astype(np.float64))
        self.gravity = np.asarray(gravity, dtype=np.float64).copy()
        self.ext_body = np.array([chain.index(b) for b in external], dtype=np.int64)
        self.work = np.zeros((n, N_WORK))
        self.dof_names = dof_names(chain)
        self._no_ext = np.zeros((0, 9))

    @property
    def floating(self) -> bool:
        """True when the root is a free joint (its generalised force is the residual)."""
        return self.chain.bodies[0].joint.type == JointType.FREE

    def _ext(self, ext: np.ndarray | None, frames: int | None) -> np.ndarray:
        k = len(self.ext_body)
        if ext is None:
            shape = (k, 9) if frames is None else (frames, k, 9)
            return np.zeros(shape)
        ext = np.ascontiguousarray(ext, dtype=np.float64)
        want = (k, 9) if frames is None else (frames, k, 9)
        if ext.shape != want:
            raise ValueError(f"ext must have shape {want} (force N, moment N m, earth frame; "
                             f"point m, body frame) for the bodies {self.ext_names}, got "
                             f"{ext.shape}")
        return ext

    @property
    def ext_names(self) -> list[str]:
        """Bodies the external wrenches act on, in ``ext`` row order."""
        return [self.chain.body_names[i] for i in self.ext_body]

    def torques(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                ext: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One frame: q (nq,), qd (nqd,), qdd (nqd,), ext (k, 9) -> tau (nqd,), residual (6,).

        ``residual``: force N and moment N m (about body 0's origin, earth frame) that the
        earth applies to the root beyond ``ext``: zero for a consistent floating base.
        """
        tau, res = np.empty(self.nqd), np.empty(6)
        rnea_into(self.ints, self.params, self.inert, self.gravity,
                  np.ascontiguousarray(q, dtype=np.float64),
                  np.ascontiguousarray(qd, dtype=np.float64),
                  np.ascontiguousarray(qdd, dtype=np.float64),
                  self.ext_body, self._ext(ext, None), tau, res, self.work)
        return tau, res

    def torques_batch(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray,
                      ext: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Over time: q (T, nq), qd/qdd (T, nqd), ext (T, k, 9) -> tau (T, nqd), residual (T, 6)."""
        q = np.ascontiguousarray(q, dtype=np.float64).reshape(-1, self.nq)
        frames = len(q)
        tau, res = np.empty((frames, self.nqd)), np.empty((frames, 6))
        rnea_batch(self.ints, self.params, self.inert, self.gravity, q,
                   np.ascontiguousarray(qd, dtype=np.float64).reshape(frames, self.nqd),
                   np.ascontiguousarray(qdd, dtype=np.float64).reshape(frames, self.nqd),
                   self.ext_body, self._ext(ext, frames), tau, res, self.work)
        return tau, res

    def joint_wrenches(self) -> np.ndarray:
        """(n, 6) force N and moment N m each joint transmits, body frame, from the last call."""
        return self.work[:, 27:33].copy()
