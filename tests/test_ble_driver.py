"""BLE drivers (MovellaDot, WitMotionBle) against tests/fake_bleak.py: connect, stream, drop,
stop."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from drivers.ble import movella_dot_protocol as dot
from drivers.ble import witmotion_ble_protocol as wit
from drivers.movella_dot import MovellaDot
from drivers.serial.witmotion import ACC_SCALE, GYR_SCALE
from drivers.witmotion_ble import WitMotionBle
from pipeline.recording.session_reader import read_streams
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.message import Flag
from pipeline.runtime.supervisor import Supervisor
from tests import fake_bleak as fb

A1, A2 = "D4:22:CD:00:00:01", "D4:22:CD:00:00:02"


@pytest.fixture(autouse=True)
def fresh_devices():
    fb.reset()
    yield
    fb.reset()


def run_for(node, seconds: float, until=None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not (until and until()):
        assert node.poll(0.02) is True


def raw_blocks(node, name: str) -> list:
    return [b for b in node.emitted if b.topic.endswith("imu.raw") and b.info.source == name]


def gap_flags(blocks) -> list[bool]:
    return [bool(b.header.flags & Flag.GAP) for b in blocks]


def dot_node(addresses=(A1, A2), names=("thigh", "shank"), **kw):
    for a in addresses:
        if a.upper() not in fb.DEVICES:
            fb.add_device(fb.FakeDot(a))
    params = {"rate_hz": 30, "backend": "tests.fake_bleak", "reconnect_max_s": 0.5}
    params.update(kw)
    node = MovellaDot.create(sensors=[{"name": n, "address": a} for n, a in zip(names, addresses)],
                             **params)
    node.on_start()
    return node


def steps(ts: np.ndarray, rate_hz: float) -> np.ndarray:
    """Sample periods between consecutive device time stamps (1 = no loss)."""
    return np.round(np.diff(ts) * rate_hz / 1e9).astype(int)


def test_dot_configures_rate_battery_and_streams_two_sensors():
    d1 = fb.add_device(fb.FakeDot(A1))
    d1.control[8:19] = b"Movella DOT"  # the device tag must survive read-modify-write
    node = dot_node()
    t0 = time.monotonic()
    try:
        run_for(node, 1.2)
    finally:
        elapsed = time.monotonic() - t0
        node.on_stop()
        node.teardown()
    writes = [(u, d) for op, u, d in d1.log if op == "write"]
    ctl = next(d for u, d in writes if u == dot.DEVICE_CONTROL)
    assert ctl[0] == dot.VISIT_OUTPUT_RATE and dot.output_rate_of(ctl) == 30
    assert ctl[8:19] == b"Movella DOT"
    assert (dot.CONTROL, dot.start_measurement(21)) in writes
    assert ("start_notify", dot.MEDIUM_PAYLOAD, b"") in d1.log
    for name in ("thigh", "shank"):
        blocks = raw_blocks(node, name)
        data = np.concatenate([b.data for b in blocks])
        # about 1.2 s at 30 Hz: never more than the wall clock allows, at least a third (a 3x
        # margin for a loaded CI machine)
        assert 36 / 3 <= len(data) <= elapsed * 30 + 2, (len(data), elapsed)
        assert np.all(steps(data["t_sensor"], 30) == 1)
        k = np.round(data["t_sensor"] * 30 / 1e9).astype(int)  # fake: ts = k * period
        np.testing.assert_allclose(data["acc"][:, 0], 0.001 * (k % 10000), atol=1e-4)
        np.testing.assert_allclose(data["gyr"][:, 0], math.radians(10.0), rtol=1e-6)
        assert np.all(np.diff(data["t_host"]) > 0)
        assert blocks[0].info.meta["address"] in (A1, A2) and blocks[0].info.rate_hz == 30
        assert not any(gap_flags(blocks))
    s = node.stats.extra["sensors"]["thigh"]
    assert s["battery_pct"] == 87 and s["charging"] is False and s["frames_ok"] == len(
        np.concatenate([b.data for b in raw_blocks(node, "thigh")]))


def test_dot_battery_notification_updates_stats():
    d1 = fb.add_device(fb.FakeDot(A1))
    node = dot_node((A1,), ("thigh",))
    try:
        run_for(node, 0.5)
        node._loop.loop.call_soon_threadsafe(d1.set_battery, 42, True)
        run_for(node, 0.3)
        assert node.stats.extra["sensors"]["thigh"]["battery_pct"] == 42
        assert node.stats.extra["sensors"]["thigh"]["charging"] is True
    finally:
        node.on_stop()
        node.teardown()


def test_dot_drop_out_reconnects_marks_one_gap_and_keeps_streaming():
    node = dot_node()
    d1 = fb.DEVICES[A1]
    try:
        run_for(node, 0.8)
        d1.drop(1.0)
        run_for(node, 4.0, until=lambda: node.stats.extra["sensors"]["thigh"]["reconnects"] == 1
                and len(raw_blocks(node, "thigh")) > 0
                and node.stats.extra["sensors"]["thigh"]["frames_ok"] > 60)
        run_for(node, 0.5)
    finally:
        node.on_stop()
        node.teardown()
    blocks = raw_blocks(node, "thigh")
    flags = gap_flags(blocks)
    assert sum(flags) == 1, flags
    first = flags.index(True)
    before = np.concatenate([b.data for b in blocks[:first]])
    after = np.concatenate([b.data for b in blocks[first:]])
    assert len(before) >= 15 and len(after) >= 15
    assert np.all(steps(before["t_sensor"], 30) == 1) and np.all(steps(after["t_sensor"], 30) == 1)
    lost = round((after["t_sensor"][0] - before["t_sensor"][-1]) * 30 / 1e9) - 1
    assert 30 <= lost <= 90  # 1 s outage at 30 Hz plus reconnect time; nothing filled in
    st = node.stats.extra["sensors"]["thigh"]
    assert st["reconnects"] == 1 and st["samples_lost"] == lost
    assert not any(gap_flags(raw_blocks(node, "shank")))


def test_dot_lost_notifications_on_a_live_link_are_a_marked_gap():
    node = dot_node((A1,), ("thigh",))
    try:
        run_for(node, 0.6)
        fb.DEVICES[A1].skip_next = 5
        run_for(node, 0.8)
    finally:
        node.on_stop()
        node.teardown()
    blocks = raw_blocks(node, "thigh")
    assert sum(gap_flags(blocks)) == 1
    data = np.concatenate([b.data for b in blocks])
    assert sorted(set(steps(data["t_sensor"], 30))) == [1, 6]
    assert node.stats.extra["sensors"]["thigh"]["samples_lost"] == 5
    assert node.stats.extra["sensors"]["thigh"]["reconnects"] == 0


def test_dot_stop_writes_stop_then_notifications_off_then_disconnects():
    node = dot_node((A1,), ("thigh",))
    run_for(node, 0.5)
    node.on_stop()
    node.teardown()
    log = [(op, u, d) for op, u, d in fb.DEVICES[A1].log if op != "dropped"]
    i_stop = log.index(("write", dot.CONTROL, dot.stop_measurement(21)))
    i_off = log.index(("stop_notify", dot.MEDIUM_PAYLOAD, b""))
    i_disc = log.index(("disconnect", "", b""))
    assert i_stop < i_off < i_disc == len(log) - 1
    sent = fb.DEVICES[A1].sent
    time.sleep(0.2)
    assert fb.DEVICES[A1].sent == sent and not fb.DEVICES[A1].streaming
    n = sum(len(b.data) for b in raw_blocks(node, "thigh"))
    assert n == sent  # every notification the device sent was emitted, none invented


def test_dot_custom_mode_5_publishes_onboard_quaternion():
    node = dot_node((A1,), ("thigh",), payload_mode=26)
    try:
        run_for(node, 0.6)
    finally:
        node.on_stop()
        node.teardown()
    assert ("start_notify", dot.LONG_PAYLOAD, b"") in fb.DEVICES[A1].log
    quats = [b for b in node.emitted if b.topic.endswith("imu.orientation")]
    raw = raw_blocks(node, "thigh")
    assert len(quats) == sum(len(b.data) for b in raw) > 5
    np.testing.assert_allclose(quats[0].data["q"][0], [1, 0, 0, 0])
    assert raw[0].info.meta["onboard_quaternion"] == "imu.orientation"


def test_unreachable_dot_does_not_stop_the_other():
    fb.add_device(fb.FakeDot(A1))
    node = MovellaDot.create(sensors=[{"name": "thigh", "address": A1},
                                      {"name": "shank", "address": "D4:22:CD:00:00:99"}],
                             rate_hz=30, backend="tests.fake_bleak", reconnect_max_s=0.2,
                             scan_timeout_s=0.1)
    node.on_start()
    try:
        run_for(node, 1.0)
    finally:
        node.on_stop()
        node.teardown()
    st = node.stats.extra["sensors"]
    assert st["shank"]["connected"] is False and st["shank"]["connect_failures"] >= 2
    assert len(raw_blocks(node, "thigh")) > 10 and raw_blocks(node, "shank") == []


def test_params_are_checked():
    with pytest.raises(ConfigError, match="rate_hz"):
        MovellaDot.create(sensors=[{"name": "a", "address": A1}], rate_hz=25)
    with pytest.raises(ConfigError, match="payload_mode"):
        MovellaDot.create(sensors=[{"name": "a", "address": A1}], payload_mode=5)
    with pytest.raises(ConfigError, match="unique"):
        MovellaDot.create(sensors=[{"name": "a", "address": A1}, {"name": "a", "address": A2}])
    with pytest.raises(ConfigError, match="backend"):
        MovellaDot.create(sensors=[{"name": "a", "address": A1}], backend="no.such.module")
    with pytest.raises(ConfigError, match="rate"):
        WitMotionBle.create(sensors=[{"name": "a", "address": A1}], rate_hz=20, set_rate=True)


def test_witmotion_ble_sets_rate_streams_and_reads_battery():
    dev = fb.add_device(fb.FakeWitMotion("E8:00:00:00:00:01"))
    node = WitMotionBle.create(sensors=[{"name": "shank", "address": dev.address}], rate_hz=50,
                               set_rate=True, backend="tests.fake_bleak")
    node.on_start()
    t0 = time.monotonic()
    try:
        run_for(node, 1.0)
    finally:
        elapsed = time.monotonic() - t0
        node.on_stop()
        node.teardown()
    writes = [d for op, u, d in dev.log if op == "write" and u == wit.WRITE_UUID]
    assert writes[:2] == [wit.unlock(), wit.set_rate(50)] and dev.rate_hz == 50
    data = np.concatenate([b.data for b in raw_blocks(node, "shank")])
    assert 50 / 3 <= len(data) <= elapsed * 50 + 2, (len(data), elapsed)  # 1 s at 50 Hz, 3x
    assert np.all(data["t_sensor"] == -1) and np.all(np.diff(data["t_host"]) > 0)
    np.testing.assert_allclose(data["acc"][:, 1], -1024 * ACC_SCALE, rtol=1e-6)
    np.testing.assert_allclose(data["gyr"][:, 0], 100 * GYR_SCALE, rtol=1e-6)
    assert node.stats.extra["sensors"]["shank"]["battery_pct"] == 90  # 3.95 V
    assert dev.log[-2:] == [("stop_notify", wit.NOTIFY_UUID, b""), ("disconnect", "", b"")]


GRAPH = """\
version: 1
nodes:
  - id: dots
    kind: drivers.movella_dot.MovellaDot
    params:
      sensors: [{{name: thigh, address: "{a1}"}}, {{name: shank, address: "{a2}"}}]
      rate_hz: 60
      backend: tests.fake_bleak
      reconnect_max_s: 0.5
  - id: rec
    kind: nodes.recorder.Recorder
    params: {{path: {rec}, flush_s: 0.2}}
    inputs: {{in: dots/imu.raw}}
"""


def test_graph_with_a_dot_dropping_out_for_5_s_loses_only_the_outage(write_graph, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("IMUFLOW_FAKE_BLE", json.dumps([
        {"kind": "dot", "address": A1, "drop_after_s": 1.5, "drop_for_s": 5.0},
        {"kind": "dot", "address": A2}]))
    rec = tmp_path / "dots.mcap"
    sup = Supervisor(load_graph(write_graph(GRAPH.format(a1=A1, a2=A2, rec=rec))))
    state = {"t_reconnect": None}

    def until() -> bool:
        s = sup.status.get("dots", {}).get("sensors", {}).get("thigh", {})
        if s.get("reconnects") and state["t_reconnect"] is None:
            state["t_reconnect"] = time.monotonic()
        return (state["t_reconnect"] is not None and time.monotonic() - state["t_reconnect"] > 1.5
                ) or time.monotonic() - t0 > 30

    sup.start()
    t0 = time.monotonic()
    sup.run(until=until)
    status = sup.status["dots"]["sensors"]
    assert state["t_reconnect"] is not None, "the sensor never came back"
    streams = read_streams(rec)
    thigh = streams["dots/imu.raw:thigh"]
    st = steps(thigh.data["t_sensor"], 60)
    jumps = np.flatnonzero(st != 1)
    assert len(jumps) == 1, f"losses at {jumps}: {st[jumps]}"
    lost = int(st[jumps[0]]) - 1
    assert 5.0 * 60 <= lost <= 8.0 * 60, lost  # the 5 s outage plus reconnect time, nothing more
    assert jumps[0] >= 60 and len(st) - jumps[0] >= 60  # data before and after the outage
    gaps = (thigh.header["flags"] & 1).astype(bool)
    first_after = np.searchsorted(np.cumsum(thigh.header["n"]), jumps[0] + 1, side="right")
    assert gaps[first_after] and gaps.sum() == 1
    assert status["thigh"]["samples_lost"] == lost and status["thigh"]["reconnects"] == 1
    shank = streams["dots/imu.raw:shank"]
    assert np.all(steps(shank.data["t_sensor"], 60) == 1)
    assert not np.any(shank.header["flags"] & 1)
    print(f"thigh: {len(thigh.data)} samples kept, {lost} lost in the outage "
          f"({lost / 60:.2f} s), 0 lost elsewhere; shank: {len(shank.data)} samples, 0 lost")


def test_fake_scanner_lists_devices_like_bleak():
    import asyncio

    from drivers.ble.discovery import BleKind, scan_ble
    fb.add_device(fb.FakeDot(A1))
    fb.add_device(fb.FakeWitMotion("E8:00:00:00:00:01"))
    before = set(threading.enumerate())
    found = asyncio.run(scan_ble(0.1, scanner_cls=fb.FakeBleakScanner))
    assert [(d.address, d.kind) for d in found] == [(A1, BleKind.MOVELLA_DOT),
                                                     ("E8:00:00:00:00:01", BleKind.WITMOTION)]
    assert set(threading.enumerate()) - before == set()  # the scan leaves no thread behind


@pytest.mark.slow
def test_shipped_knee_config_runs_from_fake_dots_to_poses(tmp_path, monkeypatch):
    """configs/movella_dot_knee.yaml as shipped, with the fake backend and without the window."""
    import yaml

    from tests.conftest import REPO
    monkeypatch.setenv("IMUFLOW_FAKE_BLE", json.dumps([
        {"kind": "dot", "address": "D4:22:CD:00:00:01"},
        {"kind": "dot", "address": "D4:22:CD:00:00:02"}]))
    doc = yaml.safe_load((REPO / "configs/movella_dot_knee.yaml").read_text())
    doc["chain"] = str(REPO / doc["chain"])
    doc["model_dirs"] = [str(REPO / "models")]
    rec = tmp_path / "knee.mcap"
    nodes = []
    for n in doc["nodes"]:
        if n["id"] == "viewer":
            continue
        if n["id"] == "dots":
            n["params"]["backend"] = "tests.fake_bleak"
        if n["id"] == "observer" and "model" in n.get("params", {}):
            n["params"]["model"] = str(REPO / n["params"]["model"])
        if n["id"] == "recorder":
            n["params"]["path"] = str(rec)
            n["inputs"] = {"in": ["dots/imu.raw", "observer/chain.state", "fk/chain.pose"]}
        nodes.append(n)
    doc["nodes"] = nodes
    path = tmp_path / "knee.yaml"
    path.write_text(yaml.safe_dump(doc))
    sup = Supervisor(load_graph(path))
    sup.start()
    t0 = time.monotonic()
    sup.run(until=lambda: sup.status.get("fk", {}).get("samples_out", 0) >= 200
            or time.monotonic() - t0 > 60)
    streams = read_streams(rec)
    assert {"dots/imu.raw:thigh", "dots/imu.raw:shank"} <= set(streams)
    state = streams["observer/chain.state"].data
    pose = streams["fk/chain.pose"].data
    assert len(state) >= 100 and np.all(np.isfinite(state["angle"]))
    assert len(pose) >= 100 and np.all(np.isfinite(pose["pos"]))


def test_a_device_that_breaks_the_protocol_fails_the_node_loudly():
    dev = fb.add_device(fb.FakeDot(A1))
    dev.control = bytearray(10)  # a device control value too short to hold the output rate
    node = MovellaDot.create(sensors=[{"name": "thigh", "address": A1}], rate_hz=30,
                             backend="tests.fake_bleak")
    node.on_start()
    try:
        with pytest.raises(RuntimeError, match="thigh.*device control value too short"):
            run_for(node, 2.0)
    finally:
        node.on_stop()
        node.teardown()
