"""IMUs that turn against their segment: skin and strap moving under the sensor, and a segment
that turns about its own long axis apart from the joint model (the tibia's axial rotation
against the femur while walking, which a hinge knee does not have).

Each IMU gets a small rotation against its site, a rotation vector in the segment's frame:
about the segment's long axis (the site position's dominant axis, as ``imu_synth`` shifts
placements along it) a sum of sinusoids with log-uniform frequencies in ``band_hz`` scaled to
``long_axis_rate_rad_s`` rms angular rate, about the two axes across it the same scaled to
``across_rate_rad_s``. Equal rate per component puts equal angular rate into every octave,
as the real knee recording shows (BENCHMARKS.md, "The knee's walking offset"); the angle is
dominated by the slow components. The sensor's position and the chain's truth stay as they
are: the accelerometer and gyroscope see the turned sensor frame, the truth the segment's.

Units: s, rad, rad/s. Quaternions w, x, y, z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kinematics.quaternion import np_qconj, np_qfrom_rotvec, np_qmul, np_qrotate
from pipeline.kinematics.vibration import SumOfSines


@dataclass(frozen=True)
class SensorWobbleSettings:
    """Angular rate rms of each IMU against its segment, rad/s: about the long axis and about
    each axis across it; frequency band Hz (log-uniform) and sinusoids per axis."""

    long_axis_rate_rad_s: float = 0.6
    across_rate_rad_s: float = 0.3
    band_hz: tuple[float, float] = (0.3, 20.0)
    components: int = 8

    def __post_init__(self) -> None:
        lo, hi = self.band_hz
        if not 0.0 < lo <= hi:
            raise ValueError(f"sensor wobble band_hz {self.band_hz} must be 0 < low <= high, Hz")
        if self.long_axis_rate_rad_s < 0 or self.across_rate_rad_s < 0 or self.components < 1:
            raise ValueError("sensor wobble rates must be >= 0 rad/s and components >= 1, "
                             f"got {self}")


class SensorWobble:
    """Per IMU site, the rotation of the sensor against its mounting over time."""

    def __init__(self, positions: np.ndarray, rotations: np.ndarray,
                 settings: SensorWobbleSettings,
                 rng: np.random.Generator | int | list[int]) -> None:
        """``positions`` (m, 3) m and ``rotations`` (m, 4) sensor->segment: the sites used."""
        rng = np.random.default_rng(rng)
        m = len(positions)
        self._long = np.argmax(np.abs(np.asarray(positions)), axis=1) if m else np.zeros(0, int)
        self._mount = np.asarray(rotations, dtype=np.float64)
        s = settings
        self._along = SumOfSines(m, s.long_axis_rate_rad_s, 1, s.band_hz, s.components, rng,
                                 log_band=True)
        self._across = SumOfSines(2 * m, s.across_rate_rad_s, 1, s.band_hz, s.components, rng,
                                  log_band=True)

    def rotations(self, t: np.ndarray) -> np.ndarray:
        """(N, m, 4) rotation of each sensor frame against its unturned self at times t (N,) s:
        the sensor's orientation becomes ``q_site * rotations(t)``."""
        t = np.asarray(t, dtype=np.float64)
        m = len(self._long)
        along, across = self._along(t), self._across(t).reshape(len(t), m, 2)
        rv = np.zeros((len(t), m, 3))
        for j, axis in enumerate(self._long):
            others = [a for a in range(3) if a != axis]
            rv[:, j, axis] = along[:, j]
            rv[:, j, others] = across[:, j]
        # a turn about a segment axis, seen in the sensor frame: q_mount^-1 q_turn q_mount
        rv_sensor = np_qrotate(np_qconj(np.broadcast_to(self._mount, rv.shape[:-1] + (4,))), rv)
        return np_qfrom_rotvec(rv_sensor)

    def apply(self, site_quats: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``site_quats`` (N, m, 4) sensor->earth at times t (N,) s, turned by the wobble."""
        return np_qmul(site_quats, self.rotations(t))


__all__ = ["SensorWobble", "SensorWobbleSettings"]
