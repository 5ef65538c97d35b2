"""PairPriorFrame: one live frame of a two-axis constraint prior in one compiled call.

A hybrid model's prior (``constraint_prior.ConstraintPrior``) on a chain such as arm3 (IMUs on
the root and on the distal segment of a 2-DoF joint) runs, per frame, VQF 6D on each IMU, the
joint heading's bookkeeping, the two-axis split and the output encoding: a dozen Python-level
calls, each of which costs two to three times more when a 100 Hz frame finds the caches cold
(BENCHMARKS.md, "CPUs kept awake between frames"). This runs the same steps for one frame in
one numba kernel, on the same state arrays (the filters' ``Vqf6DBank`` states, the heading's
window), with the same operations in the same order, so it gives the same numbers. At the
heading's estimation instants (one a second, every fifth frame in the first 8 s) the kernel
runs in two parts, the filters and the heading's bookkeeping, then the split and the
encoding, around the heading's estimation (``JointHeading.estimate_now``); before
2026-12-06 those frames took the general path, 4-5x the cost of a frame, and set the step's
p99 (one frame in a hundred). Blocks of frames take the general path.

Units: acc m/s^2, gyr rad/s in segment frames; quaternions w, x, y, z.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from pipeline.estimation.heading_fit import split_two_axis
from pipeline.estimation.joint_heading import take_frames
from pipeline.estimation.output_encoding import encode_into
from pipeline.estimation.two_axis import TwoAxisJoint
from pipeline.estimation.vqf6d import Vqf6DBank, vqf6d_frames

# ints: bank rows of segment 1 and 2, where the root comes from (a bank row; ROOT_OWN: its
# own filter; ROOT_NONE: identity), the middle and distal bodies, the number of bodies, the
# heading's data step
R1, R2, ROOT_FROM, MIDDLE, DISTAL, N_BODIES, DATA_STEP = range(7)
ROOT_OWN, ROOT_NONE = -1, -2


class PairPriorFrame:
    """The compiled one-frame path of a prior with one two-axis ``joint`` (IMUs ``sensors``,
    segment 1 and 2) over ``bank``'s filters; the root's orientation from ``root`` (its own
    filter), else from the bank's filter of ``root_sensor``, else (-1) identity; ``plan`` the
    prior's encoding plan (``output_encoding.encode_plan``)."""

    def __init__(self, bank: Vqf6DBank, joint: TwoAxisJoint, sensors: tuple[int, int],
                 root_sensor: int, root: Vqf6DBank | None,
                 plan: tuple[np.ndarray, np.ndarray, np.ndarray], n_bodies: int) -> None:
        rows = bank.sensors.tolist()
        self.bank, self.heading, self.plan = bank, joint.heading, plan
        root_from = (ROOT_OWN if root is not None else ROOT_NONE if root_sensor < 0
                     else rows.index(root_sensor))
        self.root = root if root is not None else bank  # the kernel takes arrays: a stand-in
        self.ints = np.array([rows.index(sensors[0]), rows.index(sensors[1]), root_from,
                              joint.middle, joint.distal, n_bodies, self.heading.data_step],
                             np.int64)
        self.geometry = np.concatenate([joint.basis.ravel(), joint.rest_inv, joint.rot_m,
                                        joint.ax_m, joint.rot_d, joint.ax_d])
        # an estimation instant's orientations, between the kernel's two parts
        self._quat, self._root_quat = np.empty((len(rows), 1, 4)), np.empty((1, 1, 4))
        # the state arrays the kernels advance in place (allocated once by their owners)
        h = self.heading
        self._filters = (bank.states, bank.coeffs, bank.sensors, self.root.states,
                         self.root.coeffs, self.root.sensors, h.win_ring, h.norm_ring, h.counts,
                         self.ints)

    def frame(self, acc: np.ndarray, gyr: np.ndarray, out: np.ndarray) -> None:
        """The encoded prior (1, width) float32 into ``out`` from one frame (1, n_imu, 3) of acc
        m/s^2 and gyr rad/s."""
        h = self.heading
        if not h.next_is_event():
            pair_prior_frame(*self._filters, self.geometry, h.value, acc, gyr, *self.plan, out)
            return
        quat, root = self._quat, self._root_quat
        pair_prior_take(*self._filters, acc, gyr, quat, root)
        h.estimate_now(quat[self.ints[R1], 0], quat[self.ints[R2], 0])
        pair_prior_finish(quat, root, self.ints, self.geometry, h.value, *self.plan, out)


@njit(cache=True)
def pair_prior_frame(states, coeffs, sensors, root_states, root_coeffs, root_sensors,
                     win_ring, norm_ring, counts, ints, geometry, delta, acc, gyr, plan,
                     enc_rot, enc_axis, out):  # pragma: no cover
    """One frame that is no estimation instant of the heading: :func:`pair_prior_take`, then
    :func:`pair_prior_finish` at heading ``delta`` rad."""
    quat, root = np.empty((sensors.shape[0], 1, 4)), np.empty((1, 1, 4))
    pair_prior_take(states, coeffs, sensors, root_states, root_coeffs, root_sensors, win_ring,
                    norm_ring, counts, ints, acc, gyr, quat, root)
    pair_prior_finish(quat, root, ints, geometry, delta, plan, enc_rot, enc_axis, out)


@njit(cache=True)
def pair_prior_take(states, coeffs, sensors, root_states, root_coeffs, root_sensors,
                    win_ring, norm_ring, counts, ints, acc, gyr, quat, root):  # pragma: no cover
    """One frame's first part: the bank's VQF 6D (orientations into ``quat`` (n_filters, 1,
    4)) and the root's own (into ``root`` (1, 1, 4)), the heading's window and gyro norms
    (``joint_heading.take_frames``)."""
    n_filters = sensors.shape[0]
    g, a = np.empty((n_filters, 1, 3)), np.empty((n_filters, 1, 3))
    restarted = np.empty((n_filters, 1), np.bool_)
    vqf6d_frames(states, coeffs, sensors, gyr, acc, quat, g, a, restarted)
    if ints[ROOT_FROM] == ROOT_OWN:
        rg, ra = np.empty((1, 1, 3)), np.empty((1, 1, 3))
        vqf6d_frames(root_states, root_coeffs, root_sensors, gyr, acc, root, rg, ra,
                     np.empty((1, 1), np.bool_))
    r1, r2 = ints[R1], ints[R2]
    take_frames(win_ring, norm_ring, counts, ints[DATA_STEP], quat[r1], quat[r2], g[r1], g[r2],
                restarted[r1], restarted[r2])


@njit(cache=True)
def pair_prior_finish(quat, root, ints, geometry, delta, plan, enc_rot, enc_axis,
                      out):  # pragma: no cover
    """One frame's second part: the split at heading ``delta`` rad (``TwoAxisJoint.state``)
    and the encoding (``ConstraintPrior.features``) into ``out``."""
    q_rel = np.zeros((1, ints[N_BODIES], 4))
    q_rel[0, :, 0] = 1.0
    if ints[ROOT_FROM] >= 0:
        q_rel[0, 0] = quat[ints[ROOT_FROM], 0]
    elif ints[ROOT_FROM] == ROOT_OWN:
        q_rel[0, 0] = root[0, 0]
    r1, r2 = ints[R1], ints[R2]
    angle, q_m, q_d, d = np.empty((1, 2)), np.empty((1, 4)), np.empty((1, 4)), np.empty(1)
    d[0] = delta
    split_two_axis(quat[r1], quat[r2], d, geometry[0:9].reshape(3, 3), geometry[9:13],
                   geometry[13:17], geometry[17:20], geometry[20:24], geometry[24:27],
                   angle, q_m, q_d)
    q_rel[0, ints[MIDDLE]] = q_m[0]
    q_rel[0, ints[DISTAL]] = q_d[0]
    encode_into(q_rel, plan, enc_rot, enc_axis, out)
