"""The still pose a calibration's static window holds: the neutral one or a chain's own.

The neutral pose has every joint at zero and the root upright (for a leg: standing, knee
straight). A chain file may name others under ``poses:`` (``chain.StillPose``; the knee's
``sitting``: thigh level, knee at 90 deg, shank upright), for recordings that hold no
neutral pose still. What a pose gives the calibration is the earth's up axis in each body's
frame, which the accelerometers of a still sensor read.

Units: rad; quaternions w, x, y, z; body frames as the chain's.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from pipeline.kinematics.chain import Chain, JointType, StillPose
from pipeline.kinematics.quaternion import np_qmul, np_qto_matrix

NEUTRAL = "neutral"
NEUTRAL_PROMPT = "joints straight, segments upright"


def pose_names(chain: Chain) -> list[str]:
    """The poses a calibration of ``chain`` can take, the neutral one first."""
    return [NEUTRAL] + [p.name for p in chain.poses]


def find_pose(chain: Chain, name: str) -> StillPose | None:
    """The chain's pose ``name`` (None for the neutral one); ValueError naming the known ones."""
    if name == NEUTRAL:
        return None
    for pose in chain.poses:
        if pose.name == name:
            return pose
    raise ValueError(f"the chain {chain.name} has no still pose '{name}'; it has "
                     f"{pose_names(chain)} (poses: in {chain.source or 'the chain file'})")


def pose_prompt(chain: Chain, name: str) -> str:
    """What to tell the user who is to hold the pose."""
    pose = find_pose(chain, name)
    return NEUTRAL_PROMPT if pose is None or not pose.prompt else pose.prompt


def pose_distance_deg(chain: Chain, rotations: dict[str, np.ndarray],
                      acc: dict[str, np.ndarray], still: np.ndarray) -> float:
    """How far a recording's still poses lie from the still poses the chain knows, as a
    calibration (``rotations``: per IMU, sensor to segment) reads them: the median over the
    ``still`` (T,) samples of the largest angle (deg) between a segment's up axis as its
    sensor measures it (acc (T, 3) m/s^2, sensor frame) and in the nearest known pose. NaN
    without still samples."""
    if not np.any(still):
        return math.nan
    names = list(chain.imu_names)
    ups = np.stack([pose_up(chain, p)[list(chain.imu_bodies)] for p in pose_names(chain)])
    measured = np.stack([acc[m][still] @ rotations[m].T for m in names], axis=1)
    measured /= np.linalg.norm(measured, axis=-1, keepdims=True)
    cos = np.einsum("tij,pij->tpi", measured, ups)  # (still samples, poses, IMUs)
    worst = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))).max(axis=-1)
    return float(np.median(worst.min(axis=-1)))


def _joint_rotation(chain: Chain, i: int, value: tuple[float, ...]) -> np.ndarray:
    """(4,) w, x, y, z of body ``i``'s joint at ``value`` (a hinge angle or a rotation vector)."""
    if chain.joint_types[i] == JointType.HINGE:
        rotvec = np.asarray(chain.axes[i], dtype=np.float64) * value[0]
    else:
        rotvec = np.asarray(value, dtype=np.float64)
    x, y, z, w = Rotation.from_rotvec(rotvec).as_quat()
    return np.array([w, x, y, z])


def pose_up(chain: Chain, name: str = NEUTRAL) -> np.ndarray:
    """(n_bodies, 3) the earth's up axis in each body frame in the pose ``name``."""
    pose = find_pose(chain, name)
    values = dict(pose.joints) if pose is not None else {}
    q_world = np.zeros((chain.n_bodies, 4))
    for i, parent in enumerate(chain.parents):
        q = np.asarray(chain.rotations[i], dtype=np.float64)
        if chain.body_names[i] in values:
            q = np_qmul(q, _joint_rotation(chain, i, values[chain.body_names[i]]))
        q_world[i] = q if parent < 0 else np_qmul(q_world[parent], q)
    up = np.empty((chain.n_bodies, 3))
    for i in range(chain.n_bodies):
        up[i] = np.asarray(np_qto_matrix(q_world[i])).T @ np.array([0.0, 0.0, 1.0])
    return up
