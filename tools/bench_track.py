"""``imuflow track`` throughput: a 60 s 2-IMU knee session and a 1 h 10-IMU session.

Both sessions are made here, then run through the tracking graph exactly as
``imuflow track`` runs it (:mod:`pipeline.recording.track_session`: replay at speed 0 ->
sync -> filter -> observer -> fk, every node in this one thread), writing a CSV:

- ``knee_60s``: the simulator's knee (configs/chains/knee.yaml, 100 Hz, sensors aligned with
  the segments) recorded for 60 s of data, tracked by ``configs/replay.yaml`` (constraint
  observer, no calibration) and by the same graph with ``models/knee.onnx``;
- ``chain24_1h``: 60 min of 10 IMUs at 100 Hz (noise around gravity, synthesised as
  ``tools/bench_replay.py`` does) renamed onto chain24's IMU sites with the graph's
  ``sensors:`` map, tracked by an untrained observer of the shipped size (GRU 2 x 128,
  ``tools/random_observer.py``, needs the training extra: PyTorch; the row says so and is
  skipped without it).

x real time = seconds of data / wall seconds of the data path (set-up reported apart).
Each knee tracker runs ``--repeat`` times (median and range reported), the 1 h session once.
Run: ``imuflow bench track [--json] [--minutes 60] [--knee-s 60] [--repeat 5] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.recording.session_writer import SessionWriter  # noqa: E402
from pipeline.recording.track_session import (  # noqa: E402
    for_session,
    track,
    with_calibration,
    with_model,
)
from pipeline.runtime.graph import GraphSpec, load_graph  # noqa: E402
from pipeline.runtime.inline import InlineGraph  # noqa: E402
from tools import machine_info  # noqa: E402
from tools.bench_replay import synthesise  # noqa: E402
from tools.training_extra import torch_missing  # noqa: E402

KNEE = REPO / "configs" / "chains" / "knee.yaml"
CHAIN24 = REPO / "configs" / "chains" / "chain24.yaml"
TRACKING = REPO / "configs" / "replay.yaml"


def _write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def knee_session(folder: Path, seconds: float) -> Path:
    """Record ``seconds`` of the simulated knee (speed 0) into ``folder/knee.mcap``."""
    graph = load_graph(_write_yaml(folder / "sim.yaml", {
        "version": 1, "name": "bench_track_sim", "chain": str(KNEE),
        "nodes": [{"id": "sim", "kind": "sim",
                   "params": {"speed": 0, "duration_s": seconds, "seed": 5}}]}))
    session = folder / "knee.mcap"
    writer = SessionWriter(session)
    try:
        InlineGraph(graph, {"sim/imu.raw":
                            lambda b: writer.write_block(b, log_time=b.t_host)}).run()
    finally:
        writer.close()
    return session


def chain24_graph(folder: Path, session: Path, model: Path) -> Path:
    """Tracking graph for the synthesised 10-IMU session: imuNN renamed to chain24's sites."""
    sites = [imu["name"] for imu in yaml.safe_load(CHAIN24.read_text())["imus"]]
    nodes = [
        {"id": "replay", "kind": "replay", "params": {"path": str(session), "speed": 0}},
        {"id": "sync", "kind": "sync", "params": {"imus": sites, "rate_hz": 100},
         "inputs": {"raw": "replay/imu.raw"}},
        {"id": "filter", "kind": "filter", "inputs": {"frame": "sync/imu.frame"}},
        {"id": "observer", "kind": "observer", "params": {"model": str(model), "mode": "block"},
         "inputs": {"frame": "filter/imu.frame"}},
        {"id": "fk", "kind": "fk", "inputs": {"state": "observer/chain.state"}}]
    return _write_yaml(folder / "chain24.yaml", {
        "version": 1, "name": "bench_track_chain24", "chain": str(CHAIN24),
        "model_dirs": [str(model.parent)],
        "sensors": {f"imu{i:02d}": s for i, s in enumerate(sites)}, "nodes": nodes})


def _repeated(repeat: int, graph: GraphSpec, session: Path, out: Path,
              extra: dict | None = None) -> dict:
    """Track ``repeat`` times; the median run (by data-path time) and the spread."""
    runs = sorted((track(graph, session, out) for _ in range(repeat)), key=lambda d: d.run_s)
    done = runs[len(runs) // 2]
    return {"frames": done.frames, "data_s": round(done.data_s, 1),
            "data_path_s": round(done.run_s, 3), "setup_s": round(done.setup_s, 2),
            "x_real_time": round(done.x_real_time),
            "x_real_time_min_max": [round(runs[-1].x_real_time), round(runs[0].x_real_time)],
            "repeats": repeat, **(extra or {})}


def bench_knee(folder: Path, seconds: float, repeat: int) -> dict:
    """The knee session through the constraint observer and through models/knee.onnx."""
    t0 = time.perf_counter()
    session = knee_session(folder, seconds)
    made_s = time.perf_counter() - t0
    base = with_calibration(for_session(load_graph(TRACKING, check_sensor_names=False),
                                        session), None)
    rows = {"session": {"seconds": seconds, "imus": 2, "rate_hz": 100,
                        "file_mb": round(session.stat().st_size / 1e6, 2),
                        "made_in_s": round(made_s, 2)}}
    rows["constraint_observer"] = _repeated(repeat, base, session, folder / "knee_constraint.csv")
    rows["knee_onnx"] = _repeated(repeat, with_model(base, str(REPO / "models" / "knee.onnx")),
                                  session, folder / "knee_rnn.csv")
    return rows


def bench_chain24(folder: Path, minutes: float, repeat: int) -> dict:
    """The 10-IMU session through a random-weight observer of the shipped size (needs torch)."""
    no_torch = torch_missing()
    if no_torch:
        return {"skipped": f"needs PyTorch to make the random-weight observer: {no_torch}"}
    from tools.random_observer import export_random_observer

    t0 = time.perf_counter()
    session = folder / "chain24.mcap"
    messages = synthesise(session, minutes, 10, 1)
    model = export_random_observer(CHAIN24, folder / "models")
    made_s = time.perf_counter() - t0
    graph = for_session(load_graph(chain24_graph(folder, session, model)), session)
    return {"session": {"minutes": minutes, "imus": 10, "rate_hz": 100, "messages": messages,
                        "file_mb": round(session.stat().st_size / 1e6, 1),
                        "made_in_s": round(made_s, 2)},
            "random_gru_2x128": _repeated(repeat, graph, session, folder / "chain24.csv", {
                "model": "random weights, shipped size (tools/random_observer.py)"})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--knee-s", type=float, default=60.0, help="knee session length, s")
    ap.add_argument("--minutes", type=float, default=60.0, help="10-IMU session length, min")
    ap.add_argument("--repeat", type=int, default=5, help="runs per tracker on the knee "
                    "session (median reported; the 1 h session runs once)")
    ap.add_argument("--keep", help="keep sessions and outputs in this folder")
    args = ap.parse_args()
    os.environ.setdefault("IMUFLOW_LOG_LEVEL", "WARNING")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_track_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        report = {"bench": "track",
                  "command": " ".join(["imuflow", "bench", "track"] + sys.argv[1:]),
                  "knee": bench_knee(folder, args.knee_s, args.repeat),
                  "chain24_10imu": bench_chain24(folder, args.minutes, 1),
                  "machine": machine_info.machine("numpy", "numba", "onnxruntime", "mcap")}
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores")
    print(f"{'session':28s} {'tracker':22s} {'frames':>8s} {'data s':>8s} {'path s':>8s} "
          f"{'x real time':>11s} {'min-max':>11s} {'set-up s':>8s}")
    for name, key in (("knee 2 IMUs", "knee"), ("chain24 10 IMUs", "chain24_10imu")):
        rows = report[key]
        if "skipped" in rows:
            print(f"{name:28s} skipped: {rows['skipped']}")
            continue
        for tracker, r in rows.items():
            if tracker != "session":
                print(f"{name:28s} {tracker:22s} {r['frames']:8d} {r['data_s']:8.1f} "
                      f"{r['data_path_s']:8.3f} {r['x_real_time']:11d} "
                      f"{'-'.join(map(str, r['x_real_time_min_max'])):>11s} {r['setup_s']:8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
