"""High-frequency motion on top of a chain trajectory: the jolts and shaking of real use
(impacts, tremor, a hand-held or strapped segment shaken) that the generators' smooth
splines never make.

The vibration is kinematic: it moves the chain's coordinates (free root translation and
rotation, hinge angles), so the simulated accelerometers and gyroscopes see it consistently
through the chain, as they would on a real body. Each moved coordinate gets a sum of
sinusoids with random frequencies in ``band_hz`` and random phases, scaled so that the root's
linear acceleration has ``acc_rms_ms2`` rms per axis and each rotation ``gyr_rms_rad_s`` rms
angular rate per axis. Displacements stay small (6 m/s^2 and 0.5 rad/s rms at 3-15 Hz are a few
mm and about a degree rms), so the motion's shape and the truth's joint ranges are kept.

Units: s, m, rad, m/s^2, rad/s. Quaternions w, x, y, z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipeline.kinematics.chain import Chain, JointType
from pipeline.kinematics.quaternion import np_qfrom_rotvec, np_qmul

if TYPE_CHECKING:  # imu_synth imports this module
    from pipeline.kinematics.imu_synth import Trajectory


@dataclass(frozen=True)
class VibrationSettings:
    """Size and band of the added motion: root linear acceleration m/s^2 rms per axis, angular
    rate rad/s rms per rotation axis, frequency band Hz, sinusoids per coordinate."""

    acc_rms_ms2: float = 6.0
    gyr_rms_rad_s: float = 0.5
    band_hz: tuple[float, float] = (3.0, 15.0)
    components: int = 6

    def __post_init__(self) -> None:
        lo, hi = self.band_hz
        if not 0.0 < lo <= hi:
            raise ValueError(f"vibration band_hz {self.band_hz} must be 0 < low <= high, Hz")
        if self.acc_rms_ms2 < 0 or self.gyr_rms_rad_s < 0 or self.components < 1:
            raise ValueError("vibration acc_rms_ms2 and gyr_rms_rad_s must be >= 0 and "
                             f"components >= 1, got {self}")


class SumOfSines:
    """n scalar signals, each a sum of k sinusoids with random frequencies in ``band_hz``
    (uniform, or log-uniform with ``log_band``) and random phases, scaled so that the
    ``derivative``-th time derivative of each signal has ``rms`` rms (k sines of equal share)."""

    def __init__(self, n: int, rms: float, derivative: int, band_hz: tuple[float, float],
                 components: int, rng: np.random.Generator, log_band: bool = False) -> None:
        lo, hi = band_hz
        if log_band:
            self.f = np.exp(rng.uniform(math.log(lo), math.log(hi), (n, components)))
        else:
            self.f = rng.uniform(lo, hi, (n, components))
        self.phase = rng.uniform(0.0, 2.0 * math.pi, (n, components))
        self.amp = rms * math.sqrt(2.0 / components) / (2.0 * math.pi * self.f) ** derivative

    def __call__(self, t: np.ndarray) -> np.ndarray:
        """(N, n) values at times t (N,) s."""
        arg = 2.0 * math.pi * self.f[None] * t[:, None, None] + self.phase[None]
        return (self.amp[None] * np.sin(arg)).sum(axis=-1)


class Vibration:
    """``base`` trajectory (anything with ``q(t)``) of ``chain`` with vibration added to its
    free root (translation and rotation) and hinge angles; other joints move as in ``base``."""

    def __init__(self, base: Trajectory, chain: Chain, settings: VibrationSettings,
                 rng: np.random.Generator | int | list[int]) -> None:
        rng = np.random.default_rng(rng)
        self.base, self.chain, self.settings = base, chain, settings
        self._free = [i for i, b in enumerate(chain.bodies) if b.joint.type == JointType.FREE]
        self._hinges = [i for i, b in enumerate(chain.bodies) if b.joint.type == JointType.HINGE]
        band, k = settings.band_hz, settings.components
        self._translation = [SumOfSines(3, settings.acc_rms_ms2, 2, band, k, rng)
                             for _ in self._free]
        self._rotation = [SumOfSines(3, settings.gyr_rms_rad_s, 1, band, k, rng)
                          for _ in self._free]
        self._hinge = SumOfSines(len(self._hinges), settings.gyr_rms_rad_s, 1, band, k, rng)

    def q(self, t: np.ndarray) -> np.ndarray:
        """Joint coordinates (N, nq) float64 at times t (N,) s, in the chain's layout."""
        t = np.asarray(t, dtype=np.float64)
        q = np.array(self.base.q(t), dtype=np.float64)
        for i, move, turn in zip(self._free, self._translation, self._rotation):
            s = int(self.chain.q_start[i])
            q[:, s:s + 3] += move(t)
            q[:, s + 3:s + 7] = np_qmul(q[:, s + 3:s + 7], np_qfrom_rotvec(turn(t)))
        angles = self._hinge(t)
        for j, i in enumerate(self._hinges):
            q[:, int(self.chain.q_start[i])] += angles[:, j]
        return q


__all__ = ["SumOfSines", "Vibration", "VibrationSettings"]
