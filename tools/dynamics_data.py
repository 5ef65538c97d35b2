"""Training data for learned inverse dynamics: the simulated arm5 and the synthetic 1-D series.

Arm (configs/chains/arm5.yaml, 5 hinges, fixed base, 100 Hz): random reaching moves
(``generate_motion`` at reaching speeds: mean joint speed <= 1.5 rad/s, acceleration <= 10
rad/s^2, rests) with pushing phases (a constant force of 5-20 N at the tool tip, earth frame)
and payloads of 0-1.5 kg at the tool tip that change every 5-15 s. The "measured" torque:

    tau = NewtonEuler(q, qd, qdd; payload, push) + friction(qd) + elasticity(q) + noise

friction per joint: Coulomb ``Fc tanh(qd / 0.01)`` + viscous ``Fv qd`` + Stribeck
``(Fs - Fc) exp(-(qd / vs)^2) tanh(qd / 0.01)``; elasticity: a joint spring
``k (q - q0)``; sensor noise: q 1e-3 rad, qd 0.01 rad/s, qdd 0.2 rad/s^2 (as inputs) and torque
0.05 N m (sd). The rigid-body model alone is Newton-Euler with the nominal inertia, no payload,
no push, no friction or elasticity.

``tau_mean`` is the best any model of q, qd and qdd can do: the expected torque given the true
motion (Newton-Euler with the mean payload, no push, plus friction and springs). Payloads and
pushes are drawn per phase and do not show in the motion, so the rest of ``tau - tau_mean`` is
unpredictable from the inputs; a model that fits it has memorised its training phases.

Synthetic (Rueckert et al. 2017, section on synthetic data, as imuflow reads it): a sine, a
triangle and a sawtooth wave of period 1-3 s sampled at 100 Hz, noise sd 0.01 or 0.1 added to
the inputs; the task is one-step-ahead prediction of the clean wave from the noisy samples.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.dynamics import InverseDynamics  # noqa: E402
from pipeline.kinematics.chain import load_chain  # noqa: E402
from pipeline.kinematics.inertia import ChainInertia, chain_inertia  # noqa: E402
from pipeline.kinematics.motion import MotionSettings, generate_motion  # noqa: E402

ARM5 = ROOT / "configs" / "chains" / "arm5.yaml"
RATE_HZ = 100.0
TOOL = np.array([0.0, 0.0, 0.12])  # m, tool tip in link5's frame
FC = np.array([0.8, 0.9, 0.6, 0.25, 0.2])  # N m, Coulomb
FS = np.array([1.2, 1.3, 0.9, 0.35, 0.3])  # N m, static (Stribeck peak)
FV = np.array([0.6, 0.7, 0.45, 0.15, 0.12])  # N m s/rad, viscous
VS = 0.05  # rad/s, Stribeck velocity
K_ELASTIC = np.array([0.0, 2.0, 1.2, 0.0, 0.3])  # N m/rad, joint springs
Q0 = np.array([0.0, 0.3, -0.4, 0.0, 0.0])  # rad, spring rest angles
NOISE = {"q": 1e-3, "qd": 0.01, "qdd": 0.2, "tau": 0.05}
PAYLOAD_KG = (0.0, 1.5)  # uniform per phase
REACHING = MotionSettings(max_rate_rad_s=1.5, max_acc_rad_s2=10.0, seg_min_s=0.5,
                          seg_max_s=3.0, rest_prob=0.3, amplitude_min=0.05)


@dataclass
class ArmData:
    """Arm samples: x (N, 15) = q, qd, qdd (noisy inputs); tau (N, 5) measured; tau_rb (N, 5)
    rigid-body (nominal) from the noisy inputs; tau_mean (N, 5) expected torque (true motion)."""

    x: np.ndarray
    tau: np.ndarray
    tau_rb: np.ndarray
    tau_mean: np.ndarray


def friction(qd: np.ndarray) -> np.ndarray:
    """Coulomb + viscous + Stribeck friction torque (N m) of joint rates qd (..., 5) rad/s."""
    s = np.tanh(qd / 0.01)
    return FC * s + FV * qd + (FS - FC) * np.exp(-(qd / VS) ** 2) * s


def with_payload(base: ChainInertia, mass_kg: float) -> ChainInertia:
    """Inertia with a point mass at the tool tip of link5 (the last body)."""
    mass, com, tensor = base.mass.copy(), base.com.copy(), base.tensor.copy()
    m0, c0 = mass[-1], com[-1]
    m = m0 + mass_kg
    c = (m0 * c0 + mass_kg * TOOL) / m
    d0, d1 = c0 - c, TOOL - c
    par = lambda mm, d: mm * (d @ d * np.eye(3) - np.outer(d, d))  # noqa: E731
    tensor[-1] = tensor[-1] + par(m0, d0) + par(mass_kg, d1)
    mass[-1], com[-1] = m, c
    return ChainInertia(mass, com, tensor)


def arm_episode(seconds: float, seed: int) -> ArmData:
    """One recording of ``seconds`` at 100 Hz."""
    rng = np.random.default_rng(seed)
    chain = load_chain(ARM5)
    base = chain_inertia(chain)
    motion = generate_motion(chain, seconds + 1.0, rng, REACHING)
    t = np.arange(round(seconds * RATE_HZ)) / RATE_HZ
    q, qd, qdd = motion.q(t), motion.qd(t), motion.qdd(t)
    nominal = InverseDynamics(chain, base)
    tau_rb, _ = nominal.torques_batch(q, qd, qdd)
    tau = np.empty_like(tau_rb)
    start = 0
    while start < len(t):  # payload and push phases
        n = int(rng.uniform(5, 15) * RATE_HZ)
        sl = slice(start, min(start + n, len(t)))
        dyn = InverseDynamics(chain, with_payload(base, rng.uniform(*PAYLOAD_KG)),
                              external=["link5"])
        ext = np.zeros((sl.stop - sl.start, 1, 9))
        ext[:, 0, 6:] = TOOL
        if rng.random() < 0.4:  # pushing against something: constant force at the tool tip
            ext[:, 0, :3] = rng.normal(size=3) / math.sqrt(3) * rng.uniform(5, 20)
        tau[sl], _ = dyn.torques_batch(q[sl], qd[sl], qdd[sl], ext)
        start = sl.stop
    tau += friction(qd) + K_ELASTIC * (q - Q0)
    mean_dyn = InverseDynamics(chain, with_payload(base, sum(PAYLOAD_KG) / 2), external=["link5"])
    ext = np.zeros((len(t), 1, 9))
    ext[:, 0, 6:] = TOOL
    tau_mean, _ = mean_dyn.torques_batch(q, qd, qdd, ext)  # torque is linear in the payload mass
    tau_mean += friction(qd) + K_ELASTIC * (q - Q0)
    tau += rng.normal(0, NOISE["tau"], tau.shape)
    x = np.concatenate([q + rng.normal(0, NOISE["q"], q.shape),
                        qd + rng.normal(0, NOISE["qd"], qd.shape),
                        qdd + rng.normal(0, NOISE["qdd"], qdd.shape)], axis=1)
    tau_rb_noisy, _ = nominal.torques_batch(x[:, :5], x[:, 5:10], x[:, 10:])
    return ArmData(x, tau, tau_rb_noisy, tau_mean)


def arm_data(n_samples: int, seed: int, episode_s: float = 60.0) -> ArmData:
    """``n_samples`` consecutive-in-episodes samples from episodes of ``episode_s``."""
    parts, have, k = [], 0, 0
    while have < n_samples:
        s = min(episode_s, (n_samples - have) / RATE_HZ)
        parts.append(arm_episode(max(s, 1.0), seed * 1000 + k))
        have += len(parts[-1].x)
        k += 1
    cat = lambda f: np.concatenate([getattr(p, f) for p in parts])[:n_samples]  # noqa: E731
    return ArmData(cat("x"), cat("tau"), cat("tau_rb"), cat("tau_mean"))


def wave(kind: str, n: int, noise_sd: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy input (n, 1) and clean next value (n, 1) of a sine/triangle/sawtooth series."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + 1) / RATE_HZ
    period = rng.uniform(1.0, 3.0)
    phase = (t / period + rng.uniform()) % 1.0
    if kind == "sine":
        y = np.sin(2 * np.pi * phase)
    elif kind == "triangle":
        y = 4 * np.abs(phase - 0.5) - 1
    elif kind == "sawtooth":
        y = 2 * phase - 1
    else:
        raise ValueError(kind)
    x = y[:-1] + rng.normal(0, noise_sd, n)
    return x[:, None], y[1:, None]
