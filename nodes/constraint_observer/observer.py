"""ConstraintObserver: joint state from hinge constraints between IMU-carrying segments, no training.

For every hinge whose parent and child segments each carry an IMU (in segment frames, i.e.
after the filter applied a calibration), the hinge angle follows the relative angular rate
about the axis (``theta' = a . (w_child - w_parent)``, exact for a hinge) and is pulled
towards the angle gravity shows in both segments whenever both are quasi-static (a
complementary filter with time constant ``tau_s``). The root's ``q_rel`` stays identity, as
the RNN observer leaves bodies its model does not estimate: the root orientation is the
orientation node's (VQF 6D), which fk takes on its ``root`` input. This is the 1-DoF form of the
constraint-based estimators of Laidig et al. (the hinge fixes the heading between the two
segments, so no separate heading estimate is needed). 2-DoF joints are not handled yet.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain, ChainError, JointType, load_chain
from pipeline.kinematics.fk import hinge_plane_basis
from pipeline.kinematics.quaternion import np_qrotate, qmul4
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.sensor_check import require_sensors
from pipeline.runtime.streams import FRAME, STATE, frame_dtype, state_dtype

G = 9.81


@dataclass(frozen=True)
class _Hinge:
    body: int          # child body index (its hinge angle slot is ``slot``)
    slot: int
    parent_imu: int    # IMU indices in the frame
    child_imu: int
    geometry: np.ndarray  # (6, 3): axis in parent, axis in child, plane bases e1p e2p e1c e2c


class ConstraintObserver(Node):
    """Hinge angles from gyros and gravity under the hinge constraint; no training.

    Needs the chain (graph ``chain:``) to have an IMU on both sides of every hinge, in segment
    frames (calibrate, then let the filter apply it). Publishes ``chain.state`` like the RNN
    observer.

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
        hinges = []
        for slot, body in enumerate(chain.hinge_bodies):
            parent = int(chain.parents[body])
            if body not in imu_of or parent not in imu_of:
                raise ConfigError(
                    f"node '{self.id}': hinge '{chain.body_names[body]}' needs an IMU on "
                    f"'{chain.body_names[body]}' and on its parent; chain '{chain.name}' has "
                    "none there (use the RNN observer for sparse IMUs)")
            axis = np.asarray(chain.axes[body], dtype=np.float64)
            axis = axis / np.linalg.norm(axis)
            rot = np.asarray(chain.rotations[body], dtype=np.float64)
            axis_parent = np_qrotate(rot, axis)
            e1p, e2p = hinge_plane_basis(axis_parent)
            e1c, e2c = hinge_plane_basis(axis)
            geometry = np.stack([axis_parent, axis, e1p, e2p, e1c, e2c])
            hinges.append(_Hinge(int(body), slot, imu_of[parent], imu_of[int(body)], geometry))
        others = [chain.body_names[i] for i, p in enumerate(chain.parents)
                  if p >= 0 and chain.joint_types[i] not in (JointType.HINGE, JointType.FROZEN)]
        if others:
            raise ConfigError(f"node '{self.id}': the constraint observer handles hinges (and "
                              f"frozen joints) below the root; chain '{chain.name}' has other "
                              f"joints at {others}")
        self._hinges = hinges
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
                  "hinges": [chain.body_names[h.body] for h in hinges],
                  "quaternion": "wxyz", "estimator": "hinge constraint", "root": "identity (orientation node)"}))
        self._in_info = info

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
        for b in range(1, self.chain.n_bodies):  # frozen bodies: their fixed rotation
            if self.chain.joint_types[b] == JointType.FROZEN:
                out["q_rel"][:, b] = self._rot0[b]
        self.emit(STATE, out, t_host=block.t_host, gap=block.gap)


@njit(cache=True)
def hinge_kernel(theta: float, started: bool, ap: np.ndarray, ac: np.ndarray, wp: np.ndarray,
                 wc: np.ndarray, geo: np.ndarray, rot: np.ndarray, dt: float, gain: float,
                 still_acc: float, max_cos: float, angle: np.ndarray, quat: np.ndarray
                 ) -> tuple[float, bool]:
    """One hinge over a block: integrate the relative rate about the axis, pull towards the
    angle gravity shows in both segments when both are quasi-static (the first such frame sets
    the angle outright). ``ap, ac, wp, wc`` (n, 3) parent/child acc m/s^2 and gyr rad/s in
    segment frames; ``geo`` (6, 3) rows: axis (parent frame), axis (child frame), plane bases
    e1p, e2p, e1c, e2c; ``rot`` (4,) the joint frame. Writes angle (n,) rad and quat (n, 4)
    w,x,y,z child to parent; returns the last angle and whether it started."""
    for k in range(ap.shape[0]):
        rate = 0.0
        for j in range(3):
            rate += wc[k, j] * geo[1, j] - wp[k, j] * geo[0, j]
        if math.isfinite(rate):
            theta += dt * rate
        n1 = math.sqrt(ap[k, 0] ** 2 + ap[k, 1] ** 2 + ap[k, 2] ** 2)
        n2 = math.sqrt(ac[k, 0] ** 2 + ac[k, 1] ** 2 + ac[k, 2] ** 2)
        if abs(n1 - G) < still_acc and abs(n2 - G) < still_acc:
            dp = ap[k, 0] * geo[0, 0] + ap[k, 1] * geo[0, 1] + ap[k, 2] * geo[0, 2]
            dc = ac[k, 0] * geo[1, 0] + ac[k, 1] * geo[1, 1] + ac[k, 2] * geo[1, 2]
            if abs(dp) <= max_cos * n1 and abs(dc) <= max_cos * n2:
                x1 = ap[k, 0] * geo[2, 0] + ap[k, 1] * geo[2, 1] + ap[k, 2] * geo[2, 2]
                y1 = ap[k, 0] * geo[3, 0] + ap[k, 1] * geo[3, 1] + ap[k, 2] * geo[3, 2]
                x2 = ac[k, 0] * geo[4, 0] + ac[k, 1] * geo[4, 1] + ac[k, 2] * geo[4, 2]
                y2 = ac[k, 0] * geo[5, 0] + ac[k, 1] * geo[5, 1] + ac[k, 2] * geo[5, 2]
                target = math.atan2(y1, x1) - math.atan2(y2, x2)
                diff = (target - theta + math.pi) % (2.0 * math.pi) - math.pi
                theta += gain * diff if started else diff
                started = True
        angle[k] = theta
        c, s = math.cos(0.5 * theta), math.sin(0.5 * theta)
        quat[k, 0], quat[k, 1], quat[k, 2], quat[k, 3] = qmul4(
            rot[0], rot[1], rot[2], rot[3], c, s * geo[1, 0], s * geo[1, 1], s * geo[1, 2])
    return theta, started
