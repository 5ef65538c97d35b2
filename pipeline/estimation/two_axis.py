"""TwoAxisJoint: two hinge angles between IMU-carrying segments with one IMU-less segment between.

Segment 1 (IMU) -hinge a-> middle segment (no IMU) -hinge b-> segment 2 (IMU): with
orthogonal axes this is a 2-DoF joint (e.g. arm3's y-then-z elbow). Each IMU's 6D
orientation (VQF, its own earth frame) is brought into segment 1's earth frame by the
heading offset that the joint's constraint makes observable (:class:`JointHeading`); the
relative orientation then splits into the two hinge angles.

Units: quaternions w, x, y, z; angles rad; gyr rad/s in segment frames.
"""

from __future__ import annotations

import numpy as np

from pipeline.estimation.heading_fit import split_two_axis
from pipeline.estimation.joint_heading import JointHeading
from pipeline.kinematics.chain import Chain
from pipeline.kinematics.quaternion import np_qconj, np_qmul, np_qrotate

ORTHOGONAL_COS = 0.05  # |cos| between the axes above which the split is refused


class TwoAxisJoint:
    """Hinges ``middle`` (about its axis) and ``distal`` (about its axis) from two orientations.

    Args:
        chain: the chain; ``distal``'s parent is ``middle``, whose parent carries IMU 1.
        middle, distal: body indices; both hinge joints.
        rate_hz: frame rate, Hz (a multiple of 5 Hz, the heading estimation's data rate).
    """

    def __init__(self, chain: Chain, middle: int, distal: int, rate_hz: float) -> None:
        rot = np.array(chain.rotations, dtype=np.float64)  # writable: the kernel types
        ax_m = _unit(chain.axes[middle])
        ax_d = _unit(chain.axes[distal])
        self.middle, self.distal = middle, distal
        self.rot_m, self.rot_d = rot[middle], rot[distal]
        self.ax_m, self.ax_d = ax_m, ax_d
        u = np_qrotate(rot[middle], ax_m)                       # axis a in segment 1's frame
        w = np_qrotate(rot[middle], np_qrotate(rot[distal], ax_d))  # axis b there, at zero angles
        if abs(float(u @ w)) > ORTHOGONAL_COS:
            raise ValueError(f"hinges '{chain.body_names[middle]}' and "
                             f"'{chain.body_names[distal]}' are not orthogonal (cos "
                             f"{float(u @ w):.2f}); the two-axis split needs orthogonal axes")
        self.basis = np.stack([u, w, np.cross(u, w)], axis=1)  # columns u, w, u x w
        self.rest_inv = np_qconj(np_qmul(rot[middle], rot[distal]))
        self.heading = JointHeading(np.stack([u, ax_d]), rate_hz)

    def state(self, q1: np.ndarray, q2: np.ndarray, gyr1: np.ndarray, gyr2: np.ndarray,
              restart: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Angles (n, 2) rad of the middle and distal hinges and their (n, 4) body-to-parent
        quaternions, from (n, 4) orientations of segments 1 and 2 (each to its own earth
        frame) and their (n, 3) gyros; ``restart`` (n,) bool where either filter restarted
        after a sensor gap (``JointHeading.update``)."""
        delta = self.heading.update(q1, q2, gyr1, gyr2, restart)
        n = len(q1)
        angle, q_m, q_d = np.empty((n, 2)), np.empty((n, 4)), np.empty((n, 4))
        split_two_axis(q1, q2, delta, self.basis, self.rest_inv, self.rot_m, self.ax_m,
                       self.rot_d, self.ax_d, angle, q_m, q_d)
        return angle, q_m, q_d


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)
