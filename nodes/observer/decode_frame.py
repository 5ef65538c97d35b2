"""One frame of model output decoded into ``chain.state`` fields in one compiled call.

The live step decodes a single frame; in Python floats that is a dozen calls that each cost
most when a 100 Hz frame finds the caches cold. This kernel does the same operations in the
same order as ``ModelFit``'s decoders (``fit.py``: ``_SincosDecoder._decode_one``,
``_QuatDecoder.decode``, ``_decode_up``), so it gives the same numbers
(tests/test_decode_frame.py). Models with a quaternion output of a hinge body (a twist
angle to extract) are left to those decoders.

Units: angles rad; quaternions w, x, y, z body to parent.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

SINCOS, QUAT, UP = 0, 1, 2  # kinds of a plan row


def frame_plan(sincos: list[tuple[int, int, int, tuple, tuple]], quat: list[tuple[int, int]],
               up: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
    """Kernel plan: rows (k, 4) int64 (kind, first column, body, hinge slot) and parts (k, 8)
    float64 (a sincos body's q_rel = cos(a/2) parts[:4] + sin(a/2) parts[4:]).

    ``sincos``: (sin column, cos column, body, slot, w_part, axis_part) per hinge output;
    ``quat``: (first column, body) per plain quaternion output; ``up``: (column, body).
    """
    rows, parts = [], []
    for sin_col, _, body, slot, w_part, axis_part in sincos:
        rows.append((SINCOS, sin_col, body, slot))
        parts.append(tuple(w_part) + tuple(axis_part))
    for col, body in quat:
        rows.append((QUAT, col, body, -1))
        parts.append((0.0,) * 8)
    if up is not None:
        rows.append((UP, up[0], up[1], -1))
        parts.append((0.0,) * 8)
    return np.array(rows, np.int64).reshape(-1, 4), np.array(parts, np.float64).reshape(-1, 8)


def warm_up_decode() -> None:
    """Compile (or load from numba's cache) the kernel for the arrays a live step brings."""
    rows, parts = frame_plan([(0, 1, 1, 0, (1.0, 0, 0, 0), (0, 1.0, 0, 0))], [(2, 0)], (6, 0))
    q, angle = np.zeros((1, 2, 4), np.float32), np.zeros((1, 1), np.float32)
    for writeable in (True, False):
        y = np.zeros((1, 9), np.float32)
        y.flags.writeable = writeable
        decode_frame(y, rows, parts, q, angle)


@njit(cache=True)
def decode_frame(y, rows, parts, q_rel, angle):  # pragma: no cover - numba
    """Decode y (1, n_out) into q_rel (1, n_bodies, 4) and angle (1, n_hinge) by the plan."""
    # y's values widened to float64 first, as the Python floats of the decoders (numba's
    # float() of a float32 stays float32)
    for k in range(rows.shape[0]):
        kind, c, b = rows[k, 0], rows[k, 1], rows[k, 2]
        if kind == SINCOS:
            a = math.atan2(np.float64(y[0, c]), np.float64(y[0, c + 1]))
            ch, sh = math.cos(0.5 * a), math.sin(0.5 * a)
            angle[0, rows[k, 3]] = a
            for i in range(4):
                q_rel[0, b, i] = ch * parts[k, i] + sh * parts[k, 4 + i]
        elif kind == QUAT:
            w, x = np.float64(y[0, c]), np.float64(y[0, c + 1])
            y_, z = np.float64(y[0, c + 2]), np.float64(y[0, c + 3])
            norm = max(math.sqrt(w * w + x * x + y_ * y_ + z * z), 1e-12)
            q_rel[0, b, 0], q_rel[0, b, 1] = w / norm, x / norm
            q_rel[0, b, 2], q_rel[0, b, 3] = y_ / norm, z / norm
        else:  # the heading-free quaternion of the vertical (up_to_heading_free)
            x, y_, z = np.float64(y[0, c]), np.float64(y[0, c + 1]), np.float64(y[0, c + 2])
            n = math.sqrt(x * x + y_ * y_ + z * z)
            if n == 0.0 or math.isnan(n):
                v = 1.0 if n == 0.0 else math.nan
                q_rel[0, b, 0] = v
                q_rel[0, b, 1] = q_rel[0, b, 2] = q_rel[0, b, 3] = 0.0 if n == 0.0 else math.nan
                continue
            w, qx, qy = 1.0 + z / n, y_ / n, -x / n
            m = math.sqrt(w * w + qx * qx + qy * qy)
            if m > 1e-12:
                q_rel[0, b, 0], q_rel[0, b, 1], q_rel[0, b, 2] = w / m, qx / m, qy / m
                q_rel[0, b, 3] = 0.0
            else:
                q_rel[0, b, 0], q_rel[0, b, 1], q_rel[0, b, 2], q_rel[0, b, 3] = 0.0, 1.0, 0.0, 0.0
