"""ConstraintObserver: joint state from joint constraints between IMU-carrying segments.

The constraint-based estimators of Laidig, Seel et al., for two kinds of joints between
segments that carry IMUs (in segment frames, i.e. after the filter applied a calibration):

- a hinge with an IMU on both sides (the knee): the angle follows the relative angular rate
  about the axis (``theta' = a . (w_child - w_parent)``, exact for a hinge) and is pulled
  towards the angle gravity shows in both segments whenever both are quasi-static (a
  complementary filter with time constant ``tau_s``; the hinge fixes the heading between the
  two segments, so no heading estimate is needed; ``hinge.py``);
- two orthogonal hinges through a segment without an IMU (a 2-DoF joint such as arm3's
  y-then-z elbow): each IMU's orientation from VQF 6D, the heading offset between the two
  from the joint's constraint (streaming form of ``qmt.headingCorrection``, causal 8 s
  window, ``joint_heading.py``), then both angles from the relative orientation
  (``two_axis.py``).

The root's ``q_rel`` stays identity, as the RNN observer leaves bodies its model does not
estimate: the root orientation is the orientation node's (VQF 6D), which fk takes on its
``root`` input.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import vqf

from nodes.constraint_observer.heading_fit import warm_up_two_axis
from nodes.constraint_observer.hinge import hinge_kernel
from nodes.constraint_observer.two_axis import TwoAxisJoint
from pipeline.kinematics.chain import Chain, ChainError, JointType, load_chain
from pipeline.kinematics.fk import hinge_plane_basis
from pipeline.kinematics.quaternion import np_qrotate
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.sensor_check import require_sensors
from pipeline.runtime.streams import FRAME, STATE, frame_dtype, state_dtype


@dataclass(frozen=True)
class _Hinge:
    body: int          # child body index (its hinge angle slot is ``slot``)
    slot: int
    parent_imu: int    # IMU indices in the frame
    child_imu: int
    geometry: np.ndarray  # (6, 3): axis in parent, axis in child, plane bases e1p e2p e1c e2c


@dataclass(frozen=True)
class _Pair:
    joint: TwoAxisJoint
    slots: tuple[int, int]  # hinge angle slots of the middle and distal bodies
    imus: tuple[int, int]   # IMU indices in the frame: segment 1, segment 2


class ConstraintObserver(Node):
    """Hinge angles from gyros and gravity under joint constraints; no training.

    Needs the chain (graph ``chain:``) to have an IMU on both sides of every hinge, or on both
    ends of a pair of orthogonal hinges, in segment frames (calibrate, then let the filter
    apply it). Publishes ``chain.state`` like the RNN observer.

    Ports:
        frame: imu.frame; acc m/s^2, gyr rad/s, segment frames.
        chain.state (out): q_rel (n_bodies, 4) w,x,y,z body to parent (root: identity),
            angle (n_hinge,) rad.
    """

    inputs = {"frame": Input(accepts=(FRAME,))}
    outputs = (STATE,)

    @dataclass(frozen=True)
    class Params:
        tau_s: float = 0.5          # s, time constant of the pull towards gravity's angle
        still_acc_ms2: float = 1.0  # m/s^2, max | |acc| - g | for a quasi-static sample
        max_axis_cos: float = 0.9   # gravity must be at least acos(0.9) = 26 deg off the axis

        def __post_init__(self) -> None:
            if self.tau_s <= 0 or self.still_acc_ms2 <= 0:
                raise ValueError(f"tau_s and still_acc_ms2 must be > 0; got {self}")
            if not 0 < self.max_axis_cos < 1:
                raise ValueError(f"max_axis_cos must be in (0, 1), got {self.max_axis_cos}")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The chain's IMUs must all arrive in the frames."""
        if context.chain_file is None:
            return upstream  # setup says that the chain is needed
        try:
            names = list(load_chain(context.resolve(context.chain_file)).imu_names)
        except (ChainError, OSError):
            return upstream  # setup reports the chain file's problem
        require_sensors("needs the chain's IMUs", names, upstream)
        return upstream

    def setup(self) -> None:
        path = self.context.chain_file
        if path is None:
            raise ConfigError(f"node '{self.id}': the graph has no 'chain:'; the constraint "
                              "observer needs the chain's joints", key="chain")
        try:
            self.chain: Chain = load_chain(self.context.resolve(path))
        except ChainError as exc:
            raise ConfigError(f"node '{self.id}': {exc}", key="chain") from None
        self._in_info: StreamInfo | None = None
        # compile the kernel now, not on the first frame, for the views frames give it
        # (read-only; one frame is a contiguous view, more are strided)
        for n in (1, 2):
            frame = np.zeros(n, frame_dtype(2))
            frame.flags.writeable = False
            z = frame["acc"][:, 0]
            hinge_kernel(0.0, False, z, z, z, z, np.eye(3).repeat(2, 0),
                         np.array([1.0, 0, 0, 0]), 0.01, 0.1, 1.0, 0.9, np.zeros(n),
                         np.zeros((n, 4)))
        warm_up_two_axis()

    def _configure(self, info: StreamInfo) -> None:
        """Map the chain's hinges and root onto the IMUs of ``info``."""
        chain, imus = self.chain, list(info.meta.get("imus", []))
        if info.rate_hz <= 0:
            raise ConfigError(f"node '{self.id}': input {info.stream} has no rate_hz (feed it "
                              "from sync)")
        imu_of = {}
        for name, body in zip(chain.imu_names, chain.imu_bodies, strict=True):
            if name not in imus:
                raise ConfigError(f"node '{self.id}': chain IMU '{name}' is not in the input "
                                  f"frames (IMUs {imus}); map the sensors to the chain's names")
            imu_of.setdefault(int(body), imus.index(name))
        others = [chain.body_names[i] for i, p in enumerate(chain.parents)
                  if p >= 0 and chain.joint_types[i] not in (JointType.HINGE, JointType.FROZEN)]
        if others:
            raise ConfigError(f"node '{self.id}': the constraint observer handles hinges (and "
                              f"frozen joints) below the root; chain '{chain.name}' has other "
                              f"joints at {others}")
        slot_of = {int(b): slot for slot, b in enumerate(chain.hinge_bodies)}
        hinges, pairs = [], []
        for body, slot in slot_of.items():
            parent = int(chain.parents[body])
            if body in imu_of and parent in imu_of:
                hinges.append(self._hinge(body, slot, imu_of[parent], imu_of[body]))
            elif body in imu_of and parent in slot_of and int(chain.parents[parent]) in imu_of:
                pairs.append(self._pair(parent, body, slot_of, imu_of, info.rate_hz))
            elif body in imu_of or not any(int(chain.parents[c]) == body and c in imu_of
                                           for c in slot_of):
                raise ConfigError(
                    f"node '{self.id}': hinge '{chain.body_names[body]}' needs an IMU on "
                    f"'{chain.body_names[body]}' and on its parent (or, for two orthogonal "
                    f"hinges in a row, on the first one's parent and the second one's body); "
                    f"chain '{chain.name}' has none there (use the RNN observer for sparse IMUs)")
        self._hinges, self._pairs = hinges, pairs
        pair_imus = sorted({i for pr in pairs for i in pr.imus})
        self._vqf = {i: vqf.VQF(1.0 / info.rate_hz) for i in pair_imus}  # 6D, per IMU
        self._dt = 1.0 / info.rate_hz
        self._gain = min(1.0, self._dt / self.params.tau_s)
        self._theta = np.zeros(len(hinges))
        self._started = False
        self._rot0 = np.array(chain.rotations, dtype=np.float64)  # a writable copy (kernel type)
        self._dtype = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
        self.declare(STATE, StreamInfo.for_array(
            f"{self.id}/{STATE}", STATE, self._dtype, rate_hz=info.rate_hz,
            channels=self._dtype.names, units=("ns", "1", "rad"),
            meta={"bodies": list(chain.body_names), "chain": chain.name,
                  "hinges": [chain.body_names[b] for b in chain.hinge_bodies],
                  "quaternion": "wxyz", "root": "identity (orientation node)",
                  "estimator": "hinge constraint" + (
                      "; two-axis joints: VQF 6D + heading from the joint constraint"
                      if pairs else "")}))
        self._in_info = info

    def _hinge(self, body: int, slot: int, parent_imu: int, child_imu: int) -> _Hinge:
        """A hinge with an IMU on both sides: axis and gravity-plane bases in both frames."""
        axis = np.asarray(self.chain.axes[body], dtype=np.float64)
        axis = axis / np.linalg.norm(axis)
        rot = np.asarray(self.chain.rotations[body], dtype=np.float64)
        axis_parent = np_qrotate(rot, axis)
        e1p, e2p = hinge_plane_basis(axis_parent)
        e1c, e2c = hinge_plane_basis(axis)
        geometry = np.stack([axis_parent, axis, e1p, e2p, e1c, e2c])
        return _Hinge(body, slot, parent_imu, child_imu, geometry)

    def _pair(self, middle: int, distal: int, slot_of: dict[int, int], imu_of: dict[int, int],
              rate_hz: float) -> _Pair:
        """Two hinges through the IMU-less ``middle`` body, from its parent's IMU and distal's."""
        try:
            joint = TwoAxisJoint(self.chain, middle, distal, rate_hz)
        except ValueError as exc:
            raise ConfigError(f"node '{self.id}': {exc}", key="chain") from None
        return _Pair(joint, (slot_of[middle], slot_of[distal]),
                     (imu_of[int(self.chain.parents[middle])], imu_of[distal]))

    def on_block(self, port: str, block: Block) -> None:
        if block.n == 0:
            return
        if block.info is not self._in_info and block.info != self._in_info:
            self._configure(block.info)
        out = np.zeros(block.n, self._dtype)
        out["t_host"] = block.data["t_host"]
        out["q_rel"][:, 0, 0] = 1.0  # root: identity, see the module docstring
        acc, gyr = block.data["acc"], block.data["gyr"]
        p = self.params
        angle = np.empty(block.n)
        quat = np.empty((block.n, 4))
        for i, h in enumerate(self._hinges):
            self._theta[i], started = hinge_kernel(
                self._theta[i], self._started, acc[:, h.parent_imu], acc[:, h.child_imu],
                gyr[:, h.parent_imu], gyr[:, h.child_imu], h.geometry, self._rot0[h.body],
                self._dt, self._gain, p.still_acc_ms2, p.max_axis_cos, angle, quat)
            self._started = self._started or started
            out["angle"][:, h.slot] = angle
            out["q_rel"][:, h.body] = quat
        if self._pairs:
            self._two_axis(acc, gyr, out)
        for b in range(1, self.chain.n_bodies):  # frozen bodies: their fixed rotation
            if self.chain.joint_types[b] == JointType.FROZEN:
                out["q_rel"][:, b] = self._rot0[b]
        self.emit(STATE, out, t_host=block.t_host, gap=block.gap)

    def _two_axis(self, acc: np.ndarray, gyr: np.ndarray, out: np.ndarray) -> None:
        """Angles and q_rel of every two-axis pair: VQF 6D per IMU, heading, split."""
        quat, rate = {}, {}
        for i, f in self._vqf.items():
            g, a = _finite_or_zero(gyr[:, i]), _finite_or_zero(acc[:, i])
            quat[i], rate[i] = f.updateBatch(g, a)["quat6D"], g  # zero acc: no correction
        for pr in self._pairs:
            i1, i2 = pr.imus
            angle, q_m, q_d = pr.joint.state(quat[i1], quat[i2], rate[i1], rate[i2])
            out["angle"][:, pr.slots[0]], out["angle"][:, pr.slots[1]] = angle.T
            out["q_rel"][:, pr.joint.middle], out["q_rel"][:, pr.joint.distal] = q_m, q_d


def _finite_or_zero(v: np.ndarray) -> np.ndarray:
    """(n, 3) float64 C-contiguous copy with non-finite rows zeroed (VQF skips zero acc)."""
    v = np.array(v, dtype=np.float64, order="C")
    v[~np.isfinite(v).all(axis=1)] = 0.0
    return v
