"""Hinge axis in both sensor frames from functional motion, with the motion that is not the
hinge's left out.

Olsson et al.'s estimator (Sensors 20(12) 3534, 2020; ``qmt.jointAxisEstHingeOlsson``) fits
the axis to every sample it is given. A recording's motion window can hold motion that is
not the joint's: the sensors handled before they were strapped on or after they were taken
off. The fit is therefore repeated without the samples whose gyro residual stands out
against the rest (Olsson's residual |w1 x j1| - |w2 x j2| over the second around each,
relative to the angular rate).

Units: acc m/s^2, gyr rad/s, sensor frames; axes unit vectors, sign arbitrary.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

WINDOW_S = 1.0           # s: the residual is judged over this much around each sample
OUTLIER_FACTOR = 2.0     # a sample whose relative residual is over this times the median ...
OUTLIER_FLOOR = 0.15     # ... and over this (rad/s of residual per rad/s of rate) is left out
MOVING_RAD_S = 0.5       # rad/s, mean gyro norm of the two sensors around a sample: moving
MAX_REFITS = 4
MARGIN_S = 0.5           # s: left out around each sample left out (both sides together)


@dataclass(frozen=True)
class HingeAxisFit:
    """Both sensors' axis (unit, sensor frames), the rms residual (rad/s), what was left out
    of the fit (s of motion) and which samples the fit used."""

    j1: np.ndarray
    j2: np.ndarray
    residual: float
    left_out_s: float
    used: np.ndarray  # (T,) bool, over the samples given


def estimate_hinge_axes(acc1: np.ndarray, gyr1: np.ndarray, acc2: np.ndarray,
                        gyr2: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Hinge axis in both sensor frames (unit, sign arbitrary) and the fit's rms gyro residual.

    Olsson et al. 2020 via ``qmt.jointAxisEstHingeOlsson``, with its sample selection.
    The residual is rad/s: rms of |g1 x j1| - |g2 x j2| over the samples used.
    """
    import qmt  # imported here: it pulls in matplotlib and asyncio helpers

    ok = np.isfinite(acc1).all(1) & np.isfinite(gyr1).all(1) & np.isfinite(acc2).all(1) & (
        np.isfinite(gyr2).all(1))
    a1, g1, a2, g2 = (np.ascontiguousarray(x[ok], dtype=np.float64)
                      for x in (acc1, gyr1, acc2, gyr2))
    settings = {"useSampleSelection": len(a1) > 1000, "dataSize": 1000,
                "angRateEnergyThreshold": 1.0, "winSize": 21}
    with contextlib.redirect_stdout(io.StringIO()):  # qmt prints each Gauss-Newton step
        j1, j2 = qmt.jointAxisEstHingeOlsson(a1, a2, g1, g2, estSettings=settings)
    j1, j2 = (np.ravel(j) / np.linalg.norm(j) for j in (j1, j2))
    resid = np.linalg.norm(np.cross(g1, j1), axis=1) - np.linalg.norm(np.cross(g2, j2), axis=1)
    return j1, j2, float(np.sqrt(np.mean(resid**2)))


def fit_hinge_axes(acc1: np.ndarray, gyr1: np.ndarray, acc2: np.ndarray, gyr2: np.ndarray,
                   rate_hz: float) -> HingeAxisFit:
    """:func:`estimate_hinge_axes` over the samples given, then again without the moving
    samples whose residual relative to the angular rate (over WINDOW_S around each) is over
    OUTLIER_FACTOR times the median one (and over OUTLIER_FLOOR), until the samples left out
    stay the same."""
    n = max(2, round(WINDOW_S * rate_hz))
    margin = max(1, round(MARGIN_S * rate_hz))
    keep = np.ones(len(acc1), dtype=bool)
    j1, j2, resid = estimate_hinge_axes(acc1, gyr1, acc2, gyr2)
    for _ in range(MAX_REFITS):
        ratio = _relative_residual(gyr1, gyr2, j1, j2, n)
        moving = np.isfinite(ratio)
        if moving.sum() < 4 * n:
            break
        limit = max(OUTLIER_FACTOR * float(np.median(ratio[moving])), OUTLIER_FLOOR)
        # and the samples around each such one: the motion's edges fit no better
        left_out = np.convolve(moving & (ratio > limit), np.ones(margin), mode="same") > 0
        if np.array_equal(~left_out, keep):
            break
        keep = ~left_out
        j1, j2, resid = estimate_hinge_axes(acc1[keep], gyr1[keep], acc2[keep], gyr2[keep])
    return HingeAxisFit(j1, j2, resid, float(np.count_nonzero(~keep)) / rate_hz, keep)


def _relative_residual(gyr1: np.ndarray, gyr2: np.ndarray, j1: np.ndarray, j2: np.ndarray,
                       n: int) -> np.ndarray:
    """Per sample: rms of Olsson's residual over the n samples around it, over their mean
    gyro norm; NaN where they are not moving (or hold a gap)."""
    r = np.linalg.norm(np.cross(gyr1, j1), axis=1) - np.linalg.norm(np.cross(gyr2, j2), axis=1)
    rate = 0.5 * (np.linalg.norm(gyr1, axis=1) + np.linalg.norm(gyr2, axis=1))
    kernel = np.ones(n) / n
    with np.errstate(invalid="ignore"):
        rms = np.sqrt(np.convolve(r * r, kernel, mode="same"))
        mean_rate = np.convolve(rate, kernel, mode="same")
        return np.where(mean_rate > MOVING_RAD_S, rms / mean_rate, np.nan)
