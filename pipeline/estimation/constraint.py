"""ConstraintEstimator: hinge angles from joint constraints between IMU-carrying segments.

The constraint-based estimators of Laidig, Seel et al., for two kinds of joints between
segments that carry IMUs (in segment frames, i.e. after a calibration is applied):

- a hinge with an IMU on both sides (the knee): the angle follows the relative angular rate
  about the axis (``theta' = a . (w_child - w_parent)``, exact for a hinge) and is pulled
  towards the angle the accelerations show in both segments (a complementary filter with
  time constant ``tau_s``; the hinge fixes the heading between the two segments, so no
  heading estimate is needed; ``hinge.py``). By default both accelerations are first moved
  to the joint centre (lever arms from the chain's IMU positions; Seel, Raisch, Schauer,
  "IMU-based joint angle measurement for gait analysis", Sensors 2014), where they are the
  same vector seen from both segments, so the pull works during motion whenever their norms
  agree; ``joint_centre=False`` pulls only while both segments are quasi-static (gravity
  alone), the form of the ``constraint`` prior (``constraint_prior.PRIOR_KINDS``);
- two orthogonal hinges through a segment without an IMU (a 2-DoF joint such as arm3's
  y-then-z elbow): each IMU's orientation from VQF 6D, the heading offset between the two
  from the joint's constraint (streaming form of ``qmt.headingCorrection``, causal 8 s
  window, ``joint_heading.py``), then both angles from the relative orientation
  (``two_axis.py``);
- a spherical joint with an IMU on both sides (a hip between pelvis and thigh): the relative
  orientation of both segments' VQF 6D orientations, their heading offset pulled towards
  what the joint centre's acceleration shows in both segments (Weygers et al. 2020), set
  outright at the start and by :meth:`ConstraintEstimator.heading_reset` in a known pose
  (``ball_joint.py``).

Causal and streaming: blocks of any size give the same numbers. Units: acc m/s^2, gyr rad/s
in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.estimation.ball_joint import BallJoint, warm_up_ball_joint
from pipeline.estimation.heading_fit import warm_up_two_axis
from pipeline.estimation.hinge import hinge_kernel, joint_levers, to_joint_centre
from pipeline.estimation.two_axis import TwoAxisJoint
from pipeline.estimation.vqf6d import Vqf6DBank
from pipeline.estimation.vqf_tuning import BODY_WORN, VqfTuning
from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.fk import hinge_plane_basis
from pipeline.kinematics.quaternion import np_qrotate


@dataclass(frozen=True)
class ConstraintSettings:
    """Tuning of the hinge filter, and of VQF 6D for the two-axis joints' IMUs."""

    tau_s: float = 0.5          # s, time constant of the pull towards the accelerations' angle
    # s, time constant of each hinge's estimate of its relative-rate bias about the axis (the
    # pulls' integral; hinge_kernel); 0: none
    hinge_bias_tau_s: float = 20.0
    still_acc_ms2: float = 1.0  # m/s^2, max | |acc| - g | for a quasi-static sample
    max_axis_cos: float = 0.9   # the acceleration must be at least acos(0.9) = 26 deg off the axis
    # both accelerations moved to the joint centre first (the chain's IMU positions, rigid
    # segments; Seel et al. 2014): the pull then works in motion too, whenever their norms
    # agree within agree_ms2, not only while both segments are quasi-static
    joint_centre: bool = True
    agree_ms2: float = 3.0      # m/s^2, max | |f_parent| - |f_child| | at the joint centre
    # a sensor gap (no finite rate) at least this long restarts a hinge (the next usable
    # acceleration angle is taken outright, not pulled towards over tau_s), and the VQF 6D
    # filter of that IMU with the heading estimation of its two-axis joint (vqf6d_restart,
    # JointHeading.update); sync bridges gaps up to its max_gap_s, 0.1 s by default, and
    # leaves longer ones NaN
    restart_gap_s: float = 0.1
    vqf: VqfTuning = BODY_WORN  # VQF 6D of the two-axis and spherical joints' IMUs (vqf_tuning.py)
    # spherical joints: the heading's pull towards the joint centre's acceleration (ball_joint.py)
    ball_tau_s: float = 2.0     # s; 0: no pull, the heading changes by resets only
    ball_min_horizontal_ms2: float = 1.0  # m/s^2, min horizontal joint-centre force to pull

    def __post_init__(self) -> None:
        if (self.tau_s <= 0 or self.still_acc_ms2 <= 0 or self.agree_ms2 <= 0
                or self.restart_gap_s <= 0):
            raise ValueError("tau_s, still_acc_ms2, agree_ms2 and restart_gap_s must be > 0; "
                             f"got {self}")
        if self.hinge_bias_tau_s < 0:
            raise ValueError(f"hinge_bias_tau_s must be >= 0 (0: no bias estimate); got {self}")
        if self.ball_tau_s < 0 or self.ball_min_horizontal_ms2 < 0:
            raise ValueError("ball_tau_s and ball_min_horizontal_ms2 must be >= 0; got "
                             f"{self.ball_tau_s}, {self.ball_min_horizontal_ms2}")
        if not 0 < self.max_axis_cos < 1:
            raise ValueError(f"max_axis_cos must be in (0, 1), got {self.max_axis_cos}")


@dataclass(frozen=True)
class _Hinge:
    body: int          # child body index (its hinge angle slot is ``slot``)
    slot: int
    parent_imu: int    # IMU indices in the frame
    child_imu: int
    geometry: np.ndarray  # (6, 3): axis in parent, axis in child, plane bases e1p e2p e1c e2c
    lever: np.ndarray     # (2, 3) m: joint centre to the parent's / child's IMU, segment frames


@dataclass(frozen=True)
class _Pair:
    joint: TwoAxisJoint
    slots: tuple[int, int]  # hinge angle slots of the middle and distal bodies
    imus: tuple[int, int]   # IMU indices in the frame: segment 1, segment 2


def warm_up() -> None:
    """Compile the kernels now (cached on disk), for float64 array views; the types a stream's
    frames bring: :func:`warm_up_estimator`."""
    for n in (1, 2):
        z = np.zeros((n, 2, 3))
        z.flags.writeable = False
        for at_joint in (False, True):
            hinge_kernel(0.0, 0.0, 0, 0, z[:, 0], z[:, 0], z[:, 0], z[:, 0],
                         np.eye(3).repeat(2, 0), np.array([1.0, 0, 0, 0]), 0.01, 0.1, 0.001,
                         1.0, 0.9, at_joint, 10, np.zeros(n), np.zeros((n, 4)))
        to_joint_centre(z[:, 0], z[:, 0], np.zeros(3), np.zeros(3), 0.01, np.zeros((n, 3)))
    warm_up_two_axis()
    warm_up_ball_joint()


def warm_up_estimator(estimator: ConstraintEstimator) -> None:
    """Compile (or load from numba's cache) every kernel ``estimator`` runs on a stream's frames
    (float32, read-only or not, one frame or more) by feeding it still frames: for a node's
    setup, on a throwaway estimator."""
    chain = estimator.chain
    for z in still_frames(estimator.n_imu):
        estimator.update(z, z, np.empty((len(z), chain.n_bodies, 4)),
                         np.empty((len(z), len(chain.hinge_bodies))))


def still_frames(n_imu: int) -> list[np.ndarray]:
    """Frames (n, n_imu, 3) float32 at rest, upright (9.81 m/s^2 on z), of every array type a
    stream brings a kernel: one frame and two, read-only or not, contiguous or strided (a
    field of the frame records)."""
    out = []
    for n in (1, 2):  # one frame: its per-IMU views are C-contiguous, another kernel type
        for writeable in (False, True):
            for strided in (False, True):
                z = np.zeros((n, n_imu, 6 if strided else 3), np.float32)[..., :3]
                z[..., 2] = 9.81
                z.flags.writeable = writeable
                out.append(z)
    return out


class ConstraintEstimator:
    """Hinge angles and body-to-parent quaternions of ``chain`` from frames of ``imus``.

    Needs an IMU on both sides of every hinge and spherical joint, or on both ends of a pair
    of orthogonal hinges; raises ValueError saying which joint lacks one (or which joints it
    cannot handle). The root's q_rel stays identity (the orientation node estimates the root).
    """

    def __init__(self, chain: Chain, imus: list[str], rate_hz: float,
                 settings: ConstraintSettings = ConstraintSettings(),
                 levers: Mapping[str, np.ndarray] | None = None) -> None:
        self.chain, self.settings, self.n_imu = chain, settings, len(imus)
        self._rate_hz = rate_hz
        # joint (child body) name -> (2, 3) m, centre to the parent's IMU and to the child's,
        # in place of the chain's IMU positions (a calibration's joint centres)
        self._lever_of = {k: np.asarray(v, dtype=np.float64).reshape(2, 3)
                          for k, v in (levers or {}).items()}
        imu_of: dict[int, int] = {}  # body -> IMU index in the frames
        self._site_of: dict[int, int] = {}  # body -> the chain's IMU site
        for site, (name, body) in enumerate(zip(chain.imu_names, chain.imu_bodies,
                                                strict=True)):
            if name not in imus:
                raise ValueError(f"chain IMU '{name}' is not in the input frames (IMUs "
                                 f"{imus}); map the sensors to the chain's names")
            imu_of.setdefault(int(body), imus.index(name))
            self._site_of.setdefault(int(body), site)
        others = [chain.body_names[i] for i, p in enumerate(chain.parents)
                  if p >= 0 and chain.joint_types[i] not in (JointType.HINGE, JointType.FROZEN,
                                                             JointType.SPHERICAL)]
        if others:
            raise ValueError(f"the constraint observer handles hinges, spherical and frozen "
                             f"joints below the root; chain '{chain.name}' has other joints at "
                             f"{others}")
        balls = [self._ball(b, imu_of) for b in range(1, chain.n_bodies)
                 if chain.joint_types[b] == JointType.SPHERICAL]
        slot_of = {int(b): slot for slot, b in enumerate(chain.hinge_bodies)}
        hinges, pairs = [], []
        for body, slot in slot_of.items():
            parent = int(chain.parents[body])
            if body in imu_of and parent in imu_of:
                hinges.append(self._hinge(body, slot, imu_of[parent], imu_of[body]))
            elif body in imu_of and parent in slot_of and int(chain.parents[parent]) in imu_of:
                joint = TwoAxisJoint(chain, parent, body, rate_hz)
                pairs.append(_Pair(joint, (slot_of[parent], slot_of[body]),
                                   (imu_of[int(chain.parents[parent])], imu_of[body])))
            elif body in imu_of or not any(int(chain.parents[c]) == body and c in imu_of
                                           for c in slot_of):
                name = chain.body_names[body]
                raise ValueError(
                    f"hinge '{name}' needs an IMU on '{name}' and on its parent (or, for two "
                    f"orthogonal hinges in a row, on the first one's parent and the second "
                    f"one's body); chain '{chain.name}' has none there (use the RNN observer "
                    "for sparse IMUs)")
        used = {chain.body_names[h.body] for h in hinges} | {chain.body_names[b.body]
                                                             for b in balls}
        unknown = sorted(set(self._lever_of) - used)
        if unknown:
            raise ValueError(f"lever arms given for {unknown}, which are no hinge or spherical "
                             f"joint with an IMU on both sides in chain '{chain.name}' (those "
                             f"are {sorted(used)})")
        self.two_axis, self.spherical = bool(pairs), bool(balls)
        self._hinges, self._pairs, self._balls = hinges, pairs, balls
        vqf_imus = sorted({i for pr in pairs for i in pr.imus} | {i for b in balls for i in b.imus})
        # frames of a sensor gap that restart what it made stale (hinges, VQF, headings)
        self.restart_after = max(1, round(settings.restart_gap_s * rate_hz))
        self._vqf = (Vqf6DBank(vqf_imus, rate_hz, settings.vqf, self.restart_after)
                     if vqf_imus else None)
        self.vqf_imus = frozenset(vqf_imus)  # IMU indices whose 6D orientation VQF tracks
        self._dt = 1.0 / rate_hz
        self._gain = min(1.0, self._dt / settings.tau_s)
        self._bias_gain = (self._dt / (settings.tau_s * settings.hinge_bias_tau_s)
                           if settings.hinge_bias_tau_s > 0 else 0.0)
        self._theta = np.zeros(len(hinges))
        self._bias = np.zeros(len(hinges))  # rad/s, per hinge: relative-rate bias estimate
        self._w_last = np.full((len(hinges), 2, 3), np.nan)  # rad/s, parent and child IMU
        self._acc_joint = np.zeros((0, 2, 3))  # m/s^2, scratch: at the joint centre
        self._seen = np.zeros(len(hinges), np.int64)  # per hinge: usable frames since start
        self._missing = np.zeros(len(hinges), np.int64)  # per hinge: frames of the open gap
        self._rot0 = np.array(chain.rotations, dtype=np.float64)  # a writable copy (kernel type)
        self._frozen = [b for b in range(1, chain.n_bodies)
                        if chain.joint_types[b] == JointType.FROZEN]

    def _hinge(self, body: int, slot: int, parent_imu: int, child_imu: int) -> _Hinge:
        """A hinge with an IMU on both sides: axis and gravity-plane bases in both frames."""
        axis = np.asarray(self.chain.axes[body], dtype=np.float64)
        axis = axis / np.linalg.norm(axis)
        rot = np.asarray(self.chain.rotations[body], dtype=np.float64)
        axis_parent = np_qrotate(rot, axis)
        e1p, e2p = hinge_plane_basis(axis_parent)
        e1c, e2c = hinge_plane_basis(axis)
        geometry = np.stack([axis_parent, axis, e1p, e2p, e1c, e2c])
        return _Hinge(body, slot, parent_imu, child_imu, geometry, self._levers(body))

    def _levers(self, body: int) -> np.ndarray:
        """(2, 3) m: the centre of ``body``'s joint to its parent's IMU and to its own (given,
        or from the chain's IMU positions)."""
        given = self._lever_of.get(self.chain.body_names[body])
        if given is not None:
            return given
        parent = int(self.chain.parents[body])
        return joint_levers(self.chain, body, self._site_of[parent], self._site_of[body])

    def _ball(self, body: int, imu_of: dict[int, int]) -> BallJoint:
        """A spherical joint with an IMU on both sides; ValueError naming it otherwise."""
        parent = int(self.chain.parents[body])
        if body not in imu_of or parent not in imu_of:
            name, pname = self.chain.body_names[body], self.chain.body_names[parent]
            raise ValueError(f"spherical joint '{name}' needs an IMU on '{name}' and on its "
                             f"parent '{pname}'; chain '{self.chain.name}' has none there (use "
                             "the RNN observer for sparse IMUs)")
        s = self.settings
        return BallJoint(body, (imu_of[parent], imu_of[body]), self._levers(body), self._rate_hz,
                         s.ball_tau_s, s.agree_ms2, s.ball_min_horizontal_ms2)

    @property
    def imu_quat6d(self) -> dict[int, np.ndarray]:
        """The last update's VQF 6D orientation (n, 4) w,x,y,z per IMU index."""
        return self._vqf.quat6d if self._vqf is not None else {}

    @property
    def imu_vqf_input(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The last update's VQF inputs per IMU index: (n, 3) gyr rad/s and acc m/s^2, float64,
        C order, non-finite vectors zeroed (``finite_or_zero``)."""
        return self._vqf.inputs if self._vqf is not None else {}

    @property
    def vqf_bank(self) -> Vqf6DBank | None:
        """The VQF 6D filters of the two-axis and spherical joints' IMUs (None without any)."""
        return self._vqf

    def single_pair(self) -> tuple[TwoAxisJoint, tuple[int, int]] | None:
        """The two-axis joint and its two IMU indices when it is all this estimator tracks (no
        hinge, spherical or frozen joint beside it; arm3): what ``prior_frame`` compiles."""
        if len(self._pairs) != 1 or self._hinges or self._balls or self._frozen:
            return None
        return self._pairs[0].joint, self._pairs[0].imus

    def heading_found(self) -> dict[str, bool]:
        """Per spherical joint: has motion shown its filters' heading yet (then a reset sets
        the parent sensor's turn on its segment; ``BallJoint.heading_reset``)."""
        return {self.chain.body_names[b.body]: b.heading_found for b in self._balls}

    def heading_reset(self, pose: np.ndarray | None = None) -> dict[str, float]:
        """Align every spherical joint's heading so that it reads as in ``pose`` ((n_bodies,
        4) q_rel, default the chain's zero pose) now; returns the change per joint, deg.

        Raises ValueError before the first frame (no orientation to align yet).
        """
        if self._balls and not self.imu_quat6d:
            raise ValueError("no orientation yet: wait for frames, then reset")
        changes = {}
        for ball in self._balls:
            qp, qc = (self.imu_quat6d[i][-1] for i in ball.imus)
            change = ball.heading_reset(qp, qc, None if pose is None else pose[ball.body])
            changes[self.chain.body_names[ball.body]] = round(math.degrees(change), 2)
        return changes

    def update(self, acc: np.ndarray, gyr: np.ndarray, q_rel: np.ndarray,
               angle: np.ndarray) -> None:
        """Advance over (n, n_imu, 3) acc m/s^2 and gyr rad/s; write ``q_rel`` (n, n_bodies, 4)
        w,x,y,z body to parent (root identity) and ``angle`` (n, n_hinge) rad."""
        n, s = len(acc), self.settings
        q_rel[:, 0] = (1.0, 0.0, 0.0, 0.0)
        one_angle, one_quat = np.empty(n), np.empty((n, 4))
        if s.joint_centre and len(self._acc_joint) < n:
            self._acc_joint = np.empty((n, 2, 3))
        for i, h in enumerate(self._hinges):
            ap, ac = acc[:, h.parent_imu], acc[:, h.child_imu]
            if s.joint_centre:
                ap, ac = self._acc_joint[:n, 0], self._acc_joint[:n, 1]
                for side, imu in enumerate((h.parent_imu, h.child_imu)):
                    to_joint_centre(acc[:, imu], gyr[:, imu], h.lever[side],
                                    self._w_last[i, side], self._dt, self._acc_joint[:n, side])
            self._theta[i], self._bias[i], self._seen[i], self._missing[i] = hinge_kernel(
                self._theta[i], self._bias[i], int(self._seen[i]), int(self._missing[i]), ap,
                ac, gyr[:, h.parent_imu], gyr[:, h.child_imu], h.geometry, self._rot0[h.body],
                self._dt, self._gain, self._bias_gain,
                s.agree_ms2 if s.joint_centre else s.still_acc_ms2,
                s.max_axis_cos, s.joint_centre, self.restart_after, one_angle, one_quat)
            angle[:, h.slot] = one_angle
            q_rel[:, h.body] = one_quat
        if self._vqf is not None:
            self._from_orientations(acc, gyr, q_rel, angle)
        for b in self._frozen:  # frozen bodies: their fixed rotation
            q_rel[:, b] = self._rot0[b]

    def _from_orientations(self, acc: np.ndarray, gyr: np.ndarray, q_rel: np.ndarray,
                           angle: np.ndarray) -> None:
        """VQF 6D per IMU, then the angles and q_rel of every two-axis pair (heading, split)
        and the q_rel of every spherical joint."""
        self._vqf.update(acc, gyr)
        quat, inputs, restarted = self._vqf.quat6d, self._vqf.inputs, self._vqf.restarted
        for pr in self._pairs:
            i1, i2 = pr.imus
            both, q_m, q_d = pr.joint.state(quat[i1], quat[i2], inputs[i1][0], inputs[i2][0],
                                            restarted[i1] | restarted[i2])
            angle[:, pr.slots[0]], angle[:, pr.slots[1]] = both.T
            q_rel[:, pr.joint.middle], q_rel[:, pr.joint.distal] = q_m, q_d
        for ball in self._balls:
            (gp, ap), (gb, ab) = inputs[ball.imus[0]], inputs[ball.imus[1]]
            q_rel[:, ball.body] = ball.update(quat[ball.imus[0]], quat[ball.imus[1]], (ap, ab),
                                              (gp, gb), restarted[ball.imus[0]]
                                              | restarted[ball.imus[1]])


def finite_or_zero(v: np.ndarray) -> np.ndarray:
    """(..., 3) float64 C-contiguous copy with non-finite vectors zeroed (VQF skips zero acc)."""
    v = np.array(v, dtype=np.float64, order="C")
    # a finite sum means every value is finite: one call on clean frames (the per-frame hot
    # path); a sum that is not (a NaN, an inf, or an overflow) takes the exact test
    if not math.isfinite(np.add.reduce(v, axis=None)):
        v[~np.isfinite(v).all(axis=-1)] = 0.0
    return v
