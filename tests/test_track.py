"""`imuflow track`: a recording through the tracking chain inline, as the live graph computes it.

A simulated knee session (sensors aligned with the segments: no calibration needed) is
recorded by a real graph; `imuflow track` runs it through a tracking graph and writes
CSV, OpenSim .mot and MCAP; the same graph run live (`imuflow run`, every node in its
process, ZeroMQ between groups) records chain.state and chain.pose, and the files must
hold the same numbers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline.recording.session_reader import read_streams

REPO = Path(__file__).resolve().parents[1]
KNEE = REPO / "configs" / "chains" / "knee.yaml"


def _imuflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=240, cwd=REPO, check=False)


def _write(path: Path, graph: dict) -> Path:
    path.write_text(yaml.safe_dump(graph, sort_keys=False))
    return path


def read_mot(path: Path) -> tuple[dict[str, str], list[str], np.ndarray]:
    """An OpenSim Storage file as OpenSim reads it: name line, key=value header up to
    'endheader', a tab-separated label row, then rows of numbers."""
    lines = path.read_text().splitlines()
    end = lines.index("endheader")
    header = dict(line.split("=", 1) for line in lines[1:end])
    labels = lines[end + 1].split("\t")
    data = np.loadtxt(lines[end + 2:], delimiter="\t", ndmin=2)
    return header, labels, data


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("track")
    session = tmp / "knee.mcap"
    rec = {"version": 1, "name": "make_session", "chain": str(KNEE), "nodes": [
        {"id": "sim", "kind": "sim", "params": {"speed": 0, "duration_s": 20, "seed": 3}},
        {"id": "recorder", "kind": "recorder", "params": {"path": str(session)},
         "inputs": {"in": ["sim/imu.raw"]}}]}
    proc = _imuflow("run", str(_write(tmp / "rec.yaml", rec)), "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]

    graph = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    graph["chain"] = str(KNEE)
    graph["model_dirs"] = [str(REPO / "models")]
    nodes = {n["id"]: n for n in graph["nodes"]}
    nodes["sim"].update(kind="replay", params={"path": str(session), "speed": 0})
    nodes["observer"]["params"]["model"] = str(REPO / "models" / "knee.onnx")
    nodes["viewer"].update(kind="recorder", params={"path": str(tmp / "live.mcap")},
                           inputs={"in": ["observer/chain.state", "fk/chain.pose"]})
    config = _write(tmp / "tracking.yaml", graph)

    proc = _imuflow("run", str(config), "--quiet")  # live: processes, ZeroMQ, direct group
    assert proc.returncode == 0, proc.stderr[-2000:]
    live = {s.info.kind: s.data for s in read_streams(tmp / "live.mcap").values()}
    out = {"live": live, "tmp": tmp}
    runs = {suffix: [f"tracked.{suffix}"] for suffix in ("csv", "mot", "mcap")}
    runs.update({f"torques_{suffix}": [f"torques.{suffix}", "--torques"]
                 for suffix in ("csv", "mot")})
    tracks = {key: subprocess.Popen(  # every format at once: independent runs
        [sys.executable, "-m", "pipeline", "track", str(session), "--config", str(config),
         "--no-calibration", "-o", str(tmp / name), *extra], cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE) for key, (name, *extra) in runs.items()}
    for key, proc in tracks.items():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, stderr[-2000:]
        out[key] = tmp / runs[key][0]
        out[f"{key}_stdout"] = stdout
    return out


def test_csv_parses_with_units_and_matches_the_live_graph(tracked: dict) -> None:
    state, pose = tracked["live"]["chain.state"], tracked["live"]["chain.pose"]
    csv = np.genfromtxt(tracked["csv"], delimiter=",", names=True)
    assert len(csv) == len(state) == 2000
    names = csv.dtype.names
    assert names[:3] == ("time_s", "t_host_ns", "shank_angle_deg")
    assert {"shank_q_rel_w", "thigh_pos_z_m", "shank_quat_x"} <= set(names)
    angle_deg = np.degrees(state["angle"][:, 0].astype(np.float64))
    np.testing.assert_allclose(csv["shank_angle_deg"], angle_deg, atol=1e-5, rtol=0)
    np.testing.assert_allclose(csv["t_host_ns"], state["t_host"].astype(np.float64), rtol=1e-15)
    for i, body in enumerate(("thigh", "shank")):
        for k, c in enumerate("wxyz"):
            np.testing.assert_allclose(csv[f"{body}_q_rel_{c}"], state["q_rel"][:, i, k],
                                       atol=1e-5, rtol=0)
            np.testing.assert_allclose(csv[f"{body}_quat_{c}"], pose["quat"][:, i, k],
                                       atol=1e-5, rtol=0)
        for k, c in enumerate("xyz"):
            np.testing.assert_allclose(csv[f"{body}_pos_{c}_m"], pose["pos"][:, i, k],
                                       atol=1e-5, rtol=0)
    assert np.ptp(csv["shank_angle_deg"]) > 20  # the knee moved: the comparison means something


def test_mot_follows_the_opensim_format(tracked: dict) -> None:
    header, labels, data = read_mot(tracked["mot"])
    state = tracked["live"]["chain.state"]
    assert header["inDegrees"] == "yes" and header["version"] == "1"
    assert int(header["nRows"]) == len(data) == len(state)
    assert int(header["nColumns"]) == len(labels) == data.shape[1] == 2
    assert labels == ["time", "shank_angle"]
    np.testing.assert_allclose(data[:, 0], (state["t_host"] - state["t_host"][0]) / 1e9,
                               atol=1e-8)
    np.testing.assert_allclose(data[:, 1], np.degrees(state["angle"][:, 0].astype(np.float64)),
                               atol=1e-5)


def test_mcap_holds_the_live_streams_bit_for_bit(tracked: dict) -> None:
    got = {s.info.kind: s.data for s in read_streams(tracked["mcap"]).values()}
    for kind in ("chain.state", "chain.pose"):
        assert got[kind].tobytes() == tracked["live"][kind].tobytes(), kind


def test_torques_are_newton_euler_on_the_tracked_angles(tracked: dict) -> None:
    from pipeline.dynamics import InverseDynamics
    from pipeline.dynamics.differentiator import differentiate, q_from_state
    from pipeline.kinematics.chain import load_chain

    csv = np.genfromtxt(tracked["torques_csv"], delimiter=",", names=True)
    plain = np.genfromtxt(tracked["csv"], delimiter=",", names=True)
    for name in plain.dtype.names:  # the angles and poses are those of the run without torques
        np.testing.assert_array_equal(csv[name], plain[name], err_msg=name)
    chain = load_chain(KNEE)
    q_rel = np.stack([np.stack([csv[f"{b}_q_rel_{c}"] for c in "wxyz"], -1)
                      for b in chain.body_names], 1)
    angle = np.radians(csv["shank_angle_deg"])[:, None]
    q = q_from_state(chain, q_rel.astype(np.float32), angle.astype(np.float32))
    qs, qds, qdds, first = differentiate(chain, q, 100.0, 7, "centre")
    tau, residual = InverseDynamics(chain).torques_batch(qs, qds, qdds)
    got = csv["shank_torque_Nm"]
    # frame k's estimate needs frames k-3..k+3 (7-frame window at its centre); a frame flagged
    # as a gap (here the stream's last) restarts the window
    have = np.isfinite(got)
    assert first == 3 and not have[:3].any() and not have[-3:].any() and have.sum() >= 2000 - 7
    rows = np.flatnonzero(have)
    np.testing.assert_allclose(got[rows], tau[rows - first, chain.qd_start[1]], rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(csv["residual_mz_Nm"][rows], residual[rows - first, 5], rtol=1e-4,
                               atol=1e-3)
    assert np.ptp(got[rows]) > 1.0  # the knee moment varies with the motion (N m)
    header, labels, data = read_mot(tracked["torques_mot"].with_name("torques_torques.sto"))
    assert header["inDegrees"] == "no" and "shank_moment" in labels and "thigh.fx_force" in labels
    np.testing.assert_allclose(data[:, labels.index("shank_moment")], got, atol=1e-6)


def test_track_reports_speed_and_frames(tracked: dict) -> None:
    assert "2000 frames; 20.0 s of data tracked in" in tracked["csv_stdout"]
    assert "x real time" in tracked["csv_stdout"]


def test_unknown_format_and_missing_session_are_one_line_errors(tmp_path: Path) -> None:
    proc = _imuflow("track", str(tmp_path / "none.mcap"), "-o", str(tmp_path / "x.csv"))
    assert proc.returncode == 2 and "no such session file" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _imuflow("track", str(tmp_path / "none.mcap"), "-o", str(tmp_path / "x.xlsx"))
    assert proc.returncode == 2 and "unknown output format '.xlsx'" in proc.stderr


def test_bench_track_reports_both_sessions(tmp_path: Path) -> None:
    proc = _imuflow("bench", "track", "--json", "--knee-s", "5", "--minutes", "0.2",
                    "--repeat", "1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    for tracker in ("constraint_observer", "knee_onnx"):
        row = report["knee"][tracker]
        assert row["frames"] == 500 and row["data_s"] == 5.0 and row["x_real_time"] > 0
    big = report["chain24_10imu"]
    if importlib.util.find_spec("torch") is None:
        assert "PyTorch" in big["skipped"]
    else:
        assert big["random_gru_2x128"]["frames"] == 1200 and big["session"]["imus"] == 10


def _dot_export(path: Path, tag: str, counters: list[int]) -> Path:
    """A Movella DOT CSV at 60 Hz holding the samples with these packet counters, at rest."""
    head = (f"sep=,\nDeviceTag:,{tag}\nFirmwareVersion:,3.0.0\nAppVersion:,2023.6.0\n"
            "SyncStatus:,Synced\nOutputRate:,60Hz\nFilterProfile:,General\n"
            "Measurement Mode:,Inertial data Mode - Rate Quantities(with mag)\n"
            "StartTime: ,2024-12-09_17:31:07_886 CET\nx\n\n"
            "PacketCounter,SampleTimeFine,Acc_X,Acc_Y,Acc_Z,Gyr_X,Gyr_Y,Gyr_Z,Mag_X,Mag_Y,Mag_Z\n")
    rows = [f"{c},{1_000_000 + (c - 1) * 16667},0.1,0.2,9.8,0.5,-0.3,0.2,0.5,0.1,-1.0"
            for c in counters]
    path.write_text(head + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_csv_marks_the_frames_a_sensor_was_missing_in(tmp_path: Path) -> None:
    """A shank sensor silent for 0.5 s (30 packets at 60 Hz), longer than sync bridges: the
    frames in between are missing, the observer holds its estimate there, and the CSV's
    sensors_ok is 0 on exactly those frames, 1 elsewhere; the summary says how many."""
    thigh = _dot_export(tmp_path / "thigh.csv", "thigh", list(range(1, 601)))
    shank = _dot_export(tmp_path / "shank.csv", "shank",
                        [c for c in range(1, 601) if not 301 <= c <= 330])
    session, out = tmp_path / "knee.mcap", tmp_path / "knee.csv"
    proc = _imuflow("import", str(thigh), str(shank), "-o", str(session))
    assert proc.returncode == 0, proc.stderr
    proc = _imuflow("track", str(session), "-o", str(out), "--no-calibration")
    assert proc.returncode == 0, proc.stderr[-2000:]
    csv = np.genfromtxt(out, delimiter=",", names=True)
    held = csv["sensors_ok"] == 0
    t_gap = csv["time_s"][held]
    # the gap: the shank's samples between 4.983 s (packet 300) and 5.500 s (331); longer
    # than sync's max_gap_s, so its 100 Hz frames in between are missing (measured: 4.99-5.50)
    assert held.sum() >= 45 and t_gap.min() > 4.983 and t_gap.max() < 5.5 + 0.01, t_gap
    assert np.all(np.diff(np.flatnonzero(held)) == 1)  # one run of frames
    assert set(np.unique(csv["sensors_ok"])) == {0.0, 1.0}
    assert f"{held.sum()} frames had a sensor missing" in proc.stdout, proc.stdout


def test_an_export_folder_is_imported_and_tracked_in_one_command(tmp_path: Path) -> None:
    """SESSION given as a DOT export folder: imported to <OUT stem>.session.mcap beside the
    output (as `imuflow import` writes it), then tracked as that session is."""
    export = tmp_path / "export"
    export.mkdir()
    _dot_export(export / "thigh.csv", "thigh", list(range(1, 301)))
    _dot_export(export / "shank.csv", "shank", list(range(1, 301)))
    session = tmp_path / "imported.mcap"
    proc = _imuflow("import", str(export), "-o", str(session))
    assert proc.returncode == 0, proc.stderr
    proc = _imuflow("track", str(session), "-o", str(tmp_path / "from_session.csv"),
                    "--no-calibration")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out" / "knee.csv"
    out.parent.mkdir()
    proc = _imuflow("track", str(export), "-o", str(out), "--no-calibration")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"imported {export} to {out.parent / 'knee.session.mcap'}: shank (300 samples" \
        in proc.stdout, proc.stdout
    streams = read_streams(out.parent / "knee.session.mcap")
    for name, stream in read_streams(session).items():
        assert streams[name].data.tobytes() == stream.data.tobytes()
    np.testing.assert_array_equal(np.genfromtxt(out, delimiter=",", names=True),
                                  np.genfromtxt(tmp_path / "from_session.csv", delimiter=",",
                                                names=True))
    (tmp_path / "empty").mkdir()
    proc = _imuflow("track", str(tmp_path / "empty"), "-o", str(out), "--no-calibration")
    assert proc.returncode == 2 and "a folder with no data files in it" in proc.stderr
    assert "imuflow import" in proc.stderr and "Traceback" not in proc.stderr
    # --shift with the chain's name (mapped back through --sensor) moves that sensor on import
    named = tmp_path / "named"
    named.mkdir()
    _dot_export(named / "femur.csv", "femur", list(range(1, 301)))
    _dot_export(named / "tibia.csv", "tibia", list(range(1, 301)))
    proc = _imuflow("track", str(named), "-o", str(out), "--no-calibration", "--sensor",
                    "femur=thigh", "--sensor", "tibia=shank", "--shift", "shank=0.25")
    assert proc.returncode == 0, proc.stderr[-2000:]
    moved = read_streams(out.parent / "knee.session.mcap")
    for recorded, same, shift in (("femur", "thigh", 0), ("tibia", "shank", 250_000_000)):
        np.testing.assert_array_equal(moved[f"import/imu.raw:{recorded}"].data["t_host"],
                                      streams[f"import/imu.raw:{same}"].data["t_host"] + shift)
    proc = _imuflow("track", str(session), "-o", str(out), "--no-calibration",
                    "--shift", "shank=0.1")
    assert proc.returncode == 2 and "--shift applies while importing exports" in proc.stderr
