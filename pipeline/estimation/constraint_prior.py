"""The constraint estimators' guess of a model's outputs, as extra model input.

A hybrid observer model (model card ``input.prior``, one of ``PRIOR_KINDS``) takes, after the
raw IMU signals, the joint state that needs no training: the hinge angles of ``ConstraintEstimator``
and the root's inclination from VQF 6D on the root's IMU, encoded exactly as the model's
outputs (``encode_outputs``). The network learns a correction of that guess (what the
constraints cannot observe, such as the heading tail). Training and the live observer compute
it with this class, frame by frame and causally, so both see the same numbers.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pipeline.estimation.constraint import (
    ConstraintEstimator,
    ConstraintSettings,
    still_frames,
    warm_up,
)
from pipeline.estimation.output_encoding import encode_into, encode_plan, output_width
from pipeline.estimation.prior_frame import PairPriorFrame
from pipeline.estimation.vqf6d import Vqf6DBank
from pipeline.estimation.vqf_tuning import VQF_PACKAGE_DEFAULTS, VqfTuning
from pipeline.kinematics.chain import Chain

# prior name (model card input.prior) -> the estimator's settings: "constraint" pulls a hinge
# towards gravity only while both segments are quasi-static (models trained before
# 2026-12-05), "constraint-joint-centre" also in motion, from the accelerations at the joint
# centre (the knee model since then); both run VQF with the vqf package's defaults.
# "constraint-body-vqf" (arm3-sparse since 2026-12-05) runs VQF tuned for body-worn sensors
# (vqf_tuning.BODY_WORN: faster bias tracking, bias clip 8 deg/s, tauAcc 1.5 s). Every value
# is spelled out: a trained model's input must not move with ConstraintSettings' defaults.
# "constraint-body-vqf-root2s" is "constraint-body-vqf" with the root's inclination from its own
# VQF with tauAcc 2 s (vqf_tuning.ROOT_BODY_WORN, as the orientation node runs the root): the
# root takes the whole body's linear acceleration (ROOT_VQF). Every kind restarts a hinge, a
# filter and a heading estimation after a sensor gap of 0.1 s or more (since 2026-12-07;
# training data has no such gaps, so the shipped models' inputs are unchanged where it had
# none).
PRIOR_KINDS = {
    "constraint": ConstraintSettings(tau_s=0.5, hinge_bias_tau_s=0.0, still_acc_ms2=1.0,
                                     max_axis_cos=0.9, joint_centre=False, agree_ms2=3.0,
                                     restart_gap_s=0.1,
                                     vqf=VQF_PACKAGE_DEFAULTS),
    "constraint-joint-centre": ConstraintSettings(tau_s=0.5, hinge_bias_tau_s=0.0,
                                                  still_acc_ms2=1.0, max_axis_cos=0.9,
                                                  joint_centre=True, agree_ms2=3.0,
                                                  restart_gap_s=0.1,
                                                  vqf=VQF_PACKAGE_DEFAULTS),
    "constraint-body-vqf": ConstraintSettings(
        tau_s=0.5, hinge_bias_tau_s=0.0, still_acc_ms2=1.0, max_axis_cos=0.9,
        joint_centre=True, agree_ms2=3.0, restart_gap_s=0.1,
        vqf=VqfTuning(tauAcc=1.5, biasSigmaInit=0.5, biasForgettingTime=20.0, biasClip=8.0,
                      biasSigmaMotion=0.1))}
PRIOR_KINDS["constraint-body-vqf-root2s"] = PRIOR_KINDS["constraint-body-vqf"]
ROOT_VQF = {"constraint-body-vqf-root2s": VqfTuning(
    tauAcc=2.0, biasSigmaInit=0.5, biasForgettingTime=20.0, biasClip=8.0, biasSigmaMotion=0.1)}

class ConstraintPrior:
    """Per frame, the constraint estimate of ``outputs`` for frames of ``imus`` (input order).

    Raises ValueError when the chain's joints or IMUs do not allow it (see
    ConstraintEstimator) or when a root ``quat`` output has no IMU on the root.
    """

    def __init__(self, chain: Chain, imus: list[str], rate_hz: float,
                 outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                 kind: str = "constraint",
                 levers: Mapping[str, np.ndarray] | None = None) -> None:
        self.chain, self.outputs = chain, tuple(outputs)
        self.width, self.n_imu = output_width(outputs), len(imus)
        if kind not in PRIOR_KINDS:
            raise ValueError(f"unknown prior '{kind}'; known: {list(PRIOR_KINDS)}")
        # levers: a calibration's joint centres in place of the chain's IMU positions
        self._estimator = ConstraintEstimator(chain, list(imus), rate_hz, PRIOR_KINDS[kind],
                                              levers)
        self._plan = encode_plan(chain, outputs)
        self._root_vqf, self._root_imu = None, -1
        if any(chain.index(body) == 0 and enc in ("quat", "up") for body, enc in outputs):
            root = [imus.index(n) for n, b in zip(chain.imu_names, chain.imu_bodies, strict=True)
                    if b == 0 and n in imus]
            if not root:
                raise ValueError(f"the root '{chain.body_names[0]}' carries no IMU of {imus}; "
                                 "its inclination cannot be estimated without training")
            self._root_imu = root[0]
            restart = self._estimator.restart_after  # the root's filter restarts alike
            if kind in ROOT_VQF:
                self._root_vqf = Vqf6DBank(root[:1], rate_hz, ROOT_VQF[kind], restart)
            elif root[0] not in self._estimator.vqf_imus:  # else the estimator's VQF serves
                self._root_vqf = Vqf6DBank(root[:1], rate_hz, PRIOR_KINDS[kind].vqf, restart)
        pair = self._estimator.single_pair()
        self._one_frame = None if pair is None else PairPriorFrame(
            self._estimator.vqf_bank, *pair, self._root_imu, self._root_vqf, self._plan,
            chain.n_bodies)

    def features(self, acc: np.ndarray, gyr: np.ndarray) -> np.ndarray:
        """(n, width) float32 from (n, n_imu, 3) acc m/s^2 and gyr rad/s (segment frames)."""
        n = len(acc)
        if n == 1 and self._one_frame is not None:
            out = np.empty((1, self.width), np.float32)
            self._one_frame.frame(acc, gyr, out)  # the same numbers, one compiled call
            return out
        q_rel = np.empty((n, self.chain.n_bodies, 4))
        angle = np.empty((n, len(self.chain.hinge_bodies)))
        self._estimator.update(acc, gyr, q_rel, angle)
        k = self._root_imu
        if self._root_vqf is not None:  # its own VQF
            self._root_vqf.update(acc, gyr)
            q_rel[:, 0] = self._root_vqf.quat6d[k]
        elif k >= 0:  # the same VQF 6D on the same samples, already run by the estimator
            q_rel[:, 0] = self._estimator.imu_quat6d[k]
        out = np.empty((n, self.width), np.float32)
        encode_into(q_rel, *self._plan, out)  # encode_outputs, its plan made once
        return out


def warm_up_prior(prior: ConstraintPrior) -> None:
    """Compile (or load from numba's cache) every kernel ``prior`` runs on frames (float32,
    read-only or not, one frame or more) by feeding it still frames: for a node's setup, on a
    throwaway prior."""
    warm_up()
    for z in still_frames(prior.n_imu):
        prior.features(z, z)
        if len(z) == 1 and prior._one_frame is not None:
            # on through the heading's next estimation instant: its frame calls the compiled
            # parts from Python, which a kernel loaded from numba's cache has not loaded
            heading = prior._one_frame.heading
            while not heading.next_is_event():
                prior.features(z, z)
            prior.features(z, z)


def prior_features(chain: Chain, imus: list[str], rate_hz: float,
                   outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                   imu: np.ndarray, block: int = 100, kind: str = "constraint") -> np.ndarray:
    """(S, T, width) float32 prior ``kind`` of every sequence of ``imu`` (S, T, n_imu*6: acc,
    gyr per IMU), each from a fresh estimator fed ``block`` frames at a time, as live."""
    s_, t_ = imu.shape[:2]
    x = imu.reshape(s_, t_, len(imus), 6).astype(np.float64)
    out = np.empty((s_, t_, output_width(outputs)), np.float32)
    for s in range(s_):
        prior = ConstraintPrior(chain, imus, rate_hz, outputs, kind)
        for i in range(0, t_, block):
            out[s, i:i + block] = prior.features(x[s, i:i + block, :, :3],
                                                 x[s, i:i + block, :, 3:])
    return out
