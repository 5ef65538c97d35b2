"""Sensor names: the graph's `sensors:` map renames sensors; mismatches fail before start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from drivers.replay import Replay
from drivers.serial_imu import SerialImu
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.node import GraphContext
from pipeline.runtime.sensor_check import check_sensors
from tests.serial_frames import mti_frame
from tests.test_recorder import REPO, synth_session
from tests.test_serial_driver import collected, feed

KNEE = REPO / "configs" / "chains" / "knee.yaml"


@pytest.fixture
def femur_tibia(tmp_path: Path) -> Path:
    """A 2 s session whose sensors are named as a lab named them: femur and tibia."""
    path = tmp_path / "lab.mcap"
    synth_session(path, 2.0, sensors=("femur", "tibia"))
    return path


def _graph(tmp_path: Path, session: Path, sensors: str = "", observer: bool = False,
           imus: str = "[thigh, shank]") -> Path:
    text = f"""
version: 1
name: mapped
chain: {KNEE}
{sensors}
nodes:
  - id: replay
    kind: replay
    params: {{path: {session}, speed: 0}}
  - id: sync
    kind: sync
    params: {{imus: {imus}}}
    inputs: {{raw: replay/imu.raw}}
"""
    if observer:
        text += f"""
  - id: observer
    kind: observer
    params: {{model: {REPO / 'models' / 'knee.onnx'}}}
    inputs: {{frame: sync/imu.frame}}
"""
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


def test_replay_applies_the_map_to_source_stream_and_metadata(femur_tibia: Path) -> None:
    ctx = GraphContext(sensors={"femur": "thigh"})
    node = Replay.create("rp", context=ctx, path=str(femur_tibia), speed=0)
    node.on_start()
    while node.poll(0.05):
        pass
    infos = {b.info.source: b.info for b in node.emitted}
    assert set(infos) == {"thigh", "tibia"}  # tibia is not in the map: unchanged
    assert infos["thigh"].stream == "rp/imu.raw:thigh"
    assert infos["thigh"].meta["recorded_as"] == "femur"
    assert "recorded_as" not in infos["tibia"].meta


def test_serial_driver_names_its_stream_after_the_site(tmp_path: Path) -> None:
    ctx = GraphContext(sensors={"imu7": "shank"})
    node = SerialImu.create(port="loop://", protocol="xbus", sensor="imu7", context=ctx)
    node.on_start()
    feed(node, b"".join(mti_frame(k) for k in range(20)))
    assert len(collected(node, "shank")) == 20 and not len(collected(node, "imu7"))
    assert node.emitted[0].info.meta["sensor_id"] == "imu7"
    node.on_stop()
    node.teardown()


def test_unmapped_sensors_fail_at_load_naming_both_lists_and_the_fix(tmp_path, femur_tibia):
    with pytest.raises(ConfigError) as err:
        load_graph(_graph(tmp_path, femur_tibia))
    msg = str(err.value)
    assert "node 'sync'" in msg and "['thigh', 'shank']" in msg and "['femur', 'tibia']" in msg
    assert "sensors:" in msg and "--name" in msg
    assert err.value.key == "sensors"


def test_the_map_makes_the_same_graph_load(tmp_path, femur_tibia) -> None:
    graph = load_graph(_graph(tmp_path, femur_tibia, "sensors: {femur: thigh, tibia: shank}",
                              observer=True))
    assert graph.sensors == {"femur": "thigh", "tibia": "shank"}
    carried = check_sensors(graph)
    assert carried["replay"] == ["thigh", "shank"] and carried["observer"] == ["thigh", "shank"]


def test_a_model_whose_imus_do_not_arrive_is_refused_at_load(tmp_path, femur_tibia) -> None:
    with pytest.raises(ConfigError) as err:  # sync passes femur/tibia on; knee.onnx wants thigh
        load_graph(_graph(tmp_path, femur_tibia, observer=True, imus="[femur, tibia]"))
    assert "node 'observer'" in str(err.value) and "model 'knee' needs IMUs" in str(err.value)


@pytest.mark.parametrize("bad, why", [
    ("sensors: [femur, thigh]", "must map"),
    ("sensors: {femur: thigh, tibia: thigh}", "more than one sensor to ['thigh']"),
])
def test_a_malformed_map_names_the_key(tmp_path, femur_tibia, bad: str, why: str) -> None:
    with pytest.raises(ConfigError, match="sensors") as err:
        load_graph(_graph(tmp_path, femur_tibia, bad))
    assert why in str(err.value) and err.value.key == "sensors"


def test_run_exits_non_zero_at_once_with_the_message(tmp_path, femur_tibia) -> None:
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", str(_graph(tmp_path, femur_tibia)),
                           "--quiet"], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert "not among the sensors its inputs carry ['femur', 'tibia']" in proc.stderr
    assert "restarting" not in proc.stderr  # nothing was started
