"""ConstraintObserver: joint state from hinge constraints between IMU-carrying segments, no training.

For every hinge whose parent and child segments each carry an IMU (in segment frames, i.e.
after the filter applied a calibration), the hinge angle follows the relative angular rate
about the axis (``theta' = a . (w_child - w_parent)``, exact for a hinge) and is pulled
towards the angle gravity shows in both segments whenever both are quasi-static (a
complementary filter with time constant ``tau_s``). The root orientation (inclination,
heading drifting) comes from VQF 6D on the root IMU. This is the 1-DoF form of the
constraint-based estimators of Laidig et al. (the hinge fixes the heading between the two
segments, so no separate heading estimate is needed). 2-DoF joints are not handled yet.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import vqf

from pipeline.kinematics.chain import Chain, ChainError, JointType, load_chain
from pipeline.kinematics.quaternion import np_qfrom_axis_angle, np_qmul, np_qrotate
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, STATE, state_dtype

G = 9.81


@dataclass(frozen=True)
class _Hinge:
    body: int          # child body index (its hinge angle slot is ``slot``)
    slot: int
    parent_imu: int    # IMU indices in the frame
    child_imu: int
    axis: np.ndarray   # unit, child frame
    axis_parent: np.ndarray  # unit, parent frame
    e1p: np.ndarray    # plane bases normal to the axis (parent, child)
    e2p: np.ndarray
    e1c: np.ndarray
    e2c: np.ndarray


def _plane_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    e1 = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


class ConstraintObserver(Node):
    """Hinge angles from gyros and gravity under the hinge constraint; root from VQF 6D.

    Needs the chain (graph ``chain:``) to have an IMU on the root and on both sides of every
    hinge, in segment frames (calibrate, then let the filter apply it). Publishes
    ``chain.state`` like the RNN observer.

    Ports:
        frame: imu.frame; acc m/s^2, gyr rad/s, segment frames.
        chain.state (out): q_rel (n_bodies, 4) w,x,y,z body to parent (root: to earth,
            heading arbitrary), angle (n_hinge,) rad.
    """

    inputs = {"frame": Input(accepts=(FRAME,))}
    outputs = (STATE,)

    @dataclass(frozen=True)
    class Params:
        tau_s: float = 0.5          # s, time constant of the pull towards gravity's angle
        still_acc_ms2: float = 1.0  # m/s^2, max | |acc| - g | for a quasi-static sample
        max_axis_cos: float = 0.9   # gravity must be at least acos(0.9) = 26 deg off the axis
        tau_acc_s: float = 3.0      # s, VQF accelerometer time constant for the root

        def __post_init__(self) -> None:
            if self.tau_s <= 0 or self.still_acc_ms2 <= 0 or self.tau_acc_s <= 0:
                raise ValueError(f"tau_s, still_acc_ms2 and tau_acc_s must be > 0; got {self}")
            if not 0 < self.max_axis_cos < 1:
                raise ValueError(f"max_axis_cos must be in (0, 1), got {self.max_axis_cos}")

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
            e1p, e2p = _plane_basis(axis_parent)
            e1c, e2c = _plane_basis(axis)
            hinges.append(_Hinge(int(body), slot, imu_of[parent], imu_of[int(body)], axis,
                                 axis_parent, e1p, e2p, e1c, e2c))
        others = [chain.body_names[i] for i, p in enumerate(chain.parents)
                  if p >= 0 and chain.joint_types[i] not in (JointType.HINGE, JointType.FROZEN)]
        if others or 0 not in imu_of:
            raise ConfigError(f"node '{self.id}': the constraint observer handles a root with an "
                              f"IMU and hinges; chain '{chain.name}' has other joints at "
                              f"{others} or no IMU on its root")
        self._hinges = hinges
        self._root_imu = imu_of[0]
        self._dt = 1.0 / info.rate_hz
        self._gain = min(1.0, self._dt / self.params.tau_s)
        self._theta = np.zeros(len(hinges))
        self._started = False
        self._vqf = vqf.VQF(self._dt, tauAcc=self.params.tau_acc_s)
        self._rot0 = np.asarray(chain.rotations, dtype=np.float64)
        self._dtype = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
        self.declare(STATE, StreamInfo.for_array(
            f"{self.id}/{STATE}", STATE, self._dtype, rate_hz=info.rate_hz,
            channels=self._dtype.names, units=("ns", "1", "rad"),
            meta={"bodies": list(chain.body_names), "chain": chain.name,
                  "hinges": [chain.body_names[h.body] for h in hinges],
                  "quaternion": "wxyz", "estimator": "hinge constraint + VQF 6D root"}))
        self._in_info = info

    def on_block(self, port: str, block: Block) -> None:
        if block.n == 0:
            return
        if block.info is not self._in_info and block.info != self._in_info:
            self._configure(block.info)
        out = np.zeros(block.n, self._dtype)
        out["t_host"] = block.data["t_host"]
        acc = block.data["acc"].astype(np.float64)
        gyr = block.data["gyr"].astype(np.float64)
        for k in range(block.n):
            self._step(acc[k], gyr[k], out[k])
        self.emit(STATE, out, t_host=block.t_host, gap=block.gap)

    def _gravity_angle(self, h: _Hinge, ap: np.ndarray, ac: np.ndarray) -> float:
        """Hinge angle (rad) from gravity in both segments, NaN unless both are quasi-static."""
        p = self.params
        n1, n2 = math.sqrt(ap @ ap), math.sqrt(ac @ ac)
        if not (abs(n1 - G) < p.still_acc_ms2 and abs(n2 - G) < p.still_acc_ms2):
            return math.nan
        if abs(ap @ h.axis_parent) > p.max_axis_cos * n1 or abs(ac @ h.axis) > (
                p.max_axis_cos * n2):
            return math.nan
        return math.atan2(ap @ h.e2p, ap @ h.e1p) - math.atan2(ac @ h.e2c, ac @ h.e1c)

    def _step(self, acc: np.ndarray, gyr: np.ndarray, out: np.void) -> None:
        """One frame: update every hinge and the root, write q_rel and angle into ``out``."""
        root_a, root_w = acc[self._root_imu], gyr[self._root_imu]
        if np.isfinite(root_a).all() and np.isfinite(root_w).all():
            self._vqf.update(np.ascontiguousarray(root_w), np.ascontiguousarray(root_a))
        out["q_rel"][0] = self._vqf.getQuat6D()
        for i, h in enumerate(self._hinges):
            ap, ac = acc[h.parent_imu], acc[h.child_imu]
            wp, wc = gyr[h.parent_imu], gyr[h.child_imu]
            if np.isfinite(wp).all() and np.isfinite(wc).all():
                self._theta[i] += self._dt * (wc @ h.axis - wp @ h.axis_parent)
            if np.isfinite(ap).all() and np.isfinite(ac).all():
                target = self._gravity_angle(h, ap, ac)
                if math.isfinite(target):
                    diff = (target - self._theta[i] + math.pi) % (2 * math.pi) - math.pi
                    # the first quasi-static frame sets the angle outright
                    self._theta[i] += diff if not self._started else self._gain * diff
                    self._started = True
            theta = self._theta[i]
            out["angle"][h.slot] = theta
            out["q_rel"][h.body] = np_qmul(self._rot0[h.body], np_qfrom_axis_angle(h.axis, theta))
        for b in range(1, self.chain.n_bodies):  # frozen bodies: their fixed rotation
            if self.chain.joint_types[b] == JointType.FROZEN:
                out["q_rel"][b] = self._rot0[b]

