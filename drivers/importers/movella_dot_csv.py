"""Movella DOT CSV exports (firmware 3.x): per-sensor raw arrays, several files aligned in time.

File layout: 11 header lines (``sep=,``, ``DeviceTag:,Femur``, ``OutputRate:,60Hz``,
``SyncStatus:,Synced``, ...), a blank line, the column header
``PacketCounter,SampleTimeFine,Acc_X,...,Mag_Z``, then one row per sample.
Units in the file: acc m/s^2, gyr deg/s (converted to rad/s), mag in the
device's normalised units (kept, ``meta.mag_units``). SampleTimeFine is the
sensor clock in microseconds, 32 bit: unwrapped and converted to ``t_sensor`` ns.

The measurement modes with delta quantities instead (``dq_W..dq_Z``, the orientation
increment, and ``dv[1]..dv[3]``, the velocity increment in m/s, each over one output
interval dt = 1/OutputRate) are read too: acc = dv / dt, gyr = dq's rotation vector / dt.
Files written by the DOT SDK's logger (header values padded with commas, ", " between
fields, a trailing empty column, a leading ``Label`` column) read the same; columns
imuflow does not use (Quat, Euler, FreeAcc, Status, Label, ...) are not parsed.

``t_host`` is synthesised (there was no host clock in the export): sensor time
minus the session's earliest first sample, i.e. ns since the session start on
the shared sensor clock (``meta.t_host = "synthesised: ..."``). Files of one
session are aligned by that clock when every file says ``SyncStatus: Synced``,
else by PacketCounter at the output rate (logged as a warning). A synced export is not
always on one clock: ``shoulder_tracking`` says Synced, yet its two files' SampleTimeFine
differ by 4.19 s throughout while their StartTime headers differ by 8 ms and their gyroscopes
move together by PacketCounter. So the clock is checked against the StartTime headers
(wall clock, ms): where a file's start on the sensor clock is more than
``MAX_START_DISAGREEMENT_S`` from its start by the header, the files are aligned by
PacketCounter instead (logged as a warning naming the file and both offsets).
"""

from __future__ import annotations

import csv
import logging
import math
from datetime import datetime
from pathlib import Path

import numpy as np

from drivers.importers.imported_stream import ImportedStream, ImportFileError
from drivers.importers.numeric_rows import number, numeric_rows
from drivers.importers.sample_checks import check_column, check_rate, report_clock_steps
from pipeline.runtime.streams import RAW_IMU, RAW_IMU_DTYPE

log = logging.getLogger("imuflow.importers.movella_dot_csv")

HEADER_LINES = 11
CLOCK = ("PacketCounter", "SampleTimeFine")
RATES = ("Acc_X", "Acc_Y", "Acc_Z", "Gyr_X", "Gyr_Y", "Gyr_Z")  # m/s^2, deg/s
DELTAS = ("dq_W", "dq_X", "dq_Y", "dq_Z", "dv[1]", "dv[2]", "dv[3]")  # per 1/OutputRate; m/s
MAG = ("Mag_X", "Mag_Y", "Mag_Z")
MAX_DQ_NORM_ERROR = 0.01  # a dq further from a unit quaternion is damaged data
# s: the most a file's start on the shared sensor clock may differ from its start by its
# StartTime header (the app's wall clock, stamped over BLE: tens of ms apart on one start)
MAX_START_DISAGREEMENT_S = 0.5


def _unwrap(raw: np.ndarray, modulus: int) -> np.ndarray:
    """Unwrap a counter that wraps at ``modulus`` (steps back of more than half are wraps)."""
    steps = np.diff(raw)
    wraps = np.concatenate(([0], np.cumsum(steps < -modulus // 2)))
    return raw + wraps * modulus


def is_column_header(line: str) -> bool:
    """Whether ``line`` is a DOT export's column header (PacketCounter, SampleTimeFine, ...)."""
    fields = {c.strip() for c in line.split(",")}
    return all(c in fields for c in CLOCK)


def read_header(path: Path) -> tuple[dict[str, str], list[str], int]:
    """Header key/values, column names and the 1-based line of the column header."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot read as text: {exc}") from None
    meta: dict[str, str] = {}
    for i, line in enumerate(lines[:HEADER_LINES + 2]):
        if is_column_header(line):
            return meta, [c.strip() for c in line.split(",")], i + 1
        key, _, value = line.partition(",")
        if key.strip():  # the SDK's logger pads every header line with commas
            meta[key.strip().rstrip(":").strip()] = value.strip().rstrip(",").strip()
    raise ImportFileError(f"{path}: no column header 'PacketCounter,SampleTimeFine,...' within "
                       f"the first {HEADER_LINES + 2} lines; is this a Movella DOT CSV export?")


def read_file(path: str | Path) -> tuple[dict[str, str], dict[str, np.ndarray], float]:
    """Parse one export: header dict, columns (float64 arrays by name; a delta-quantities
    export gets Acc_X..Gyr_Z too, m/s^2 and deg/s as in a rate-quantities one), output rate in
    Hz."""
    path = Path(path)
    meta, cols, header_line = read_header(path)
    used = _used_columns(path, cols, header_line)
    rate_text = meta.get("OutputRate", "")
    try:
        rate_hz = float(rate_text.lower().removesuffix("hz"))
    except ValueError:
        raise ImportFileError(f"{path}: header 'OutputRate' is {rate_text!r}, expected e.g. "
                           "'60Hz'") from None
    rate_hz = check_rate(rate_hz, f"{path}: header 'OutputRate'")
    table, lines = _read_rows(path, header_line, cols, used)
    columns = {c: table[:, k] for k, c in enumerate(used)}
    for c in used:
        group = _GROUPS.get(c.split("_")[0])
        if group is not None:
            check_column(path, c, np.deg2rad(columns[c]) if group == "gyr" else columns[c],
                         group, lines)
    if "dq_W" in columns:
        columns.update(_rates_from_increments(path, columns, rate_hz, lines))
    return meta, columns, rate_hz


_GROUPS = {"PacketCounter": "counter", "SampleTimeFine": "time", "Acc": "acc", "Gyr": "gyr",
           "Mag": "mag"}


def _read_rows(path: Path, header_line: int, cols: list[str], used: dict[str, int],
               ) -> tuple[np.ndarray, np.ndarray]:
    """The used columns of every data row (float64, rows x used) and each row's file line
    (``numeric_rows``: a malformed row refused by line and field, the last one cut short
    skipped)."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        raw = [(lineno, row) for lineno, row in enumerate(csv.reader(f), start=1)
               if lineno > header_line and any(c.strip() for c in row)]

    def parse(row: list[str]) -> list[float]:
        if len(row) != len(cols):
            raise ValueError(f"{len(row)} fields, the header has {len(cols)} "
                             f"({', '.join(cols)})")
        return [number(row[j], c) for c, j in used.items()]

    rows, lines = numeric_rows(path, raw, parse)
    if not rows:
        raise ImportFileError(f"{path}: no samples after the column header (line {header_line})")
    return np.asarray(rows, np.float64), np.asarray(lines)


def _used_columns(path: Path, cols: list[str], header_line: int) -> dict[str, int]:
    """The columns imuflow reads (clock, rates or deltas, mag if all three) -> field index."""
    index = {c: j for j, c in enumerate(cols) if c}
    inertial = next((group for group in (RATES, DELTAS) if all(c in index for c in group)), None)
    missing = [c for c in CLOCK if c not in index]
    if missing or inertial is None:
        raise ImportFileError(
            f"{path}:{header_line}: missing columns "
            f"{', '.join(missing + [c for c in RATES if c not in index])}: imuflow needs "
            "PacketCounter, SampleTimeFine and the inertial data, Acc_X..Gyr_Z (rate "
            "quantities) or dq_W..dv[3] (delta quantities); found "
            f"{', '.join(c for c in cols if c)}. Export the recording in a measurement mode "
            "with inertial data (not orientation or free acceleration only)")
    wanted = CLOCK + inertial + (MAG if all(c in index for c in MAG) else ())
    return {c: index[c] for c in wanted}


def _rates_from_increments(path: Path, columns: dict[str, np.ndarray], rate_hz: float,
                           lines: np.ndarray) -> dict[str, np.ndarray]:
    """Acc_X..Gyr_Z as a rate-quantities export has them (m/s^2, deg/s) from dq (w, x, y, z)
    and dv (m/s) over 1/rate_hz; refuses, by row, a dq that is no unit quaternion and rates
    beyond the limits."""
    dq = np.stack([columns[c] for c in DELTAS[:4]], 1)
    norm = np.linalg.norm(dq, axis=1, keepdims=True)
    bad = np.flatnonzero(~(np.abs(norm[:, 0] - 1.0) <= MAX_DQ_NORM_ERROR))
    if len(bad):
        i = int(bad[0])
        raise ImportFileError(f"{path}:{int(lines[i])}: dq_W..dq_Z is not a unit quaternion "
                              f"(norm {norm[i, 0]:.4f}; {len(bad)} such rows)")
    dq = dq / norm * np.where(dq[:, :1] < 0, -1.0, 1.0)  # unit, the short way round
    sin_half = np.linalg.norm(dq[:, 1:], axis=1, keepdims=True)
    angle = 2.0 * np.arctan2(sin_half, dq[:, :1])
    axis = np.divide(dq[:, 1:], sin_half, out=np.zeros_like(dq[:, 1:]), where=sin_half > 0)
    acc = np.stack([columns[c] for c in DELTAS[4:]], 1) * rate_hz
    gyr = axis * angle * rate_hz
    for a, axis_name in enumerate("XYZ"):
        check_column(path, f"dv[{a + 1}]", acc[:, a], "acc", lines)
        check_column(path, f"dq_{axis_name}", gyr[:, a], "gyr", lines)
    return {**{f"Acc_{n}": acc[:, a] for a, n in enumerate("XYZ")},
            **{f"Gyr_{n}": np.degrees(gyr[:, a]) for a, n in enumerate("XYZ")}}


def read_session(paths: list[str | Path]) -> list[ImportedStream]:
    """Read the exports of one session and align them on one synthesised host timeline."""
    parsed = [(Path(p), *read_file(p)) for p in paths]
    synced = all(m.get("SyncStatus", "").lower() == "synced" for _, m, _, _ in parsed)
    if not synced:
        log.warning("not every file says 'SyncStatus: Synced'; aligning by PacketCounter")
    t_us = {p: _unwrap(c["SampleTimeFine"].astype(np.int64), 1 << 32) for p, _, c, _ in parsed}
    unshared = _clock_not_shared(parsed, t_us) if synced else None
    if unshared:
        log.warning("the files say 'SyncStatus: Synced' but %s: the sensor clocks are not one "
                    "clock; aligning by PacketCounter", unshared)
        synced = False
    ctr = {p: _unwrap(c["PacketCounter"].astype(np.int64), 1 << 16) for p, _, c, _ in parsed}
    t0 = min(int(t[0]) for t in t_us.values())
    c0 = min(int(c[0]) for c in ctr.values())
    out = []
    names: set[str] = set()
    for path, meta, cols, rate_hz in parsed:
        n = len(cols["SampleTimeFine"])
        data = np.zeros(n, RAW_IMU_DTYPE)
        data["t_sensor"] = t_us[path] * 1000
        if synced:
            data["t_host"] = (t_us[path] - t0) * 1000
            how = "synthesised: sensor clock (SampleTimeFine) minus the session's first sample"
        else:
            data["t_host"] = np.round((ctr[path] - c0) * (1e9 / rate_hz)).astype(np.int64)
            how = "synthesised: PacketCounter / OutputRate from the session's first packet"
            if unshared:
                how += f" (SampleTimeFine not one clock: {unshared})"
        data["counter"] = ctr[path]
        data["acc"] = np.stack([cols[f"Acc_{a}"] for a in "XYZ"], 1)
        data["gyr"] = np.deg2rad(np.stack([cols[f"Gyr_{a}"] for a in "XYZ"], 1))
        gyr_from = (f"dq over 1/{rate_hz:g} s (delta quantities; acc from dv)"
                    if "dq_W" in cols else "deg/s")
        data["mag"] = (np.stack([cols[m] for m in MAG], 1) if all(m in cols for m in MAG)
                       else math.nan)
        name = _sensor_name(meta.get("DeviceTag") or path.stem, names)
        steps = report_clock_steps(data["t_host"], rate_hz, f"{path} (sensor '{name}')")
        out.append(ImportedStream(name, RAW_IMU, data, rate_hz, meta={**steps,
            "source_file": str(path), "vendor": "Movella DOT", "t_host": how,
            "gyr_from": gyr_from, "mag_units": "normalised (device units)",
            "firmware": meta.get("FirmwareVersion", ""), "start_time": meta.get("StartTime", ""),
            "filter_profile": meta.get("FilterProfile", "")}))
        log.info("%s: sensor '%s', %d samples at %g Hz", path, name, n, rate_hz)
    return out


def _clock_not_shared(parsed: list, t_us: dict[Path, np.ndarray]) -> str | None:
    """Why the files' SampleTimeFine is not one clock (a file's start on it more than
    MAX_START_DISAGREEMENT_S s from its start by its StartTime header), or None (it agrees, or
    a header is missing or unreadable: nothing to check against)."""
    starts = {p: _start_time_s(m.get("StartTime", "")) for p, m, _, _ in parsed}
    if len(starts) < 2 or None in starts.values():
        return None
    first_clock = min(int(t[0]) for t in t_us.values())
    first_header = min(starts.values())
    for path, start in starts.items():
        by_clock = (int(t_us[path][0]) - first_clock) / 1e6
        by_header = start - first_header
        if abs(by_clock - by_header) > MAX_START_DISAGREEMENT_S:
            return (f"{path.name} starts {by_clock:.3f} s into the session by SampleTimeFine "
                    f"and {by_header:.3f} s by its StartTime header")
    return None


def _start_time_s(text: str) -> float | None:
    """A StartTime header ('2024-12-09_17:42:07_993 CET') in s (wall clock, zone ignored: one
    session's files share it), or None when it does not parse."""
    for fields, layout in ((1, "%Y-%m-%d_%H:%M:%S_%f"), (2, "%Y-%m-%d %H:%M:%S.%f")):
        try:  # the app's layout; the SDK logger's ('2024-12-09 17:42:07.993 +0100')
            return datetime.strptime(" ".join(text.split()[:fields]), layout).timestamp()
        except ValueError:
            continue
    return None


def _sensor_name(tag: str, taken: set[str]) -> str:
    base = "".join(ch if ch.isalnum() else "_" for ch in tag.strip().lower()).strip("_") or "dot"
    name, k = base, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
