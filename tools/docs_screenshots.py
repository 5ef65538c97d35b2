"""Make the README's window pictures from the current window, under Xvfb (or $DISPLAY).

Run: ``python tools/docs_screenshots.py [--out docs]``. Writes

- ``screenshots/viewer_default_knee.png``: configs/default.yaml as shipped, after
  ``--settle-s`` seconds (the hero picture);
- ``viewer_default_knee.gif``: ``--gif-frames`` window frames of the same run, scaled to
  ``--gif-width`` px (narrower until the file is under 2 MB), a frame every ``--gif-every-s``
  s (Pillow, 64 colours);
- ``screenshots/viewer_model_swap.png``: the same run after the model picker swapped the
  observer to models/knee.onnx again (load, check, warm-up, switch: the reply beside Swap);
- ``screenshots/viewer_calibration_prompt.png`` and ``viewer_calibration_result.png``: the
  window's Calibrate procedure on the simulated knee whose IMUs are mounted 90/180 deg off
  (``sim`` with ``procedure: calibration``), during the motion step and when done.

Each picture is the window as the viewer's ``screenshot`` command grabs it (the real window,
drawn with Mesa's software OpenGL under Xvfb).
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.bench_viewer import start_xvfb  # noqa: E402

MOUNTING = {"thigh": [0.5, 0.5, -0.5, 0.5], "shank": [0.0, 0.7071068, 0.7071068, 0.0]}


def _run(graph: Path, drive) -> None:  # noqa: ANN001 - drive(run_dir)
    """Run ``graph`` in this thread and ``drive(run_dir)`` in another until it returns."""
    from pipeline.runtime.graph import load_graph
    from pipeline.runtime.supervisor import Supervisor

    sup = Supervisor(load_graph(graph))
    sup.start()
    done = threading.Event()
    errors: list[BaseException] = []

    def target() -> None:
        try:
            drive(sup.run_dir)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, daemon=True).start()
    sup.run(until=done.is_set)
    if errors:
        raise errors[0]


def _viewer(run_dir: Path):  # noqa: ANN202
    from pipeline.runtime.control import send_command
    from pipeline.runtime.node_loop import ctl_endpoint

    ctl = ctl_endpoint(run_dir, "viewer")
    return lambda cmd, **args: send_command(ctl, cmd, args, timeout_s=30)


def _wait(what: str, check, timeout_s: float = 60.0):  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise TimeoutError(f"no {what} within {timeout_s} s")


def default_graph_pictures(args: argparse.Namespace, tmp: Path) -> None:
    """Hero PNG, animated GIF and the model swap of configs/default.yaml."""
    from PIL import Image

    shots = args.out / "screenshots"

    def drive(run_dir: Path) -> None:
        cmd = _viewer(run_dir)
        _wait("window", lambda: cmd("view_state").get("frames_drawn", 0) > 10)
        time.sleep(args.settle_s)
        cmd("screenshot", path=str(shots / "viewer_default_knee.png"))
        print("status:", cmd("view_state")["status_line"])
        frames = []
        for i in range(args.gif_frames):
            t0 = time.monotonic()
            path = tmp / f"frame{i:03d}.png"
            cmd("screenshot", path=str(path))
            frames.append(path)
            time.sleep(max(0.0, args.gif_every_s - (time.monotonic() - t0)))
        _write_gif(frames, args.out / "viewer_default_knee.gif", args.gif_width,
                   round(args.gif_every_s * 1000), Image)
        cmd("pick_model", model=str(REPO / "models" / "knee.onnx"))
        _wait("swap reply", lambda: cmd("view_state")["model_reply"].get("cmd") == "swap")
        time.sleep(1.0)
        cmd("screenshot", path=str(shots / "viewer_model_swap.png"))
        print("swap:", cmd("view_state")["model_reply_text"])
        cmd("close")

    _run(REPO / "configs" / "default.yaml", drive)


def _write_gif(frames: list[Path], out: Path, width: int, frame_ms: int, image) -> None:  # noqa: ANN001
    """Frames as a looping GIF at ``width`` px, narrower until it is under 2 MB."""
    rgb = [image.open(f).convert("RGB") for f in frames]
    while True:
        imgs = [im.resize((width, round(im.height * width / im.width)),
                          image.Resampling.LANCZOS).quantize(
                              colors=64, method=image.Quantize.MEDIANCUT,
                              dither=image.Dither.NONE) for im in rgb]
        buf = io.BytesIO()
        imgs[0].save(buf, "GIF", save_all=True, append_images=imgs[1:], duration=frame_ms,
                     loop=0, optimize=True)
        if buf.tell() < 1_900_000 or width <= 320:
            break
        width = round(width * 0.85)
    out.write_bytes(buf.getvalue())
    print(f"wrote {out} ({len(imgs)} frames, {width} px wide, {buf.tell() / 1e6:.2f} MB)")


def calibration_pictures(args: argparse.Namespace, tmp: Path) -> None:
    """The window's Calibrate procedure on the mounted simulated knee: prompt and result."""
    chain = yaml.safe_load((REPO / "configs/chains/knee.yaml").read_text())
    for imu in chain["imus"]:
        imu["rotation"] = MOUNTING[imu["name"]]
    (tmp / "knee_mounted.yaml").write_text(yaml.safe_dump(chain))
    still_s, motion_s = 8.0, 12.0
    graph = {"version": 1, "name": "calibration_demo", "chain": "knee_mounted.yaml", "nodes": [
        {"id": "sim", "kind": "sim", "params": {
            "procedure": "calibration", "seed": 3, "procedure_static_s": still_s,
            "procedure_functional_s": motion_s}},
        {"id": "sync", "kind": "sync", "params": {"rate_hz": 100, "max_gap_s": 0.1},
         "inputs": {"raw": "sim/imu.raw"}},
        {"id": "orientation", "kind": "orientation", "params": {"imu": "thigh"},
         "inputs": {"frame": "sync/imu.frame"}},
        {"id": "fk", "kind": "fk", "inputs": {"state": "sim/chain.truth"}},
        {"id": "viewer", "kind": "viewer", "inputs": {
            "pose": "fk/chain.pose", "imu": "sync/imu.frame", "truth": "sim/chain.truth"}}]}
    path = tmp / "calibration_demo.yaml"
    path.write_text(yaml.safe_dump(graph))
    shots = args.out / "screenshots"

    def drive(run_dir: Path) -> None:
        t_start = time.monotonic()
        cmd = _viewer(run_dir)
        _wait("window", lambda: cmd("view_state").get("frames_drawn", 0) > 3)
        lead_in = still_s - 2.0 - (time.monotonic() - t_start) - 0.3
        cmd("calibrate", lead_in_s=max(lead_in, 0.5), static_s=2.0, functional_s=motion_s)
        _wait("motion step", lambda: (s := cmd("calibration_state"))["step"] == 3
              and s["progress"] > 0.4, 60)
        cmd("screenshot", path=str(shots / "viewer_calibration_prompt.png"))
        state = _wait("calibration", lambda: (s := cmd("calibration_state"))["state"]
                      in ("done", "failed") and s, 60)
        time.sleep(0.5)
        cmd("screenshot", path=str(shots / "viewer_calibration_result.png"))
        print("calibration:", state["state"], state["ok"])
        cmd("close")

    _run(path, drive)


def main() -> int:
    """Make every picture."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    ap.add_argument("--settle-s", type=float, default=15.0)
    ap.add_argument("--gif-frames", type=int, default=36)
    ap.add_argument("--gif-every-s", type=float, default=0.2)
    ap.add_argument("--gif-width", type=int, default=640)
    ap.add_argument("--only", choices=("default", "calibration"))
    args = ap.parse_args()
    (args.out / "screenshots").mkdir(parents=True, exist_ok=True)
    xvfb = start_xvfb()
    try:
        with tempfile.TemporaryDirectory(prefix="imf-shots") as tmp:
            if args.only in (None, "default"):
                default_graph_pictures(args, Path(tmp))
            if args.only in (None, "calibration"):
                calibration_pictures(args, Path(tmp))
    finally:
        if xvfb is not None:
            xvfb.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
