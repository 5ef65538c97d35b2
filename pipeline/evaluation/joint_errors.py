"""Per-joint angle errors between estimated and true chain state, and their statistics.

Conventions: quaternions ``w, x, y, z``, ``q_rel`` maps body to parent (root: to earth, z up);
hinge angles in rad. Errors come out in degrees (this is a reporting module): hinge errors
are signed and wrapped to [-180, 180); quaternion and inclination errors are rotation angles
in [0, 180]. Statistics are taken over absolute errors.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

from pipeline.kinematics.quaternion import (  # noqa: F401 (heading_free: also imported from here)
    heading_free,
    np_qangle,
    np_qconj,
    np_qmul,
    np_qnormalize,
    np_qrotate,
)

log = logging.getLogger("imuflow.joint_errors")

STAT_KEYS = ("mean_deg", "rmse_deg", "p50_deg", "p90_deg", "p95_deg", "p99_deg", "max_deg")


def wrap_deg(angle_deg: np.ndarray) -> np.ndarray:
    """Angles (...) deg wrapped to [-180, 180)."""
    return (np.asarray(angle_deg, dtype=np.float64) + 180.0) % 360.0 - 180.0


def hinge_error_deg(est_rad: np.ndarray, true_rad: np.ndarray) -> np.ndarray:
    """Signed hinge-angle error (...) deg in [-180, 180) from angles (...) rad."""
    return wrap_deg(np.degrees(np.asarray(est_rad, np.float64) - np.asarray(true_rad, np.float64)))


def sincos_to_angle(sincos: np.ndarray) -> np.ndarray:
    """Hinge angles (...) rad in (-pi, pi] from (..., 2) sin, cos pairs (any positive scale)."""
    sincos = np.asarray(sincos, dtype=np.float64)
    return np.arctan2(sincos[..., 0], sincos[..., 1])


def rotation_error_deg(q_est: np.ndarray, q_true: np.ndarray) -> np.ndarray:
    """Rotation angle (...) deg in [0, 180] between quaternions (..., 4) (normalised here)."""
    return np.degrees(np_qangle(np_qnormalize(q_est), np_qnormalize(q_true)))


def inclination_error_deg(q_est: np.ndarray, q_true: np.ndarray) -> np.ndarray:
    """Angle (...) deg between the earth's up axis seen in the body frame, est vs true (..., 4)."""
    up = np.array([0.0, 0.0, 1.0])
    a = np_qrotate(np_qconj(np_qnormalize(q_est)), np.broadcast_to(up, np.shape(q_est)[:-1] + (3,)))
    b = np_qrotate(np_qconj(np_qnormalize(q_true)), np.broadcast_to(up, np.shape(q_true)[:-1] + (3,)))
    cos = np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)
    return np.degrees(np.arccos(cos))


@dataclass(frozen=True)
class ErrorStats:
    """Statistics of absolute angle errors, degrees."""

    mean_deg: float
    rmse_deg: float
    p50_deg: float
    p90_deg: float
    p95_deg: float
    p99_deg: float
    max_deg: float
    n: int             # errors scored
    unscored: int = 0  # errors left out: no ground truth there

    def as_dict(self, digits: int = 3) -> dict[str, float]:
        """The statistics as a plain dict (model-card ``per_joint`` entry), rounded."""
        d = asdict(self)
        d.pop("n")
        d.pop("unscored")
        return {k: round(float(v), digits) for k, v in d.items()}


def truth_known(q_true: np.ndarray) -> np.ndarray:
    """(...) True where the true quaternion (..., 4) is finite: optical ground truth has gaps
    (occluded markers), stored as NaN."""
    return np.isfinite(np.asarray(q_true, dtype=np.float64)).all(axis=-1)


def error_stats(err_deg: np.ndarray, known: np.ndarray | None = None) -> ErrorStats:
    """Mean, RMSE, 50/90/95/99th percentile and max of |err_deg| (any shape) deg, over the
    samples where ``known`` (same shape; default all) says there is ground truth."""
    e = np.abs(np.asarray(err_deg, dtype=np.float64))
    mask = np.ones(e.shape, bool) if known is None else np.broadcast_to(known, e.shape)
    e = e[mask]
    unscored = int(mask.size - e.size)
    if e.size == 0:
        raise ValueError("error_stats: no error samples (is the warm-up longer than the data, "
                         "or is the ground truth missing throughout?)")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"error_stats: {np.count_nonzero(~np.isfinite(e))} non-finite errors "
                         "where the ground truth is known: the estimate contains NaN/inf")
    p50, p90, p95, p99 = np.percentile(e, [50, 90, 95, 99])
    return ErrorStats(float(e.mean()), float(np.sqrt(np.mean(e * e))), float(p50), float(p90),
                      float(p95), float(p99), float(e.max()), int(e.size), unscored)


def format_table(stats: dict[str, ErrorStats], title: str = "") -> str:
    """A fixed-width text table: one row per joint, columns in degrees."""
    head = f"{'joint':<14}{'mean':>8}{'rmse':>8}{'p50':>8}{'p90':>8}{'p95':>8}{'p99':>8}{'max':>8}"
    lines = ([title] if title else []) + [head + "   (deg)", "-" * len(head)]
    for name, s in stats.items():
        lines.append(f"{name:<14}{s.mean_deg:8.2f}{s.rmse_deg:8.2f}{s.p50_deg:8.2f}"
                     f"{s.p90_deg:8.2f}{s.p95_deg:8.2f}{s.p99_deg:8.2f}{s.max_deg:8.2f}")
    return "\n".join(lines)


__all__ = [
    "STAT_KEYS",
    "ErrorStats",
    "error_stats",
    "format_table",
    "heading_free",
    "hinge_error_deg",
    "inclination_error_deg",
    "rotation_error_deg",
    "sincos_to_angle",
    "truth_known",
    "wrap_deg",
]
