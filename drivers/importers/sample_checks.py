"""Checks on imported samples: finite, plausible values and rates; sensor clock steps.

Limits are far beyond any real IMU (a 400 g shock accelerometer, 50,000 deg/s) so
only damaged or mis-mapped data is refused; the error names the file, the row
(line) and the column.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from drivers.importers.imported_stream import ImportFileError

log = logging.getLogger("imuflow.importers")

MAX_RATE_HZ = 100_000.0
LIMITS = {"acc": (4000.0, "m/s^2"), "gyr": (1000.0, "rad/s"), "mag": (1e6, "uT"),
          "time": (2.0**62, "ns"), "counter": (2.0**62, "")}


def check_rate(rate_hz: object, where: str) -> float:
    """``rate_hz`` as a float if it is a finite rate in (0, 100 kHz]; else ImportFileError."""
    try:
        rate = float(rate_hz)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ImportFileError(f"{where}: sample rate {rate_hz!r} is not a number (Hz)") from None
    if not math.isfinite(rate) or not 0 < rate <= MAX_RATE_HZ:
        raise ImportFileError(f"{where}: sample rate {rate_hz!r} Hz must be a finite number "
                              f"above 0 and at most {MAX_RATE_HZ:g}")
    return rate


def check_column(path: Path | str, column: str, values: np.ndarray, group: str,
                 lines: np.ndarray | None = None, *, allow_nan: bool = False) -> None:
    """Refuse non-finite or absurd ``values`` (SI units of ``group``) naming file, row, column.

    ``lines``: the file line (or row) of each value; None: the index counts from 1.
    """
    limit, unit = LIMITS[group]
    v = np.asarray(values, dtype=np.float64)
    bad = ~(np.abs(v) <= limit)
    if allow_nan:
        bad &= ~np.isnan(v)
    if not bad.any():
        return
    i = int(np.flatnonzero(bad)[0])
    row = int(lines[i]) if lines is not None else i + 1
    what = "not a finite number" if not np.isfinite(v[i]) else (
        f"beyond +-{limit:g} {unit}".rstrip())
    raise ImportFileError(f"{path}:{row}: column '{column}' is {float(v[i])!r}: {what} "
                          f"({int(bad.sum())} such values in the file)")


def report_clock_steps(t_host: np.ndarray, rate_hz: float, where: str) -> dict[str, int]:
    """Log and return how often a stream's time steps back or jumps ahead (> 1 s over nominal).

    Samples stay in file order whatever their times (a sensor's clock may step).
    """
    dt = np.diff(np.asarray(t_host, np.int64))
    back = np.flatnonzero(dt < 0)
    period = 1e9 / rate_hz if rate_hz > 0 else 0.0
    ahead = np.flatnonzero(dt > period + 1e9)
    if len(back):
        i = int(back[0])
        log.warning("%s: the clock steps back %d time(s), first after sample %d (%+.6f s); "
                    "samples are kept in file order", where, len(back), i + 1, dt[i] / 1e9)
    if len(ahead):
        i = int(ahead[0])
        log.warning("%s: the clock jumps ahead %d time(s), first after sample %d (%+.3f s)",
                    where, len(ahead), i + 1, dt[i] / 1e9)
    return {"clock_steps_back": int(len(back)), "clock_jumps": int(len(ahead))}
