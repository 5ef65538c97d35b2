"""BallJoint: a spherical joint's rotation from the 6D orientations of the segments on its sides.

No constraint makes the heading between two segments joined by a 3-DoF joint observable
without a magnetometer: each IMU's VQF 6D orientation has its own earth frame, and the two
differ by a rotation ``delta`` about the vertical. ``delta`` starts at 0 (each filter's earth
x axis is where its sensor pointed when the stream started, so a stream started in the
chain's zero pose, e.g. standing in the calibration pose, begins aligned) and is set again
by :meth:`BallJoint.heading_reset` in a known pose. Between resets it drifts with the gyro
bias that VQF has not removed (a few degrees a minute for good sensors).

Units: quaternions w, x, y, z (segment to its filter's earth frame, z up); angles rad.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.estimation.joint_heading import wrap_pi
from pipeline.kinematics.quaternion import np_qmul, qmul4


def x_heading(q: np.ndarray) -> float:
    """Heading (rad about earth z) of the x axis of the frame that (4,) w,x,y,z ``q`` rotates
    to earth, projected on the horizontal plane."""
    w, x, y, z = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class BallJoint:
    """Body ``body``'s rotation to its parent from the orientations of both segments.

    Args:
        body: the child body's index in the chain (its joint is spherical).
        imus: IMU indices in the frames of the parent's and the body's sensor.
    """

    def __init__(self, body: int, imus: tuple[int, int]) -> None:
        self.body, self.imus = body, imus
        self.delta = 0.0  # rad: Rz(delta) * q_body is the body in the parent filter's earth

    def q_rel(self, q_parent: np.ndarray, q_body: np.ndarray) -> np.ndarray:
        """(n, 4) body-to-parent rotation from (n, 4) orientations of parent and body."""
        out = np.empty((len(q_parent), 4))
        _q_rel_kernel(q_parent, q_body, math.cos(0.5 * self.delta), math.sin(0.5 * self.delta),
                      out)
        return out

    def heading_reset(self, q_parent: np.ndarray, q_body: np.ndarray,
                      pose: np.ndarray | None = None) -> float:
        """Set ``delta`` so that the joint reads ``pose`` ((4,) body to parent, default the
        identity) in heading now, from (4,) orientations of both segments; returns the
        change of ``delta``, rad."""
        target = np_qmul(q_parent, pose) if pose is not None else q_parent
        delta = wrap_pi(x_heading(target) - x_heading(q_body))
        change, self.delta = wrap_pi(delta - self.delta), delta
        return change


@njit(cache=True)
def _q_rel_kernel(q_parent, q_body, c, s, out):  # pragma: no cover - numba
    """out = conj(q_parent) * (c, 0, 0, s) * q_body, row by row (n, 4)."""
    for k in range(q_parent.shape[0]):
        w, x, y, z = qmul4(c, 0.0, 0.0, s, q_body[k, 0], q_body[k, 1], q_body[k, 2], q_body[k, 3])
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = qmul4(
            q_parent[k, 0], -q_parent[k, 1], -q_parent[k, 2], -q_parent[k, 3], w, x, y, z)


def warm_up_ball_joint() -> None:
    """Compile (or load from the cache) the kernel for the arrays VQF hands out."""
    q = np.array([[1.0, 0.0, 0.0, 0.0]])
    _q_rel_kernel(q, q, 1.0, 0.0, np.empty((1, 4)))
