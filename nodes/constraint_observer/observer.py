"""ConstraintObserver: joint state from joint constraints between IMU-carrying segments.

The node around ``pipeline.estimation.constraint.ConstraintEstimator`` (hinges with an IMU on
both sides; two orthogonal hinges through a segment without an IMU, with the heading offset
from the joint constraint; spherical joints with an IMU on both sides, their heading pulled
towards what the joint centre's acceleration shows in both segments, and set outright by the
``heading_reset`` command). The root's ``q_rel`` stays identity, as
the RNN observer leaves bodies its model does not estimate: the root orientation is the
orientation node's (VQF 6D), which fk takes on its ``root`` input.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from pipeline.calibration.calibration_file import joint_levers_for
from pipeline.estimation.constraint import (
    ConstraintEstimator,
    ConstraintSettings,
    warm_up,
    warm_up_estimator,
)
from pipeline.kinematics.chain import Chain, ChainError, load_chain
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import GraphContext, Node
from pipeline.runtime.ports import Input
from pipeline.runtime.sensor_check import require_sensors
from pipeline.runtime.streams import FRAME, STATE, state_dtype

_DEFAULT = ConstraintSettings()  # the Params' defaults are the estimator's, in one place
FAR_TURN_DEG = 10.0  # a reset that turns a found joint by more: advise a second one


class ConstraintObserver(Node):
    """Hinge angles from gyros and accelerations under joint constraints; no training.

    Needs the chain (graph ``chain:``) to have an IMU on both sides of every hinge and spherical
    joint, or on both ends of a pair of orthogonal hinges, in segment frames (calibrate, then
    let the filter apply it). Publishes ``chain.state`` like the RNN observer. Command
    ``heading_reset``: the spherical joints read no heading difference from now on (the
    chain's zero pose; stand in the calibration pose); motion keeps it from drifting after.
    Once motion has shown a joint's heading, the reset takes the parent sensor's turn on its
    segment instead (a pelvis sensor that static calibration could not turn), running the
    pull over the last 10 s again with the parent's lever arm turned; the reply's ``hint``
    asks for a second reset after some motion when that turn was large.

    Ports:
        frame: imu.frame; acc m/s^2, gyr rad/s, segment frames.
        chain.state (out): q_rel (n_bodies, 4) w,x,y,z body to parent (root: identity),
            angle (n_hinge,) rad.
    """

    inputs = {"frame": Input(accepts=(FRAME,))}
    outputs = (STATE,)

    @dataclass(frozen=True)
    class Params:
        # s, time constant of the pull towards the accelerations' angle
        tau_s: float = _DEFAULT.tau_s
        # s, time constant of each hinge's relative-rate bias estimate (gyro biases); 0: none
        hinge_bias_tau_s: float = _DEFAULT.hinge_bias_tau_s
        # m/s^2, max | |acc| - g | for a quasi-static sample (joint_centre false)
        still_acc_ms2: float = _DEFAULT.still_acc_ms2
        # the acceleration at least acos(0.9) = 26 deg off the hinge axis
        max_axis_cos: float = _DEFAULT.max_axis_cos
        # hinges: both accelerations moved to the joint centre (the chain's IMU positions), the
        # pull then also in motion while their norms agree within agree_ms2
        joint_centre: bool = _DEFAULT.joint_centre
        # m/s^2, max | |f_parent| - |f_child| | at the joint centre
        agree_ms2: float = _DEFAULT.agree_ms2
        # s, a sensor gap at least this long restarts what it made stale: a hinge (the next
        # usable acceleration angle taken outright), the IMU's VQF 6D filter, a two-axis
        # joint's heading estimation, a spherical joint's heading pull
        restart_gap_s: float = _DEFAULT.restart_gap_s
        # spherical joints: s, time constant of the heading's pull towards the joint centre's
        # acceleration; 0: no pull, the heading changes only by heading_reset
        ball_tau_s: float = _DEFAULT.ball_tau_s
        # spherical joints: m/s^2, min horizontal joint-centre acceleration for the pull
        ball_min_horizontal_ms2: float = _DEFAULT.ball_min_horizontal_ms2
        # two-axis joints: VQF 6D parameters by VQF's name over the body-worn tuning
        # (pipeline/estimation/vqf_tuning.py), e.g. {tauAcc: 3.0}
        vqf: dict[str, Any] = field(default_factory=dict)
        # a calibration file (imuflow calibrate) whose joints' lever arms (IMU to joint centre,
        # fitted to the recording) replace the chain's IMU positions for the hinges' joint
        # centres and the spherical joints' heading pull; empty: the chain's positions
        joint_centres: str = ""

        def __post_init__(self) -> None:
            self.settings()  # ValueError naming the bad value

        def settings(self) -> ConstraintSettings:
            own = {k: v for k, v in asdict(self).items() if k not in ("vqf", "joint_centres")}
            return replace(ConstraintSettings(**own), vqf=_DEFAULT.vqf.with_overrides(self.vqf))

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
        self._levers = (joint_levers_for(self.chain, self.context.resolve(
            self.params.joint_centres), self.id, self.log) if self.params.joint_centres else {})
        warm_up()  # compile now, not on the first frame
        try:  # and for the frames a stream brings, on a throwaway estimator
            warm_up_estimator(ConstraintEstimator(self.chain, list(self.chain.imu_names), 100.0,
                                                  self.params.settings(), self._levers))
        except ValueError:
            pass  # a chain the estimator cannot take: the first frame's error names why

    def on_command(self, command: str, args: dict) -> dict:
        """``heading_reset``: align the spherical joints' headings to the chain's zero pose now
        (hinges need none: their constraint fixes the heading)."""
        if command != "heading_reset":
            return super().on_command(command, args)
        if self._in_info is None:
            return {"ok": False, "error": "no frames yet: wait for frames, then reset"}
        found = self._estimator.heading_found()
        try:
            changed = self._estimator.heading_reset()
        except ValueError as exc:
            return {"ok": False, "error": str(exc)}
        self.log.info("heading reset of the spherical joints: %s deg", changed or "none")
        reply = {"ok": True, "changed_deg": changed, "heading_found": found}
        far = [name for name, deg in changed.items() if found[name] and abs(deg) > FAR_TURN_DEG]
        if far:  # the parent's lever arm was turned by as much: the heading moves again
            reply["hint"] = (f"{', '.join(far)}: the parent's sensor sits turned more than "
                             f"{FAR_TURN_DEG:g} deg on its segment; move for a few seconds, "
                             "then reset again in the same pose to refine")
            self.log.warning("heading reset: %s", reply["hint"])
        return reply

    def _configure(self, info: StreamInfo) -> None:
        """Map the chain's hinges onto the IMUs of ``info``."""
        chain = self.chain
        if info.rate_hz <= 0:
            raise ConfigError(f"node '{self.id}': input {info.stream} has no rate_hz (feed it "
                              "from sync)")
        try:
            self._estimator = ConstraintEstimator(chain, list(info.meta.get("imus", [])),
                                                  info.rate_hz, self.params.settings(),
                                                  self._levers)
        except ValueError as exc:
            raise ConfigError(f"node '{self.id}': {exc}", key="chain") from None
        self._dtype = state_dtype(chain.n_bodies, len(chain.hinge_bodies))
        self.declare(STATE, StreamInfo.for_array(
            f"{self.id}/{STATE}", STATE, self._dtype, rate_hz=info.rate_hz,
            channels=self._dtype.names, units=("ns", "1", "rad"),
            meta={"bodies": list(chain.body_names), "chain": chain.name,
                  "hinges": [chain.body_names[b] for b in chain.hinge_bodies],
                  "quaternion": "wxyz", "root": "identity (orientation node)",
                  "estimator": "hinge constraint" + (
                      "; two-axis joints: VQF 6D + heading from the joint constraint"
                      if self._estimator.two_axis else "") + (
                      "; spherical joints: VQF 6D, heading aligned at start and reset"
                      if self._estimator.spherical else "")}))
        self._in_info = info

    def on_block(self, port: str, block: Block) -> None:
        if block.n == 0:
            return
        if block.info is not self._in_info and block.info != self._in_info:
            self._configure(block.info)
        out = np.zeros(block.n, self._dtype)
        out["t_host"] = block.data["t_host"]
        q_rel = np.empty(out["q_rel"].shape)
        angle = np.empty(out["angle"].shape)
        self._estimator.update(block.data["acc"], block.data["gyr"], q_rel, angle)
        out["q_rel"], out["angle"] = q_rel, angle
        self.emit(STATE, out, t_host=block.t_host, gap=block.gap)
