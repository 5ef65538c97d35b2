"""VqfTuning: the VQF 6D parameters imuflow runs body-worn sensors with, by VQF's own names.

The vqf package's defaults (``VQF_PACKAGE_DEFAULTS``) suit calibrated gyroscopes: the motion
bias estimate starts at 0.5 deg/s uncertainty, forgets over 100 s and is clipped to 2 deg/s,
and rest detection is off whenever the low-passed rate exceeds that clip on any axis, so an
uncalibrated gyro (3-6 deg/s bias is common in consumer IMUs) never gets a rest update and its
bias estimate saturates. ``BODY_WORN`` clips at 8 deg/s, forgets over 20 s (bias is observable
only while the segment tilts, and limbs tilt all the time) and trusts the accelerometer with a
1.5 s time constant. Chosen on simulated arm3 motion (arm3-wide, 8 x 60 s, seeds 3,100,000 on,
gyro biases up to 3 and up to 6 deg/s; tools/vqf_tuning_grid.py), checked on the real BROAD
trials in ../shared/data (inclination against optical truth unchanged within 0.05 deg).
(1.5 s, 0.3 deg/s, 10 s) scored 0.05 deg better there; 20 s forgetting was kept as less
eager on slow real motion. ``ROOT_BODY_WORN`` is the same with tauAcc 2 s, for the root alone.

Units: tauAcc and biasForgettingTime s; biasSigmaInit, biasClip, biasSigmaMotion deg/s.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class VqfTuning:
    """VQF 6D parameters (s, deg/s) under the vqf package's names; ``kwargs()`` for VQF()."""

    tauAcc: float = 1.5               # s, accelerometer (inclination) correction time constant
    biasSigmaInit: float = 0.5        # deg/s, initial std of the gyro bias estimate
    biasForgettingTime: float = 20.0  # s, how fast the bias estimate forgets
    biasClip: float = 8.0             # deg/s, bias bound; also the rate above which no rest
    biasSigmaMotion: float = 0.1      # deg/s, std of the bias update in motion

    def __post_init__(self) -> None:
        bad = [f.name for f in fields(self) if not getattr(self, f.name) > 0]
        if bad:
            raise ValueError(f"VQF parameters {bad} must be > 0; got {self}")

    def kwargs(self) -> dict[str, float]:
        """Keyword arguments for ``vqf.VQF(Ts, **kwargs)``."""
        return asdict(self)

    def with_overrides(self, overrides: dict[str, float]) -> VqfTuning:
        """This tuning with some parameters replaced by VQF name; unknown names are refused."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"vqf: unknown or unsupported VQF parameters {unknown}; known: "
                             f"{sorted(f.name for f in fields(self))}")
        return VqfTuning(**{**asdict(self), **{k: float(v) for k, v in overrides.items()}})


BODY_WORN = VqfTuning()
# The root alone (orientation node): it takes the whole body's linear acceleration, so it
# trusts the accelerometer less. Root inclination means (deg, 16 x 60 s per row, seeds
# 3,000,000 on, tools/stress_axes.py's sets) for tauAcc 1.5 / 2 / 3 s: arm3-wide's settings
# 2.07 / 2.04 / 2.39, root acceleration 3.5x 3.91 / 2.93 / 2.66, gyro bias to 6 deg/s 2.73 /
# 2.82 / 3.49, joint motion 1.6x 2.57 / 2.56 / 2.87 (tools/vqf_tuning_grid.py --root-axes).
ROOT_BODY_WORN = VqfTuning(tauAcc=2.0)
VQF_PACKAGE_DEFAULTS = VqfTuning(tauAcc=3.0, biasSigmaInit=0.5, biasForgettingTime=100.0,
                                 biasClip=2.0, biasSigmaMotion=0.1)
