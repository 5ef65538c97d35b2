"""Simulated IMUs: random chain motion streamed as ``imu.raw`` with ground truth.

The default source of ``imuflow run``: no hardware needed. Each IMU site of the
chain becomes one sensor stream (``StreamInfo.source`` = site name) with its
own device clock (offset and drift, so ``sync`` has real work to do); the true
joint state goes out on ``chain.truth``. ``procedure: calibration`` performs the
calibration procedure instead of random motion (neutral pose, then every hinge flexed;
``pipeline/kinematics/calibration_motion.py``), e.g. for ``imuflow calibrate CONFIG``
with sensors mounted as the chain's IMU ``rotation:`` says; ``procedure: walking`` walks
and runs a knee chain (``pipeline/kinematics/gait.py``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from pipeline.kinematics.calibration_motion import calibration_motion
from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.kinematics.gait import check_knee, gait_motion
from pipeline.kinematics.imu_synth import ImuNoise, ImuSimulator, SimSettings
from pipeline.kinematics.motion import MotionSettings
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import RAW_IMU, RAW_IMU_DTYPE, TRUTH, raw_imu_info, state_dtype

CHUNK_S = 600.0  # motion is generated in chunks of this length; a new chunk is a marked gap
AHEAD_S = 1.0  # motion is generated this much at a time (a few ms of CPU), then sent when due
REFILL_S = 0.5  # generate more when fewer seconds than this are left


class SimImu(Source):
    """Stream simulated IMU data of a kinematic chain in real time, faster, or as fast as possible.

    Ports:
        imu.raw (out): per sensor, RAW_IMU_DTYPE samples: acc m/s^2 and gyr rad/s in the
            sensor frame, t_sensor ns of the simulated device clock, t_host ns.
        chain.truth (out): state_dtype samples: true q_rel (w,x,y,z, body to parent) and
            hinge angles (rad), t_host ns of the matching IMU samples.
    """

    outputs = (RAW_IMU, TRUTH)

    @dataclass(frozen=True)
    class Params:
        chain: Path | None = None  # chain YAML; default: the graph's `chain:`
        rate_hz: float = 100.0  # sensor sample rate, Hz
        speed: float = 1.0  # 1 = real time, 2 = twice as fast, 0 = as fast as possible
        # t_host: at speed 1 the receive time (now); at any other speed the simulated timeline
        # (start + sample time), as a replay keeps its recorded stamps, so sync sees 100 Hz data
        duration_s: float = 0.0  # simulated seconds before the stream ends; 0 = endless
        block: int = 1  # samples per message per sensor
        seed: int = 0  # random motion, sensor errors and clocks (same seed, same data)
        noise: bool = True  # realistic sensor errors (DESIGN.md); false = ideal sensors
        clock_drift_ppm: float = 30.0  # device clocks drift up to +- this, ppm
        clock_offset_s: float = 5.0  # device clocks start up to this many seconds apart
        # random: endless random motion; calibration: the neutral pose for procedure_static_s,
        # procedure_functional_s of hinge flexions (10 each), then the neutral pose held;
        # walking: bouts of walking and running with standing turns (a knee chain: free
        # thigh, knee hinge; the heel strikes' shocks are not simulated here)
        procedure: Literal["random", "calibration", "walking"] = "random"
        # s; the defaults follow `imuflow calibrate CONFIG`'s prompts (3 s lead-in, 4 s still,
        # 25 s of motion) with a second for the graph's start
        procedure_static_s: float = 8.0
        procedure_functional_s: float = 24.0
        # random: start in the chain's zero pose, still, for this long (s), as a person
        # stands in the calibration pose when tracking starts; 0: a random start pose
        start_still_s: float = 0.0

        def __post_init__(self) -> None:
            if self.rate_hz <= 0 or self.speed < 0 or self.duration_s < 0 or self.block < 1:
                raise ValueError("rate_hz > 0, speed >= 0, duration_s >= 0, block >= 1 required")
            if self.procedure_static_s < 0 or self.procedure_functional_s <= 0:
                raise ValueError("procedure_static_s >= 0 and procedure_functional_s > 0 required")
            if self.start_still_s < 0:
                raise ValueError(f"start_still_s must be >= 0, got {self.start_still_s}")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The chain's IMU sites: the simulated sensors are named after them."""
        path = params.chain or context.chain_file
        if path is None:
            return None  # setup says which key is missing
        try:
            return list(load_chain(context.resolve(path)).imu_names)
        except (ChainError, OSError):
            return None  # setup reports the chain file's problem

    @classmethod
    def check_files(cls, params: Params, context: GraphContext) -> None:
        """The chain file is given and loads."""
        path = params.chain or context.chain_file
        if path is None:
            raise ConfigError("no chain: set params.chain or the graph's `chain:` key",
                              key="chain")
        load_chain(context.resolve(path))

    def setup(self) -> None:
        path = self.params.chain or self.context.chain_file
        if path is None:
            raise ConfigError(f"node '{self.id}': no chain: set params.chain or the graph's "
                              "`chain:` key (e.g. configs/chains/knee.yaml)", key="chain")
        self.chain = load_chain(self.context.resolve(path))
        if self.params.procedure == "walking":
            try:
                check_knee(self.chain)
            except ValueError as exc:
                raise ConfigError(f"node '{self.id}': procedure 'walking': {exc}",
                                  key="procedure") from None
        rng = np.random.default_rng(self.params.seed + 7919)
        m = len(self.chain.imus)
        self._drift = rng.uniform(-1, 1, m) * self.params.clock_drift_ppm * 1e-6
        self._offset_ns = (rng.uniform(0, 1, m) * self.params.clock_offset_s * 1e9).astype(np.int64)
        self._sensor_infos = [raw_imu_info(f"{self.id}/{RAW_IMU}:{name}", name, self.params.rate_hz,
                                    simulated=True) for name in self.chain.imu_names]
        n_hinge = len(self.chain.hinge_bodies)
        self._truth_dtype = state_dtype(self.chain.n_bodies, n_hinge)
        self.declare(TRUTH, StreamInfo.for_array(
            f"{self.id}/{TRUTH}", TRUTH, self._truth_dtype, rate_hz=self.params.rate_hz,
            channels=self._truth_dtype.names, units=("ns", "1", "rad"),
            meta={"bodies": list(self.chain.body_names),
                  "hinges": [self.chain.body_names[i] for i in self.chain.hinge_bodies]}))
        self._chunk = -1
        self._sim: ImuSimulator | None = None
        self._sent = 0  # samples emitted per sensor
        self._chunk_start = 0
        self._new_chunk()
        # generate the first second now: compiles (or loads from numba's disk cache) the motion,
        # kinematics and IMU kernels before the node reports ready, not on the data path
        self._fill(1)

    def _new_chunk(self) -> None:
        self._chunk += 1
        p = self.params
        noise = ImuNoise() if p.noise else ImuNoise.none()
        seed = p.seed + self._chunk
        motion = None
        if p.procedure == "calibration" and self._chunk == 0:
            motion = calibration_motion(self.chain, seed, p.procedure_static_s,
                                        p.procedure_functional_s)
        elif p.procedure == "walking":
            motion = gait_motion(self.chain, CHUNK_S + 1.0, seed)
        still = p.start_still_s if self._chunk == 0 else 0.0  # later chunks: a marked gap
        settings = SimSettings(motion=MotionSettings(start_still_s=still))
        self._sim = ImuSimulator(self.chain, p.rate_hz, seed, noise, settings,
                                 duration_s=CHUNK_S + 1.0, motion=motion)
        self._chunk_start = self._sent
        self._ahead: tuple[np.ndarray, ...] = ()  # generated, not yet sent: raw and truth records

    def on_start(self) -> None:
        # start on a multiple of the sample period: frames of a sync at the same rate then
        # fall on sample times and need no wait for the next sample
        period_ns = 1e9 / self.params.rate_hz
        self._t0_ns = int((time.monotonic_ns() // period_ns + 1) * period_ns)

    def _total(self) -> int:
        d = self.params.duration_s
        return round(d * self.params.rate_hz) if d > 0 else -1

    def poll(self, timeout_s: float) -> bool:
        p = self.params
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        total = self._total()
        while total < 0 or self._sent < total:
            n = p.block if total < 0 else min(p.block, total - self._sent)
            if p.speed > 0:
                due_ns = self._t0_ns + int((self._sent + n) / p.rate_hz / p.speed * 1e9)
                if self._ahead_len() < n + REFILL_S * p.rate_hz:
                    # generate in the second half of the wait: by then the previous message has
                    # been processed downstream, so generating does not delay it (one GIL)
                    generate_ns = due_ns - int(0.5e9 * n / p.rate_hz / p.speed)
                    if generate_ns > deadline:
                        _sleep_until(deadline)
                        return True
                    _sleep_until(generate_ns)
                    self._fill(n)
                if due_ns > deadline:
                    _sleep_until(deadline)
                    return True
                _sleep_until(due_ns)
            self._emit_block(n)
            if time.monotonic_ns() >= deadline:
                return True
        return False

    def _emit_block(self, n: int) -> None:
        p = self.params
        if (self._sent - self._chunk_start) + n > CHUNK_S * p.rate_hz:
            self._new_chunk()
            gap = True
        else:
            gap = False
        raw, truth = self._take(n)  # built ahead: only the receive time is stamped now
        if p.speed == 1.0:  # received now; earlier samples of the block a sample period apart
            t0 = time.monotonic_ns()
            t_host = t0 - ((n - 1 - np.arange(n)) * (1e9 / p.rate_hz)).astype(np.int64) \
                if n > 1 else t0
        else:  # faster or slower than real time: host time on the simulated timeline
            t_host = self._t0_ns + ((self._sent + np.arange(n)) * (1e9 / p.rate_hz)).astype(
                np.int64)
            t0 = int(t_host[0])
        raw["t_host"] = t_host
        for info, out in zip(self._sensor_infos, raw):
            self.emit(RAW_IMU, out, t_host=t0, t_sensor=int(out["t_sensor"][0]), info=info, gap=gap)
        truth["t_host"] = t_host
        self.emit(TRUTH, truth, t_host=t0, gap=gap)
        self._sent += n

    def _ahead_len(self) -> int:
        """Generated samples not yet sent."""
        return self._ahead[1].shape[0] if self._ahead else 0

    def _fill(self, n: int) -> None:
        """Generate AHEAD_S more seconds of samples (at least ``n``) into ``_ahead``.

        The records go out as built here, but for ``t_host``: the send path only stamps it.
        """
        have = self._ahead_len()
        rec = self._sim.next_block(max(n, round(AHEAD_S * self.params.rate_hz)))
        k = self._sent + have + np.arange(len(rec.acc))  # sample numbers since the start
        t_sim_ns = (k * (1e9 / self.params.rate_hz)).astype(np.int64)
        raw = np.empty((len(self._sensor_infos), len(k)), RAW_IMU_DTYPE)  # row i: sensor i
        raw["t_sensor"] = self._offset_ns[:, None] + (
            t_sim_ns[None, :] * (1 + self._drift[:, None])).astype(np.int64)
        raw["t_host"] = -1
        raw["counter"] = k
        raw["acc"] = rec.acc.swapaxes(0, 1)
        raw["gyr"] = rec.gyr.swapaxes(0, 1)
        raw["mag"] = np.nan
        truth = np.empty(len(k), self._truth_dtype)
        truth["t_host"] = -1
        truth["q_rel"] = rec.q_rel
        truth["angle"] = rec.joint_angles
        self._ahead = (np.concatenate([self._ahead[0], raw], axis=1),
                       np.concatenate([self._ahead[1], truth])) if have else (raw, truth)

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The next ``n`` samples: raw (sensors, n) RAW_IMU_DTYPE and truth (n,) records."""
        if self._ahead_len() < n:
            self._fill(n - self._ahead_len())
        raw, truth = self._ahead
        self._ahead = (raw[:, n:], truth[n:])
        return raw[:, :n], truth[:n]


def _sleep_until(t_ns: int) -> None:
    """Sleep until monotonic time ``t_ns`` (ns); return at once if it has passed."""
    wait_ns = t_ns - time.monotonic_ns()
    if wait_ns > 0:
        time.sleep(wait_ns / 1e9)
