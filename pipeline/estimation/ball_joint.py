"""BallJoint: a spherical joint's rotation from the 6D orientations of the segments on its sides.

Each IMU's VQF 6D orientation has its own earth frame, and the two differ by a rotation
``delta`` about the vertical that drifts with the gyro bias VQF has not removed. What makes
``delta`` observable at a spherical joint is its centre: a point of both rigid segments, so
its acceleration is the same vector seen from both (Weygers et al., "Drift-free inertial
sensor-based joint kinematics for long-term arbitrary movements", IEEE Sensors Journal
2020). Each IMU's specific force is moved to the joint centre (``hinge.to_joint_centre``,
lever arms from the chain's IMU positions) and turned into its filter's earth frame; while
the joint centre accelerates horizontally (walking, any motion of the pelvis), ``delta`` is
pulled, with time constant ``tau_s``, towards the angle between the two horizontal parts.
At rest nothing observes it and it is held. ``delta`` starts at 0 (each filter's earth x
axis is where its sensor pointed when the stream started, so a stream started in the chain's
zero pose begins aligned).

The joint centre says nothing about how the parent's sensor is turned on its segment about
the segment's up axis, which a static-only calibration leaves as mounted (a pelvis: no hinge
to another IMU). :meth:`BallJoint.heading_reset` in a known pose (standing in the
calibration pose) sets what is not known yet: before motion has found ``delta`` (``tau_s``
worth of usable frames), ``delta`` itself, taking the sensors as mounted as calibrated; after,
that turn, ``offset``, so that the joint's turn about the parent's up axis reads as in the
pose. The offset turns the parent's lever arm to the joint centre, which moves the ``delta``
the pull finds; the reset therefore runs the pull again over the last REPLAY_S s of frames
with the new lever arm and takes the offset again, RESET_PASSES times, so one reset does what
a second one after more motion did before.

Units: quaternions w, x, y, z (segment to its filter's earth frame, z up); angles rad;
specific force m/s^2; lever arms m.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.estimation.hinge import to_joint_centre
from pipeline.estimation.joint_heading import wrap_pi
from pipeline.kinematics.quaternion import np_qconj, np_qmul, np_qrotate, qmul4, qrot3

REPLAY_S = 10.0   # s of the latest frames a reset after motion runs the pull over again
RESET_PASSES = 3  # offset, pull again, offset: the lever arm's turn and the heading settle


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
        levers: (2, 3) m, joint centre to the parent's and to the body's IMU, each in its
            segment frame.
        rate_hz: frame rate, Hz.
        tau_s: time constant of the heading's pull towards the joint centre's acceleration, s;
            0 turns the pull off (the heading then changes only by resets).
        agree_ms2: max | |f_parent| - |f_body| | at the joint centre for a usable frame, m/s^2.
        min_horizontal_ms2: min horizontal part of both for a usable frame, m/s^2 (below it
            the inclination's error leaks too much gravity into the direction).
    """

    def __init__(self, body: int, imus: tuple[int, int], levers: np.ndarray, rate_hz: float,
                 tau_s: float, agree_ms2: float, min_horizontal_ms2: float) -> None:
        self.body, self.imus = body, imus
        self.levers = np.ascontiguousarray(levers, dtype=np.float64)
        self._levers_in_data = self.levers.copy()  # the parent's turned by the offset
        self.delta = 0.0  # rad: Rz(delta) * q_body is the body in the parent filter's earth
        self.offset = 0.0  # rad: the parent segment is its sensor's frame turned by this about z
        self._dt = 1.0 / rate_hz
        self._gain = 0.0 if tau_s == 0 else min(1.0, self._dt / tau_s)
        self._agree, self._min_horizontal = float(agree_ms2), float(min_horizontal_ms2)
        self._w_last = np.full((2, 3), np.nan)  # rad/s, the last rates of both IMUs
        self._used = 0  # usable frames so far (the first ones average: gain at least 1 / n)
        self._enough = 0 if tau_s == 0 else round(tau_s * rate_hz)  # usable frames: delta found
        self._f = np.zeros((0, 2, 3))  # m/s^2, scratch: specific force at the joint centre
        # the latest frames (ring of REPLAY_S s): orientations of parent and body, and both
        # IMUs' acc m/s^2 and gyr rad/s, for the reset's replay; frames written so far
        cap = max(1, round(REPLAY_S * rate_hz))
        self._hist_q, self._hist_acc = np.zeros((cap, 2, 4)), np.zeros((cap, 2, 3))
        self._hist_gyr, self._hist_n = np.zeros((cap, 2, 3)), 0

    def update(self, q_parent: np.ndarray, q_body: np.ndarray, acc: tuple[np.ndarray, np.ndarray],
               gyr: tuple[np.ndarray, np.ndarray], restart: np.ndarray | None = None
               ) -> np.ndarray:
        """(n, 4) body-to-parent rotation from (n, 4) orientations of parent and body and both
        IMUs' (n, 3) acc m/s^2 and gyr rad/s (segment frames, float64, C order); the heading
        pulled frame by frame. ``restart`` (n,) bool: frames at which either IMU's filter
        started again after a sensor gap (``Vqf6DBank.restarted``); the heading between them
        jumped there, so the pull averages from that frame on as at the start (1 / n)."""
        n = len(q_parent)
        if len(self._f) < n:
            self._f = np.empty((n, 2, 3))
        f = self._f[:n]
        for side in (0, 1):
            to_joint_centre(acc[side], gyr[side], self._levers_in_data[side], self._w_last[side],
                            self._dt, f[:, side])
        out = np.empty((n, 4))
        bounds = [0, *([] if restart is None else np.flatnonzero(restart).tolist()), n]
        for k in range(len(bounds) - 1):
            a, b = bounds[k], bounds[k + 1]
            if k > 0:  # a is a restart frame
                self._used = 0
            if b > a:
                self.delta, self._used = _heading_kernel(
                    q_parent[a:b], q_body[a:b], f[a:b], self.delta, self.offset, self._gain,
                    self._used, self._agree, self._min_horizontal, out[a:b])
        if self._gain > 0:  # only a reset after motion replays them, and that needs the pull
            self._keep(q_parent, q_body, acc, gyr)
        return out

    def _keep(self, q_parent: np.ndarray, q_body: np.ndarray,
              acc: tuple[np.ndarray, np.ndarray], gyr: tuple[np.ndarray, np.ndarray]) -> None:
        """Write the block's frames into the replay ring."""
        _keep_frames(self._hist_q, self._hist_acc, self._hist_gyr, self._hist_n, q_parent, q_body,
                     acc[0], acc[1], gyr[0], gyr[1])
        self._hist_n += len(q_parent)

    def _replay(self) -> None:
        """Run the pull over the kept frames again, from ``delta`` now, with the lever arms as
        they are now (the live state other than ``delta`` untouched)."""
        cap = len(self._hist_q)
        m = min(self._hist_n, cap)
        order = (np.arange(m) + max(0, self._hist_n - cap)) % cap
        q, acc, gyr = self._hist_q[order], self._hist_acc[order], self._hist_gyr[order]
        f = np.empty((m, 2, 3))
        for side in (0, 1):
            to_joint_centre(np.ascontiguousarray(acc[:, side]), np.ascontiguousarray(gyr[:, side]),
                            self._levers_in_data[side], np.full(3, np.nan), self._dt, f[:, side])
        self.delta, _ = _heading_kernel(np.ascontiguousarray(q[:, 0]),
                                        np.ascontiguousarray(q[:, 1]), f, self.delta,
                                        self.offset, self._gain, self._used, self._agree,
                                        self._min_horizontal, np.empty((m, 4)))

    def q_rel(self, q_parent: np.ndarray, q_body: np.ndarray) -> np.ndarray:
        """(n, 4) body-to-parent rotation from (n, 4) orientations of parent and body, at the
        heading now (no update)."""
        n = len(q_parent)
        out = np.empty((n, 4))
        _heading_kernel(q_parent, q_body, np.zeros((n, 2, 3)), self.delta, self.offset, 0.0, 0,
                        0.0, 0.0, out)
        return out

    @property
    def heading_found(self) -> bool:
        """True once motion has shown ``delta`` (the pull on, ``tau_s`` of usable frames)."""
        return self._gain > 0 and self._used >= self._enough

    def heading_reset(self, q_parent: np.ndarray, q_body: np.ndarray,
                      pose: np.ndarray | None = None) -> float:
        """Make the joint read ``pose`` ((4,) body to parent, default the identity) in heading
        now, from (4,) orientations of both segments: set ``offset`` (the twist about the
        parent's up axis) once :attr:`heading_found`, else ``delta``; returns the change, rad."""
        if not self.heading_found:
            c, s = math.cos(0.5 * self.offset), math.sin(0.5 * self.offset)
            target = np_qmul(q_parent, np.array([c, 0.0, 0.0, s]))  # the offset stays applied
            if pose is not None:
                target = np_qmul(target, pose)
            delta = wrap_pi(x_heading(target) - x_heading(q_body))
            change, self.delta = wrap_pi(delta - self.delta), delta
            return change
        held = self.offset
        for k in range(RESET_PASSES):
            if k:
                self._replay()
            self._take_offset(q_parent, q_body, pose)
        return wrap_pi(self.offset - held)

    def _take_offset(self, q_parent: np.ndarray, q_body: np.ndarray,
                     pose: np.ndarray | None) -> None:
        """Set ``offset`` so that the joint reads ``pose``'s twist about the parent's up axis
        now, and turn the parent's lever arm with it."""
        self.offset = 0.0
        m = self.q_rel(q_parent[None], q_body[None])[0]
        if pose is not None:
            m = np_qmul(m, np_qconj(pose))
        self.offset = wrap_pi(2.0 * math.atan2(m[3], m[0]))  # the twist of m about z
        # the parent's data arrive in its sensor's frame: its lever arm turned the same way
        turn = np.array([math.cos(0.5 * self.offset), 0.0, 0.0, math.sin(0.5 * self.offset)])
        self._levers_in_data[0] = np_qrotate(turn, self.levers[0])


@njit(cache=True)
def _heading_kernel(q_parent, q_body, f, delta, offset, gain, used, agree, min_horizontal,
                    out):  # pragma: no cover - numba
    """Pull ``delta`` (rad) frame by frame towards the heading that turns the body filter's
    earth-frame joint-centre force ``f[:, 1]`` onto the parent's ``f[:, 0]`` ((n, 2, 3)
    m/s^2, segment frames), by ``gain`` of the difference, or by 1 / n on the n-th usable
    frame while that is more (the first ones average, so a start far off is found in a few
    seconds of motion); out (n, 4) = Rz(-offset) * conj(q_parent) * Rz(delta) * q_body.
    Returns delta and the usable frames counted so far (``used`` before)."""
    co, so = math.cos(0.5 * offset), math.sin(0.5 * offset)
    for k in range(q_parent.shape[0]):
        pw, px, py, pz = q_parent[k, 0], q_parent[k, 1], q_parent[k, 2], q_parent[k, 3]
        bw, bx, by, bz = q_body[k, 0], q_body[k, 1], q_body[k, 2], q_body[k, 3]
        ex, ey, _ = qrot3(pw, px, py, pz, f[k, 0, 0], f[k, 0, 1], f[k, 0, 2])
        gx, gy, _ = qrot3(bw, bx, by, bz, f[k, 1, 0], f[k, 1, 1], f[k, 1, 2])
        n_p = math.sqrt(f[k, 0, 0] ** 2 + f[k, 0, 1] ** 2 + f[k, 0, 2] ** 2)
        n_b = math.sqrt(f[k, 1, 0] ** 2 + f[k, 1, 1] ** 2 + f[k, 1, 2] ** 2)
        if (gain > 0.0 and abs(n_p - n_b) < agree
                and min(math.hypot(ex, ey), math.hypot(gx, gy)) > min_horizontal):
            c, s = math.cos(delta), math.sin(delta)
            rx, ry = c * gx - s * gy, s * gx + c * gy  # the body's, turned by delta
            err = math.atan2(rx * ey - ry * ex, rx * ex + ry * ey)
            used += 1
            delta = (delta + max(gain, 1.0 / used) * err + math.pi) % (2.0 * math.pi) - math.pi
        c, s = math.cos(0.5 * delta), math.sin(0.5 * delta)
        w, x, y, z = qmul4(c, 0.0, 0.0, s, bw, bx, by, bz)
        w, x, y, z = qmul4(pw, -px, -py, -pz, w, x, y, z)
        out[k, 0], out[k, 1], out[k, 2], out[k, 3] = qmul4(co, 0.0, 0.0, -so, w, x, y, z)
    return delta, used


@njit(cache=True)
def _keep_frames(hist_q, hist_acc, hist_gyr, written, q_parent, q_body, acc0, acc1, gyr0,
                 gyr1):  # pragma: no cover - numba
    """Frames k of the block into ring row (written + k) % capacity."""
    cap = hist_q.shape[0]
    for k in range(q_parent.shape[0]):
        row = (written + k) % cap
        hist_q[row, 0], hist_q[row, 1] = q_parent[k], q_body[k]
        hist_acc[row, 0], hist_acc[row, 1] = acc0[k], acc1[k]
        hist_gyr[row, 0], hist_gyr[row, 1] = gyr0[k], gyr1[k]


def warm_up_ball_joint() -> None:
    """Compile (or load from the cache) the kernels for the arrays VQF hands out."""
    for n in (1, 2):
        q = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
        _heading_kernel(q, q, np.zeros((n, 2, 3)), 0.0, 0.0, 0.01, 0, 3.0, 1.0, np.empty((n, 4)))
        v = np.zeros((n, 3))
        _keep_frames(np.zeros((4, 2, 4)), np.zeros((4, 2, 3)), np.zeros((4, 2, 3)), 3, q, q, v, v,
                     v, v)
