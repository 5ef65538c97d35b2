"""Chain problems the observer is trained for: chain file, input IMUs, outputs, simulator settings."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.kinematics.imu_synth import ImuNoise, SimSettings
from pipeline.kinematics.motion import MotionSettings


@dataclass(frozen=True)
class Problem:
    """One reference problem: chain, IMU sites in input order, outputs (body, encoding)."""

    name: str
    chain: str                                  # chain file, relative to the repository
    imus: tuple[str, ...]                       # IMU site names, input order
    outputs: tuple[tuple[str, str], ...]        # (body, "sincos" | "quat")
    mount_rotation_max_rad: float = 0.0         # random sensor mounting rotation, rad
    placement_jitter_m: float = 0.05            # +- shift along the segment, m
    root_tilt_rad: float = 1.2                  # +- pitch and roll of a free root, rad
    speed_max: float = 1.0                      # fastest motion: 5 rad/s, 60 rad/s^2 at 1.0

    def sim_settings(self, seed: int) -> SimSettings:
        """Per-sequence simulator settings drawn from ``seed``: motion speed and rest frequency vary."""
        rng = np.random.default_rng([seed, 7919])
        speed = float(rng.uniform(0.3, 1.0))  # fraction of the fastest motion
        if self.speed_max != 1.0:  # drawn separately: problems with the default keep their data
            speed = float(np.random.default_rng([seed, 7927]).uniform(0.3, self.speed_max))
        motion = MotionSettings(
            seg_min_s=0.2 / speed, seg_max_s=2.5 / speed,
            rest_prob=float(rng.uniform(0.05, 0.4)), root_tilt_rad=self.root_tilt_rad,
            max_rate_rad_s=5.0 * speed, max_acc_rad_s2=60.0 * speed,
            max_rate_m_s=0.8 * speed, max_acc_m_s2=6.0 * speed)
        return SimSettings(motion=motion, placement_jitter_m=self.placement_jitter_m,
                           mount_rotation_max_rad=self.mount_rotation_max_rad)

    def stress_settings(self, seed: int) -> SimSettings:
        """Settings training never uses: the root over the whole sphere (pitch and roll up to
        +-180 deg: lying, upside down; training: +-69 deg), motion up to 1.6x the fastest
        trained (mean rates to 8 rad/s, accelerations to 96 rad/s^2), long rests (probability
        0.3-0.6, up to 6 s), IMUs shifted twice as far along their segments."""
        rng = np.random.default_rng([seed, 104729])
        speed = float(rng.uniform(0.3, 1.6))
        motion = MotionSettings(
            seg_min_s=0.2 / speed, seg_max_s=2.5 / speed,
            rest_prob=float(rng.uniform(0.3, 0.6)), rest_max_s=6.0,
            root_tilt_rad=math.pi,
            max_rate_rad_s=5.0 * speed, max_acc_rad_s2=60.0 * speed,
            max_rate_m_s=0.8 * speed, max_acc_m_s2=6.0 * speed)
        return SimSettings(motion=motion, placement_jitter_m=2 * self.placement_jitter_m,
                           mount_rotation_max_rad=self.mount_rotation_max_rad)

    @staticmethod
    def stress_noise() -> ImuNoise:
        """Sensor errors beyond training's: biases 1.7x (gyro up to 5 deg/s), noise 1.5x."""
        n = ImuNoise()
        return ImuNoise(acc_noise_density=1.5 * n.acc_noise_density,
                        gyr_noise_density=1.5 * n.gyr_noise_density,
                        acc_bias_max=0.85, gyr_bias_max=math.radians(5.0),
                        acc_bias_walk=n.acc_bias_walk, gyr_bias_walk=n.gyr_bias_walk,
                        acc_scale_max=0.02, gyr_scale_max=0.02)

    @staticmethod
    def noise(noisy: bool = True) -> ImuNoise:
        """DESIGN.md's realistic sensor errors, or ideal sensors."""
        return ImuNoise() if noisy else ImuNoise.none()

    def describe(self) -> dict:
        """Generator settings for the model card's training recipe."""
        n = ImuNoise()
        return {
            "chain": self.chain, "imus": list(self.imus),
            "outputs": [{"body": b, "encoding": e} for b, e in self.outputs],
            "motion": "pipeline.kinematics.motion.generate_motion, per sequence speed factor "
                      f"U(0.3, {self.speed_max:g}) on max rate 5 rad/s and max acc 60 rad/s^2 "
                      "(move durations 0.2..2.5 s / speed), rest probability U(0.05, 0.4), "
                      f"free root pitch and roll +-{math.degrees(self.root_tilt_rad):.0f} deg",
            "placement_jitter_m": self.placement_jitter_m,
            "mount_rotation_max_deg": round(math.degrees(self.mount_rotation_max_rad), 1),
            "noise": {"acc_white_ms2_rms_100hz": round(n.acc_noise_density * 10, 4),
                      "gyr_white_deg_s_rms_100hz": round(math.degrees(n.gyr_noise_density) * 10, 3),
                      "acc_bias_max_ms2": n.acc_bias_max,
                      "gyr_bias_max_deg_s": round(math.degrees(n.gyr_bias_max), 2),
                      "scale_max": n.acc_scale_max, "bias_walk": "pipeline.kinematics.imu_synth.ImuNoise"},
        }


PROBLEMS: dict[str, Problem] = {
    "arm3-sparse": Problem(
        name="arm3-sparse", chain="configs/chains/arm3.yaml", imus=("seg1", "seg3"),
        outputs=(("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos"))),
    # arm3-sparse's chain and outputs, trained over the whole sphere of root tilts and faster
    # motion; its stress set (Problem.stress_settings) still goes beyond: motion to 1.6x,
    # long rests, placement jitter 2x, sensor noise 1.5x, biases 1.7x, scale errors 2x
    "arm3-wide": Problem(
        name="arm3-wide", chain="configs/chains/arm3.yaml", imus=("seg1", "seg3"),
        outputs=(("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos")),
        root_tilt_rad=math.pi, speed_max=1.3),
    "knee": Problem(
        name="knee", chain="configs/chains/knee.yaml", imus=("thigh", "shank"),
        outputs=(("shank", "sincos"),), mount_rotation_max_rad=math.radians(30.0)),
}


def get_problem(name: str) -> Problem:
    """The problem called ``name``; raises KeyError listing the known ones."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem '{name}'; known: {sorted(PROBLEMS)}") from None
