"""Data contracts of the topics in DESIGN.md: sample dtypes and stream infos.

Every producer and consumer of a topic builds its arrays from these dtypes, so
units and frames are stated once, here:

``imu.raw``: one sample per row, from one sensor (``StreamInfo.source``)::

    t_sensor  int64    ns, device clock unwrapped (-1 if the device has none)
    t_host    int64    ns, host monotonic clock at receipt
    counter   int64    device packet counter (-1 if none)
    acc       f4 (3,)  m/s^2, specific force, sensor frame
    gyr       f4 (3,)  rad/s, angular rate, sensor frame
    mag       f4 (3,)  uT (or the device's normalised units, see meta), NaN if absent

``imu.frame``: all sensors of a chain aligned at the model rate::

    t_host    int64         ns, host monotonic clock of the frame
    acc       f4 (n_imu,3)  m/s^2, sensor frame
    gyr       f4 (n_imu,3)  rad/s, sensor frame
    flags     u1 (n_imu,)   FrameFlag bits per sensor

``chain.state``: observer estimate per frame::

    t_host    int64             ns, of the input frame
    q_rel     f4 (n_bodies,4)   w,x,y,z, body i relative to its parent (root: earth)
    angle     f4 (n_hinge,)     rad, hinge angles in chain order

``root.orientation``: root segment orientation (VQF)::

    t_host    int64   ns
    q         f4 (4,) w,x,y,z, root body to earth (z up)

``chain.pose``: world poses for display::

    t_host    int64             ns
    pos       f4 (n_bodies,3)   m, earth frame
    quat      f4 (n_bodies,4)   w,x,y,z, body to earth

``chain.torque``: inverse dynamics per frame (nodes/dynamics), generalised coordinates in the
chain's velocity layout (``meta["dofs"]`` names them, ``meta["units"]`` N m or N each)::

    t_host    int64          ns, of the state frame the estimate belongs to (delayed input)
    tau       f4 (n_dof,)    N m (hinge, spherical, free moment) or N (prismatic, free force)
    residual  f4 (6,)        N, N m: force and moment (about the root origin, earth frame)
                             the earth applies to the root; zero for a consistent floating base
    qd        f4 (n_dof,)    rad/s or m/s, the velocities used
    qdd       f4 (n_dof,)    rad/s^2 or m/s^2, the accelerations used
"""

from __future__ import annotations

from enum import IntFlag

import numpy as np

from pipeline.runtime.message import StreamInfo

RAW_IMU = "imu.raw"
FRAME = "imu.frame"
STATE = "chain.state"
ROOT = "root.orientation"
POSE = "chain.pose"
TRUTH = "chain.truth"
TORQUE = "chain.torque"
STATUS = "status"
ARRIVAL = "frame.arrival"

RAW_IMU_DTYPE = np.dtype([
    ("t_sensor", "<i8"), ("t_host", "<i8"), ("counter", "<i8"),
    ("acc", "<f4", (3,)), ("gyr", "<f4", (3,)), ("mag", "<f4", (3,)),
])


class FrameFlag(IntFlag):
    """Per-sensor flags of an ``imu.frame`` sample."""

    OK = 0
    INTERPOLATED = 1  # filled across a short gap (<= max_gap_s)
    MISSING = 2  # no data: values are NaN, never to be used as numbers
    INVALID = 4  # input was NaN or far beyond the sensor's range: values are NaN
    AT_REST = 8  # the filter detected rest over its window ending here (gyro bias estimation)
    SATURATED = 16  # an acc axis at the sensor's range: values kept, the true one may be larger


UNUSABLE = FrameFlag.MISSING | FrameFlag.INVALID  # a sensor flagged so has no data in the frame


def frames_usable(frames: np.ndarray) -> np.ndarray:
    """(n,) bool: ``imu.frame`` samples in which every sensor has data (no UNUSABLE flag,
    finite acc m/s^2 and gyr rad/s); observers hold their estimate through the others."""
    ok = ~np.bitwise_and(frames["flags"], UNUSABLE).any(axis=1)
    return (ok & np.isfinite(frames["acc"]).all(axis=(1, 2))
            & np.isfinite(frames["gyr"]).all(axis=(1, 2)))


def frame_dtype(n_imu: int) -> np.dtype:
    """Sample dtype of ``imu.frame`` for ``n_imu`` sensors."""
    return np.dtype([("t_host", "<i8"), ("acc", "<f4", (n_imu, 3)), ("gyr", "<f4", (n_imu, 3)),
                     ("flags", "u1", (n_imu,))])


def state_dtype(n_bodies: int, n_hinge: int) -> np.dtype:
    """Sample dtype of ``chain.state`` for a chain of ``n_bodies`` with ``n_hinge`` hinges."""
    return np.dtype([("t_host", "<i8"), ("q_rel", "<f4", (n_bodies, 4)),
                     ("angle", "<f4", (n_hinge,))])


ROOT_DTYPE = np.dtype([("t_host", "<i8"), ("q", "<f4", (4,))])

# frame.arrival (sync, optional): per frame, its time (t_host, ns, as in imu.frame) and the
# host receive time (ns, monotonic) of the sensor message that completed it; for latency
# measurements from packet arrival, as a frame's own t_host is its grid time
ARRIVAL_DTYPE = np.dtype([("t_host", "<i8"), ("t_arrival", "<i8")])


def pose_dtype(n_bodies: int) -> np.dtype:
    """Sample dtype of ``chain.pose`` for ``n_bodies``."""
    return np.dtype([("t_host", "<i8"), ("pos", "<f4", (n_bodies, 3)),
                     ("quat", "<f4", (n_bodies, 4))])


def torque_dtype(n_dof: int) -> np.dtype:
    """Sample dtype of ``chain.torque`` for ``n_dof`` generalised coordinates."""
    return np.dtype([("t_host", "<i8"), ("tau", "<f4", (n_dof,)), ("residual", "<f4", (6,)),
                     ("qd", "<f4", (n_dof,)), ("qdd", "<f4", (n_dof,))])


def raw_imu_info(stream: str, source: str, rate_hz: float, **meta: object) -> StreamInfo:
    """Stream info of one sensor's ``imu.raw`` stream."""
    return StreamInfo.for_array(
        stream, RAW_IMU, RAW_IMU_DTYPE, rate_hz=rate_hz, source=source,
        channels=RAW_IMU_DTYPE.names, units=("ns", "ns", "1", "m/s^2", "rad/s", "uT"),
        meta=dict(meta, frame="sensor"))


def frame_info(stream: str, imus: list[str], rate_hz: float, **meta: object) -> StreamInfo:
    """Stream info of an ``imu.frame`` stream for the sensors ``imus`` (in order)."""
    dt = frame_dtype(len(imus))
    return StreamInfo.for_array(stream, FRAME, dt, rate_hz=rate_hz, channels=dt.names,
                                units=("ns", "m/s^2", "rad/s", "1"),
                                meta=dict(meta, imus=list(imus), frame="sensor"))
