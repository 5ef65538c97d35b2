"""The constraint estimators' guess of a model's outputs, as extra model input.

A hybrid observer model (model card ``input.prior: constraint``) takes, after the raw IMU
signals, the joint state that needs no training: the hinge angles of ``ConstraintEstimator``
and the root's inclination from VQF 6D on the root's IMU, encoded exactly as the model's
outputs (``encode_outputs``). The network learns a correction of that guess (what the
constraints cannot observe, such as the heading tail). Training and the live observer compute
it with this class, frame by frame and causally, so both see the same numbers.

Units: acc m/s^2, gyr rad/s in segment frames; angles rad; quaternions w, x, y, z.
"""

from __future__ import annotations

import numpy as np
import vqf

from pipeline.estimation.constraint import ConstraintEstimator, finite_or_zero, warm_up
from pipeline.kinematics.chain import Chain
from pipeline.kinematics.fk import rel_to_hinge
from pipeline.kinematics.quaternion import heading_free

PRIOR_KINDS = ("constraint",)


def encode_outputs(chain: Chain, outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                   q_rel: np.ndarray) -> np.ndarray:
    """Model outputs (..., n_out) float32 from q_rel (..., n_bodies, 4) w,x,y,z body to parent.

    Per (body, encoding): ``sincos`` of a hinge angle; ``quat`` of the root, heading-free
    (inclination only, w >= 0), or of another body (w >= 0).
    """
    parts = []
    for body, enc in outputs:
        i = chain.index(body)
        q = np.asarray(q_rel[..., i, :], dtype=np.float64)
        if enc == "sincos":
            a = rel_to_hinge(q, chain.rotations[i], chain.axes[i])
            parts += [np.sin(a)[..., None], np.cos(a)[..., None]]
        elif i == 0 or chain.parents[i] < 0:
            parts.append(heading_free(q))
        else:
            parts.append(np.where(q[..., :1] < 0, -q, q))
    return np.concatenate(parts, axis=-1).astype(np.float32)


def output_width(outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> int:
    """Number of model output values: 4 per quat, 2 per sincos."""
    return sum(4 if enc == "quat" else 2 for _, enc in outputs)


class ConstraintPrior:
    """Per frame, the constraint estimate of ``outputs`` for frames of ``imus`` (input order).

    Raises ValueError when the chain's joints or IMUs do not allow it (see
    ConstraintEstimator) or when a root ``quat`` output has no IMU on the root.
    """

    def __init__(self, chain: Chain, imus: list[str], rate_hz: float,
                 outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> None:
        self.chain, self.outputs = chain, tuple(outputs)
        self.width, self.n_imu = output_width(outputs), len(imus)
        self._estimator = ConstraintEstimator(chain, list(imus), rate_hz)
        self._root_vqf, self._root_imu = None, -1
        if any(chain.index(body) == 0 and enc == "quat" for body, enc in outputs):
            root = [imus.index(n) for n, b in zip(chain.imu_names, chain.imu_bodies, strict=True)
                    if b == 0 and n in imus]
            if not root:
                raise ValueError(f"the root '{chain.body_names[0]}' carries no IMU of {imus}; "
                                 "its inclination cannot be estimated without training")
            self._root_vqf, self._root_imu = vqf.VQF(1.0 / rate_hz), root[0]

    def features(self, acc: np.ndarray, gyr: np.ndarray) -> np.ndarray:
        """(n, width) float32 from (n, n_imu, 3) acc m/s^2 and gyr rad/s (segment frames)."""
        n = len(acc)
        q_rel = np.empty((n, self.chain.n_bodies, 4))
        angle = np.empty((n, len(self.chain.hinge_bodies)))
        self._estimator.update(acc, gyr, q_rel, angle)
        if self._root_vqf is not None:
            k = self._root_imu
            q_rel[:, 0] = self._root_vqf.updateBatch(finite_or_zero(gyr[:, k]),
                                                     finite_or_zero(acc[:, k]))["quat6D"]
        return encode_outputs(self.chain, self.outputs, q_rel)


def warm_up_prior(prior: ConstraintPrior) -> None:
    """Compile (or load from numba's cache) every kernel ``prior`` runs on frames (float32,
    read-only or not) by feeding it two still frames: for a node's setup, on a throwaway prior."""
    warm_up()
    for writeable in (False, True):
        z = np.zeros((2, prior.n_imu, 3), np.float32)
        z[..., 2] = 9.81  # at rest, upright: m/s^2
        z.flags.writeable = writeable
        prior.features(z, z)


def prior_features(chain: Chain, imus: list[str], rate_hz: float,
                   outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                   imu: np.ndarray, block: int = 100) -> np.ndarray:
    """(S, T, width) float32 prior of every sequence of ``imu`` (S, T, n_imu*6: acc, gyr per
    IMU), each from a fresh estimator fed ``block`` frames at a time, as a live stream."""
    s_, t_ = imu.shape[:2]
    x = imu.reshape(s_, t_, len(imus), 6).astype(np.float64)
    out = np.empty((s_, t_, output_width(outputs)), np.float32)
    for s in range(s_):
        prior = ConstraintPrior(chain, imus, rate_hz, outputs)
        for i in range(0, t_, block):
            out[s, i:i + block] = prior.features(x[s, i:i + block, :, :3],
                                                 x[s, i:i + block, :, 3:])
    return out
