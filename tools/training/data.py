"""Training and held-out data: simulated sequences cached as npz, and the training targets.

A dataset is a ``pipeline.evaluation.imu_dataset.ImuDataset`` file. Training and held-out sets come
from disjoint seed ranges (``SEEDS``), so no held-out motion or sensor error is ever trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pipeline.estimation.output_encoding import encode_outputs
from pipeline.evaluation.imu_dataset import ImuDataset, load_dataset
from pipeline.kinematics.chain import Chain, load_chain
from pipeline.kinematics.gait import heel_strike_shocks
from pipeline.kinematics.imu_synth import ImuNoise, SimSettings, simulate
from pipeline.kinematics.motion import Motion
from tools.training.problem import Problem

log = logging.getLogger("imuflow.training.data")

REPO = Path(__file__).resolve().parents[2]
# disjoint seed ranges: training from 0, validation (per-epoch curves) from 500_000,
# held-out figures of the model cards from 1_000_000, the stress set (settings training never
# uses, Problem.stress_settings) from 2_000_000
SEEDS = {"train": 0, "val": 500_000, "heldout": 1_000_000, "stress": 2_000_000}


def generate(problem: Problem, seeds: list[int] | np.ndarray, duration_s: float,
             rate_hz: float = 100.0, noisy: bool = True, progress: bool = True,
             stress: bool = False, vary: Callable[[SimSettings], SimSettings] | None = None,
             noise: ImuNoise | None = None,
             motion: Callable[[Chain, int, float], Motion] | None = None) -> ImuDataset:
    """Simulate one sequence per seed: IMU input (S, T, n_imu*6) float32 SI and true q_rel.

    ``stress``: the problem's stress settings and sensor errors (beyond training's). ``vary``
    changes each sequence's settings, ``noise`` replaces the sensor errors (tools/stress_axes.py),
    ``motion`` (sequence chain, seed, duration s) replaces the problem's keyframe or gait
    motion (tools/sine_motion_set.py).
    """
    if noise is None:
        noise = problem.stress_noise() if stress and noisy else problem.noise(noisy)
    chain = load_chain(REPO / problem.chain)
    cols = [chain.imu_names.index(n) for n in problem.imus]
    imus, q_rels = [], []
    for seed in tqdm(list(seeds), desc=f"simulate {problem.name}", unit="seq", disable=not progress):
        settings = (problem.stress_settings if stress else problem.sim_settings)(int(seed))
        settings = vary(settings) if vary is not None else settings
        seq_chain = problem.chain_for(chain, int(seed))
        gait = None if motion is not None else problem.gait_for(seq_chain, int(seed), duration_s)
        trajectory = motion(seq_chain, int(seed), duration_s) if motion is not None else gait
        rec = simulate(seq_chain, duration_s, rate_hz, int(seed), noise, settings,
                       motion=trajectory)
        acc, gyr = rec.acc, rec.gyr
        if gait is not None:  # the heel strikes' shocks on the sensors
            shock_acc, shock_gyr = heel_strike_shocks(rec.t, gait, rec.imu_rotations,
                                                      [int(seed), 6043])
            acc, gyr = acc + shock_acc.astype(np.float32), gyr + shock_gyr.astype(np.float32)
        x = np.concatenate([acc[:, cols], gyr[:, cols]], axis=2)  # (T, m, 6)
        imus.append(problem.drop_samples(x.reshape(len(x), -1), int(seed)).astype(np.float32))
        q_rels.append(rec.q_rel.astype(np.float32))
    settings = dict(problem.describe(), noisy=noisy, duration_s=duration_s)
    if stress:
        settings["stress"] = " ".join(problem.stress_settings.__doc__.split()) + " " + " ".join(
            problem.stress_noise.__doc__.split())
    return ImuDataset(imu=np.stack(imus), q_rel=np.stack(q_rels), rate_hz=rate_hz,
                      chain=problem.chain, imus=problem.imus, bodies=chain.body_names,
                      seeds=np.asarray(seeds, np.int64), settings=settings)


def cached(path: Path, problem: Problem, kind: str, n: int, duration_s: float,
           rate_hz: float = 100.0, noisy: bool = True) -> ImuDataset:
    """Load ``path`` if it exists, else generate ``n`` sequences of seed range ``kind`` and save
    (``kind`` "stress": with the problem's stress settings)."""
    if path.exists():
        ds = load_dataset(path)
        if ds.n_sequences == n and ds.imus == problem.imus and abs(ds.duration_s - duration_s) < 1e-6:
            return ds
        log.warning("%s does not match the requested set (%d x %.0f s); regenerating", path, n,
                    duration_s)
    seeds = np.arange(SEEDS[kind], SEEDS[kind] + n)
    ds = generate(problem, seeds, duration_s, rate_hz, noisy, stress=kind == "stress")
    ds.save(path)
    return ds


def encode_targets(problem: Problem, chain: Chain, q_rel: np.ndarray) -> np.ndarray:
    """Targets (..., n_out) float32 from true q_rel (..., n_bodies, 4): sincos of hinges, quats."""
    return encode_outputs(chain, problem.outputs, q_rel)
