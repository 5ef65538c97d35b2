"""Model output encodings: hinge angles, the root's inclination and body quaternions as the
values a model outputs (model card ``outputs[].encoding``), and a hybrid prior as model input.

Units: q_rel w, x, y, z body to parent; hinge angles rad.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pipeline.kinematics.chain import Chain
from pipeline.kinematics.quaternion import qmul4

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
    encode_into(flat, *encode_plan(chain, outputs), out)
    return out.reshape(lead + (out.shape[-1],))


def encode_plan(chain: Chain, outputs: list[tuple[str, str]] | tuple[tuple[str, str], ...]
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
def encode_into(q_rel, plan, rot, axis, out):  # pragma: no cover - numba
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
