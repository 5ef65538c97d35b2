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

import math

import numpy as np
import vqf
from numba import njit

from pipeline.estimation.constraint import (
    ConstraintEstimator,
    ConstraintSettings,
    finite_or_zero,
    vqf_quat6d,
    warm_up,
)
from pipeline.estimation.vqf_tuning import VQF_PACKAGE_DEFAULTS, VqfTuning
from pipeline.kinematics.chain import Chain
from pipeline.kinematics.quaternion import qmul4

# prior name (model card input.prior) -> the estimator's settings: "constraint" pulls a hinge
# towards gravity only while both segments are quasi-static (models trained before
# 2026-12-05), "constraint-joint-centre" also in motion, from the accelerations at the joint
# centre (the knee model since then); both run VQF with the vqf package's defaults.
# "constraint-body-vqf" (arm3-sparse since 2026-12-05) runs VQF tuned for body-worn sensors
# (vqf_tuning.BODY_WORN: faster bias tracking, bias clip 8 deg/s, tauAcc 1.5 s). Every value
# is spelled out: a trained model's input must not move with ConstraintSettings' defaults.
# "constraint-body-vqf-root2s" is "constraint-body-vqf" with the root's inclination from its own
# VQF with tauAcc 2 s (vqf_tuning.ROOT_BODY_WORN, as the orientation node runs the root): the
# root takes the whole body's linear acceleration (ROOT_VQF).
PRIOR_KINDS = {
    "constraint": ConstraintSettings(tau_s=0.5, still_acc_ms2=1.0, max_axis_cos=0.9,
                                     joint_centre=False, agree_ms2=3.0,
                                     vqf=VQF_PACKAGE_DEFAULTS),
    "constraint-joint-centre": ConstraintSettings(tau_s=0.5, still_acc_ms2=1.0,
                                                  max_axis_cos=0.9, joint_centre=True,
                                                  agree_ms2=3.0, vqf=VQF_PACKAGE_DEFAULTS),
    "constraint-body-vqf": ConstraintSettings(
        tau_s=0.5, still_acc_ms2=1.0, max_axis_cos=0.9, joint_centre=True, agree_ms2=3.0,
        vqf=VqfTuning(tauAcc=1.5, biasSigmaInit=0.5, biasForgettingTime=20.0, biasClip=8.0,
                      biasSigmaMotion=0.1))}
PRIOR_KINDS["constraint-body-vqf-root2s"] = PRIOR_KINDS["constraint-body-vqf"]
ROOT_VQF = {"constraint-body-vqf-root2s": VqfTuning(
    tauAcc=2.0, biasSigmaInit=0.5, biasForgettingTime=20.0, biasClip=8.0, biasSigmaMotion=0.1)}

# values per output encoding: "sincos" of a hinge angle; "quat" w,x,y,z (the root's
# heading-free, singular within a few degrees of upside down); "up" (root only) the vertical,
# earth +z, in the root's frame: unit x, y, z, continuous over every tilt
ENCODING_SIZE = {"quat": 4, "sincos": 2, "up": 3}


def encode_outputs(chain: Chain, outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                   q_rel: np.ndarray) -> np.ndarray:
    """Model outputs (..., n_out) float32 from q_rel (..., n_bodies, 4) w,x,y,z body to parent.

    Per (body, encoding): ``sincos`` of a hinge angle; ``quat`` of the root, heading-free
    (inclination only, w >= 0), or of another body (w >= 0); ``up`` of the root: earth +z in
    the root's frame (unit).
    """
    q = np.asarray(q_rel, dtype=np.float64)
    lead = q.shape[:-2]
    flat = np.ascontiguousarray(q.reshape((-1,) + q.shape[-2:]))
    out = np.empty((len(flat), output_width(outputs)), np.float32)
    _encode_into(flat, *_encode_plan(chain, outputs), out)
    return out.reshape(lead + (out.shape[-1],))


def _encode_plan(chain: Chain, outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kernel rows (body, kind, first column), joint rotations (k, 4) and hinge axes (k, 3);
    kind 0: sincos of a hinge, 1: heading-free root quat, 2: quat with w >= 0, 3: up vector."""
    plan, col = [], 0
    for body, enc in outputs:
        i = chain.index(body)
        root = i == 0 or chain.parents[i] < 0
        if enc == "up" and not root:
            raise ValueError(f"output '{body}': encoding 'up' is for the root "
                             f"'{chain.body_names[0]}' only; use 'quat' or 'sincos'")
        kind = 0 if enc == "sincos" else 3 if enc == "up" else 1 if root else 2
        plan.append((i, kind, col))
        col += ENCODING_SIZE[enc]
    idx = [i for i, _, _ in plan]
    return (np.array(plan, np.int64).reshape(-1, 3),
            np.ascontiguousarray(chain.rotations[idx], dtype=np.float64).reshape(-1, 4),
            np.ascontiguousarray(chain.axes[idx], dtype=np.float64).reshape(-1, 3))


@njit(cache=True)
def _encode_into(q_rel, plan, rot, axis, out):  # pragma: no cover - numba
    """``encode_outputs`` of q_rel (n, n_bodies, 4) into out (n, width) float32, in float64."""
    for t in range(q_rel.shape[0]):
        for k in range(plan.shape[0]):
            b, kind, c = plan[k, 0], plan[k, 1], plan[k, 2]
            w, x, y, z = q_rel[t, b, 0], q_rel[t, b, 1], q_rel[t, b, 2], q_rel[t, b, 3]
            if kind == 0:  # hinge angle about the axis, in the joint frame: (-pi, pi]
                jw, jx, jy, jz = qmul4(rot[k, 0], -rot[k, 1], -rot[k, 2], -rot[k, 3], w, x, y, z)
                a = 2.0 * math.atan2(jx * axis[k, 0] + jy * axis[k, 1] + jz * axis[k, 2], jw)
                if a > math.pi:
                    a -= 2.0 * math.pi
                elif a <= -math.pi:
                    a += 2.0 * math.pi
                out[t, c], out[t, c + 1] = math.sin(a), math.cos(a)
                continue
            if kind == 3:  # earth +z in the body frame: the last row of R(q)
                w, x, y, z = _unit(w, x, y, z)
                out[t, c] = 2.0 * (x * z - w * y)
                out[t, c + 1] = 2.0 * (y * z + w * x)
                out[t, c + 2] = w * w - x * x - y * y + z * z
                continue
            if kind == 1:  # q = twist_z * swing: keep the swing (inclination)
                w, x, y, z = _unit(w, x, y, z)
                tn = math.sqrt(w * w + z * z)
                tw, tz = (1.0, 0.0) if tn == 0.0 else (w / tn, z / tn)
                w, x, y, z = qmul4(tw, 0.0, 0.0, -tz, w, x, y, z)
                w, x, y, z = _unit(w, x, y, 0.0)  # z is zero up to round-off
            if w < 0.0:
                w, x, y, z = -w, -x, -y, -z
            out[t, c], out[t, c + 1], out[t, c + 2], out[t, c + 3] = w, x, y, z


@njit(cache=True, inline="always")
def _unit(w, x, y, z):  # pragma: no cover - numba
    """q / |q|; the zero quaternion becomes the identity."""
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n == 0.0:
        return 1.0, 0.0, 0.0, 0.0
    return w / n, x / n, y / n, z / n


def output_width(outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> int:
    """Number of model output values: 4 per quat, 3 per up, 2 per sincos."""
    return sum(ENCODING_SIZE[enc] for _, enc in outputs)


class ConstraintPrior:
    """Per frame, the constraint estimate of ``outputs`` for frames of ``imus`` (input order).

    Raises ValueError when the chain's joints or IMUs do not allow it (see
    ConstraintEstimator) or when a root ``quat`` output has no IMU on the root.
    """

    def __init__(self, chain: Chain, imus: list[str], rate_hz: float,
                 outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...],
                 kind: str = "constraint") -> None:
        self.chain, self.outputs = chain, tuple(outputs)
        self.width, self.n_imu = output_width(outputs), len(imus)
        if kind not in PRIOR_KINDS:
            raise ValueError(f"unknown prior '{kind}'; known: {list(PRIOR_KINDS)}")
        self._estimator = ConstraintEstimator(chain, list(imus), rate_hz, PRIOR_KINDS[kind])
        self._plan = _encode_plan(chain, outputs)
        self._root_vqf, self._root_imu = None, -1
        if any(chain.index(body) == 0 and enc in ("quat", "up") for body, enc in outputs):
            root = [imus.index(n) for n, b in zip(chain.imu_names, chain.imu_bodies, strict=True)
                    if b == 0 and n in imus]
            if not root:
                raise ValueError(f"the root '{chain.body_names[0]}' carries no IMU of {imus}; "
                                 "its inclination cannot be estimated without training")
            self._root_imu = root[0]
            if kind in ROOT_VQF:
                self._root_vqf = vqf.VQF(1.0 / rate_hz, **ROOT_VQF[kind].kwargs())
            elif root[0] not in self._estimator.vqf_imus:  # else the estimator's VQF serves
                self._root_vqf = vqf.VQF(1.0 / rate_hz, **PRIOR_KINDS[kind].vqf.kwargs())

    def features(self, acc: np.ndarray, gyr: np.ndarray) -> np.ndarray:
        """(n, width) float32 from (n, n_imu, 3) acc m/s^2 and gyr rad/s (segment frames)."""
        n = len(acc)
        q_rel = np.empty((n, self.chain.n_bodies, 4))
        angle = np.empty((n, len(self.chain.hinge_bodies)))
        self._estimator.update(acc, gyr, q_rel, angle)
        k = self._root_imu
        if self._root_vqf is not None:  # its own VQF, on the estimator's inputs where it has them
            g, a = self._estimator.imu_vqf_input.get(k) or (finite_or_zero(gyr[:, k]),
                                                             finite_or_zero(acc[:, k]))
            q_rel[:, 0] = vqf_quat6d(self._root_vqf, g, a)
        elif k >= 0:  # the same VQF 6D on the same samples, already run by the estimator
            q_rel[:, 0] = self._estimator.imu_quat6d[k]
        out = np.empty((n, self.width), np.float32)
        _encode_into(q_rel, *self._plan, out)  # encode_outputs, its plan made once
        return out


def warm_up_prior(prior: ConstraintPrior) -> None:
    """Compile (or load from numba's cache) every kernel ``prior`` runs on frames (float32,
    read-only or not, one frame or more) by feeding it still frames: for a node's setup, on a
    throwaway prior."""
    warm_up()
    for n in (1, 2):  # one frame: its per-IMU views are C-contiguous, another kernel type
        for writeable in (False, True):
            z = np.zeros((n, prior.n_imu, 3), np.float32)
            z[..., 2] = 9.81  # at rest, upright: m/s^2
            z.flags.writeable = writeable
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
