"""Lab Streaming Layer: LslOutlet node and LslImu driver against real pylsl inlets and outlets.

liblsl is configured for this machine only (ResolveScope machine, IPv4 loopback:
docs/lsl.md) through LSLAPICFG, set before the first LSL call of this process and
inherited by the graph run in a subprocess. Every stream gets a fresh source_id,
so tests never see each other's streams. Waits have generous limits only to
avoid hangs; nothing asserts on timing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from drivers.lsl_inlet import LslImu, plan_from_labels
from nodes.lsl_outlet import LslOutlet
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.message import Flag, StreamInfo
from pipeline.runtime.node import GraphContext
from pipeline.runtime.streams import (
    POSE,
    RAW_IMU_DTYPE,
    STATE,
    frame_dtype,
    frame_info,
    pose_dtype,
    state_dtype,
)
from pipeline.runtime.testing import make_block

REPO = Path(__file__).resolve().parents[1]
WAIT_S = 30.0  # upper bound of every wait (a hang guard, not a timing requirement)
LSL_CFG = """\
[ports]
IPv6 = disable
[multicast]
ResolveScope = machine
ListenAddress = 127.0.0.1
[log]
level = -2
"""

_cfg_dir = tempfile.mkdtemp(prefix="imuflow-lsl-")
_cfg = Path(_cfg_dir) / "lsl_api.cfg"
_cfg.write_text(LSL_CFG)
os.environ["LSLAPICFG"] = str(_cfg)  # before any LSL call in this process (and for children)

import pylsl  # after LSLAPICFG, so liblsl loads the machine-only configuration


def uid() -> str:
    return uuid.uuid4().hex[:10]


def wait_for(cond, what: str, timeout_s: float = WAIT_S, step=None) -> None:
    """Call ``step`` (if any) until ``cond()``; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.01)


def connect(node: LslOutlet, first_block, source_id: str) -> pylsl.StreamInlet:
    """Feed the first block (the node creates the outlet and waits for an inlet), open the inlet."""
    worker = threading.Thread(target=node.on_block, args=("in", first_block))
    worker.start()
    found = pylsl.resolve_byprop("source_id", source_id, timeout=WAIT_S)
    assert len(found) == 1, f"outlet {source_id} not found"
    inlet = pylsl.StreamInlet(found[0], max_buflen=60)
    inlet.open_stream(timeout=WAIT_S)
    worker.join(WAIT_S)
    assert not worker.is_alive()
    return inlet


def pull_all(inlet: pylsl.StreamInlet, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Pull until ``n`` samples came (or WAIT_S passed); values (n, ch) and time stamps (n,)."""
    values, stamps = [], []
    got = 0
    deadline = time.monotonic() + WAIT_S
    while got < n and time.monotonic() < deadline:
        x, t = inlet.pull_chunk(timeout=0.2, max_samples=n - got)
        if t:
            values.append(np.asarray(x, dtype=np.float32))
            stamps.append(np.asarray(t))
            got += len(t)
    assert got == n, f"received {got} of {n} samples"
    return np.concatenate(values), np.concatenate(stamps)


def feed_blocks(node: LslOutlet, info: StreamInfo, data: np.ndarray, sizes: list[int]) -> None:
    """Hand ``data`` to the node in blocks of ``sizes`` (repeated), a gap flag on the 3rd."""
    i, k = 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        node.on_block("in", make_block(info, data[i:i + n], t_host=int(data["t_host"][i]),
                                       seq=k, gap=k == 2))
        i += n
        k += 1


def host_times(n: int, rate_hz: float = 100.0) -> np.ndarray:
    """(n,) int64 ns: a grid of host monotonic times starting now."""
    t0 = time.monotonic_ns()
    return t0 + (np.arange(n) * (1e9 / rate_hz)).astype(np.int64)


def meta(info: pylsl.StreamInfo) -> tuple[list, list, list]:
    """Channel labels, units and types from a stream's full XML description."""
    return info.get_channel_labels(), info.get_channel_units(), info.get_channel_types()


def assert_stamps(stamps: np.ndarray, t_host: np.ndarray, node: LslOutlet) -> None:
    """LSL time stamps are the samples' t_host on pylsl.local_clock() (same clock here)."""
    offset = node.stats.extra["lsl_clock_offset_ns"]
    assert abs(offset) < 1_000_000  # Linux: both are CLOCK_MONOTONIC (measured ~0)
    np.testing.assert_allclose(stamps, (t_host + offset) / 1e9, rtol=0, atol=1e-6)


# -- outlet node -> pylsl inlet ------------------------------------------------------------------
def test_imu_frames_reach_an_lsl_inlet_with_values_stamps_and_metadata():
    sid = f"t{uid()}"
    node = LslOutlet.create("lsl", source_id_prefix=sid, wait_for_consumer_s=WAIT_S)
    info = frame_info("sync/imu.frame", ["thigh", "shank"], 100.0)
    rng = np.random.default_rng(1)
    data = np.zeros(400, frame_dtype(2))
    data["t_host"] = host_times(400)
    data["acc"] = rng.normal(0, 9.81, (400, 2, 3))
    data["gyr"] = rng.normal(0, 2.0, (400, 2, 3))
    data["acc"][50, 1] = np.nan  # a MISSING sensor stays NaN
    source_id = f"{sid}/lsl/sync/imu.frame"
    inlet = connect(node, make_block(info, data[:1], t_host=int(data["t_host"][0])), source_id)
    feed_blocks(node, info, data[1:], [1, 7, 1, 64, 3])
    values, stamps = pull_all(inlet, 400)

    expected = np.concatenate([data["acc"], data["gyr"]], axis=2).reshape(400, 12)
    np.testing.assert_array_equal(values, expected)  # float32 both ways: bit for bit, NaN too
    assert_stamps(stamps, data["t_host"], node)
    full = inlet.info(timeout=WAIT_S)
    assert (full.name(), full.type(), full.source_id()) == ("imuflow sync/imu.frame", "IMU",
                                                            source_id)
    assert (full.nominal_srate(), full.channel_count(), full.channel_format()) == (
        100.0, 12, pylsl.cf_float32)
    labels, units, types = meta(full)
    assert labels[:6] == ["thigh_acc_x", "thigh_acc_y", "thigh_acc_z",
                          "thigh_gyr_x", "thigh_gyr_y", "thigh_gyr_z"]
    assert labels[6:] == [lb.replace("thigh", "shank") for lb in labels[:6]]
    assert units == ["m/s^2"] * 3 + ["rad/s"] * 3 + ["m/s^2"] * 3 + ["rad/s"] * 3
    assert types[:6] == ["AccelerationX", "AccelerationY", "AccelerationZ",
                         "AngularVelocityX", "AngularVelocityY", "AngularVelocityZ"]
    own = full.desc().child("imuflow")
    assert own.child_value("stream") == "sync/imu.frame"
    assert own.child_value("imus") == "thigh,shank"
    assert node.stats.extra["streams"] == {"imuflow sync/imu.frame": 400}
    reply = node.on_command("streams", {})
    assert reply["ok"] and reply["streams"][0]["source_id"] == source_id
    node.teardown()


def test_chain_state_goes_out_as_hinge_angles_in_degrees_and_quaternions():
    sid = f"t{uid()}"
    node = LslOutlet.create("lsl", source_id_prefix=sid, wait_for_consumer_s=WAIT_S)
    dt = state_dtype(3, 2)
    info = StreamInfo.for_array(
        "observer/chain.state", STATE, dt, rate_hz=60.0, channels=dt.names,
        units=("ns", "1", "rad"),
        meta={"bodies": ["pelvis", "thigh", "shank"], "hinges": ["thigh", "shank"]})
    rng = np.random.default_rng(2)
    q = rng.normal(size=(300, 3, 4))
    data = np.zeros(300, dt)
    data["t_host"] = host_times(300, 60.0)
    data["q_rel"] = q / np.linalg.norm(q, axis=-1, keepdims=True)
    data["angle"] = rng.uniform(-1, 2.4, (300, 2))
    source_id = f"{sid}/lsl/observer/chain.state"
    inlet = connect(node, make_block(info, data[:5], t_host=int(data["t_host"][0])), source_id)
    feed_blocks(node, info, data[5:], [1, 30, 2])
    values, stamps = pull_all(inlet, 300)

    np.testing.assert_array_equal(values[:, :4], data["q_rel"][:, 0])  # pelvis: w, x, y, z
    np.testing.assert_allclose(values[:, 4:], np.degrees(data["angle"]), rtol=1e-6)
    assert_stamps(stamps, data["t_host"], node)
    full = inlet.info(timeout=WAIT_S)
    labels, units, types = meta(full)
    assert labels == ["pelvis_quat_w", "pelvis_quat_x", "pelvis_quat_y", "pelvis_quat_z",
                      "thigh_angle", "shank_angle"]
    assert units == ["normalized"] * 4 + ["degrees"] * 2
    assert types == ["OrientationA", "OrientationB", "OrientationC", "OrientationD",
                     "JointAngle", "JointAngle"]
    assert (full.type(), full.nominal_srate(), full.source_id()) == ("MoCap", 60.0, source_id)
    node.teardown()


def test_chain_pose_goes_out_as_position_and_quaternion_per_body():
    sid = f"t{uid()}"
    node = LslOutlet.create("lsl", source_id_prefix=sid, wait_for_consumer_s=WAIT_S,
                            names={"fk/chain.pose": "knee poses"},
                            rates={"fk/chain.pose": 100.0})
    dt = pose_dtype(2)
    info = StreamInfo.for_array("fk/chain.pose", POSE, dt, rate_hz=0.0, channels=dt.names,
                                units=("ns", "m", "1"), meta={"bodies": ["thigh", "shank"]})
    rng = np.random.default_rng(3)
    data = np.zeros(250, dt)
    data["t_host"] = host_times(250)
    data["pos"] = rng.normal(size=(250, 2, 3))
    data["quat"] = rng.normal(size=(250, 2, 4))
    source_id = f"{sid}/lsl/fk/chain.pose"
    inlet = connect(node, make_block(info, data[:1], t_host=int(data["t_host"][0])), source_id)
    feed_blocks(node, info, data[1:], [4, 1, 100])
    values, stamps = pull_all(inlet, 250)

    expected = np.concatenate([data["pos"], data["quat"]], axis=2).reshape(250, 14)
    np.testing.assert_array_equal(values, expected)
    assert_stamps(stamps, data["t_host"], node)
    full = inlet.info(timeout=WAIT_S)
    labels, units, types = meta(full)
    assert full.name() == "knee poses" and full.type() == "MoCap"
    assert full.nominal_srate() == 100.0  # from params.rates: fk declares no rate
    assert labels[:7] == ["thigh_pos_x", "thigh_pos_y", "thigh_pos_z", "thigh_quat_w",
                          "thigh_quat_x", "thigh_quat_y", "thigh_quat_z"]
    assert labels[7:] == [lb.replace("thigh", "shank") for lb in labels[:7]]
    assert units == (["meters"] * 3 + ["normalized"] * 4) * 2
    assert types[:7] == ["PositionX", "PositionY", "PositionZ", "OrientationA", "OrientationB",
                         "OrientationC", "OrientationD"]
    node.teardown()


def test_outlet_refuses_a_topic_it_cannot_describe():
    node = LslOutlet.create("lsl", source_id_prefix=f"t{uid()}")
    info = StreamInfo(stream="x/count", kind="count", rate_hz=10.0, dtype="<i8")
    with pytest.raises(ValueError, match="cannot publish x/count"):
        node.on_block("in", make_block(info, np.arange(3)))


# -- pylsl outlet -> LslImu driver ---------------------------------------------------------------
IMU_LABELS = [f"{s}_{q}_{a}" for s in ("thigh", "shank") for q in ("acc", "gyr") for a in "xyz"]


def imu_outlet(source_id: str, gyr_unit: str = "deg/s") -> pylsl.StreamOutlet:
    """A 12-channel, 100 Hz IMU outlet as a third-party program would publish it."""
    info = pylsl.StreamInfo("test imu", "IMU", 12, 100.0, "float32", source_id)
    chans = info.desc().append_child("channels")
    for label in IMU_LABELS:
        ch = chans.append_child("channel")
        ch.append_child_value("label", label)
        ch.append_child_value("unit", "m/s^2" if "_acc_" in label else gyr_unit)
    return pylsl.StreamOutlet(info)


def imu_samples(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 5, (n, 12)).astype(np.float32)


def push(outlet: pylsl.StreamOutlet, x: np.ndarray, t0: float) -> np.ndarray:
    """Push ``x`` in chunks with explicit time stamps 10 ms apart from ``t0``; return them (s)."""
    stamps = t0 + np.arange(len(x)) * 0.01
    for i in range(0, len(x), 37):
        outlet.push_chunk(x[i:i + 37], stamps[i:i + 37].tolist())
    return stamps


def start_driver(**params) -> LslImu:
    node = LslImu.create("lsl", **params)
    node.on_start()
    wait_for(lambda: node.stats.extra["connected"], "the driver to open the stream",
             step=lambda: node.poll(0.02))
    return node


def received(node: LslImu, sensor: str, since: int = 0) -> np.ndarray:
    blocks = [b for b in node.emitted[since:] if b.info.source == sensor]
    return np.concatenate([b.data for b in blocks]) if blocks else np.empty(0, RAW_IMU_DTYPE)


def poll_until(node: LslImu, n: int, since: int = 0) -> None:
    wait_for(lambda: len(received(node, "shank", since)) >= n, f"{n} samples per sensor",
             step=lambda: node.poll(0.02))


def test_driver_keeps_every_sample_of_an_lsl_outlet_with_values_and_clocks():
    sid = f"t{uid()}"
    outlet = imu_outlet(sid)
    node = start_driver(source_id=sid)
    wait_for(outlet.have_consumers, "the inlet to connect")
    x = imu_samples(500, 4)
    stamps = push(outlet, x, pylsl.local_clock())
    poll_until(node, 500)

    for s, sensor in enumerate(("thigh", "shank")):
        out = received(node, sensor)
        assert len(out) == 500 and out.dtype == RAW_IMU_DTYPE
        np.testing.assert_array_equal(out["acc"], x[:, 6 * s:6 * s + 3])
        np.testing.assert_allclose(out["gyr"], np.radians(x[:, 6 * s + 3:6 * s + 6]), rtol=1e-6)
        assert np.all(np.isnan(out["mag"])) and np.all(out["counter"] == -1)
        np.testing.assert_allclose(out["t_sensor"], stamps * 1e9, rtol=0, atol=2e3)  # ns
        # t_host = the same instant on this host: t_sensor + LSL's time correction (one machine:
        # well under 50 ms), the same for every sample of one correction estimate
        d = out["t_host"] - out["t_sensor"]
        assert np.all(np.abs(d) < 50_000_000)
    blocks = [b for b in node.emitted if b.info.source == "thigh"]
    info = blocks[0].info
    assert (info.stream, info.rate_hz, info.meta["lsl_source_id"]) == ("lsl/imu.raw:thigh",
                                                                       100.0, sid)
    assert not any(b.header.flags & Flag.GAP for b in node.emitted)
    assert node.stats.extra["samples"] == 500
    node.on_stop()
    node.teardown()


def test_lost_outlet_is_found_again_and_the_next_block_is_a_gap():
    sid = f"t{uid()}"
    outlet = imu_outlet(sid)
    node = start_driver(source_id=sid, sensor="unused")
    wait_for(outlet.have_consumers, "the inlet to connect")
    first = imu_samples(120, 5)
    t0 = pylsl.local_clock()
    push(outlet, first, t0)
    poll_until(node, 120)
    n_before = len(node.emitted)

    del outlet  # the sending program ends: liblsl closes the connection
    wait_for(lambda: node.stats.extra["lost"] == 1, "the driver to notice the loss",
             step=lambda: node.poll(0.02))
    outlet = imu_outlet(sid)  # it starts again with the same source_id
    wait_for(lambda: node.stats.extra["connected"] and outlet.have_consumers(),
             "the driver to reconnect", step=lambda: node.poll(0.02))
    second = imu_samples(80, 6)
    push(outlet, second, pylsl.local_clock())
    poll_until(node, 80, since=n_before)

    assert node.stats.extra["reconnects"] == 1
    for s, sensor in enumerate(("thigh", "shank")):
        before = [b for b in node.emitted[:n_before] if b.info.source == sensor]
        after = [b for b in node.emitted[n_before:] if b.info.source == sensor]
        assert not any(b.header.flags & Flag.GAP for b in before)
        assert after[0].header.flags & Flag.GAP  # the first block after the reconnect
        assert not any(b.header.flags & Flag.GAP for b in after[1:])
        got = np.concatenate([b.data["acc"] for b in before + after])
        np.testing.assert_array_equal(got, np.concatenate([first, second])[:, 6 * s:6 * s + 3])
    node.teardown()


def test_channels_from_params_with_units_in_g_and_sensor_map():
    sid = f"t{uid()}"
    info = pylsl.StreamInfo("bare", "Accel", 7, 50.0, "double64", sid)  # no channel labels
    outlet = pylsl.StreamOutlet(info)
    node = LslImu.create("lsl", context=GraphContext(sensors={"dev7": "thigh"}),  # sensors: map
                         source_id=sid, acc_unit="g", gyr_unit="rad/s",
                         channels={"dev7": {"acc": [1, 2, 3], "gyr": [4, 5, 6]}})
    node.on_start()
    wait_for(lambda: node.stats.extra["connected"], "the driver to open the stream",
             step=lambda: node.poll(0.02))
    wait_for(outlet.have_consumers, "the inlet to connect")
    x = np.random.default_rng(7).normal(size=(60, 7))
    push(outlet, x, pylsl.local_clock())
    wait_for(lambda: len(received(node, "thigh")) >= 60, "60 samples",
             step=lambda: node.poll(0.02))
    out = received(node, "thigh")
    np.testing.assert_allclose(out["acc"], x[:, 1:4] * 9.80665, rtol=1e-6)
    np.testing.assert_allclose(out["gyr"], x[:, 4:7], rtol=1e-6)
    assert node.emitted[0].info.stream == "lsl/imu.raw:thigh"
    assert node.emitted[0].info.rate_hz == 50.0
    node.teardown()


def test_channel_labels_of_common_styles_map_to_sensors():
    labels = ["AccX", "AccY", "AccZ", "gyro_x", "gyro_y", "gyro_z", "Mag X", "Mag Y", "Mag Z",
              "wrist.accel.x", "wrist.accel.y", "wrist.accel.z", "wrist-gyr-x", "wrist-gyr-y",
              "wrist-gyr-z", "", "", "", "battery"]
    types = [""] * 15 + ["AccelerationX", "AccelerationY", "AccelerationZ", ""]
    objects = [""] * 15 + ["foot"] * 3 + [""]
    plan = plan_from_labels(labels, types, objects, "imu")
    assert plan["imu"] == {"acc": [0, 1, 2], "gyr": [3, 4, 5], "mag": [6, 7, 8]}
    assert plan["wrist"] == {"acc": [9, 10, 11], "gyr": [12, 13, 14]}
    assert plan["foot"] == {"acc": [15, 16, 17]}  # no gyro: the driver leaves it out


def test_driver_params_need_a_stream_key():
    with pytest.raises(ConfigError, match="at least one of name, type, source_id"):
        LslImu.create("lsl")


# -- a real graph: sim -> sync -> lsl_outlet, read by a pylsl inlet ------------------------------
def test_graph_sim_sync_lsl_outlet_is_read_by_an_inlet(write_graph, runs_dir):
    name = f"lslgraph{uid()}"
    path = write_graph(f"""\
        version: 1
        name: {name}
        chain: {REPO / "configs/chains/knee.yaml"}
        nodes:
          - id: sim
            kind: sim
            params: {{rate_hz: 100, speed: 1.0, seed: 3}}
          - id: sync
            kind: sync
            params: {{rate_hz: 100}}
            inputs: {{raw: sim/imu.raw}}
          - id: lsl
            kind: lsl_outlet
            inputs: {{in: [sync/imu.frame, sim/chain.truth]}}
        """)
    proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", str(path), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, IMUFLOW_RUNS=str(runs_dir)))
    try:
        found = pylsl.resolve_byprop("source_id", f"{name}/lsl/sync/imu.frame", timeout=60.0)
        assert found, "the graph's imu.frame outlet was not found"
        truth = pylsl.resolve_byprop("source_id", f"{name}/lsl/sim/chain.truth", timeout=60.0)
        assert truth, "the graph's chain.truth outlet was not found"
        inlet = pylsl.StreamInlet(found[0], max_buflen=60)
        inlet.open_stream(timeout=WAIT_S)
        values, stamps = pull_all(inlet, 200)
        full = inlet.info(timeout=WAIT_S)
        t_inlet = pylsl.StreamInlet(truth[0])
        t_full = t_inlet.info(timeout=WAIT_S)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    labels, units, _ = meta(full)
    assert units[:6] == ["m/s^2"] * 3 + ["rad/s"] * 3
    assert labels[:3] == ["thigh_acc_x", "thigh_acc_y", "thigh_acc_z"] and len(labels) == 12
    assert full.nominal_srate() == 100.0 and full.name() == "imuflow sync/imu.frame"
    # every frame of the 100 Hz grid, in order, none lost: stamps exactly 10 ms apart
    np.testing.assert_allclose(np.diff(stamps), 0.01, atol=1e-6)
    ok = np.isfinite(values).all(axis=1)
    assert ok[-100:].all()  # once both sensors stream, every frame has numbers
    acc = values[ok][:, :3]
    assert 2.0 < np.median(np.linalg.norm(acc, axis=1)) < 20.0  # gravity plus motion, m/s^2
    t_labels, t_units, _ = meta(t_full)
    assert t_labels == ["thigh_quat_w", "thigh_quat_x", "thigh_quat_y", "thigh_quat_z",
                        "shank_angle"]
    assert t_units[-1] == "degrees"
