"""Chain problems the observer is trained for: chain file, input IMUs, outputs, simulator settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.kinematics.chain import Chain, load_chain
from pipeline.kinematics.gait import GaitMotion, gait_motion
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings
from pipeline.kinematics.motion import MotionSettings
from pipeline.kinematics.sensor_wobble import SensorWobbleSettings
from pipeline.kinematics.vibration import VibrationSettings


# angular rate of the vibration per m/s^2 of its root acceleration: the ratio of the two in the
# 5-15 Hz band of RING's simulated arm motion (BENCHMARKS.md, "What sets RING's data apart")
VIBRATION_GYR_PER_ACC = 0.08
# sensor wobble across a segment's long axis per rate about it: the real shank's rates off the
# hinge model while walking, 0.49 / 0.31 rad/s across against 0.85 along (BENCHMARKS.md, "The
# knee's walking offset"; the across axes also carry the hinge axis' calibration error)
WOBBLE_ACROSS_SHARE = 0.5


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
    segment_scale: tuple[float, float] = (1.0, 1.0)  # per-segment length factor, uniform
    imu_lateral_m: float = 0.0                  # +- IMU offset across its segment, m (the two
                                                # axes its site position is smallest along)
    time_jitter_s: float = 0.0                  # +- sampling-time error per sample, s
    drop_prob: float = 0.0                      # chance per sample and IMU that a gap starts
    drop_max: int = 5                           # longest gap, samples (bridged linearly)
    gait_prob: float = 0.0                      # share of sequences that walk and run (knee)
    bandwidth_hz: tuple[float, float] = (math.inf, math.inf)  # sensors' internal low-pass
                                                # cutoff, Hz, log-uniform (SimSettings)
    bandwidth_share: float = 0.0                # share of sequences whose sensors filter
    vibration_acc_ms2: tuple[float, float] = (0.0, 0.0)  # high-frequency motion (3-15 Hz), root
                                                # acceleration rms per axis, m/s^2, uniform
    vibration_share: float = 0.0                # share of sequences that are shaken
    wobble_rate_rad_s: tuple[float, float] = (0.0, 0.0)  # each IMU turning against its segment:
                                                # long-axis angular rate rms, rad/s, uniform
                                                # (across: WOBBLE_ACROSS_SHARE of it)
    wobble_share: float = 0.0                   # share of sequences whose IMUs wobble

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
                           mount_rotation_max_rad=self.mount_rotation_max_rad,
                           time_jitter_s=self.time_jitter_s, bandwidth_hz=self.bandwidth_for(seed),
                           vibration=self.vibration_for(seed), wobble=self.wobble_for(seed))

    def bandwidth_for(self, seed: int) -> float:
        """This sequence's sensor low-pass cutoff, Hz (inf: none), drawn with
        ``bandwidth_share`` log-uniformly from ``bandwidth_hz``."""
        rng = np.random.default_rng([seed, 6053])
        if self.bandwidth_share <= 0 or rng.random() >= self.bandwidth_share:
            return math.inf
        lo, hi = self.bandwidth_hz
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    def vibration_for(self, seed: int) -> VibrationSettings | None:
        """This sequence's high-frequency motion (``pipeline.kinematics.vibration``) or None,
        drawn with ``vibration_share``: root acceleration rms uniform in ``vibration_acc_ms2``,
        angular rates VIBRATION_GYR_PER_ACC times that (rad/s per m/s^2)."""
        rng = np.random.default_rng([seed, 6113])
        if self.vibration_share <= 0 or rng.random() >= self.vibration_share:
            return None
        acc = float(rng.uniform(*self.vibration_acc_ms2))
        return VibrationSettings(acc_rms_ms2=acc, gyr_rms_rad_s=VIBRATION_GYR_PER_ACC * acc)

    def wobble_for(self, seed: int) -> SensorWobbleSettings | None:
        """This sequence's sensor wobble (``pipeline.kinematics.sensor_wobble``) or None, drawn
        with ``wobble_share``: long-axis rate rms uniform in ``wobble_rate_rad_s``, the two axes
        across it WOBBLE_ACROSS_SHARE times that (rad/s)."""
        rng = np.random.default_rng([seed, 6143])
        if self.wobble_share <= 0 or rng.random() >= self.wobble_share:
            return None
        rate = float(rng.uniform(*self.wobble_rate_rad_s))
        return SensorWobbleSettings(long_axis_rate_rad_s=rate,
                                    across_rate_rad_s=WOBBLE_ACROSS_SHARE * rate)

    def chain_for(self, chain: Chain, seed: int) -> Chain:
        """``chain`` with this sequence's segment lengths and IMU sites: each body's joint
        offsets to its children and its IMU positions scaled by one factor per body (drawn from
        ``segment_scale``), IMUs shifted across the segment by up to ``imu_lateral_m``."""
        if self.segment_scale == (1.0, 1.0) and self.imu_lateral_m == 0.0:
            return chain
        rng = np.random.default_rng([seed, 6007])
        scale = dict(zip(chain.body_names, rng.uniform(*self.segment_scale, chain.n_bodies)))
        bodies = tuple(b if b.parent is None else dataclasses.replace(
            b, joint=dataclasses.replace(b.joint, offset=tuple(
                float(v) * scale[b.parent] for v in b.joint.offset))) for b in chain.bodies)
        imus = []
        for s in chain.imus:
            pos = np.array(s.position) * scale[s.body]
            across = np.argsort(np.abs(pos))[:2]  # the two axes the segment does not run along
            pos[across] += rng.uniform(-self.imu_lateral_m, self.imu_lateral_m, 2)
            imus.append(dataclasses.replace(s, position=tuple(float(v) for v in pos)))
        return dataclasses.replace(chain, bodies=bodies, imus=tuple(imus))

    def gait_for(self, chain: Chain, seed: int, duration_s: float) -> GaitMotion | None:
        """This sequence's walking and running motion (``pipeline.kinematics.gait``), or None
        for the random keyframe motion; drawn with ``gait_prob``."""
        if self.gait_prob <= 0 or np.random.default_rng([seed, 6029]).random() >= self.gait_prob:
            return None
        return gait_motion(chain, duration_s + 1.0, [seed, 6037])

    def drop_samples(self, x: np.ndarray, seed: int) -> np.ndarray:
        """Input (T, n_imu*6), per IMU acc then gyr, with lost samples bridged by straight lines
        as the sync node does: per IMU a gap of 1..``drop_max`` samples starts with ``drop_prob``
        per sample."""
        if self.drop_prob <= 0:
            return x
        rng = np.random.default_rng([seed, 6011])
        x = x.copy()
        t_len = len(x)
        for i in range(x.shape[1] // 6):
            cols = slice(6 * i, 6 * i + 6)  # acc then gyr of IMU i
            for start in np.flatnonzero(rng.random(t_len) < self.drop_prob):
                stop = min(start + int(rng.integers(1, self.drop_max + 1)), t_len - 1)
                if start == 0 or stop <= start:
                    continue
                w = (np.arange(start, stop) - (start - 1)) / (stop - (start - 1))
                x[start:stop, cols] = ((1 - w)[:, None] * x[start - 1, cols]
                                       + w[:, None] * x[stop, cols])
        return x

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
            **self._field_randomisation(),
        }

    def _field_randomisation(self) -> dict:
        """The card entries of segment, IMU-site, timing and dropout randomisation, when used."""
        out: dict = {}
        if self.segment_scale != (1.0, 1.0):
            out["segment_scale"] = list(self.segment_scale)
        if self.imu_lateral_m:
            out["imu_lateral_m"] = self.imu_lateral_m
        if self.time_jitter_s:
            out["time_jitter_s"] = self.time_jitter_s
        if self.gait_prob:
            out["gait"] = {"share": self.gait_prob,
                           "motion": "pipeline.kinematics.gait.gait_motion: walking and running "
                                     "bouts, standing and turning between them",
                           "shocks": "pipeline.kinematics.gait.heel_strike_shocks"}
        if self.bandwidth_share:
            out["sensor_bandwidth"] = {
                "share": self.bandwidth_share, "cutoff_hz": list(self.bandwidth_hz),
                "filter": "pipeline.kinematics.imu_synth.SensorBandwidth: causal 2nd-order "
                          "Butterworth on acc and gyr, cutoff log-uniform"}
        if self.vibration_share:
            out["vibration"] = {
                "share": self.vibration_share, "root_acc_rms_ms2": list(self.vibration_acc_ms2),
                "gyr_rms_rad_s_per_ms2": VIBRATION_GYR_PER_ACC,
                "motion": "pipeline.kinematics.vibration.Vibration: sums of sines at 3-15 Hz on "
                          "the root's translation and rotation and the hinge angles"}
        if self.wobble_share:
            out["sensor_wobble"] = {
                "share": self.wobble_share, "long_axis_rate_rad_s": list(self.wobble_rate_rad_s),
                "across_share": WOBBLE_ACROSS_SHARE,
                "motion": "pipeline.kinematics.sensor_wobble.SensorWobble: each IMU turning "
                          "against its segment, sums of sines at 0.3-20 Hz (log-uniform)"}
        if self.drop_prob:
            out["dropped_samples"] = {"gap_start_prob": self.drop_prob, "gap_max": self.drop_max,
                                      "bridged": "linear, as nodes/sync"}
        return out


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
    # arm3-wide plus what real use brings: segment lengths 0.6-1.6x, IMUs anywhere along and up
    # to 3 cm across their segment, residual mounting errors after calibration (up to 5 deg),
    # sampling-time errors (+-2 ms) and dropped samples (gaps of 1-5 samples, bridged)
    "arm3-field": Problem(
        name="arm3-field", chain="configs/chains/arm3.yaml", imus=("seg1", "seg3"),
        outputs=(("seg1", "quat"), ("seg2", "sincos"), ("seg3", "sincos")),
        root_tilt_rad=math.pi, speed_max=1.3, mount_rotation_max_rad=math.radians(5.0),
        segment_scale=(0.6, 1.6), imu_lateral_m=0.03,
        time_jitter_s=0.002, drop_prob=0.005),
    # the knee after sensor-to-segment calibration, with what real use brings: residual
    # mounting errors up to 5 deg, segment lengths 0.8-1.25x, IMUs up to 3 cm off their site
    # across the segment, the thigh at any tilt (lying, kneeling), sampling-time jitter and
    # dropped samples as for arm3-field
    "knee-field": Problem(
        name="knee-field", chain="configs/chains/knee.yaml", imus=("thigh", "shank"),
        outputs=(("shank", "sincos"),), mount_rotation_max_rad=math.radians(5.0),
        root_tilt_rad=math.pi, speed_max=1.3, segment_scale=(0.8, 1.25), imu_lateral_m=0.03,
        time_jitter_s=0.002, drop_prob=0.005),
    # knee-field where a share of the sequences walk and run: periodic strides with fast swing
    # flexion, the pelvis bobbing and swaying, turns while standing, and the shock of every
    # heel strike at the sensors (the random keyframe motion never makes gait)
    "knee-walk": Problem(
        name="knee-walk", chain="configs/chains/knee.yaml", imus=("thigh", "shank"),
        outputs=(("shank", "sincos"),), mount_rotation_max_rad=math.radians(5.0),
        root_tilt_rad=math.pi, speed_max=1.3, segment_scale=(0.8, 1.25), imu_lateral_m=0.03,
        time_jitter_s=0.002, drop_prob=0.005, gait_prob=0.4),
    "knee": Problem(
        name="knee", chain="configs/chains/knee.yaml", imus=("thigh", "shank"),
        outputs=(("shank", "sincos"),), mount_rotation_max_rad=math.radians(30.0)),
    # the lower body with an IMU on every segment, for scoring the constraint observer's hips
    # (spherical, quat w >= 0), knees and ankles (hinges); the pelvis (root) is the
    # orientation node's, not an output
    "lower-body": Problem(
        name="lower-body", chain="configs/chains/lower_body.yaml",
        imus=("pelvis", "thigh_l", "shank_l", "foot_l", "thigh_r", "shank_r", "foot_r"),
        outputs=(("thigh_l", "quat"), ("shank_l", "sincos"), ("foot_l", "sincos"),
                 ("thigh_r", "quat"), ("shank_r", "sincos"), ("foot_r", "sincos"))),
}

# arm3-wide and knee-walk where the sensors low-pass their signals, as real IMUs do before
# their output: a digital filter of 8-40 Hz in 70 % of the sequences (it delays fast motion by
# 5-30 ms); BENCHMARKS.md, "Another simulator"
for _base, _name in (("arm3-wide", "arm3-band"), ("knee-walk", "knee-band")):
    PROBLEMS[_name] = dataclasses.replace(PROBLEMS[_base], name=_name, bandwidth_hz=(8.0, 40.0),
                                          bandwidth_share=0.7)
# arm3-wide where half of the sequences are shaken: 3-15 Hz motion of 1-8 m/s^2 rms on top of
# the smooth moves, as impacts and jerky motion bring (BENCHMARKS.md, "What sets RING's data
# apart")
PROBLEMS["arm3-vib"] = dataclasses.replace(PROBLEMS["arm3-wide"], name="arm3-vib",
                                           vibration_acc_ms2=(1.0, 8.0), vibration_share=0.5)
# knee-walk where, in 60 % of the sequences, each IMU turns against its segment: skin and
# strap, and the shank's axial rotation against the thigh that a hinge knee does not have
# (long-axis rate 0.1-1.0 rad/s rms at 0.3-20 Hz; the real knee recording's shank: 0.85 while
# walking). The real recording's shank rates made knee.onnx add its walking offset
# (BENCHMARKS.md, "The knee's walking offset")
PROBLEMS["knee-wobble"] = dataclasses.replace(PROBLEMS["knee-walk"], name="knee-wobble",
                                              wobble_rate_rad_s=(0.1, 1.0), wobble_share=0.6)
# the same, milder: half of the sequences, 0.1-0.6 rad/s; models/knee is fine-tuned on it
# (BENCHMARKS.md, "The knee's walking offset": of the two, the one closer to knee-walk)
PROBLEMS["knee-wobble-mild"] = dataclasses.replace(PROBLEMS["knee-walk"], name="knee-wobble-mild",
                                                   wobble_rate_rad_s=(0.1, 0.6),
                                                   wobble_share=0.5)
# arm3-vib where, drawn independently, half of the sequences' sensors also low-pass their
# signals at 8-40 Hz: shaken or not, filtered or not, in all four combinations
PROBLEMS["arm3-vib-band"] = dataclasses.replace(PROBLEMS["arm3-vib"], name="arm3-vib-band",
                                                bandwidth_hz=(8.0, 40.0), bandwidth_share=0.5)


def with_root_encoding(problem: Problem, encoding: str) -> Problem:
    """``problem`` with its root output encoded as ``encoding`` ("quat" or "up"); "" keeps it."""
    if not encoding:
        return problem
    if encoding not in ("quat", "up"):
        raise ValueError(f"--root-encoding '{encoding}': 'quat' or 'up' (or empty: the problem's)")
    root = load_chain(Path(__file__).resolve().parents[2] / problem.chain).body_names[0]
    if root not in [b for b, _ in problem.outputs]:
        raise ValueError(f"--root-encoding {encoding}: problem '{problem.name}' does not output "
                         f"its root '{root}'")
    outputs = tuple((b, encoding if b == root else e) for b, e in problem.outputs)
    return dataclasses.replace(problem, outputs=outputs)


def get_problem(name: str) -> Problem:
    """The problem called ``name``; raises KeyError listing the known ones."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise KeyError(f"unknown problem '{name}'; known: {sorted(PROBLEMS)}") from None
