"""Real data: knee_tracking1 (Movella DOT) through import, calibration, the replay graph and the
constraint-based observer, against the RING reference trace in the shared data folder
(``ring_reference.npz``, made with the public RING estimator; see ../shared/data/README.md).

The commands are the ones docs/calibration.md gives, run as a user runs them; only the file
paths, the replay speed (as fast as possible, recorded times kept: ``restamp: false``), the
viewer (dropped: no window in tests) and the recorder (it keeps the calibrated frames too)
differ from the shipped ``configs/replay.yaml``.
``imuflow track`` on the same session and calibration must write the live run's angles.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.signal import find_peaks
from scipy.spatial.transform import Rotation

from pipeline.estimation.constraint import ConstraintEstimator, ConstraintSettings
from pipeline.kinematics.chain import load_chain
from pipeline.recording.session_reader import read_streams

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[1]
# RING (causal, pretrained) starts from a sitting pose it needs several seconds to leave:
# its angle reads 100-135 deg over the first 4 s and 30-85 deg at 5-10 s, while the
# accelerometers show a standing leg with the knee near 15 deg (thigh vertical, shank tilted)
# there; the comparison starts after that (docs/calibration.md, "Real data").
COMPARE_FROM_S = 10.0
WALKING_S = (33.0, 48.0)


def _imuflow(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True,
                          text=True, timeout=240, cwd=cwd, check=False)


_RESULT: dict = {}


@pytest.fixture
def tracked(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The pipeline's output next to RING's, made once per test session."""
    if not _RESULT:
        _RESULT.update(_track(realdata, tmp_path_factory.mktemp("knee")))
    return _RESULT


def _track(realdata: Path, tmp: Path) -> dict:
    folder = realdata / "movella_dot" / "knee_tracking1"
    session, cal = tmp / "knee.mcap", tmp / "knee-calibration.yaml"
    proc = _imuflow("import", str(folder / "femur.csv"), str(folder / "tibia.csv"), "-o",
                    str(session), "--name", "femur=thigh", "--name", "tibia=shank")
    assert proc.returncode == 0, proc.stderr
    proc = _imuflow("calibrate", str(session), "-o", str(cal))  # phases found automatically
    assert proc.returncode == 0, proc.stdout + proc.stderr
    graph = yaml.safe_load((REPO / "configs/replay.yaml").read_text())
    graph["chain"] = str(REPO / graph["chain"])
    graph["nodes"] = [n for n in graph["nodes"] if n["id"] != "viewer"]
    params = {n["id"]: n.setdefault("params", {}) for n in graph["nodes"]}
    params["replay"].update(path=str(session), speed=0, restamp=False)
    params["filter"]["calibration"] = str(cal)
    params["observer"]["joint_centres"] = str(cal)
    params["recorder"]["path"] = str(tmp / "tracked.mcap")
    recorder = next(n for n in graph["nodes"] if n["id"] == "recorder")
    recorder["inputs"]["in"].append("filter/imu.frame")  # the calibrated frames, kept too
    config = tmp / "replay_knee.yaml"
    config.write_text(yaml.safe_dump(graph))
    proc = _imuflow("run", str(config), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    streams = read_streams(tmp / "tracked.mcap").values()
    state = next(s for s in streams if s.info.kind == "chain.state").data
    frames = next(s for s in streams if s.info.kind == "imu.frame").data
    t = (state["t_host"] - state["t_host"][0]) * 1e-9
    ring = np.load(folder / "ring_reference.npz")
    angle = np.interp(ring["t"], t, np.degrees(state["angle"][:, 0].astype(np.float64)))
    proc = _imuflow("track", str(session), "--calibration", str(cal), "-o", str(tmp / "knee.csv"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _imuflow("track", str(session), "--calibration", str(cal), "--model",
                    str(REPO / "models/knee.onnx"), "-o", str(tmp / "model.csv"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    model = np.genfromtxt(tmp / "model.csv", delimiter=",", names=True)
    return {"t": ring["t"], "ours": angle, "ring": ring["angle_deg"], "state": state,
            "frames": frames,
            "track_csv": np.genfromtxt(tmp / "knee.csv", delimiter=",", names=True),
            "model": np.interp(ring["t"], model["time_s"], model["shank_angle_deg"]),
            "calibration": yaml.safe_load(cal.read_text())}


def test_calibration_from_the_recording_is_good(tracked: dict) -> None:
    doc = tracked["calibration"]
    assert doc["ok"] is True
    for name in ("thigh", "shank"):
        assert doc["sensors"][name]["method"] == "static+hinge"
    # both sensors are mounted far from the segment frames (sensor x runs along the leg)
    assert doc["sensors"]["shank"]["quality"]["hinge_fit"] >= 0.7
    # the clocks as exported: 19.7 ms by the rates off the knee axis (2026-12-07)
    assert abs(doc["sensors"]["shank"]["quality"]["clock_offset_ms"]) < 50.0


def test_track_writes_the_live_runs_angles(tracked: dict) -> None:
    csv, state = tracked["track_csv"], tracked["state"]
    assert len(csv) == len(state) > 5000  # 54 s at 100 Hz
    np.testing.assert_array_equal(csv["t_host_ns"], state["t_host"].astype(np.float64))
    np.testing.assert_allclose(csv["shank_angle_deg"],
                               np.degrees(state["angle"][:, 0].astype(np.float64)), atol=1e-5,
                               rtol=0)


@pytest.mark.parametrize("observer", ["ours", "model"])
def test_knee_angle_follows_ring(tracked: dict, observer: str) -> None:
    """The constraint observer (the replay graph) and models/knee.onnx (`track --model`)."""
    m = tracked["t"] >= COMPARE_FROM_S
    corr = np.corrcoef(tracked[observer][m], tracked["ring"][m])[0, 1]
    assert corr >= 0.95, corr


# Per observer: the median stride error, the share of strides within 10 deg, the largest error
# (deg). Measured 2026-12-05 (11 strides): the constraint observer (accelerations at the joint
# centre) 2.4 / 11 of 11 / 8.7, the target (every stride within 10 deg); before the
# joint centre 3.0 / 9 of 11 / 12.3. models/knee.onnx (hybrid on the joint-centre prior)
# 4.0 / 9 of 11 / 13.6, its peaks above RING's (mean +4.7); the bounds hold what it reaches.
# 2026-12-06, the calibration's static pose now standing at 17.2 s instead of 53.6 s (the
# out-of-range score, docs/calibration.md): constraint observer 2.5 / 11 of 11 / 6.8,
# models/knee.onnx 4.5 / 8 of 11 / 14.2 (one stride at 10.8). 2026-12-07, both with the knee
# centre the calibration fits (joint_centres): 2.4 / 11 of 11 / 6.4 and 4.3 / 8 of 11 / 12.9.
# Later that day models/knee.onnx fine-tuned with IMUs turning against their segments
# (knee-wobble-mild; BENCHMARKS.md, "The knee's walking offset"): 3.2 / 11 of 11 / 8.7, mean
# +0.9 (was +4.8), so both observers are held to the target now.
PEAK_BOUNDS = {"ours": (4.0, 1.0, 10.0), "model": (4.5, 1.0, 10.0)}


@pytest.mark.parametrize("observer", ["ours", "model"])
def test_walking_peaks_near_ring(tracked: dict, observer: str) -> None:
    """Per stride, the peak knee angle against RING's (RING is an estimate, not ground truth)."""
    t, ours, ring = tracked["t"], tracked[observer], tracked["ring"]
    walk = np.flatnonzero((t >= WALKING_S[0]) & (t < WALKING_S[1]))
    peaks, _ = find_peaks(ring[walk], prominence=20.0, distance=80)
    assert len(peaks) >= 8, len(peaks)  # a stride every 1.3-1.4 s
    errors = np.array([abs(ours[p - 30:p + 31].max() - ring[p]) for p in walk[peaks]])
    median, share_within_10, largest = PEAK_BOUNDS[observer]
    assert np.median(errors) <= median, errors
    assert np.mean(errors <= 10.0) >= share_within_10, errors
    assert errors.max() <= largest, errors


def _knee_as_ball_joint(frames: np.ndarray, tmp: Path, ball_tau_s: float,
                        start_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """The constraint estimator on the calibrated frames with the knee declared a spherical
    joint, its heading started ``start_deg`` off: the shank's twist about the knee axis and
    its rotation off that axis (deg, per frame)."""
    doc = yaml.safe_load((REPO / "configs/chains/knee.yaml").read_text())
    shank = next(b for b in doc["bodies"] if b["name"] == "shank")
    shank["joint"] = {"type": "spherical", "offset": shank["joint"]["offset"],
                      "limits": [-2.5, 2.5]}
    doc["poses"]["sitting"]["joints"]["shank"] = [0.0, math.pi / 2, 0.0]  # a ball joint's turn
    (tmp / "knee_ball.yaml").write_text(yaml.safe_dump(doc))
    chain = load_chain(tmp / "knee_ball.yaml")
    est = ConstraintEstimator(chain, ["thigh", "shank"], 100.0,
                              ConstraintSettings(ball_tau_s=ball_tau_s))
    acc, gyr = frames["acc"].astype(np.float64), frames["gyr"].astype(np.float64)
    q = np.empty((len(frames), 2, 4))
    for i in range(0, len(frames), 100):
        est.update(acc[i:i + 100], gyr[i:i + 100], q[i:i + 100], np.empty((len(q[i:i + 100]), 0)))
        if i == 0:
            est._balls[0].delta = np.radians(start_deg)
    w, x, y, z = q[:, 1].T
    return (np.degrees(2.0 * np.arctan2(y, w)),
            np.degrees(2.0 * np.arcsin(np.clip(np.hypot(x, z), 0.0, 1.0))))


@pytest.mark.parametrize("start_deg", [90.0, 180.0])
def test_a_ball_joint_finds_the_knees_heading_from_its_centre(
        tracked: dict, tmp_path: Path, start_deg: float) -> None:
    """The spherical joints' heading pull (the hip centre's acceleration, docs/observer.md)
    on real sensors: the knee declared a ball joint, its heading started far off. Within 5 s
    its twist about the knee axis follows the hinge observer's angle, and what it reads off
    that axis (a real knee is nearly a hinge) falls to the level a right start gives.
    Measured 2026-12-06: from 5 s on, median |twist - hinge angle| 3.0 deg and median
    off-axis 15 deg, as from a right start; without the pull 21 / 81 deg (90 off) and
    154 / 157 deg (180 off)."""
    hinge = np.degrees(tracked["state"]["angle"][:, 0].astype(np.float64))
    later = np.arange(len(hinge)) >= 500  # from 5 s on
    twist, off = _knee_as_ball_joint(tracked["frames"], tmp_path, 2.0, start_deg)
    assert np.median(np.abs(twist - hinge)[later]) < 5.0
    assert np.median(off[later]) < 20.0
    twist, off = _knee_as_ball_joint(tracked["frames"], tmp_path, 0.0, start_deg)
    assert np.median(off[later]) > 60.0  # without the pull it stays where it started


def _shifted_csv(source: Path, out: Path, shift_us: int) -> None:
    """A Movella DOT export with SampleTimeFine (us) moved by shift_us."""
    lines = source.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PacketCounter"))
    rows = []
    for line in lines[header + 1:]:
        fields = line.split(",")
        fields[1] = str(int(fields[1]) + shift_us)
        rows.append(",".join(fields))
    out.write_text("\n".join(lines[:header + 1] + rows) + "\n")


def test_calibration_takes_the_standing_rest_not_the_sitting_one(realdata: Path,
                                                                  tmp_path: Path) -> None:
    """knee_tracking1 starts sitting still (thigh horizontal, shank upright) and ends
    standing. With the tibia's sample times 33 ms (two samples) earlier, as a sync error
    would put them, the sitting rest became the calibration's best window: the knee angle came
    out mirrored, correlation -0.98 with RING (2026-12-06, before the out-of-range score).
    Measured after: the standing rest at 17.2 s, correlation 0.984; for shifts of -2 to +2
    samples 0.969-0.987, every walking peak within 11.3 deg of RING's."""
    folder = realdata / "movella_dot" / "knee_tracking1"
    _shifted_csv(folder / "tibia.csv", tmp_path / "tibia.csv", -2 * 16_667)
    session, cal = tmp_path / "knee.mcap", tmp_path / "cal.yaml"
    _imuflow_ok(("import", str(folder / "femur.csv"), str(tmp_path / "tibia.csv"), "-o",
                 str(session), "--name", "femur=thigh", "--name", "tibia=shank"),
                ("calibrate", str(session), "-o", str(cal)),
                ("track", str(session), "--calibration", str(cal), "-o",
                 str(tmp_path / "knee.csv")))
    doc = yaml.safe_load(cal.read_text())
    assert doc["ok"] is True and doc["source"]["static_s"][0] > 2.0, doc["source"]
    ring = np.load(folder / "ring_reference.npz")
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    ours = np.interp(ring["t"], track["time_s"], track["shank_angle_deg"])
    m = ring["t"] >= COMPARE_FROM_S
    assert np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1] >= 0.95


def _cropped_export(folder: Path, out: Path, t0_s: float, t1_s: float) -> None:
    """femur.csv and tibia.csv of ``folder`` in ``out`` with only the samples from t0_s to
    t1_s (s after the first sample both files have, the RING reference's t = 0)."""
    _edited_export(folder, out, lambda name, head, rows: (head, [
        row for row, t in zip(rows, _row_times(folder, name), strict=True) if t0_s <= t < t1_s]))


def test_tracking_needs_neither_the_seated_start_nor_the_final_rest(realdata: Path,
                                                                   tmp_path: Path) -> None:
    """A recording need not start or end as knee_tracking1 does: cut to 6-52.5 s (no seated
    start, no standing rest at the end; the export folder imported as it is), ``imuflow
    track`` calibrates from what is left and follows RING. Measured 2026-12-07: static
    window 11.2 s into the cut (17.2 s), correlation 0.984, all 11 walking peaks within
    6.7 deg. Other cuts (from 5 s, from 9 s, up to 48.5 s or 52.5 s): 0.983-0.985, peaks
    within 6.8 deg; walking and the end rest alone (from 30 s) is reported poor, exit 3.
    With the joint centre each cut's calibration fits (track sets joint_centres; the same
    day): 0.985 here, the other cuts 0.984-0.987, all peaks within 5.9-6.8 deg."""
    folder, t0, t1 = realdata / "movella_dot" / "knee_tracking1", 6.0, 52.5
    _cropped_export(folder, tmp_path / "export", t0, t1)
    session = tmp_path / "cut.mcap"
    _imuflow_ok(("import", str(tmp_path / "export"), "-o", str(session),
                 "--name", "femur=thigh", "--name", "tibia=shank"),
                ("track", str(session), "-o", str(tmp_path / "knee.csv")))
    ring = np.load(folder / "ring_reference.npz")
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    assert t1 - t0 - 1 < track["time_s"][-1] < t1 - t0
    ours = np.interp(ring["t"], track["time_s"] + t0, track["shank_angle_deg"])
    m = (ring["t"] >= max(COMPARE_FROM_S, t0 + 5)) & (ring["t"] < t1)
    assert np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1] >= 0.95
    walk = np.flatnonzero((ring["t"] >= WALKING_S[0]) & (ring["t"] < WALKING_S[1]))
    peaks, _ = find_peaks(ring["angle_deg"][walk], prominence=20.0, distance=80)
    errors = [abs(ours[p - 30:p + 31].max() - ring["angle_deg"][p]) for p in walk[peaks]]
    assert len(errors) >= 8 and max(errors) <= 10.0, errors


def _with_rows(rows: list[str], before: list[list[str]] = (),
               after: list[list[str]] = ()) -> list[str]:
    """Data rows with ``before`` and ``after`` (rows' fields) played around them: packet
    counters and sensor times continue from the first row backwards and from the last row
    forwards, at the recording's mean spacing."""
    counter, stf = int(rows[0].split(",")[0]), int(rows[0].split(",")[1])
    dt = (int(rows[-1].split(",")[1]) - stf) / (len(rows) - 1)  # us
    n, m = len(before), len(rows)
    return [",".join([str((counter + k) % 65536), str(round(stf + k * dt))] + f[2:])
            for k, f in zip(range(-n, 0), before, strict=True)] + rows + [
        ",".join([str((counter + m + k) % 65536), str(round(stf + (m + k) * dt))] + f[2:])
        for k, f in enumerate(after)]


def test_a_long_seated_start_does_not_crowd_out_the_standing_pose(realdata: Path,
                                                                   tmp_path: Path) -> None:
    """knee_tracking1 with its still seated start 6 s longer (the first 1.5 s played four
    more times): the calibration still takes a standing rest, not the seated one, and the
    knee follows RING. Before each rest period gave its own candidate, the quietest windows
    all came from the seated start and the calibration was poor (exit 3). Measured
    2026-12-07: the final standing rest (59.6 s; the standing rest at 23.2 s scored 0.80,
    within 0.05 of it, and is less quiet), correlation 0.983, walking peaks within 9.1 deg
    (6.4 from the rest at 23.2 s)."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    _edited_export(folder, export, lambda _, head, rows: (
        head, _with_rows(rows, before=[rows[i % 90].split(",") for i in range(4 * 90)])))
    session, cal = tmp_path / "seated.mcap", tmp_path / "cal.yaml"
    _imuflow_ok(("import", str(export), "-o", str(session), "--name", "femur=thigh",
                 "--name", "tibia=shank"),
                ("calibrate", str(session), "-o", str(cal)),
                ("track", str(session), "--calibration", str(cal), "-o",
                 str(tmp_path / "knee.csv")))
    static = yaml.safe_load(cal.read_text())["source"]["static_s"]
    assert static[0] > 6.0 + 5.0, static  # after the (longer) seated start
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"] - 6.0, track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def test_sensors_handled_before_the_recording_is_tracked(realdata: Path, tmp_path: Path) -> None:
    """knee_tracking1 after 15 s in which the two sensors move independently (femur's rows
    from 36 s, tibia's from 12 s, as sensors handled before they are strapped on): the
    axis fit leaves that motion out, its still moments do not score the calibration, and the
    knee follows RING. Measured 2026-12-07: 11 s left out, correlation 0.980, walking peaks
    within 6.9 deg (10 s of it: 0.982, 6.3); fitted to all the motion, as before, the
    calibration was poor (10 s of it: the thigh's axis 67 deg from gravity standing)."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    start = {"femur": 36 * 60, "tibia": 12 * 60}  # rows at 60 Hz
    _edited_export(folder, export, lambda name, head, rows: (head, _with_rows(
        rows, before=[line.split(",") for line in rows[start[name]:start[name] + 900]])))
    _imuflow_ok(("track", str(export), "-o", str(tmp_path / "knee.csv"), "--sensor",
                 "femur=thigh", "--sensor", "tibia=shank"))
    doc = yaml.safe_load((tmp_path / "knee.calibration.yaml").read_text())
    assert doc["sensors"]["shank"]["quality"]["axis_fit_left_out_s"] >= 3.0
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"] - 15.0, track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def test_sensors_on_a_table_after_the_recording_are_left_out(realdata: Path,
                                                            tmp_path: Path) -> None:
    """knee_tracking1 followed by 30 s of both sensors lying on a table (tilted, sensor noise
    only): the table's still poses are no knee angles, and the calibration leaves them out of
    the hinge's fit. Measured 2026-12-07: 30 s off the body, correlation 0.983, walking peaks
    within 6.2 deg; with them counted, as before, the calibration was poor (12 % of the still
    poses beyond the knee's limits)."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    rng = np.random.default_rng(5)
    lying = {"femur": Rotation.from_euler("xyz", [170, 20, 0], degrees=True),
             "tibia": Rotation.from_euler("xyz", [0, 90, 30], degrees=True)}

    def on_a_table(name: str) -> list[list[str]]:
        g = lying[name].apply([0.0, 0.0, 9.81])
        return [["", ""] + [f"{x:.6f}" for x in np.concatenate([
            g + rng.normal(0, 0.01, 3), rng.normal(0, 0.1, 3), [0.5, 0.1, -1.0]])]
            for _ in range(30 * 60)]
    _edited_export(folder, export, lambda name, head, rows: (
        head, _with_rows(rows, after=on_a_table(name))))
    _imuflow_ok(("track", str(export), "-o", str(tmp_path / "knee.csv"), "--sensor",
                 "femur=thigh", "--sensor", "tibia=shank"))
    doc = yaml.safe_load((tmp_path / "knee.calibration.yaml").read_text())
    assert doc["sensors"]["shank"]["quality"]["off_body_s"] >= 25.0
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"], track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def test_a_recording_that_never_stands_still_is_calibrated_sitting(realdata: Path,
                                                                     tmp_path: Path) -> None:
    """knee_tracking1 without its standing rests (16.6-18.6 s cut out, the samples after
    joined on; the end from 52.5 s off): its only still pose is the seated start, which the
    calibration takes as the knee chain's sitting pose (thigh level, knee at 90 deg), and
    the knee follows RING. Before, only the neutral (standing) pose was tried and the
    calibration was poor (exit 3). Measured 2026-12-07: sitting at 0.09-0.59 s, correlation
    0.982, walking peaks within 5.4 deg. The original recording calibrated on its seated
    start (``--static 0.1:1.4 --pose sitting``): 0.984, within 6.0 deg (standing: 6.2)."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    cut, end = (16.6, 18.6), 52.5
    _edited_export(folder, export, lambda name, head, rows: (head, _restamped(
        [row for row, t in zip(rows, _row_times(folder, name), strict=True)
         if (t < cut[0] or t >= cut[1]) and t < end])))
    _imuflow_ok(("track", str(export), "-o", str(tmp_path / "knee.csv"), "--sensor",
                 "femur=thigh", "--sensor", "tibia=shank"))
    doc = yaml.safe_load((tmp_path / "knee.calibration.yaml").read_text())
    assert doc["ok"] is True and doc["source"]["static_pose"] == "sitting", doc["source"]
    assert doc["source"]["static_s"][1] < 2.0, doc["source"]
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    t = track["time_s"] + np.where(track["time_s"] >= cut[0], cut[1] - cut[0], 0.0)
    corr, errors = _against_ring(folder, t, track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)
    # the seated start of the recording as it is, named
    session, cal = tmp_path / "knee.mcap", tmp_path / "sitting.yaml"
    _imuflow_ok(("import", str(folder), "-o", str(session), "--name", "femur=thigh",
                 "--name", "tibia=shank"),
                ("calibrate", str(session), "--static", "0.1:1.4", "--pose", "sitting", "-o",
                 str(cal)),
                ("track", str(session), "--calibration", str(cal), "-o",
                 str(tmp_path / "sitting.csv")))
    track = np.genfromtxt(tmp_path / "sitting.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"], track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def _row_times(folder: Path, name: str) -> np.ndarray:
    """Seconds of each data row of ``name``.csv from the first sample both files have."""
    stf = {}
    for other in ("femur", "tibia"):
        lines = (folder / f"{other}.csv").read_text().splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("PacketCounter"))
        stf[other] = np.array([int(line.split(",")[1]) for line in lines[header + 1:]])
    return (stf[name] - max(v[0] for v in stf.values())) * 1e-6  # no wrap in this recording


def _restamped(rows: list[str]) -> list[str]:
    """Data rows with packet counters and sensor times continuing from the first row at the
    recording's 60 Hz (16 667 us), as if no row had been taken out."""
    counter, stf = int(rows[0].split(",")[0]), int(rows[0].split(",")[1])
    return [",".join([str((counter + k) % 65536), str(round(stf + k * 16_667))]
                     + row.split(",")[2:]) for k, row in enumerate(rows)]


def _edited_export(folder: Path, out: Path, edit) -> None:
    """femur.csv and tibia.csv of ``folder`` written to ``out`` through ``edit(name, header
    lines, data lines) -> (header lines, data lines)``."""
    out.mkdir()
    for name in ("femur", "tibia"):
        lines = (folder / f"{name}.csv").read_text().splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("PacketCounter"))
        head, rows = edit(name, lines[:header + 1], lines[header + 1:])
        (out / f"{name}.csv").write_text("\n".join(head + rows) + "\n")


def _inertial_rows(rows: list[str], change) -> list[str]:
    """Data rows with their acc, gyr and mag (fields 3-11, a 3 x 3 array) through ``change``."""
    out = []
    for line in rows:
        fields = line.split(",")
        v = change(np.array(fields[2:11], float).reshape(3, 3))
        out.append(",".join(fields[:2] + [f"{x:.6f}" for x in v.ravel()] + fields[11:]))
    return out


def _imuflow_ok(*commands: tuple[str, ...]) -> None:
    """Run the imuflow commands in turn; each must succeed."""
    for args in commands:
        proc = _imuflow(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]


def test_any_mounting_on_the_real_leg_gives_the_same_knee(tracked: dict, realdata: Path,
                                                          tmp_path: Path) -> None:
    """knee_tracking1 with both sensors' data turned by random rotations (as if strapped on
    at other angles): the calibration finds the recording's rotations composed with the turn,
    and the knee angle is the recording's. Measured 2026-12-07 on 8 random pairs: rotations
    within 0.005 deg, angles (constraint observer and models/knee.onnx) identical to 0.01 deg."""
    rng = np.random.default_rng(14)
    turns = {name: Rotation.random(random_state=rng.integers(1 << 31))
             for name in ("femur", "tibia")}
    _edited_export(realdata / "movella_dot" / "knee_tracking1", tmp_path / "export",
                   lambda name, head, rows: (head, _inertial_rows(
                       rows, lambda v: v @ turns[name].as_matrix().T)))  # v' = M v
    session, cal = tmp_path / "turned.mcap", tmp_path / "cal.yaml"
    _imuflow_ok(("import", str(tmp_path / "export"), "-o", str(session),
                 "--name", "femur=thigh", "--name", "tibia=shank"),
                ("calibrate", str(session), "-o", str(cal)),
                ("track", str(session), "--calibration", str(cal), "-o",
                 str(tmp_path / "knee.csv")))
    doc = yaml.safe_load(cal.read_text())
    for sensor, name in (("thigh", "femur"), ("shank", "tibia")):
        found = _rotation(doc["sensors"][sensor]["rotation"])
        want = _rotation(tracked["calibration"]["sensors"][sensor]["rotation"]) * turns[name].inv()
        assert np.degrees((want.inv() * found).magnitude()) < 0.5, sensor
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    np.testing.assert_allclose(track["shank_angle_deg"], tracked["track_csv"]["shank_angle_deg"],
                               atol=0.5, rtol=0)


def test_the_mirror_image_a_left_leg_is_tracked_as_well(tracked: dict, realdata: Path,
                                                        tmp_path: Path) -> None:
    """knee_tracking1 mirrored in the sensors' x-z planes (acc and mag y negated, gyro x and z:
    the same motion of a left leg, sensors strapped on mirror-wise): the hinge's sign comes
    from the knee's range, so the constraint observer's angle is the recording's, and
    models/knee.onnx still follows RING. Measured 2026-12-07: constraint observer identical
    (to 0.001 deg); the model 0.981, walking peaks median 3.4, max 8.2 deg, mean -1.2 (the
    right leg +0.9), its angle 0.9 deg from the right leg's at the median, 5.1 at p99."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    sign = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, -1.0, 1.0]])  # acc, gyr, mag
    _edited_export(folder, export, lambda _, head, rows: (
        head, _inertial_rows(rows, lambda v: v * sign)))
    session = tmp_path / "left.mcap"
    _imuflow_ok(("import", str(export), "-o", str(session), "--name", "femur=thigh",
                 "--name", "tibia=shank"),
                ("track", str(session), "-o", str(tmp_path / "knee.csv")),
                ("track", str(session), "--model", str(REPO / "models/knee.onnx"), "-o",
                 str(tmp_path / "model.csv")))
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    np.testing.assert_allclose(track["shank_angle_deg"], tracked["track_csv"]["shank_angle_deg"],
                               atol=0.5, rtol=0)
    model = np.genfromtxt(tmp_path / "model.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, model["time_s"], model["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def test_sensor_clocks_apart_are_found_and_the_suggested_shift_fixes_them(
        realdata: Path, tmp_path: Path) -> None:
    """knee_tracking1 with the tibia's SampleTimeFine 100 ms early (six samples), as two
    unsynchronised sensors would give it: tracked as it is, the walking peaks were up to 21 deg
    off RING's (2026-12-07). The calibration measures the offset from the rates off the knee
    axis (118 ms: 100 plus the recording's own 20), reports it poor with the shift to
    import with, and with that shift the recording calibrates and tracks as the original
    (measured: 0.980, walking peaks within 7.6 deg)."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"

    def tibia_early(name: str, head: list[str], rows: list[str]) -> tuple[list, list]:
        if name == "femur":
            return head, rows
        fields = [row.split(",") for row in rows]
        return head, [",".join([f[0], str(int(f[1]) - 6 * 16_667), *f[2:]]) for f in fields]

    _edited_export(folder, export, tibia_early)
    names = ("--name", "femur=thigh", "--name", "tibia=shank")
    _imuflow_ok(("import", str(export), "-o", str(tmp_path / "apart.mcap"), *names))
    proc = _imuflow("calibrate", str(tmp_path / "apart.mcap"), "-o", str(tmp_path / "cal.yaml"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    shift = re.search(r"imuflow import --shift (shank=\+0\.1[0-3]\d)\)", proc.stdout)
    assert shift, proc.stdout
    _imuflow_ok(("import", str(export), "-o", str(tmp_path / "fixed.mcap"), *names,
                 "--shift", shift.group(1)),
                ("calibrate", str(tmp_path / "fixed.mcap"), "-o", str(tmp_path / "cal.yaml")),
                ("track", str(tmp_path / "fixed.mcap"), "--calibration",
                 str(tmp_path / "cal.yaml"), "-o", str(tmp_path / "knee.csv")))
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"], track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def _rotation(wxyz: list[float]) -> Rotation:
    return Rotation.from_quat(np.roll(np.asarray(wxyz, float), -1))  # scipy wants x, y, z, w


def test_a_cut_without_the_neutral_pose_is_refused_with_what_to_do(realdata: Path,
                                                                    tmp_path: Path) -> None:
    """Walking and the final rest alone (30-55 s of knee_tracking1): no still window is the
    neutral pose (the final rest's hinge axis is 71 deg from gravity in the thigh), so the
    calibration is marked poor, exit 3, and says how to name the phases by hand; ``track``
    refuses it the same way. Measured 2026-12-07: thigh 17.6 deg, shank 13.4 deg from the
    whole recording's calibration."""
    folder = realdata / "movella_dot" / "knee_tracking1"
    _cropped_export(folder, tmp_path / "export", 30.0, 55.0)
    session = tmp_path / "cut.mcap"
    proc = _imuflow("import", str(tmp_path / "export"), "-o", str(session),
                    "--name", "femur=thigh", "--name", "tibia=shank")
    assert proc.returncode == 0, proc.stderr
    proc = _imuflow("calibrate", str(session), "-o", str(tmp_path / "cal.yaml"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "POOR: thigh: the hinge axis" in proc.stdout, proc.stdout
    assert f"imuflow calibrate {session} --static T0:T1" in proc.stdout, proc.stdout
    assert yaml.safe_load((tmp_path / "cal.yaml").read_text())["ok"] is False
    proc = _imuflow("track", str(session), "-o", str(tmp_path / "knee.csv"), "--quiet")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "--static T0:T1" in proc.stderr and not (tmp_path / "knee.csv").exists()


@pytest.mark.parametrize("every", [2, 4])
def test_slower_output_rates_are_tracked_as_well(realdata: Path, tmp_path: Path,
                                                 every: int) -> None:
    """knee_tracking1 thinned to 30 and 15 Hz (every 2nd / 4th packet, the header's
    OutputRate to match; Movella DOT offers both): the calibration finds the same phases and
    the knee follows RING as at 60 Hz. Measured 2026-12-07, constraint observer: 0.984 / 0.984,
    walking peaks median 2.7 / 2.9, max 6.8 / 7.6 deg (20 Hz: 0.983, 6.2); models/knee.onnx
    0.981 / 0.982, max 9.1 / 7.6."""
    folder, export = realdata / "movella_dot" / "knee_tracking1", tmp_path / "export"
    _edited_export(folder, export, lambda _, head, rows: (
        [line.replace("OutputRate:,60Hz", f"OutputRate:,{60 // every}Hz") for line in head],
        rows[::every]))
    session = tmp_path / "thinned.mcap"
    _imuflow_ok(("import", str(export), "-o", str(session), "--name", "femur=thigh",
                 "--name", "tibia=shank"),
                ("track", str(session), "-o", str(tmp_path / "knee.csv")))
    track = np.genfromtxt(tmp_path / "knee.csv", delimiter=",", names=True)
    corr, errors = _against_ring(folder, track["time_s"], track["shank_angle_deg"])
    assert corr >= 0.95 and len(errors) >= 8 and errors.max() <= 10.0, (corr, errors)


def _against_ring(folder: Path, time_s: np.ndarray, angle_deg: np.ndarray,
                  ) -> tuple[float, np.ndarray]:
    """Correlation with RING's knee angle from COMPARE_FROM_S on, and each walking stride's
    peak error (deg); ``time_s`` from the recording's first common sample."""
    ring = np.load(folder / "ring_reference.npz")
    ours = np.interp(ring["t"], time_s, angle_deg)
    m = ring["t"] >= COMPARE_FROM_S
    walk = np.flatnonzero((ring["t"] >= WALKING_S[0]) & (ring["t"] < WALKING_S[1]))
    peaks, _ = find_peaks(ring["angle_deg"][walk], prominence=20.0, distance=80)
    errors = np.array([abs(ours[p - 30:p + 31].max() - ring["angle_deg"][p]) for p in walk[peaks]])
    return float(np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1]), errors


def test_dropouts_of_the_shank_sensor_are_marked_and_tracked_through(realdata: Path,
                                                                      tmp_path: Path) -> None:
    """knee_tracking1 with five dropouts of the tibia sensor (0.25-0.5 s, packets removed from
    its export, three while walking): ``imuflow track`` marks the held frames (sensors_ok 0),
    and away from them the knee still follows RING: every walking peak not within 0.3 s of a
    held frame within 10 deg. Measured 2026-12-07: 202 frames marked; correlation 0.984 over
    the rest after 10 s; the 9 peaks away from the dropouts within 6.6 deg (the one held
    through a dropout 44.9 deg low). The code before the restarts after a gap gave 0.983 and
    5.8 deg at the peak after the last walking dropout (3.8 now)."""
    folder = realdata / "movella_dot" / "knee_tracking1"
    lines = (folder / "tibia.csv").read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PacketCounter"))
    drop = np.zeros(len(lines) - header - 1, bool)
    for start_s, length_s in ((14.0, 0.3), (26.0, 0.5), (35.3, 0.25), (39.7, 0.4), (44.1, 0.5)):
        drop[round(start_s * 60):round((start_s + length_s) * 60)] = True
    export = tmp_path / "export"
    export.mkdir()
    (export / "femur.csv").write_text((folder / "femur.csv").read_text())
    (export / "tibia.csv").write_text("\n".join(
        lines[:header + 1] + [r for r, d in zip(lines[header + 1:], drop) if not d]) + "\n")
    session, out = tmp_path / "knee.mcap", tmp_path / "knee.csv"
    for args in (("import", str(export), "-o", str(session), "--name", "femur=thigh",
                  "--name", "tibia=shank"),
                 ("track", str(session), "-o", str(out))):
        proc = _imuflow(*args)
        assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    track = np.genfromtxt(out, delimiter=",", names=True)
    held = track["sensors_ok"] == 0
    assert 100 < held.sum() < 0.1 * len(held) and "frames had a sensor missing" in proc.stdout
    ring = np.load(folder / "ring_reference.npz")
    t = ring["t"]
    ours = np.interp(t, track["time_s"], track["shank_angle_deg"])
    near_held = np.interp(t, track["time_s"], held.astype(float)) > 0
    near_held = np.convolve(near_held, np.ones(61), mode="same") > 0  # within 0.3 s
    m = (t >= COMPARE_FROM_S) & ~near_held
    assert np.corrcoef(ours[m], ring["angle_deg"][m])[0, 1] >= 0.95
    walk = np.flatnonzero((t >= WALKING_S[0]) & (t < WALKING_S[1]))
    peaks, _ = find_peaks(ring["angle_deg"][walk], prominence=20.0, distance=80)
    kept = [p for p in walk[peaks] if not near_held[p]]
    errors = [abs(ours[p - 30:p + 31].max() - ring["angle_deg"][p]) for p in kept]
    assert len(kept) >= 6 and max(errors) <= 10.0, errors


def test_sensors_named_the_wrong_way_round_are_reported(realdata: Path, tmp_path: Path) -> None:
    """knee_tracking1 imported with femur and tibia swapped: the calibration fits the hinge as
    well, so only the joint centre tells; it reports the naming (measured: residual 3.9 m/s^2
    against 1.6 the right way round) and exits 3."""
    folder = realdata / "movella_dot" / "knee_tracking1"
    session = tmp_path / "swapped.mcap"
    proc = _imuflow("import", str(folder / "femur.csv"), str(folder / "tibia.csv"), "-o",
                    str(session), "--name", "femur=shank", "--name", "tibia=thigh")
    assert proc.returncode == 0, proc.stderr
    proc = _imuflow("calibrate", str(session), "-o", str(tmp_path / "cal.yaml"))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "the sensors look swapped" in proc.stdout, proc.stdout
