"""Viewer tests: buffers, status line, the window under a real Xvfb server, whole graphs,
headless PNGs."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from nodes.view.pose_slot import PoseSlot
from nodes.view.sample_ring import SampleRing
from nodes.view.status_feed import format_status, running_model
from pipeline.kinematics.chain import load_chain
from pipeline.kinematics.imu_synth import ImuNoise, simulate
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import (
    FRAME,
    POSE,
    STATE,
    TRUTH,
    frame_dtype,
    frame_info,
    pose_dtype,
    state_dtype,
)

pytest_plugins = ["tests.conftest_gui"]

REPO = Path(__file__).resolve().parents[1]
ARM3 = REPO / "configs" / "chains" / "arm3.yaml"


class PoseDemo(Source):
    """Test source of simulated arm motion: chain.pose, imu.frame and chain.truth at rate_hz.

    Ports:
        chain.pose (out): pos (n, 3) m earth frame, quat (n, 4) wxyz body to earth.
        imu.frame (out): acc m/s^2, gyr rad/s, sensor frame, sensors in chain order.
        chain.truth (out): q_rel wxyz body to parent, angle (n_hinge,) rad.
    """

    outputs = (POSE, FRAME, TRUTH)

    @dataclass(frozen=True)
    class Params:
        chain: str = str(ARM3)
        rate_hz: float = 100.0
        duration_s: float = 0.0  # 0 = endless (loops a 20 s recording)
        seed: int = 3

    def setup(self) -> None:
        p = self.params
        self.chain = load_chain(p.chain)
        self.rec = simulate(self.chain, 20.0, p.rate_hz, p.seed, noise=ImuNoise())
        n, nh, ni = self.chain.n_bodies, len(self.chain.hinge_bodies), len(self.chain.imus)
        self.declare(POSE, StreamInfo.for_array(f"{self.id}/{POSE}", POSE, pose_dtype(n),
                                                rate_hz=p.rate_hz))
        self.declare(TRUTH, StreamInfo.for_array(f"{self.id}/{TRUTH}", TRUTH,
                                                 state_dtype(n, nh), rate_hz=p.rate_hz))
        self.declare(FRAME, frame_info(f"{self.id}/{FRAME}", list(self.chain.imu_names),
                                       p.rate_hz))
        self._dtypes = (pose_dtype(n), state_dtype(n, nh), frame_dtype(ni))
        self._k = 0

    def on_start(self) -> None:
        self._t0 = time.monotonic()

    def poll(self, timeout_s: float) -> bool:
        p, rec = self.params, self.rec
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if p.duration_s and self._k >= p.duration_s * p.rate_hz:
                return False
            due = self._t0 + self._k / p.rate_hz
            time.sleep(max(0.0, min(due - time.monotonic(), end - time.monotonic())))
            if time.monotonic() < due:
                continue
            i, now = self._k % len(rec.t), time.monotonic_ns()
            pose, truth, frame = (np.zeros(1, dt) for dt in self._dtypes)
            pose["t_host"] = truth["t_host"] = frame["t_host"] = now
            pose["pos"], pose["quat"] = rec.pos_world[i], rec.q_world[i]
            truth["q_rel"], truth["angle"] = rec.q_rel[i], rec.joint_angles[i]
            frame["acc"], frame["gyr"] = rec.acc[i], rec.gyr[i]
            self.emit(POSE, pose, t_host=now)
            self.emit(TRUTH, truth, t_host=now)
            self.emit(FRAME, frame, t_host=now)
            self._k += 1
        return True


# -- buffers and status text (no display) ---------------------------------------------------------
def test_sample_ring_keeps_newest_rows_in_time_order():
    ring = SampleRing(5, 2)
    ring.extend(np.arange(3), np.arange(6).reshape(3, 2))
    ring.extend(np.arange(3, 7), np.arange(6, 14).reshape(4, 2))
    t, v = ring.snapshot()
    assert t.tolist() == [2, 3, 4, 5, 6]
    assert v[:, 0].tolist() == [4, 6, 8, 10, 12]
    assert ring.snapshot(since_ns=5)[0].tolist() == [5, 6]
    ring.extend(np.arange(10, 20), np.zeros((10, 2)))  # more than capacity at once
    assert ring.snapshot()[0].tolist() == [15, 16, 17, 18, 19]


def test_pose_slot_newest_wins_and_copies():
    slot = PoseSlot(2)
    pos = np.ones((2, 3), np.float32)
    slot.put(pos, np.tile([1, 0, 0, 0], (2, 1)), 5)
    slot.put(pos * 2, np.tile([0, 1, 0, 0], (2, 1)), 7)
    version, p, q, t = slot.get()
    assert version == 2 and t == 7 and p[0, 0] == 2 and q[0, 1] == 1
    p[0, 0] = 99
    assert slot.get()[1][0, 0] == 2


def test_status_line_has_rates_gaps_model_latency():
    snap = {"graph": "g", "nodes": {
        "sim": {"rate_out_hz": 100.2, "gaps": 0, "state": "running"},
        "observer": {"rate_out_hz": 99.8, "gaps": 3, "restarts": 1, "state": "running",
                     "model": "arm3_b"}}}
    line = format_status(snap, "observer", latency_ms_p99=2.34, viewer_fps=59.6)
    assert "sim 100 Hz" in line and "observer 100 Hz gaps 3 restarts 1" in line
    assert "model arm3_b" in line and "p99 2.3 ms" in line and "60 fps" in line
    assert running_model(snap, "nobody") == ""
    assert format_status({}, "observer") == "no supervisor status yet"


def test_viewer_config_errors_name_the_fix():
    from nodes.viewer import Viewer
    from pipeline.runtime.errors import ConfigError
    from pipeline.runtime.testing import make_block

    with pytest.raises(ConfigError, match="no chain to draw: set params.chain"):
        Viewer.create("viewer")
    with pytest.raises(ConfigError, match="headless must be"):
        Viewer.create("viewer", context=GraphContext(chain_file=ARM3), headless="maybe")
    with pytest.raises(ConfigError, match=r"calibration_pose: .*no still pose 'sitting'.*"
                                          r"\['neutral'\]"):
        Viewer.create("viewer", context=GraphContext(chain_file=ARM3), calibration_pose="sitting")
    viewer = Viewer.create("viewer", context=GraphContext(chain_file=ARM3))
    info = StreamInfo.for_array("fk/chain.pose", POSE, pose_dtype(5))
    with pytest.raises(ValueError, match="has 5 bodies, chain 'arm3' has 3"):
        viewer.on_block("pose", make_block(info, np.zeros(1, pose_dtype(5))))


def test_viewer_buffers_raw_imu_per_sensor():
    from nodes.viewer import Viewer
    from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info
    from pipeline.runtime.testing import make_block

    viewer = Viewer.create("viewer", context=GraphContext(chain_file=ARM3))
    raw = np.zeros(4, RAW_IMU_DTYPE)
    raw["t_host"], raw["acc"][:, 2], raw["gyr"][:, 0] = np.arange(1, 5), 9.81, 0.5
    viewer.on_block("imu", make_block(raw_imu_info("dot/imu.raw:wrist", "wrist", 60.0), raw))
    t, v = viewer.rings.imu["wrist"].snapshot()
    assert viewer.rings.names() == ["wrist"] and t.tolist() == [1, 2, 3, 4]
    assert np.allclose(v[:, 2], 9.81) and np.allclose(v[:, 3], 0.5)  # acc m/s^2, gyr rad/s


def test_software_renderer_draws_the_chain_and_follows_pose():
    from nodes.view.software_render import AggChainRenderer
    from pipeline.kinematics.fk import Kinematics

    chain = load_chain(ARM3)
    kin = Kinematics(chain)
    renderer = AggChainRenderer(chain, (320, 240))
    from mpl_toolkits.mplot3d import proj3d

    def pixels() -> list[tuple[int, int]]:  # (row, col) of each body's centre in the image
        ax = renderer.ax
        out = []
        for c in _body_centres(renderer.mesh, renderer._world):
            x, y, _ = proj3d.proj_transform(*c, ax.get_proj())
            px, py = ax.transData.transform((x, y))
            out.append((int(round(renderer.fig.bbox.height - py)), int(round(px))))
        return out

    q = chain.q_zero()
    a = renderer.render(*kin.forward(q))
    at_a = pixels()
    q[chain.q_start[1]] = 1.4  # bend the first hinge by 80 deg: seg2 and seg3 move
    b = renderer.render(*kin.forward(q))
    at_b = pixels()
    assert a.shape == (240, 320, 4) and a.dtype == np.uint8
    assert len(np.unique(a.reshape(-1, 4), axis=0)) > 20  # shaded bodies, not just background
    background = a[0, 0, :3]
    _assert_bodies_drawn_at(a, at_a, renderer.mesh, background)
    _assert_bodies_drawn_at(b, at_b, renderer.mesh, background)
    assert at_b[0] == at_a[0] and at_b[1] != at_a[1] and at_b[2] != at_a[2]
    for i in (1, 2):  # where the moved bodies were is background now
        assert np.abs(b[at_a[i]][:3].astype(int) - background).max() <= 16, (i, b[at_a[i]])


def _body_centres(mesh, world: np.ndarray) -> np.ndarray:
    """(n_bodies, 3) mean of each body's world vertices: inside its convex mesh."""
    bs = mesh.body_start
    return np.stack([world[bs[i]:bs[i + 1]].mean(0) for i in range(len(bs) - 1)])


def _scene_pixels(scene, points: np.ndarray, img: np.ndarray) -> list[tuple[int, int]]:
    """(row, col) in ``img`` (the canvas rendered) of world points, through the camera."""
    mapped = scene.view.scene.node_transform(scene.canvas.scene).map(points)
    xy = mapped[:, :2] / mapped[:, 3:4]  # canvas pixels (logical), y down
    scale = img.shape[0] / scene.canvas.size[1]
    return [(int(round(y * scale)), int(round(x * scale))) for x, y in xy]


def _without_bodies(scene) -> np.ndarray:
    scene.show_bodies(False)
    try:
        return scene.render()
    finally:
        scene.show_bodies(True)


def _segment_masks(img: np.ndarray, mesh) -> list[np.ndarray]:
    """Per body, the pixels whose hue is that body's segment colour (shading scales all three
    channels, so the normalised colour stays), brighter than the dark background."""
    own = _segment_colours(mesh)
    px = img[..., :3].astype(float)
    bright = px.max(-1) > 60
    unit = px / np.maximum(np.linalg.norm(px, axis=-1, keepdims=True), 1e-9)
    sim = unit @ own.T  # (H, W, n_bodies) cosine to each segment colour
    best = sim.argmax(-1)
    return [bright & (best == i) & (sim[..., i] > 0.995) for i in range(len(own))]


def _centroid(mask: np.ndarray) -> np.ndarray:
    """(row, col) mean of a boolean image's set pixels."""
    return np.argwhere(mask).mean(0)


def _segment_colours(mesh) -> np.ndarray:
    """(n_bodies, 3) unit vectors: each body's most common vertex colour (joints are grey)."""
    bs = mesh.body_start
    own = []
    for i in range(len(bs) - 1):
        colours, counts = np.unique(mesh.colors[bs[i]:bs[i + 1], :3], axis=0, return_counts=True)
        own.append(colours[np.argmax(counts)])
    own = np.stack(own)
    return own / np.linalg.norm(own, axis=1, keepdims=True)


def _assert_bodies_drawn_at(img: np.ndarray, at: list[tuple[int, int]], mesh,
                            background: np.ndarray) -> None:
    """``background``: one colour, or the same view rendered without the bodies."""
    """At each body's projected centre the image shows that body: not the background, and
    closer in hue to its own mesh colour than to any other body's (shading scales all three)."""
    own = _segment_colours(mesh)
    for i, rc in enumerate(at):
        px = img[rc][:3].astype(float)
        behind = background[rc][:3] if background.ndim == 3 else background
        assert np.abs(px - behind).max() > 16, f"body {i} not drawn at {rc}: {px}"
        assert int(np.argmax(own @ (px / np.linalg.norm(px)))) == i, (i, rc, px)


# -- the window, in this process, on the test X server --------------------------------------------
def _viewer():
    from nodes.viewer import Viewer

    return Viewer.create("viewer", context=GraphContext(chain_file=ARM3), fps=60)


def _pose_block(kin, q, t_host):
    from pipeline.runtime.testing import make_block

    pos, quat = kin.forward(q)
    data = np.zeros(1, pose_dtype(kin.n))
    data["t_host"], data["pos"], data["quat"] = t_host, pos, quat
    return make_block(StreamInfo.for_array("src/chain.pose", POSE, pose_dtype(kin.n)), data,
                      t_host=t_host)


def _pump(app, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.005)


@pytest.fixture(scope="module")
def window(qapp):  # one window for the in-process tests: Mesa copes badly with many GL canvases
    from nodes.view.command_client import ObserverClient
    from nodes.view.status_feed import StatusFeed

    viewer = _viewer()
    stop = threading.Event()
    win = viewer.build_window(StatusFeed(None), ObserverClient(None, "observer"), stop)
    win.show()
    _pump(qapp, 0.3)
    yield viewer, win, stop
    win.close()
    _pump(qapp, 0.05)


def _changed_fraction(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.any(np.abs(a.astype(int) - b.astype(int)) > 16, axis=-1)))


@pytest.mark.gui
def test_window_draws_chain_and_follows_pose(window, qapp):
    from pipeline.kinematics.fk import Kinematics

    viewer, win, _stop = window
    assert win.isVisible() and "arm3" in win.windowTitle()
    kin = Kinematics(viewer.chain)
    scene = win.scene
    scene.imu_markers.visible = False  # drawn on top (no depth test), where body 0's IMU sits
    try:
        _draws_bodies_where_they_are(viewer, win, kin)
    finally:
        scene.imu_markers.visible = True
    _pump(qapp, 0.1)
    assert win.frames_drawn > 0


def _draws_bodies_where_they_are(viewer, win, kin) -> None:
    scene = win.scene
    q = viewer.chain.q_zero()  # root at its joint offset, 1 m above the floor
    viewer.on_block("pose", _pose_block(kin, q, time.monotonic_ns()))
    win.tick()
    drawn = scene.render()
    assert drawn.shape[2] == 4 and drawn.dtype == np.uint8
    empty = _without_bodies(scene)
    assert _changed_fraction(drawn, empty) > 0.005  # the arm covers a visible part of the view
    centres_a = _body_centres(scene.mesh, scene._world)
    _assert_bodies_drawn_at(drawn, _scene_pixels(scene, centres_a, drawn), scene.mesh, empty)
    q2 = q.copy()
    q2[viewer.chain.q_start[1]] = 1.4  # bend the first hinge by 80 deg: seg2 and seg3 move
    viewer.on_block("pose", _pose_block(kin, q2, time.monotonic_ns()))
    win.tick()
    bent = scene.render()
    empty = _without_bodies(scene)  # the same camera (it follows the chain)
    centres_b = _body_centres(scene.mesh, scene._world)
    _assert_bodies_drawn_at(bent, _scene_pixels(scene, centres_b, bent), scene.mesh, empty)
    assert np.linalg.norm(centres_b[2] - centres_a[2]) > 0.3  # m: the forearm swung away
    rc = _scene_pixels(scene, centres_a, bent)[2]  # where it was shows what is behind it now
    assert np.abs(bent[rc][:3].astype(int) - empty[rc][:3]).max() <= 16, rc
    win.set_paused(True)  # paused: a new pose is not drawn
    viewer.on_block("pose", _pose_block(kin, q, time.monotonic_ns()))
    win.tick()
    assert _changed_fraction(bent, win.scene.render()) < 1e-4
    win.set_paused(False)


@pytest.mark.gui
def test_plots_receive_imu_angles_and_truth(window, qapp):
    from pipeline.runtime.testing import make_block

    viewer, win, _stop = window
    chain = viewer.chain
    n, nh = 200, len(chain.hinge_bodies)
    t = time.monotonic_ns() - np.arange(n)[::-1] * 10_000_000
    frame = np.zeros(n, frame_dtype(2))
    frame["t_host"], frame["acc"][:, 0, 2], frame["gyr"][:, 1, 0] = t, 9.81, np.linspace(-1, 1, n)
    viewer.on_block("imu", make_block(frame_info("sync/imu.frame", ["seg1", "seg3"], 100.0),
                                      frame, t_host=int(t[0])))
    state = np.zeros(n, state_dtype(chain.n_bodies, nh))
    state["t_host"], state["angle"][:, 0] = t, np.radians(30.0)
    info = StreamInfo.for_array("obs/chain.state", STATE, state_dtype(chain.n_bodies, nh),
                                rate_hz=100.0)
    viewer.on_block("state", make_block(info, state, t_host=int(t[0])))
    state["angle"][:, 0] = np.radians(35.0)
    viewer.on_block("truth", make_block(info, state, t_host=int(t[0])))
    win.plots.refresh()
    assert win.plots.samples_drawn == 4 * n  # two sensors, estimate, truth
    x, y = win.plots.imu_curves[("seg1", 2)].getData()
    assert len(x) == n and np.allclose(y, 9.81) and -10.5 < x[0] < x[-1] <= 0.0
    _x, gyr_deg = win.plots.imu_curves[("seg3", 3)].getData()
    assert np.isclose(gyr_deg[-1], np.degrees(1.0), atol=1e-3)  # shown in deg/s
    assert np.allclose(win.plots.angle_curves[("estimate", 0)].getData()[1], 30.0, atol=1e-4)
    assert np.allclose(win.plots.angle_curves[("truth", 0)].getData()[1], 35.0, atol=1e-4)
    assert win.plots.acc_plot.getAxis("left").labelUnits == "m/s²"
    assert win.plots.sensor_box.findText("seg3") >= 0


def test_peak_decimation_keeps_peaks_within_two_points_per_pixel():
    from nodes.view.plot_decimation import peak_decimate

    x = np.linspace(-10.0, 0.0, 10_000)
    y = np.stack([np.sin(3 * x), np.cos(3 * x)], axis=1)
    y[1234, 0], y[5678, 1] = 7.0, -9.0  # one-sample spikes must survive
    y[200:260, 0] = np.nan
    xs, ys = peak_decimate(x, y, -10.0, 0.0, 300)
    assert len(xs) <= 600 and ys.shape == (len(xs), 2)
    assert np.nanmax(ys[:, 0]) == 7.0 and np.nanmin(ys[:, 1]) == -9.0
    assert np.all(np.diff(xs) >= 0)
    small = peak_decimate(x[:100], y[:100], -10.0, 0.0, 300)
    assert small[0] is x[:100] or len(small[0]) == 100  # fits already: unchanged


def test_sticky_range_grows_at_once_and_shrinks_late():
    from nodes.view.plot_decimation import StickyRange, tick_values

    r = StickyRange(min_span=2.0)
    lo, hi = r.update(-1.0, 1.0)
    assert lo <= -1.0 and hi >= 1.0
    assert r.update(-0.9, 0.95) is None  # inside and not much smaller: no change
    lo2, hi2 = r.update(-1.0, 12.0)  # out of range: grows at once
    assert lo2 <= -1.0 and hi2 >= 12.0
    assert r.update(-0.5, 0.5) is not None  # far smaller than the range: shrinks
    assert tick_values(-10.0, 0.0).tolist() == [-10.0, -8.0, -6.0, -4.0, -2.0, 0.0]


@pytest.mark.gui
def test_window_is_raster_and_mouse_orbits_the_camera(window, qapp):
    from PySide6 import QtCore
    from PySide6.QtTest import QTest

    _viewer_node, win, _stop = window
    view = win.scene_view
    _pump(qapp, 0.1)
    assert not view.scene.canvas.native.isVisible() or view.scene.canvas.native.testAttribute(
        QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen)  # the GL canvas is never on screen
    azimuth = view.scene.view.camera.azimuth
    frames = view.frames_drawn
    centre = view.rect().center()
    QTest.mousePress(view, QtCore.Qt.MouseButton.LeftButton, pos=centre)
    for dx in range(10, 120, 10):
        QTest.mouseMove(view, centre + QtCore.QPoint(dx, 0))
    QTest.mouseRelease(view, QtCore.Qt.MouseButton.LeftButton,
                       pos=centre + QtCore.QPoint(120, 0))
    win.tick()
    assert view.scene.view.camera.azimuth != azimuth  # dragging orbits, as in vispy
    assert view.frames_drawn > frames  # and draws a new frame without a new pose


@pytest.mark.gui
def test_plots_decimate_to_their_width(window, qapp):
    from pipeline.runtime.testing import make_block

    viewer, win, _stop = window
    n = 8000  # 800 Hz for 10 s: more samples than the plot has pixels
    t = time.monotonic_ns() - np.arange(n)[::-1] * 1_250_000
    frame = np.zeros(n, frame_dtype(2))
    frame["t_host"], frame["acc"][:, 0, 0] = t, np.sin(np.arange(n) / 50.0)
    frame["acc"][4000, 0, 0] = 30.0  # one spike
    viewer.on_block("imu", make_block(frame_info("fast/imu.frame", ["f1", "f2"], 800.0),
                                      frame, t_host=int(t[0])))
    win.plots.refresh()
    x, y = win.plots.imu_curves[("f1", 0)].getData()
    assert len(x) <= 2 * win.plots._pixels(win.plots.acc_plot) < n
    assert np.nanmax(y) == 30.0  # the spike is still drawn
    lo, hi = win.plots.acc_plot.vb.viewRange()[1]
    assert lo <= -1.0 and hi >= 30.0  # the y range grew to show it


@pytest.mark.gui
def test_keyboard_space_pauses_and_q_closes(window, qapp):
    from PySide6 import QtCore
    from PySide6.QtTest import QTest

    _viewer_node, win, stop = window
    win.activateWindow()
    _pump(qapp, 0.1)
    QTest.keyClick(win, QtCore.Qt.Key.Key_Space)
    assert win.paused
    QTest.keyClick(win, QtCore.Qt.Key.Key_Space)
    assert not win.paused
    QTest.keyClick(win, QtCore.Qt.Key.Key_Q)
    _pump(qapp, 0.05)
    assert not win.isVisible() and stop.is_set()  # no graph around: closing stops this process


# -- whole graphs: window in a worker process, real observer; headless PNGs -----------------------
@pytest.fixture(scope="module")
def arm3_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.observer_models import build_model

    d = tmp_path_factory.mktemp("models")
    return {"a": build_model(d, "arm3_a", chain="arm3", seed=1),
            "b": build_model(d, "arm3_b", chain="arm3", hidden=8, layers=1, seed=2)}


def _graph_yaml(models_dir: Path | None, model: Path | None, viewer_params: str,
                duration_s: float = 0.0) -> str:
    observer = f"""
  - id: observer
    kind: nodes.observer.RnnObserver
    params: {{model: {model}}}
    inputs: {{frame: demo/imu.frame}}""" if model else ""
    state = "\n      state: observer/chain.state" if model else ""
    dirs = f"model_dirs: [{models_dir}]\n" if models_dir else ""
    return f"""version: 1
name: viewtest
chain: {ARM3}
{dirs}nodes:
  - id: demo
    kind: tests.test_viewer.PoseDemo
    params: {{rate_hz: 100, duration_s: {duration_s}}}{observer}
  - id: viewer
    kind: nodes.viewer.Viewer
    params: {viewer_params}
    inputs:
      pose: demo/chain.pose
      imu: [demo/imu.frame]
      truth: demo/chain.truth{state}
"""


def _wait_for(what: str, check, timeout_s: float):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last: {last}")


def _run_graph(path: Path, drive, timeout_s: float = 90.0) -> tuple[int, float, list]:
    """Run the graph in this (main) thread, ``drive(run_dir)`` in another.

    Returns (rc, seconds, errors)."""
    from pipeline.runtime.graph import load_graph
    from pipeline.runtime.supervisor import Supervisor

    sup = Supervisor(load_graph(path))
    errors: list = []
    sup.start()
    procs = {g: w.proc for g, w in sup.workers.items()}
    t0 = time.monotonic()

    def target() -> None:
        try:
            drive(sup.run_dir)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    rc = sup.run(until=lambda: time.monotonic() - t0 > timeout_s)
    elapsed = time.monotonic() - t0
    thread.join(5)
    codes = {g: p.poll() for g, p in procs.items()}
    # every worker, the viewer's included, exits by itself (no kill after the stop deadline)
    assert all(c == 0 for c in codes.values()), codes
    return rc, elapsed, errors


@pytest.mark.gui
@pytest.mark.slow
def test_window_in_graph_swaps_model_and_closing_stops_graph(display, arm3_models, tmp_path,
                                                             monkeypatch, capfd):
    from pipeline.runtime.control import send_command
    from pipeline.runtime.node_loop import ctl_endpoint

    monkeypatch.chdir(REPO)
    path = tmp_path / "graph.yaml"
    path.write_text(_graph_yaml(arm3_models["a"].parent, arm3_models["a"], "{fps: 30}"))
    shot = tmp_path / "window.png"
    seen: dict = {}

    def drive(run_dir: Path) -> None:
        ctl = ctl_endpoint(run_dir, "viewer")

        def state() -> dict:
            return send_command(ctl, "view_state", timeout_s=15)

        seen["first"] = _wait_for("the window to draw poses and plots", lambda: (
            (s := state()).get("frames_drawn", 0) > 5 and s["pose_version"] > 20
            and s["samples_drawn"] > 50 and "model arm3_a" in s["status_line"] and s), 40)
        assert send_command(ctl, "screenshot", {"path": str(shot)}, timeout_s=15)["ok"]
        stray = tmp_path / "elsewhere" / "arm3_a.onnx"  # outside model_dirs: refused
        stray.parent.mkdir()
        stray.write_bytes(arm3_models["a"].read_bytes())
        assert send_command(ctl, "pick_model", {"model": str(stray)}, timeout_s=15)["ok"]
        seen["refused"] = _wait_for("the refusal with its reason", lambda: (
            (s := state())["model_reply"].get("ok") is False and s), 40)
        assert send_command(ctl, "pick_model", {"model": str(arm3_models["b"])},
                            timeout_s=15)["ok"]
        seen["swapped"] = _wait_for("the swap reply and the new model in the status", lambda: (
            (s := state())["model_reply"].get("ok") and "model arm3_b" in s["status_line"]
            and s), 40)
        assert send_command(ctl, "close", timeout_s=15)["ok"]

    rc, elapsed, errors = _run_graph(path, drive)
    assert not errors, errors
    err = capfd.readouterr().err
    assert "window closed: stopping the graph" in err and "[viewer] viewer closed" in err
    assert rc == 0 and elapsed < 80  # ended by the window closing, not by the time limit
    assert seen["swapped"]["model_reply"]["cmd"] == "swap"
    # what the swap did, beside the button (was "swap: ok": the reply has old/new, not model)
    assert seen["swapped"]["model_reply_text"].startswith("swap: arm3_a -> arm3_b (")
    refused = seen["refused"]
    reason = refused["model_reply"]["reason"]  # the observer's own words, shown in the window
    assert reason and refused["model_reply_text"].startswith("swap refused: ")
    assert refused["model_reply_text"][len("swap refused: "):][:40] == reason[:40]
    assert "?" not in refused["model_reply_text"][:16]
    line = seen["swapped"]["status_line"]
    assert "observer " in line and " Hz" in line and "end-to-end p99" in line
    print("STATUS", seen["first"]["status_line"], "\nSTATUS", line)
    from PIL import Image

    img = Image.open(shot)
    assert img.size[0] >= 800 and len(np.unique(np.asarray(img.convert("L")))) > 20


@pytest.mark.slow
def test_headless_without_display_writes_pngs(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    png_dir = tmp_path / "frames"
    path = tmp_path / "graph.yaml"
    path.write_text(_graph_yaml(None, None, f"{{png_dir: {png_dir}, png_every_s: 0.25}}",
                                duration_s=4.0))
    rc, elapsed, errors = _run_graph(path, lambda run_dir: None, timeout_s=60)
    assert rc == 0 and not errors and elapsed < 50  # ended with the streams
    frames = sorted(png_dir.glob("frame_*.png"))
    assert len(frames) >= 3
    from PIL import Image

    from pipeline.kinematics.mesh import build_mesh

    first, last = (np.asarray(Image.open(f).convert("RGB")) for f in (frames[0], frames[-1]))
    assert first.shape[0] > 100 and len(np.unique(first.reshape(-1, 3), axis=0)) > 20
    # the arm is drawn (pixels in its segments' hues; one segment may hide another) and its
    # pose changed: with the two frames' arms centred on each other (the camera follows the
    # arm, which alone shifts the picture) the segments cover other pixels
    mesh = build_mesh(load_chain(ARM3))
    a, b = np.stack(_segment_masks(first, mesh)), np.stack(_segment_masks(last, mesh))
    assert a.sum() > 1000 and b.sum() > 1000, (a.sum((1, 2)), b.sum((1, 2)))
    shift = np.round(_centroid(a.any(0)) - _centroid(b.any(0))).astype(int)
    b = np.roll(b, tuple(shift), axis=(1, 2))
    changed = (a ^ b).sum() / (a | b).sum()
    assert changed > 0.4, f"the arm has nearly the same shape in both frames ({changed:.0%})"
    err = capfd.readouterr().err
    assert "running headless: no display" in err
    start = next(ln for ln in err.splitlines() if "running headless" in ln)
    assert f"frames to {png_dir}" in start and "set png_dir" not in start  # it is set


@pytest.mark.gui
@pytest.mark.slow
def test_sim_truth_config_draws_the_arm(display, tmp_path, monkeypatch):
    from pipeline.runtime.control import send_command
    from pipeline.runtime.node_loop import ctl_endpoint

    monkeypatch.chdir(REPO)
    shot = tmp_path / "scene.png"
    seen: dict = {}

    def drive(run_dir: Path) -> None:
        ctl = ctl_endpoint(run_dir, "viewer")
        seen["state"] = _wait_for("the arm drawn from the ground truth", lambda: (
            (s := send_command(ctl, "view_state", timeout_s=15)).get("frames_drawn", 0) > 5
            and s["pose_version"] > 20 and s["samples_drawn"] > 50 and s), 40)
        send_command(ctl, "screenshot", {"path": str(shot), "what": "scene"}, timeout_s=15)
        send_command(ctl, "close", timeout_s=15)

    rc, _elapsed, errors = _run_graph(REPO / "configs" / "sim_truth.yaml", drive)
    assert rc == 0 and not errors, errors
    assert not seen["state"]["headless"] and len(seen["state"]["sensors"]) == 2
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB"))
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # shaded arm, not a black screen


def test_failed_png_write_leaves_the_old_file(tmp_path):
    from nodes.view.headless import write_png

    path = tmp_path / "shot.png"
    write_png(path, np.full((4, 4, 4), 200, np.uint8))
    before = path.read_bytes()
    with pytest.raises(Exception):
        write_png(path, np.zeros((4, 4, 7), np.uint8))  # not an image: the writer fails
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["shot.png"]


def test_screenshot_relative_paths_stay_in_the_run_folder(tmp_path):
    from nodes.viewer import Viewer

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    viewer = Viewer.create("viewer", context=GraphContext(chain_file=ARM3, run_dir=run_dir))
    assert viewer.screenshot_path("shots/a.png") == (run_dir / "shots" / "a.png").resolve()
    assert viewer.screenshot_path(str(tmp_path / "x.png")) == tmp_path / "x.png"  # absolute
    with pytest.raises(ValueError, match="leaves the run folder"):
        viewer.screenshot_path("../../etc/passwd")
