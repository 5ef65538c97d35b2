"""BROAD HDF5 trials (Laidig et al., Data 2021): raw IMU stream plus optical ground truth.

Datasets: ``imu_acc`` (N, 3) m/s^2, ``imu_gyr`` (N, 3) rad/s, ``imu_mag`` (N, 3) uT,
``opt_quat`` (N, 4) w,x,y,z IMU to ENU (NaN where the cameras lost the marker),
``movement`` (N,) bool (samples to score); attribute ``sampling_rate`` in Hz.
There is no device clock: ``t_sensor`` is -1, ``counter`` the sample index and
``t_host`` is synthesised as index / sampling_rate in ns (``meta.t_host``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from drivers.importers.imported_stream import (
    ORIENTATION_TRUTH,
    ORIENTATION_TRUTH_DTYPE,
    ImportedStream,
    ImportFileError,
)
from drivers.importers.sample_checks import check_column, check_rate
from pipeline.runtime.streams import RAW_IMU, RAW_IMU_DTYPE

log = logging.getLogger("imuflow.importers.broad_hdf5")

DATASETS = {"imu_acc": 3, "imu_gyr": 3, "imu_mag": 3, "opt_quat": 4, "movement": 0}


def read_trial(path: str | Path, name: str = "imu") -> list[ImportedStream]:
    """Read one trial: ``[imu.raw stream, orientation.truth stream]`` named ``name``."""
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot open as HDF5: {exc}") from None
    with f:
        arrays = {}
        for key, width in DATASETS.items():
            if key not in f:
                raise ImportFileError(f"{path}: dataset '{key}' missing; a BROAD trial has "
                                      f"{', '.join(DATASETS)}")
            arr = np.asarray(f[key])
            shape_ok = arr.ndim == 1 if width == 0 else (arr.ndim == 2 and arr.shape[1] == width)
            if not shape_ok:
                raise ImportFileError(f"{path}: dataset '{key}' has shape {arr.shape}, expected "
                                      f"(N{', %d' % width if width else ''})")
            arrays[key] = arr
        if "sampling_rate" not in f.attrs:
            raise ImportFileError(f"{path}: attribute 'sampling_rate' missing")
        rate = f.attrs["sampling_rate"]
        rate_hz = check_rate(rate.item() if isinstance(rate, np.ndarray) and rate.size == 1
                             else rate, f"{path}: attribute 'sampling_rate'")
    n = len(arrays["imu_acc"])
    bad = [k for k, a in arrays.items() if len(a) != n]
    if bad:
        raise ImportFileError(f"{path}: datasets {', '.join(bad)} do not have {n} rows "
                              "like imu_acc")
    for key, group in (("imu_acc", "acc"), ("imu_gyr", "gyr"), ("imu_mag", "mag")):
        for axis in range(3):
            check_column(path, f"{key}[:, {axis}]", arrays[key][:, axis], group)
    t_host = np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)
    raw = np.zeros(n, RAW_IMU_DTYPE)
    raw["t_sensor"] = -1
    raw["t_host"] = t_host
    raw["counter"] = np.arange(n)
    raw["acc"] = arrays["imu_acc"]
    raw["gyr"] = arrays["imu_gyr"]
    raw["mag"] = arrays["imu_mag"]
    truth = np.zeros(n, ORIENTATION_TRUTH_DTYPE)
    truth["t_host"] = t_host
    truth["q"] = arrays["opt_quat"]
    truth["movement"] = arrays["movement"].astype(np.uint8)
    how = "synthesised: sample index / sampling_rate (the dataset has no clock)"
    meta = {"source_file": str(path), "dataset": "BROAD", "t_host": how}
    log.info("%s: %d samples at %.4g Hz", path, n, rate_hz)
    return [ImportedStream(name, RAW_IMU, raw, rate_hz, meta=dict(meta, mag_units="uT")),
            ImportedStream(name, ORIENTATION_TRUTH, truth, rate_hz,
                           meta=dict(meta, frame="ENU", q="w,x,y,z sensor to ENU, NaN if lost",
                                     movement="1 where the dataset scores errors"))]
