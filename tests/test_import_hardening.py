"""Importers under bad input: clock steps keep sensor order; bad rates and values are refused.

Every refusal names the file, the row (line) and the column; `imuflow import` then
exits non-zero without a traceback and leaves no partial .mcap behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from drivers.importers import ImportFileError, broad_hdf5, generic_csv, movella_dot_csv
from drivers.importers.session_import import import_session
from pipeline.recording.session_reader import SessionReader, read_streams
from pipeline.runtime.atomic_file import atomic_path, atomic_text
from tests.test_importers import CSV_MAP, HEADER, _broad_file, _csv, _dot_file, _imuflow


def _dot_rows(path: Path, rows: list[str], rate: str = "60Hz") -> Path:
    path.write_text(HEADER.format(tag=path.stem).replace("60Hz", rate) + "\n".join(rows) + "\n")
    return path


def _row(counter: int, t_us: float, acc_x: str = "0.1") -> str:
    return f"{counter},{t_us},{acc_x},0.2,9.8,1,-180.0,90.0,0.5,0.1,-1.0"


def test_a_clock_step_back_keeps_each_sensor_in_file_order(tmp_path, caplog):
    """The report's case: counters 1441, 1501, 1442, 1502... after a sensor clock stepped back."""
    a = _dot_file(tmp_path / "femur.csv", "Femur", 5000, 120)
    rows = [_row(k, 5000 + k * 16667) for k in range(60)]
    rows += [_row(k, 5000 + (k - 60) * 16667) for k in range(60, 120)]  # clock back by 1 s
    b = _dot_rows(tmp_path / "tibia.csv", rows)
    out = tmp_path / "s.mcap"
    with caplog.at_level(logging.WARNING):
        _, streams = import_session([a, b], out)
    assert "tibia.csv (sensor 'tibia'): the clock steps back 1 time(s), first after sample 60" \
        in caplog.text
    assert {s.name: s.meta["clock_steps_back"] for s in streams} == {"femur": 0, "tibia": 1}
    with SessionReader(out) as reader:
        counters: dict[str, list[int]] = {}
        for runs in reader.runs():
            for run in runs:
                data = np.frombuffer(run.payload_bytes(0, len(run)).tobytes(),
                                     run.channel.info.np_dtype)
                counters.setdefault(run.channel.info.source, []).extend(data["counter"].tolist())
    for name in ("femur", "tibia"):
        assert counters[name] == sorted(counters[name]) and len(counters[name]) == 120
    stored = read_streams(out)["import/imu.raw:tibia"]
    assert np.all(np.diff(stored.data["counter"]) == 1)
    assert np.all(np.diff(stored.log_time) >= 0)  # log time never steps back


@pytest.mark.parametrize("rate", ["0Hz", "nanHz", "-60Hz", "infHz"])
def test_movella_bad_output_rate_is_refused(tmp_path, rate):
    path = _dot_rows(tmp_path / "a.csv", [_row(k, 5000 + k * 16667) for k in range(5)], rate)
    with pytest.raises(ImportFileError, match=rf"{path}: header 'OutputRate': sample rate"):
        movella_dot_csv.read_file(path)


@pytest.mark.parametrize("cell, column", [("nan", "SampleTimeFine"), ("inf", "Acc_X"),
                                          ("1e300", "Acc_X"), ("-inf", "Gyr_Y")])
def test_movella_non_finite_or_absurd_value_names_file_row_column(tmp_path, cell, column):
    rows = [_row(k, 5000 + k * 16667) for k in range(5)]
    parts = rows[2].split(",")
    parts[["PacketCounter", "SampleTimeFine", "Acc_X", "Acc_Y", "Acc_Z", "Gyr_X",
           "Gyr_Y"].index(column)] = cell
    rows[2] = ",".join(parts)
    path = _dot_rows(tmp_path / "a.csv", rows)
    with pytest.raises(ImportFileError, match=rf"{path}:15: column '{column}' is "):
        movella_dot_csv.read_file(path)


@pytest.mark.parametrize("rate", [0.0, "fast", -5.0, float("nan")])
def test_broad_bad_sampling_rate_is_refused(tmp_path, rate):
    path = _broad_file(tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        f.attrs["sampling_rate"] = rate
    with pytest.raises(ImportFileError, match=rf"{path}: attribute 'sampling_rate': sample rate"):
        broad_hdf5.read_trial(path)


def test_broad_absurd_acc_is_refused(tmp_path):
    path = _broad_file(tmp_path / "t.hdf5")
    with h5py.File(path, "a") as f:
        f["imu_acc"][4, 1] = np.inf
    with pytest.raises(ImportFileError, match=r"t.hdf5:5: column 'imu_acc\[:, 1\]' is inf"):
        broad_hdf5.read_trial(path)


def test_generic_csv_bad_rate_and_values(tmp_path):
    path = _csv(tmp_path / "log.csv")
    no_time = generic_csv.parse_mapping(CSV_MAP[:-1])
    for rate in (-100.0, 0.0, float("inf")):
        with pytest.raises(ImportFileError, match=r"rate_hz \(--rate-hz\): sample rate"):
            generic_csv.read_csv(path, no_time, rate_hz=rate, delimiter=";", skip_rows=1)
    bad = _csv(tmp_path / "bad.csv", bad="20;0;1e300;1;0;0;0;x")
    with pytest.raises(ImportFileError, match=rf"{bad}:5: column 'AY' is 9.80665e\+300"):
        generic_csv.read_csv(bad, generic_csv.parse_mapping(CSV_MAP), delimiter=";",
                             skip_rows=1)


@pytest.mark.parametrize("text, message", [
    ("columns: [a, b]", "needs 'columns"),
    ("columns: {acc_x: AX}\nrate_hz: -100", "'rate_hz': sample rate"),
    ("columns: {acc_x: AX}\nskip_rows: many", "'skip_rows' must be an integer"),
    ("columns: {acc_x: AX}\ncolour: red", "unknown keys"),
    ("columns: {acc_x: [AX\n", "not valid YAML"),
    ("\xff\xfe", "the file is UTF-16"),
    ("columns: {acc_x: AX}\n\xe9", "map.yaml:2: not UTF-8 text"),
])
def test_malformed_map_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "map.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(ImportFileError, match=message):
        generic_csv.load_mapping_file(path)
    src = _csv(tmp_path / "log.csv")
    out = tmp_path / "x.mcap"
    proc = _imuflow("import", str(src), "-o", str(out), "--map-file", str(path))
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_failed_import_leaves_no_partial_mcap_and_keeps_an_old_one(tmp_path):
    rows = [_row(k, 5000 + k * 16667) for k in range(50)]
    rows[40] = _row(40, 5000 + 40 * 16667, acc_x="nan")
    bad = _dot_rows(tmp_path / "a.csv", rows)
    out = tmp_path / "s.mcap"
    proc = _imuflow("import", str(bad), "-o", str(out))
    assert proc.returncode == 2 and "a.csv:53: column 'Acc_X' is nan" in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".s.mcap*"))
    out.write_bytes(b"previous session")
    proc = _imuflow("import", str(bad), "-o", str(out))
    assert out.read_bytes() == b"previous session"


def test_atomic_path_writes_whole_or_nothing(tmp_path):
    target = tmp_path / "f.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"abc" and list(tmp_path.iterdir()) == [target]


def test_atomic_text_whole_or_nothing_with_the_mode_open_gives(tmp_path):
    target = tmp_path / "angles.csv"
    old = os.umask(0o022)
    try:
        with atomic_text(target) as f:
            f.write("t,knee\n")
    finally:
        os.umask(old)
    assert target.read_text() == "t,knee\n"
    assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600: others may read it
    with pytest.raises(RuntimeError):
        with atomic_text(target) as f:
            f.write("partial")
            raise RuntimeError("disk full")
    assert target.read_text() == "t,knee\n" and list(tmp_path.iterdir()) == [target]
