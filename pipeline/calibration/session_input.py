"""IMU signals of a recorded session on one time grid, as the calibration needs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.calibration.phases import host_window, parse_window
from pipeline.calibration.sensor_to_segment import Calibration, calibrate
from pipeline.kinematics.chain import Chain
from pipeline.recording.resample import raw_on_grid
from pipeline.recording.session_reader import read_streams
from pipeline.runtime.streams import RAW_IMU

MAX_GAP_S = 0.1  # s without a sample: a dropout, left out (the sync node's max_gap_s default)


def imu_from_session(path: str | Path, imus: tuple[str, ...], rate_hz: float,
                     sensors: dict[str, str] | None = None
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """acc (m/s^2) and gyr (rad/s) per IMU, sensor frames, linearly resampled at rate_hz Hz,
    and the grid's first time (t_host, ns).

    The grid spans the time all ``imus`` overlap (their ``imu.raw`` streams' t_host, the
    stream source being the IMU name, or mapped to it by ``sensors``: recorded name ->
    IMU site, as a graph's ``sensors:``). ValueError names the file and the missing sensors.
    """
    path = Path(path)
    names = sensors or {}
    raw = {names.get(s.info.source, s.info.source): s.data for s in read_streams(path).values()
           if s.info.kind == RAW_IMU}
    return imu_on_grid(raw, imus, rate_hz, str(path))


def imu_on_grid(raw: dict[str, np.ndarray], imus: tuple[str, ...], rate_hz: float,
                where: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """:func:`imu_from_session` on samples in memory: ``raw`` maps IMU names to arrays with
    fields ``t_host`` (ns), ``acc`` (3,) m/s^2 and ``gyr`` (3,) rad/s (sensor frame), e.g.
    ``imu.raw`` records. ``where`` names the data in errors. Grid times in a sensor's gap of
    more than MAX_GAP_S are NaN."""
    missing = [m for m in imus if m not in raw or not len(raw[m])]
    if missing:
        raise ValueError(f"{where}: no '{RAW_IMU}' stream for IMU(s) {missing}; the session has "
                         f"{sorted(raw)} (rename them with `imuflow import ... --name OLD=NEW`)")
    t0 = max(int(raw[m]["t_host"].min()) for m in imus)
    t1 = min(int(raw[m]["t_host"].max()) for m in imus)
    if t1 <= t0:
        raise ValueError(f"{where}: the sensors {list(imus)} do not overlap in time")
    grid = t0 + np.arange(int((t1 - t0) * 1e-9 * rate_hz) + 1) * (1e9 / rate_hz)  # ns
    acc, gyr = {}, {}
    for m in imus:  # a sensor's dropout stays a gap (NaN): the calibration leaves it out
        acc[m], gyr[m] = raw_on_grid(raw[m], grid, MAX_GAP_S * 1e9)
    return acc, gyr, t0


def calibrate_session(path: str | Path, chain: Chain, rate_hz: float = 100.0,
                      static: str | None = None, functional: str | None = None,
                      sensors: dict[str, str] | None = None, chain_name: str = "",
                      static_ns: tuple[int, int] | None = None,
                      functional_ns: tuple[int, int] | None = None,
                      pose: str | None = None) -> Calibration:
    """Calibrate the chain's IMUs from a recorded procedure (the static window holding
    ``pose``, a name of ``still_pose.pose_names``; None: the neutral pose, or found).

    Windows as ``T0:T1`` s from the start, or as host-clock times (``*_ns``: t_host ns, as a
    live procedure marks its phases), or found in the data. ValueError / CalibrationError say
    what is wrong with the recording or the windows.
    """
    acc, gyr, t0_ns = imu_from_session(path, chain.imu_names, rate_hz, sensors)
    return _calibrate_grid(chain, acc, gyr, t0_ns, rate_hz, static, functional, static_ns,
                           functional_ns, chain_name or chain.name, str(path), pose)


def calibrate_samples(raw: dict[str, np.ndarray], chain: Chain, rate_hz: float,
                      static_ns: tuple[int, int], functional_ns: tuple[int, int],
                      chain_name: str = "", source: str = "live procedure",
                      pose: str | None = None) -> Calibration:
    """Calibrate from samples captured live (``raw`` as for :func:`imu_on_grid`) with the
    procedure's host-clock phases (:meth:`~pipeline.calibration.procedure.ProcedureClock.windows`).
    """
    acc, gyr, t0_ns = imu_on_grid(raw, chain.imu_names, rate_hz, source)
    return _calibrate_grid(chain, acc, gyr, t0_ns, rate_hz, None, None, static_ns,
                           functional_ns, chain_name or chain.name, source, pose)


def _calibrate_grid(chain: Chain, acc: dict, gyr: dict, t0_ns: int, rate_hz: float,
                    static: str | None, functional: str | None,
                    static_ns: tuple[int, int] | None, functional_ns: tuple[int, int] | None,
                    chain_name: str, source: str, pose: str | None) -> Calibration:
    n = min(len(a) for a in acc.values())
    static_w = parse_window(static, rate_hz, n, "--static") if static else None
    functional_w = parse_window(functional, rate_hz, n, "--functional") if functional else None
    if static_ns is not None:
        static_w = host_window(static_ns, t0_ns, rate_hz, n, "the still pose")
    if functional_ns is not None:
        functional_w = host_window(functional_ns, t0_ns, rate_hz, n, "the joint motion")
    return calibrate(chain, acc, gyr, rate_hz, static_w, functional_w, chain_name=chain_name,
                     source=source, pose=pose)
