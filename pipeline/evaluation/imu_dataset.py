"""Sequence datasets of IMU input with ground truth: the npz file used by training and ``imuflow eval``.

File format (``numpy.savez`` or ``savez_compressed``; S sequences of T samples each)::

    imu       (S, T, n_imu*6) float32   per IMU acc_x acc_y acc_z (m/s^2) gyr_x gyr_y gyr_z
                                         (rad/s), sensor frame, IMUs in ``imus`` order
    q_rel     (S, T, n_bodies, 4) float32  true body->parent quaternions w,x,y,z
                                         (root: body->earth, z up), bodies in chain order;
                                         NaN where there is none (not scored)
    rate_hz   () float64                 sample rate, Hz
    chain     () str                     chain file (path relative to the repository)
    imus      (n_imu,) str               IMU site names, input order
    bodies    (n_bodies,) str            body names, chain order
    seeds     (S,) int64                 simulator seed of each sequence (-1 if recorded)
    settings  () str                     JSON of the generator settings (free form)

``dataset_from_session`` turns an MCAP session with ground truth (``chain.truth`` of
``pipeline.runtime.streams.state_dtype``, e.g. recorded from ``drivers.sim``) into a one-sequence
dataset: each IMU's ``imu.raw`` stream (``StreamInfo.source`` = IMU site name) is linearly
interpolated onto the truth's ``t_host`` stamps.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

log = logging.getLogger("imuflow.imu_dataset")

_REQUIRED = ("imu", "q_rel", "rate_hz", "chain", "imus", "bodies")


@dataclass(frozen=True)
class ImuDataset:
    """S sequences of IMU input (S, T, n_imu*6) float32 SI with true q_rel (S, T, n, 4) wxyz."""

    imu: np.ndarray
    q_rel: np.ndarray
    rate_hz: float
    chain: str
    imus: tuple[str, ...]
    bodies: tuple[str, ...]
    seeds: np.ndarray
    settings: dict = field(default_factory=dict)

    @property
    def n_sequences(self) -> int:
        """Number of sequences S."""
        return int(self.imu.shape[0])

    @property
    def duration_s(self) -> float:
        """Length of each sequence, s."""
        return self.imu.shape[1] / self.rate_hz

    def resampled(self, rate_hz: float) -> ImuDataset:
        """The sequences on a grid at ``rate_hz`` Hz over the same span (from the first
        sample): IMU signals linearly interpolated, as the sync node puts live samples on its
        grid; q_rel interpolated linearly along the shorter arc and normalised."""
        n_old = self.imu.shape[1]
        if n_old < 2 or not rate_hz > 0:
            raise ValueError(f"cannot resample {n_old} samples to {rate_hz} Hz")
        t_old = np.arange(n_old) / self.rate_hz
        n_new = int(np.floor((n_old - 1) * rate_hz / self.rate_hz + 1e-9)) + 1
        t_new = np.arange(n_new) / rate_hz
        i = np.clip(np.searchsorted(t_old, t_new, side="right") - 1, 0, n_old - 2)
        w = ((t_new - t_old[i]) * self.rate_hz)[None, :, None]  # (1, T', 1), in [0, 1]
        imu = self.imu[:, i] * (1.0 - w) + self.imu[:, i + 1] * w
        q0, q1 = self.q_rel[:, i].astype(np.float64), self.q_rel[:, i + 1].astype(np.float64)
        q1 = np.where(np.sum(q0 * q1, axis=-1, keepdims=True) < 0.0, -q1, q1)
        q = q0 * (1.0 - w[..., None]) + q1 * w[..., None]
        q /= np.linalg.norm(q, axis=-1, keepdims=True)
        return replace(self, imu=imu.astype(np.float32), q_rel=q.astype(np.float32),
                       rate_hz=float(rate_hz))

    def save(self, path: str | Path, compressed: bool = False) -> None:
        """Write the dataset as an npz file (compressed: smaller, slower to read; for files
        kept in the repository)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".part.npz")
        write = np.savez_compressed if compressed else np.savez
        write(tmp, imu=self.imu.astype(np.float32), q_rel=self.q_rel.astype(np.float32),
              rate_hz=np.float64(self.rate_hz), chain=np.str_(self.chain),
              imus=np.array(self.imus, dtype=str), bodies=np.array(self.bodies, dtype=str),
              seeds=np.asarray(self.seeds, dtype=np.int64),
              settings=np.str_(json.dumps(self.settings)))
        tmp.replace(path)
        log.info("wrote %s: %d sequences x %.1f s", path, self.n_sequences, self.duration_s)


def load_dataset(path: str | Path) -> ImuDataset:
    """Read a dataset npz file (format in the module docstring); errors name the file and key."""
    path = Path(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: dataset file not found") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable npz dataset: {exc}") from None
    with z:
        missing = [k for k in _REQUIRED if k not in z.files]
        if missing:
            raise ValueError(f"{path}: dataset lacks key(s) {missing}; expected the format of "
                             "pipeline/evaluation/imu_dataset.py (write it with ImuDataset.save)")
        imu, q_rel = z["imu"], z["q_rel"]
        imus, bodies = tuple(str(s) for s in z["imus"]), tuple(str(s) for s in z["bodies"])
        if imu.ndim != 3 or imu.shape[2] != 6 * len(imus):
            raise ValueError(f"{path}: 'imu' must be (S, T, {6 * len(imus)}) for IMUs {imus}, "
                             f"got {imu.shape}")
        if q_rel.shape != imu.shape[:2] + (len(bodies), 4):
            raise ValueError(f"{path}: 'q_rel' must be {imu.shape[:2] + (len(bodies), 4)}, "
                             f"got {q_rel.shape}")
        seeds = z["seeds"] if "seeds" in z.files else np.full(len(imu), -1, np.int64)
        settings = json.loads(str(z["settings"])) if "settings" in z.files else {}
        return ImuDataset(imu=imu, q_rel=q_rel, rate_hz=float(z["rate_hz"]), chain=str(z["chain"]),
                          imus=imus, bodies=bodies, seeds=seeds, settings=settings)


def dataset_from_session(path: str | Path, imus: tuple[str, ...], chain: str,
                         bodies: tuple[str, ...]) -> ImuDataset:
    """One-sequence dataset from an MCAP session: imu.raw of ``imus`` resampled onto chain.truth."""
    from pipeline.recording.resample import raw_on_grid
    from pipeline.recording.session_reader import read_streams
    from pipeline.runtime.streams import RAW_IMU, TRUTH

    path = Path(path)
    streams = read_streams(path)
    truths = [s for s in streams.values() if s.info.kind == TRUTH]
    if not truths:
        raise ValueError(f"{path}: no '{TRUTH}' stream; evaluation needs ground truth "
                         "(record a simulated session, e.g. with drivers.sim); for angles "
                         "without ground truth use 'imuflow track SESSION -o angles.csv'")
    truth = truths[0].data
    if truth["q_rel"].shape[1:] != (len(bodies), 4):
        raise ValueError(f"{path}: '{TRUTH}' q_rel has shape {truth['q_rel'].shape[1:]}, the "
                         f"model's chain {chain} has {len(bodies)} bodies")
    raw = {s.info.source: s.data for s in streams.values() if s.info.kind == RAW_IMU}
    missing = [n for n in imus if n not in raw]
    if missing:
        raise ValueError(f"{path}: no '{RAW_IMU}' stream for IMU(s) {missing}; the session has "
                         f"{sorted(raw)}")
    t = truth["t_host"].astype(np.int64)
    imu = np.concatenate([np.concatenate(raw_on_grid(raw[name], t), axis=1) for name in imus],
                         axis=1).astype(np.float32)[None]
    dt = np.diff(t)
    rate_hz = 1e9 / float(np.median(dt)) if len(dt) else 0.0
    return ImuDataset(imu=imu, q_rel=truth["q_rel"][None].astype(np.float32), rate_hz=rate_hz,
                      chain=chain, imus=tuple(imus), bodies=tuple(bodies),
                      seeds=np.array([-1]), settings={"source": str(path)})


__all__ = ["ImuDataset", "dataset_from_session", "load_dataset"]
