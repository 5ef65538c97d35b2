"""Viewer benchmark: 3D frame time and CPU use of the live window under Xvfb (Mesa llvmpipe).

Run: ``imuflow bench viewer [--json] [--seconds S]`` (or ``python tools/bench_viewer.py``).
Starts a private Xvfb when DISPLAY is unset. Measures, for the 3-body arm3 and the 24-body
chain24 chain:

- frame time: one pose upload (numba vertex kernel, mesh and IMU marker buffers) and upload
  plus ``canvas.render()`` of the 800x600 canvas (draw plus pixel read-back, so the GPU work
  is finished when the clock stops; the on-screen path adds Qt's compositing);
- CPU use of the whole viewer window (3D view at 60 frames/s, plots at 30 Hz, status bar)
  (frames/s overall, median and worst of the whole seconds; ``cpu_per_wall`` is the window's
  CPU share, 1.0 = one core)
  fed a 100 Hz pose stream plus 100 Hz IMU frames and joint angles from a thread standing
  in for the bus: process CPU time / wall time (1.0 = one core), achieved frames/s, and the
  Xvfb server's CPU share.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools import machine_info  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHAINS = {"knee": "configs/chains/knee.yaml",  # the default graph's chain
          "arm3": "configs/chains/arm3.yaml", "chain24": "configs/chains/chain24.yaml"}


def start_xvfb() -> subprocess.Popen | None:
    """Start Xvfb on a free display and set DISPLAY, unless a display is already set."""
    if os.environ.get("DISPLAY"):
        return None
    r, w = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(w), "-screen", "0", "1280x800x24",
                             "-nolisten", "tcp"], pass_fds=(w,), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(w)
    number = b""
    while not number.endswith(b"\n"):  # read the whole line: Xvfb dies of SIGPIPE otherwise
        chunk = os.read(r, 32)
        if not chunk:
            raise RuntimeError("Xvfb exited before reporting its display number")
        number += chunk
    os.close(r)
    os.environ["DISPLAY"] = ":" + number.decode().strip()
    return proc


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine(gl_renderer: str) -> dict:
    """Platform, CPU model, OpenGL renderer and library versions."""
    return machine_info.machine("numpy", "vispy", "PySide6", "pyqtgraph", gl_renderer=gl_renderer)



def _poses(chain, n: int) -> tuple[np.ndarray, np.ndarray]:
    from pipeline.kinematics.fk import Kinematics
    from pipeline.kinematics.motion import sample_motion

    _t, q, _qd = sample_motion(chain, n / 100.0, 100.0, seed=1)
    pos, quat = Kinematics(chain).forward_batch(q)
    return pos.astype(np.float32), quat.astype(np.float32)


def frame_times(app, chain, n: int) -> dict:
    """Median/p95 ms of the pose upload (vertex kernel + buffer update) and of upload + render."""
    from nodes.view.chain_scene import ChainScene

    scene = ChainScene(chain, size=(800, 600))
    scene.canvas.show()
    app.processEvents()
    pos, quat = _poses(chain, n)
    upload, frame = [], []
    scene.render()  # compile shaders
    for i in range(n):
        t0 = time.perf_counter()
        scene.set_pose(pos[i], quat[i])
        t1 = time.perf_counter()
        scene.render()
        frame.append(time.perf_counter() - t0)
        upload.append(t1 - t0)
        app.processEvents()
    scene.canvas.native.hide()
    ms = lambda a, p: float(np.percentile(np.asarray(a) * 1e3, p))
    return {"bodies": chain.n_bodies, "faces": len(scene.mesh.faces),
            "upload_ms_p50": ms(upload, 50), "upload_ms_p95": ms(upload, 95),
            "frame_ms_p50": ms(frame, 50), "frame_ms_p95": ms(frame, 95)}


def cpu_use(app, chain_file: str, seconds: float, xvfb_pid: int | None) -> dict:
    """Run the full window at 60 frames/s on a 100 Hz stream; CPU time / wall time."""
    from nodes.view.command_client import ObserverClient
    from nodes.view.status_feed import StatusFeed
    from nodes.viewer import Viewer
    from pipeline.runtime.message import StreamInfo
    from pipeline.runtime.node import GraphContext
    from pipeline.runtime.streams import (
        POSE,
        STATE,
        frame_dtype,
        frame_info,
        pose_dtype,
        state_dtype,
    )
    from pipeline.runtime.testing import make_block

    viewer = Viewer.create("viewer", context=GraphContext(chain_file=chain_file), fps=60)
    chain = viewer.chain
    stop = threading.Event()
    win = viewer.build_window(StatusFeed(None), ObserverClient(None, "observer"), stop)
    win.show()
    pos, quat = _poses(chain, 1000)
    n_imu, nh = len(chain.imus), len(chain.hinge_bodies)
    pinfo = StreamInfo.for_array("src/chain.pose", POSE, pose_dtype(chain.n_bodies), rate_hz=100)
    finfo = frame_info("src/imu.frame", list(chain.imu_names), 100.0)
    sinfo = StreamInfo.for_array("obs/chain.state", STATE, state_dtype(chain.n_bodies, nh),
                                 rate_hz=100)

    def feed() -> None:  # stands in for the node's bus thread
        k, t0 = 0, time.monotonic()
        while not stop.is_set():
            time.sleep(max(0.0, t0 + k / 100.0 - time.monotonic()))
            now = time.monotonic_ns()
            p = np.zeros(1, pose_dtype(chain.n_bodies))
            p["t_host"], p["pos"], p["quat"] = now, pos[k % 1000], quat[k % 1000]
            f = np.zeros(1, frame_dtype(n_imu))
            f["t_host"], f["acc"], f["gyr"] = now, np.sin(k / 20.0), np.cos(k / 30.0)
            s = np.zeros(1, state_dtype(chain.n_bodies, nh))
            s["t_host"], s["angle"] = now, np.sin(k / 50.0)
            viewer.on_block("pose", make_block(pinfo, p, t_host=now))
            viewer.on_block("imu", make_block(finfo, f, t_host=now))
            viewer.on_block("state", make_block(sinfo, s, t_host=now))
            k += 1

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    end = time.monotonic() + 1.0  # warm-up: fill plots, compile shaders
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)
    cpu0, wall0, frames0 = time.process_time(), time.monotonic(), win.frames_drawn
    x0 = _proc_cpu_s(xvfb_pid) if xvfb_pid else None
    end = wall0 + seconds
    per_s: list[float] = []  # frames drawn in each whole second
    t_s, f_s = wall0, frames0
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.001)
        now = time.monotonic()
        if now - t_s >= 1.0:
            per_s.append((win.frames_drawn - f_s) / (now - t_s))
            t_s, f_s = now, win.frames_drawn
    wall = time.monotonic() - wall0
    out = {"seconds": round(wall, 2), "cpu_per_wall": (time.process_time() - cpu0) / wall,
           "frames_per_s": (win.frames_drawn - frames0) / wall,
           "frames_per_s_median": float(np.median(per_s)) if per_s else 0.0,
           "frames_per_s_min": float(np.min(per_s)) if per_s else 0.0, "target_fps": 60,
           "pose_rate_hz": 100, "pose_latency_ms_p99": viewer.latency.p99_ms()}
    if x0 is not None:
        out["xvfb_cpu_per_wall"] = (_proc_cpu_s(xvfb_pid) - x0) / wall
    stop.set()
    feeder.join(1)
    win.close()
    app.processEvents()
    return out


def run_part(name: str, part: str, seconds: float, frames: int) -> dict:
    """One measurement ("frame" or "cpu") of one chain in this process: one GL canvas."""
    import vispy

    vispy.use("pyside6")
    from PySide6 import QtWidgets
    from vispy.gloo import gl

    from pipeline.kinematics.chain import load_chain

    xvfb_pid = int(os.environ.get("BENCH_XVFB_PID", "0")) or None
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bench"])
    if part == "frame":
        out = {"frame_time": frame_times(app, load_chain(CHAINS[name]), frames)}
    else:
        out = {"cpu_use": cpu_use(app, CHAINS[name], seconds, xvfb_pid)}
    out["gl_renderer"] = str(gl.glGetParameter(gl.GL_RENDERER))
    return out


def main() -> int:
    """Run the benchmark (one child process per chain); print a table, or JSON with --json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--seconds", type=float, default=8.0, help="CPU-use run per chain, s")
    ap.add_argument("--frames", type=int, default=200, help="frames per frame-time run")
    ap.add_argument("--child", choices=sorted(CHAINS), help=argparse.SUPPRESS)
    ap.add_argument("--part", choices=("frame", "cpu"), default="frame", help=argparse.SUPPRESS)
    args = ap.parse_args([a for a in sys.argv[1:] if a != "--"])
    os.chdir(REPO)
    if args.child:
        print(json.dumps(run_part(args.child, args.part, args.seconds, args.frames)))
        sys.stdout.flush()
        os._exit(0)  # skip Qt/GL teardown: Mesa may crash tearing down several contexts
    xvfb = start_xvfb()
    env = dict(os.environ, BENCH_XVFB_PID=str(xvfb.pid) if xvfb else "0")
    result: dict = {"command": " ".join(["imuflow bench viewer"] + sys.argv[1:]),
                    "display": os.environ["DISPLAY"], "frame_time": {}, "cpu_use": {}}
    try:
        renderer = ""
        for name in CHAINS:
            for part, key in (("frame", "frame_time"), ("cpu", "cpu_use")):
                child = subprocess.run([sys.executable, __file__, "--child", name, "--part", part,
                                        "--seconds", str(args.seconds), "--frames",
                                        str(args.frames)],
                                       env=env, capture_output=True, text=True, check=False)
                lines = [ln for ln in child.stdout.splitlines() if ln.startswith("{")]
                if child.returncode != 0 or not lines:
                    raise RuntimeError(f"benchmark {part} of {name} failed (exit "
                                       f"{child.returncode}): {child.stderr[-6000:]}")
                r = json.loads(lines[-1])
                result[key][name] = r[key]
                renderer = renderer or r["gl_renderer"]
        result["machine"] = machine(renderer)
    finally:
        if xvfb is not None:
            xvfb.terminate()
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"viewer benchmark ({result['machine']['gl_renderer']}, {result['machine']['cpu']}, "
          f"load {result['machine']['load_avg_1min']:.1f})")
    print(f"{'chain':8} {'bodies':>6} {'faces':>6} {'upload p50/p95 ms':>20} "
          f"{'upload+render p50/p95 ms':>26}")
    for name, r in result["frame_time"].items():
        print(f"{name:8} {r['bodies']:6d} {r['faces']:6d} "
              f"{r['upload_ms_p50']:9.2f} / {r['upload_ms_p95']:7.2f}  "
              f"{r['frame_ms_p50']:13.2f} / {r['frame_ms_p95']:7.2f}")
    print(f"{'chain':8} {'CPU/wall':>9} {'Xvfb CPU/wall':>14} {'frames/s':>9} {'median':>7} "
          f"{'min':>6}  (window at 60 frames/s, 100 Hz poses)")
    for name, r in result["cpu_use"].items():
        print(f"{name:8} {r['cpu_per_wall']:9.2f} {r.get('xvfb_cpu_per_wall', float('nan')):14.2f} "
              f"{r['frames_per_s']:9.1f} {r['frames_per_s_median']:7.1f} "
              f"{r['frames_per_s_min']:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
