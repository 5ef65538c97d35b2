"""Importers: Movella DOT CSV, BROAD HDF5, generic mapped CSV, and `imuflow import`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from drivers.importers import (
    ORIENTATION_TRUTH,
    ORIENTATION_TRUTH_DTYPE,
    ImportFileError,
    broad_hdf5,
    generic_csv,
    movella_dot_csv,
)
from pipeline.recording.session_reader import SessionReader, read_streams
from pipeline.runtime.streams import RAW_IMU_DTYPE

REPO = Path(__file__).resolve().parents[1]
HEADER = """sep=,
DeviceTag:,{tag}
FirmwareVersion:,3.0.0
AppVersion:,2023.6.0
SyncStatus:,Synced
OutputRate:,60Hz
FilterProfile:,General
Measurement Mode:,Inertial data Mode - Rate Quantities(with mag)
StartTime: ,2024-12-09_17:31:07_886 CET
\u00a9 Movella Technologies B. V. 2005-2024

PacketCounter,SampleTimeFine,Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,Gyr_Z,Mag_X,Mag_Y,Mag_Z
"""


def _dot_file(path: Path, tag: str, t0_us: int, n: int, first_counter: int = 1,
              start: str = "2024-12-09_17:31:07_886") -> Path:
    rows = []
    for k in range(n):
        t = (t0_us + k * 16667) % (1 << 32)
        rows.append(f"{first_counter + k},{t},0.1,0.2,9.8,{k},-180.0,90.0,0.5,0.1,-1.0")
    path.write_text(HEADER.format(tag=tag).replace("2024-12-09_17:31:07_886", start)
                    + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_movella_dot_session_is_unwrapped_converted_and_aligned(tmp_path: Path):
    t0 = (1 << 32) - 3 * 16667  # the sensor clock wraps after three samples
    a = _dot_file(tmp_path / "femur.csv", "Femur", t0, 10)
    b = _dot_file(tmp_path / "tibia.csv", "Tibia", t0 + 16667, 10, first_counter=2)
    femur, tibia = movella_dot_csv.read_session([a, b])
    assert (femur.name, tibia.name) == ("femur", "tibia")
    assert femur.data.dtype == RAW_IMU_DTYPE and femur.rate_hz == 60.0
    assert np.all(np.diff(femur.data["t_sensor"]) == 16667 * 1000)  # across the 2^32 wrap
    assert femur.data["t_host"][0] == 0 and tibia.data["t_host"][0] == 16667 * 1000
    np.testing.assert_allclose(femur.data["gyr"][0], np.deg2rad([0.0, -180.0, 90.0]), rtol=1e-6)
    np.testing.assert_allclose(femur.data["acc"][0], [0.1, 0.2, 9.8], rtol=1e-6)
    assert list(tibia.data["counter"][:2]) == [2, 3]
    assert "synthesised" in femur.meta["t_host"]


def test_movella_dot_synced_clocks_that_disagree_with_start_times_align_by_counter(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    # as shoulder_tracking: 'Synced', started together (StartTime 8 ms apart, counters from 1),
    # yet one SampleTimeFine 4.19 s ahead of the other throughout
    a = _dot_file(tmp_path / "chest.csv", "chest", 1_684_680_312, 10,
                  start="2024-12-09_17:42:07_993")
    b = _dot_file(tmp_path / "upperarm.csv", "upperarm", 1_680_494_506, 10,
                  start="2024-12-09_17:42:07_985")
    with caplog.at_level("WARNING", logger="imuflow.importers.movella_dot_csv"):
        chest, arm = movella_dot_csv.read_session([a, b])
    assert chest.data["t_host"][0] == arm.data["t_host"][0] == 0
    assert "chest.csv starts 4.186 s into the session by SampleTimeFine and 0.008 s" in caplog.text
    assert "PacketCounter" in chest.meta["t_host"] and "not one clock" in chest.meta["t_host"]
    assert chest.data["t_sensor"][0] == 1_684_680_312_000  # the sensor clock itself is kept
    # the same files with StartTime headers that match their clocks stay on SampleTimeFine
    a = _dot_file(tmp_path / "chest.csv", "chest", 1_684_680_312, 10,
                  start="2024-12-09_17:42:12_171")
    chest, arm = movella_dot_csv.read_session([a, b])
    assert chest.data["t_host"][0] - arm.data["t_host"][0] == 4_185_806_000
    assert "SampleTimeFine" in chest.meta["t_host"] and "not one clock" not in chest.meta["t_host"]


def test_movella_dot_bad_cell_names_file_line_and_column(tmp_path: Path):
    path = _dot_file(tmp_path / "x.csv", "X", 1000, 5)
    lines = path.read_text().splitlines()
    lines[15] = lines[15].replace(",-180.0,", ",oops,")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFileError, match=rf"{path}:16: column 'Gyr_Y' is 'oops'"):
        movella_dot_csv.read_session([path])


def test_movella_dot_short_row_and_missing_header(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture):
    path = _dot_file(tmp_path / "x.csv", "X", 1000, 5)
    complete = path.read_text()
    path.write_text(complete + "6,2000,1.0\n7,3000,0.1,0.2,9.8,0,0,0,0.5,0.1,-1.0\n")
    with pytest.raises(ImportFileError, match=rf"{path}:18: 3 fields, the header has 11"):
        movella_dot_csv.read_file(path)
    # the last row cut short, as a recording that ended mid-write leaves it: skipped, said
    for cut in ("6,2000,1.0", "6,2000,0.1,0.2,9.8,0,0,0,0.5,0.1,-"):
        path.write_text(complete + cut)
        with caplog.at_level("WARNING", logger="imuflow.importers"):
            _, columns, _ = movella_dot_csv.read_file(path)
        assert len(columns["PacketCounter"]) == 5
        assert f"{path}:18: the last row is cut short" in caplog.text
        caplog.clear()
    other = tmp_path / "y.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ImportFileError, match="no column header 'PacketCounter"):
        movella_dot_csv.read_file(other)


def _sdk_logger_layout(app_export: Path, out: Path, *, deltas: bool, label: bool = False) -> Path:
    """An app export rewritten as the DOT SDK's logger writes files: header values padded with
    commas, StartTime as 'yyyy-MM-dd HH:mm:ss.SSS Z', ', ' between fields, a trailing empty
    column; delta quantities (dq, dv over 1/OutputRate) instead of rates when ``deltas``;
    a leading Label column when ``label``."""
    lines = app_export.read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PacketCounter"))
    rate = next(float(line.split(",")[1].removesuffix("Hz")) for line in lines
                if line.startswith("OutputRate"))
    head = []
    for line in lines[:header - 1]:
        if line.startswith("StartTime"):  # 2024-12-09_17:31:07_886 CET
            day, time_ms = line.split(",")[1].split()[0].split("_", 1)
            line = f"StartTime:,{day} {time_ms[:8]}.{time_ms[9:]} +0100"
        head.append(line if line.startswith("sep=") else line + ",,,,,,,,,,,,,,,,,")
    cols = lines[header].split(",")
    mag = "Mag_X" in cols
    names = ["PacketCounter", "SampleTimeFine"]
    names += (["dq_W", "dq_X", "dq_Y", "dq_Z", "dv[1]", "dv[2]", "dv[3]"] if deltas
              else ["Acc_X", "Acc_Y", "Acc_Z", "Gyr_X", "Gyr_Y", "Gyr_Z"])
    names += ["Mag_X", "Mag_Y", "Mag_Z"] if mag else []
    rows = []
    for line in lines[header + 1:]:
        v = dict(zip(cols, line.split(","), strict=True))
        acc = np.array([float(v[f"Acc_{a}"]) for a in "XYZ"])
        gyr = np.radians([float(v[f"Gyr_{a}"]) for a in "XYZ"])
        if deltas:
            rotvec = gyr / rate
            angle = np.linalg.norm(rotvec)
            axis = rotvec / angle if angle > 0 else rotvec
            inertial = [np.cos(angle / 2), *(axis * np.sin(angle / 2)), *(acc / rate)]
        else:
            inertial = [*acc, *np.degrees(gyr)]
        fields = [v["PacketCounter"], v["SampleTimeFine"], *(repr(float(x)) for x in inertial)]
        fields += [v[f"Mag_{a}"] for a in "XYZ"] if mag else []
        rows.append(("walk, " if label else "") + ", ".join(fields) + ", ")
    title = ("Label," if label else "") + ",".join(names) + ","
    out.write_text("\n".join(head + ["", title] + rows) + "\n", encoding="utf-8")
    return out


@pytest.mark.parametrize("deltas", [False, True])
def test_movella_dot_sdk_logger_files_and_delta_quantities(tmp_path: Path, deltas: bool):
    """Files as the DOT SDK's logger writes them, with rates or delta quantities, read as the
    app's export of the same samples (dq's rotation and dv over 1/OutputRate back to rad/s and
    m/s^2), still aligned by SampleTimeFine (its StartTime layout parsed)."""
    app = [_dot_file(tmp_path / "femur.csv", "Femur", 1000, 20),
           _dot_file(tmp_path / "tibia.csv", "Tibia", 1000 + 16667, 20, first_counter=2)]
    sdk = [_sdk_logger_layout(p, tmp_path / f"sdk_{p.name}", deltas=deltas, label=deltas)
           for p in app]
    assert "Femur,,,," in sdk[0].read_text() and ", \n" in sdk[0].read_text()
    for want, got in zip(movella_dot_csv.read_session(app), movella_dot_csv.read_session(sdk),
                         strict=True):
        assert got.name == want.name and got.rate_hz == want.rate_hz == 60.0
        for field in ("t_host", "t_sensor", "counter"):
            np.testing.assert_array_equal(got.data[field], want.data[field])
        for field in ("acc", "gyr", "mag"):
            np.testing.assert_allclose(got.data[field], want.data[field], rtol=0, atol=1e-5)
        assert ("dq over 1/60 s" in got.meta["gyr_from"]) == deltas
    # the StartTime headers were read: a 4 s disagreement with the clock is found
    text = sdk[1].read_text().replace("17:31:07.886", "17:31:11.886")
    sdk[1].write_text(text)
    assert "not one clock" in movella_dot_csv.read_session(sdk)[0].meta["t_host"]


def test_movella_dot_damaged_increments_and_orientation_only_exports(tmp_path: Path):
    sdk = _sdk_logger_layout(_dot_file(tmp_path / "x.csv", "X", 1000, 5), tmp_path / "sdk.csv",
                             deltas=True)
    lines = sdk.read_text().splitlines()
    fields = lines[14].split(", ")
    fields[2] = "0.5"  # dq_W: no unit quaternion
    lines[14] = ", ".join(fields)
    sdk.write_text("\n".join(lines) + "\n")
    with pytest.raises(ImportFileError, match=rf"{sdk}:15: dq_W..dq_Z is not a unit quaternion"):
        movella_dot_csv.read_file(sdk)
    quat = tmp_path / "quat.csv"
    quat.write_text(HEADER.format(tag="Q").replace(
        "Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,Gyr_Z,Mag_X,Mag_Y,Mag_Z",
        "Quat_W,Quat_X,Quat_Y,Quat_Z,FreeAcc_X,FreeAcc_Y,FreeAcc_Z") + "1,1000,1,0,0,0,0,0,0\n")
    with pytest.raises(ImportFileError, match=r"quat.csv:12: missing columns Acc_X.*Export the "
                       r"recording in a measurement mode with inertial data"):
        movella_dot_csv.read_file(quat)


def _broad_file(path: Path, n: int = 40, rate: float = 285.7142857142857) -> Path:
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.create_dataset("imu_acc", data=rng.normal(size=(n, 3)))
        f.create_dataset("imu_gyr", data=rng.normal(size=(n, 3)))
        f.create_dataset("imu_mag", data=rng.normal(size=(n, 3)) * 40)
        q = rng.normal(size=(n, 4))
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        q[5] = np.nan
        f.create_dataset("opt_quat", data=q)
        f.create_dataset("opt_pos", data=np.zeros((n, 3)))
        f.create_dataset("movement", data=np.arange(n) > 10)
        f.attrs["sampling_rate"] = rate
    return path


def test_broad_trial_gives_raw_and_orientation_truth(tmp_path: Path):
    path = _broad_file(tmp_path / "t.hdf5")
    raw, truth = broad_hdf5.read_trial(path)
    with h5py.File(path) as f:
        np.testing.assert_array_equal(raw.data["gyr"], f["imu_gyr"][:].astype(np.float32))
        np.testing.assert_array_equal(truth.data["q"], f["opt_quat"][:].astype(np.float32))
    assert truth.kind == ORIENTATION_TRUTH and truth.data.dtype == ORIENTATION_TRUTH_DTYPE
    assert list(truth.data["movement"][9:13]) == [0, 0, 1, 1]
    assert raw.data["t_host"][7] == round(7 * 1e9 / 285.7142857142857)
    assert np.all(raw.data["t_sensor"] == -1)


def test_broad_missing_dataset_is_named(tmp_path: Path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("imu_acc", data=np.zeros((3, 3)))
    with pytest.raises(ImportFileError, match=rf"{path}: dataset 'imu_gyr' missing"):
        broad_hdf5.read_trial(path)


CSV_MAP = ["acc_x=AX:g", "acc_y=AY:g", "acc_z=AZ:g", "gyr_x=GX:deg/s", "gyr_y=GY:deg/s",
           "gyr_z=GZ:deg/s", "t_sensor=time:ms"]


def _csv(path: Path, bad: str | None = None) -> Path:
    rows = ["time;AX;AY;AZ;GX;GY;GZ;extra"]
    for k in range(6):
        rows.append(f"{k * 10};0;0;1;{k * 10};0;-90;x")
    if bad:
        rows[3] = bad
    path.write_text("# logger v2\n" + "\n".join(rows) + "\n")
    return path


def test_generic_csv_maps_columns_and_units(tmp_path: Path):
    path = _csv(tmp_path / "log.csv")
    s = generic_csv.read_csv(path, generic_csv.parse_mapping(CSV_MAP), delimiter=";",
                             skip_rows=1)
    np.testing.assert_allclose(s.data["acc"][0], [0, 0, 9.80665], rtol=1e-6)
    np.testing.assert_allclose(s.data["gyr"][2], np.deg2rad([20, 0, -90]), rtol=1e-6)
    assert list(s.data["t_sensor"][:3]) == [0, 10_000_000, 20_000_000]
    assert s.rate_hz == pytest.approx(100.0) and np.all(np.isnan(s.data["mag"]))


def test_generic_csv_errors_name_file_line_column(tmp_path: Path):
    path = _csv(tmp_path / "log.csv", bad="20;0;zero;1;0;0;0;x")
    cols = generic_csv.parse_mapping(CSV_MAP)
    with pytest.raises(ImportFileError, match=rf"{path}:5: column 'AY' is 'zero'"):
        generic_csv.read_csv(path, cols, delimiter=";", skip_rows=1)
    with pytest.raises(ImportFileError,
                       match=rf"{path}:2: column 'AX' \(for acc_x\) not in the header"):
        generic_csv.read_csv(path, cols, delimiter=",", skip_rows=1)
    with pytest.raises(ValueError, match="unit 'furlong/s' unknown for gyr"):
        generic_csv.parse_mapping(CSV_MAP[:-2] + ["gyr_z=GZ:furlong/s"])
    with pytest.raises(ValueError, match="lacks gyr_z"):
        generic_csv.parse_mapping(CSV_MAP[:5])


def test_generic_csv_last_row_cut_short_is_skipped(tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture):
    """A logger that stopped mid-write leaves its last row cut short: skipped, with a warning
    naming the line; the same row anywhere else is refused."""
    path = _csv(tmp_path / "log.csv")
    complete = path.read_text()
    cols = generic_csv.parse_mapping(CSV_MAP)
    for cut in ("60;0;0;1;6", "60;0;0;1;60;0;-"):
        path.write_text(complete + cut)
        with caplog.at_level("WARNING", logger="imuflow.importers"):
            stream = generic_csv.read_csv(path, cols, delimiter=";", skip_rows=1)
        assert len(stream.data) == 6 and f"{path}:9: the last row is cut short" in caplog.text
        caplog.clear()
    path.write_text(complete + "60;0;0;1;6\n70;0;0;1;70;0;-90;x\n")
    with pytest.raises(ImportFileError, match=rf"{path}:9: row has 5 fields, column 'GY'"):
        generic_csv.read_csv(path, cols, delimiter=";", skip_rows=1)


def _imuflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO)


def _knee_pair(folder: Path) -> tuple[Path, Path]:
    """femur.csv and tibia.csv: 30 samples each, on one clock from 5000 us."""
    return (_dot_file(folder / "femur.csv", "Femur", 5000, 30),
            _dot_file(folder / "tibia.csv", "Tibia", 5000, 30))


def test_import_command_writes_a_replayable_session(tmp_path: Path):
    a, b = _knee_pair(tmp_path)
    out = tmp_path / "knee.mcap"
    proc = _imuflow("import", str(a), str(b), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    streams = read_streams(out)
    assert sorted(streams) == ["import/imu.raw:femur", "import/imu.raw:tibia"]
    expected = movella_dot_csv.read_session([a, b])[0].data
    assert streams["import/imu.raw:femur"].data.tobytes() == expected.tobytes()
    with SessionReader(out) as r:
        assert not list(r.runs()) == [] and not r.truncated


def test_import_command_renames_sensors_to_chain_sites(tmp_path: Path):
    a, b = _knee_pair(tmp_path)
    out = tmp_path / "knee.mcap"
    proc = _imuflow("import", str(a), str(b), "-o", str(out), "--name", "femur=thigh",
                    "--name", "tibia=shank")
    assert proc.returncode == 0, proc.stderr
    streams = read_streams(out)
    assert sorted(streams) == ["import/imu.raw:shank", "import/imu.raw:thigh"]
    assert streams["import/imu.raw:thigh"].info.source == "thigh"
    expected = movella_dot_csv.read_session([a, b])[0].data
    assert streams["import/imu.raw:thigh"].data.tobytes() == expected.tobytes()
    for bad, message in ((["--name", "knee=thigh"], "no sensor ['knee']"),
                         (["--name", "femur=tibia"], "two sensors would share a name"),
                         (["--name", "femur"], "expected OLD=NEW")):
        proc = _imuflow("import", str(a), str(b), "-o", str(tmp_path / "x.mcap"), *bad)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr
        assert not (tmp_path / "x.mcap").exists()


def test_import_command_shifts_a_sensor_in_time(tmp_path: Path):
    """--shift NAME=SECONDS (NAME after --name) moves that sensor's t_host, nothing else."""
    a, b = _knee_pair(tmp_path)
    out = tmp_path / "knee.mcap"
    proc = _imuflow("import", str(a), str(b), "-o", str(out), "--name", "tibia=shank",
                    "--shift", "shank=0.118")
    assert proc.returncode == 0, proc.stderr
    streams = read_streams(out)
    femur, tibia = movella_dot_csv.read_session([a, b])
    assert streams["import/imu.raw:femur"].data.tobytes() == femur.data.tobytes()
    shank = streams["import/imu.raw:shank"].data
    np.testing.assert_array_equal(shank["t_host"], tibia.data["t_host"] + 118_000_000)
    for field in ("t_sensor", "acc", "gyr"):
        np.testing.assert_array_equal(shank[field], tibia.data[field])
    for bad, message in ((["--shift", "tibia=0.1"], "--shift: no sensor ['tibia']"),
                         (["--shift", "shank=soon"], "expected NAME=SECONDS"),
                         (["--shift", "shank=nan"], "expected NAME=SECONDS")):
        proc = _imuflow("import", str(a), str(b), "-o", str(tmp_path / "x.mcap"),
                        "--name", "tibia=shank", *bad)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_import_command_takes_an_export_folder(tmp_path: Path):
    folder = tmp_path / "knee_tracking"
    folder.mkdir()
    a = _dot_file(folder / "femur.csv", "Femur", 5000, 30)
    b = _dot_file(folder / "tibia.csv", "Tibia", 5000, 30)
    (folder / "notes.npz").write_bytes(b"not a data file")  # other files are left alone
    out = tmp_path / "knee.mcap"
    proc = _imuflow("import", str(folder), "-o", str(out), "--name", "femur=thigh")
    assert proc.returncode == 0, proc.stderr
    streams = read_streams(out)
    assert sorted(streams) == ["import/imu.raw:thigh", "import/imu.raw:tibia"]
    expected = movella_dot_csv.read_session([a, b])[1].data
    assert streams["import/imu.raw:tibia"].data.tobytes() == expected.tobytes()
    with SessionReader(out) as r:
        assert json.loads(r.session["sources"]) == [str(a), str(b)]
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _imuflow("import", str(empty), "-o", str(tmp_path / "x.mcap"))
    assert proc.returncode != 0 and f"{empty}: a folder with no data files" in proc.stderr
    assert not (tmp_path / "x.mcap").exists()


def test_import_command_csv_mapping_and_errors(tmp_path: Path):
    path = _csv(tmp_path / "log.csv")
    out = tmp_path / "log.mcap"
    args = ["import", str(path), "-o", str(out), "--delimiter", ";", "--skip-rows", "1"]
    proc = _imuflow(*args)
    assert proc.returncode == 2 and "--map FIELD=COLUMN" in proc.stderr
    proc = _imuflow(*args, *[x for m in CSV_MAP for x in ("--map", m)])
    assert proc.returncode == 0, proc.stderr
    assert len(read_streams(out)["import/imu.raw:log"].data) == 6


@pytest.mark.realdata
def test_real_movella_dot_knee_session(realdata: Path):
    folder = realdata / "movella_dot" / "knee_tracking1"
    femur, tibia = movella_dot_csv.read_session([folder / "femur.csv", folder / "tibia.csv"])
    assert len(femur.data) > 3000 and len(tibia.data) > 3000
    for s in (femur, tibia):
        assert np.all(np.diff(s.data["t_sensor"]) > 0)
        dt = np.diff(s.data["t_host"]) / 1e6
        assert np.median(dt) == pytest.approx(1000 / 60, abs=0.1)
        g = np.linalg.norm(s.data["acc"][:30], axis=1)
        assert np.all(np.abs(g - 9.81) < 1.0)  # at rest at the start
        assert np.max(np.abs(s.data["gyr"])) < 35  # rad/s: converted from deg/s
    assert abs(int(femur.data["t_host"][0]) - int(tibia.data["t_host"][0])) < 20_000_000


@pytest.mark.realdata
def test_real_knee_session_as_delta_quantities_imports_the_same(realdata: Path,
                                                                tmp_path: Path):
    """knee_tracking1 rewritten as the SDK's logger would write it in a delta-quantities mode:
    `imuflow import` (format detected) gives the app export's samples back."""
    folder = realdata / "movella_dot" / "knee_tracking1"
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    for name in ("femur", "tibia"):
        _sdk_logger_layout(folder / f"{name}.csv", sdk / f"{name}.csv", deltas=True)
    out = tmp_path / "knee.mcap"
    proc = _imuflow("import", str(sdk), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    got = read_streams(out)
    for stream in movella_dot_csv.read_session([folder / "femur.csv", folder / "tibia.csv"]):
        data = got[f"import/imu.raw:{stream.name}"].data
        np.testing.assert_array_equal(data["t_host"], stream.data["t_host"])
        np.testing.assert_allclose(data["acc"], stream.data["acc"], rtol=0, atol=1e-4)
        np.testing.assert_allclose(data["gyr"], stream.data["gyr"], rtol=0, atol=1e-5)


@pytest.mark.realdata
def test_real_movella_dot_shoulder_session_aligns_by_counter(realdata: Path):
    """shoulder_tracking's SampleTimeFine is 4.19 s apart between its files: aligned by
    PacketCounter, the two sensors' angular rates move together at lag 0, not at 4.19 s."""
    folder = realdata / "movella_dot" / "shoulder_tracking"
    chest, arm = movella_dot_csv.read_session([folder / "chest.csv", folder / "upperarm.csv"])
    assert "PacketCounter" in chest.meta["t_host"]
    assert chest.data["t_host"][0] == arm.data["t_host"][0] == 0
    rate_a, rate_b = (np.linalg.norm(s.data["gyr"], axis=1) for s in (chest, arm))

    def corr(lag: int) -> float:  # chest sample k + lag against arm sample k
        a, b = rate_a[max(lag, 0):len(rate_a) + min(lag, 0)], rate_b[max(-lag, 0):]
        n = min(len(a), len(b))
        return float(np.corrcoef(a[:n], b[:n])[0, 1])

    by_clock = round(4.186 * 60)
    assert corr(0) > 0.35 and abs(corr(by_clock)) < 0.1 and abs(corr(-by_clock)) < 0.1


@pytest.mark.realdata
def test_real_broad_trial(realdata: Path):
    raw, truth = broad_hdf5.read_trial(realdata / "broad" / "02_undisturbed_slow_rotation_B.hdf5")
    assert len(raw.data) == len(truth.data) > 50_000
    assert raw.rate_hz == pytest.approx(285.714, abs=0.01)
    q = truth.data["q"][~np.isnan(truth.data["q"]).any(axis=1)]
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-3)
    assert 0 < truth.data["movement"].mean() < 1
