"""Generic CSV: any table of IMU samples, with a mapping of columns to fields and units.

A mapping entry is ``field=Column[:unit]`` (CLI ``--map acc_x=AccX:g``) or, in
YAML, ``columns: {acc_x: "AccX:g", t_sensor: "time:ms"}``. Fields: ``t_sensor``,
``t_host``, ``counter``, ``acc_x/y/z``, ``gyr_x/y/z``, ``mag_x/y/z``. Units:
time ``s``/``ms``/``us``/``ns``; acc ``m/s^2``/``g``; gyr ``rad/s``/``deg/s``;
mag ``uT``/``nT``/``gauss``. acc and gyr are required; without a time column
``rate_hz`` is required and ``t_host`` is synthesised as index / rate_hz; without
``t_host`` it is the sensor time minus its first value (``meta.t_host``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from drivers.importers.imported_stream import ImportedStream, ImportFileError
from drivers.importers.numeric_rows import number, numeric_rows
from drivers.importers.sample_checks import check_column, check_rate, report_clock_steps
from pipeline.runtime.config_yaml import load_yaml
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.streams import RAW_IMU, RAW_IMU_DTYPE

G = 9.80665  # m/s^2 per g
UNITS: dict[str, dict[str, float]] = {
    "time": {"s": 1e9, "ms": 1e6, "us": 1e3, "ns": 1.0},
    "acc": {"m/s^2": 1.0, "g": G},
    "gyr": {"rad/s": 1.0, "deg/s": math.pi / 180.0},
    "mag": {"uT": 1.0, "nT": 1e-3, "gauss": 100.0},
    "counter": {"1": 1.0},
}
FIELDS = {"t_sensor": "time", "t_host": "time", "counter": "counter",
          **{f"{v}_{a}": v for v in ("acc", "gyr", "mag") for a in "xyz"}}
DEFAULT_UNIT = {"time": "s", "acc": "m/s^2", "gyr": "rad/s", "mag": "uT", "counter": "1"}


def parse_mapping(items: list[str] | dict[str, str]) -> dict[str, tuple[str, str]]:
    """``["acc_x=AccX:g", ...]`` or ``{acc_x: "AccX:g"}`` -> {field: (column, unit)}; checked."""
    pairs = items.items() if isinstance(items, dict) else [_split_eq(i) for i in items]
    out = {}
    for field, spec in pairs:
        if field not in FIELDS:
            raise ValueError(f"mapping '{field}={spec}': unknown field '{field}'; fields: "
                             f"{', '.join(FIELDS)}")
        column, _, unit = str(spec).rpartition(":") if ":" in str(spec) else (str(spec), "", "")
        group = FIELDS[field]
        unit = unit or DEFAULT_UNIT[group]
        if unit not in UNITS[group]:
            raise ValueError(f"mapping '{field}={spec}': unit '{unit}' unknown for {group}; "
                             f"use one of {', '.join(UNITS[group])}")
        out[field] = (column, unit)
    need = [f"{v}_{a}" for v in ("acc", "gyr") for a in "xyz"]
    missing = [f for f in need if f not in out]
    if missing:
        raise ValueError(f"mapping lacks {', '.join(missing)} (acc and gyr are required)")
    return out


def _split_eq(item: str) -> tuple[str, str]:
    field, sep, spec = item.partition("=")
    if not sep:
        raise ValueError(f"mapping '{item}' must be FIELD=COLUMN[:UNIT], e.g. acc_x=AccX:g")
    return field.strip(), spec.strip()


def load_mapping_file(path: str | Path) -> dict:
    """A YAML mapping file: ``columns`` (required), ``rate_hz``, ``name``, ``delimiter``,
    ``skip_rows``."""
    path = Path(path)
    try:
        doc = load_yaml(path)  # size and alias limits, file:line errors
    except ConfigError as exc:
        raise ImportFileError(f"mapping file {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("columns"), dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in doc["columns"].items()):
        raise ImportFileError(f"{path}: a mapping file needs 'columns: {{field: \"Column:unit\"}}'")
    unknown = set(doc) - {"columns", "rate_hz", "name", "delimiter", "skip_rows"}
    if unknown:
        raise ImportFileError(f"{path}: unknown keys {sorted(unknown)}; allowed: columns, "
                              "rate_hz, name, delimiter, skip_rows")
    if "rate_hz" in doc:
        doc["rate_hz"] = check_rate(doc["rate_hz"], f"{path}: 'rate_hz'")
    skip = doc.get("skip_rows", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or not 0 <= skip <= 10_000:
        raise ImportFileError(f"{path}: 'skip_rows' must be an integer 0..10000, got {skip!r}")
    delim = doc.get("delimiter", ",")
    if not isinstance(delim, str) or len(delim) != 1:
        raise ImportFileError(f"{path}: 'delimiter' must be one character, got {delim!r}")
    return doc


def _mapped_rows(path: Path, raw: list[tuple[int, list[str]]], header: list[str],
                 index: dict[str, int]) -> tuple[dict[str, list[float]], list[int]]:
    """Each mapped field's values over the data rows, and the rows' file lines
    (``numeric_rows``: a malformed row refused by line and column, the last one cut short
    skipped)."""
    def parse(row: list[str]) -> list[float]:
        for j in index.values():
            if j >= len(row):
                raise ValueError(f"row has {len(row)} fields, column '{header[j]}' is field "
                                 f"{j + 1}")
        return [number(row[j], header[j]) for j in index.values()]

    rows, lines = numeric_rows(path, raw, parse)
    return {field: [r[k] for r in rows] for k, field in enumerate(index)}, lines


def read_csv(path: str | Path, mapping: dict[str, tuple[str, str]], *,
             rate_hz: float | None = None, name: str | None = None, delimiter: str = ",",
             skip_rows: int = 0) -> ImportedStream:
    """Read one CSV file into an imu.raw stream (RAW_IMU_DTYPE, SI units)."""
    path = Path(path)
    try:
        f = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot open: {exc.strerror}") from None
    with f:
        reader = csv.reader(f, delimiter=delimiter)
        for _ in range(skip_rows):
            next(reader, None)
        header = next(reader, None)
        head_line = skip_rows + 1
        if header is None:
            raise ImportFileError(f"{path}: empty file (no header row at line {head_line})")
        header = [h.strip() for h in header]
        index = {}
        for field, (column, _) in mapping.items():
            if column not in header:
                raise ImportFileError(f"{path}:{head_line}: column '{column}' (for {field}) not "
                                      f"in the header; columns: {', '.join(header)}")
            index[field] = header.index(column)
        raw = [(lineno, row) for lineno, row in enumerate(reader, start=head_line + 1)
               if any(c.strip() for c in row)]
    values, linenos = _mapped_rows(path, raw, header, index)
    n = len(values["acc_x"])
    if n == 0:
        raise ImportFileError(f"{path}: no samples after the header (line {head_line})")
    if rate_hz is not None:
        rate_hz = check_rate(rate_hz, f"{path}: rate_hz (--rate-hz)")
    data = np.zeros(n, RAW_IMU_DTYPE)
    scaled = {f: np.asarray(v) * UNITS[FIELDS[f]][mapping[f][1]] for f, v in values.items()}
    lines = np.asarray(linenos)
    for f, v in scaled.items():
        check_column(path, mapping[f][0], v, FIELDS[f], lines)
    for v in ("acc", "gyr", "mag"):
        if all(f"{v}_{a}" in scaled for a in "xyz"):
            data[v] = np.stack([scaled[f"{v}_{a}"] for a in "xyz"], 1)
        else:
            data[v] = math.nan
    data["counter"] = np.round(scaled["counter"]).astype(np.int64) if "counter" in scaled \
        else np.arange(n)
    data["t_sensor"] = np.round(scaled["t_sensor"]).astype(np.int64) if "t_sensor" in scaled \
        else -1
    if "t_host" in scaled:
        data["t_host"] = np.round(scaled["t_host"]).astype(np.int64)
        how = "from the file"
    elif "t_sensor" in scaled:
        data["t_host"] = data["t_sensor"] - data["t_sensor"][0]
        how = "synthesised: sensor time minus its first value"
    elif rate_hz:
        data["t_host"] = np.round(np.arange(n) * (1e9 / rate_hz)).astype(np.int64)
        how = "synthesised: row index / rate_hz"
    else:
        raise ImportFileError(f"{path}: no time column mapped (t_sensor or t_host); give "
                              "rate_hz (--rate-hz) so times can be made from the row index")
    if rate_hz is None:
        dt = np.diff(data["t_host"])
        if not len(dt) or np.median(dt) <= 0:
            raise ImportFileError(f"{path}: the sample rate cannot be told from the time column "
                                  "(one row, or times not increasing); give rate_hz (--rate-hz)")
        rate_hz = check_rate(1e9 / np.median(dt), f"{path}: rate from the time column")
    steps = report_clock_steps(data["t_host"], rate_hz, str(path))
    return ImportedStream(name or path.stem, RAW_IMU, data, rate_hz, meta={
        **steps, "source_file": str(path), "t_host": how,
        "mapping": {f: f"{c}:{u}" for f, (c, u) in mapping.items()}})
