"""Driver node benchmark: serial (pty) and BLE (fake bleak) receive-to-emit latency and throughput.

Serial: an MTi byte stream written into a pseudo terminal that a SerialImu node
reads. (a) throughput: frames written as fast as the pty takes them, samples
emitted per second of node time; (b) latency at 100 Hz, one frame per write:
os.write -> emit (includes the pty and the 10 ms read timeout granularity).
BLE: a MovellaDot node on tests.fake_bleak with N simulated sensors at 60 Hz:
notification callback (t_host) -> emit, i.e. the loop thread, queue and poll.
Run: imuflow bench drivers [--json] [--seconds S] [--sensors N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import tty
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.movella_dot import MovellaDot
from drivers.serial_imu import SerialImu
from pipeline.runtime.message import Flag, StreamInfo
from pipeline.runtime.params import build_params
from tests import fake_bleak
from tests.serial_frames import mti_frame
from tools import machine_info  # noqa: E402


class TimingEmitter:
    """Records (publish time ns, t_host ns of the first sample, n) of every data message."""

    def __init__(self) -> None:
        self.records: list[tuple[int, int, int]] = []
        self.t_host_all: list[np.ndarray] = []

    def publish(self, topic: str, info: StreamInfo, data: Any, *, t_host: int,
                t_sensor: int = -1, flags: Flag = Flag.NONE) -> int:
        now = time.monotonic_ns()
        if data is not None and not flags & Flag.JSON:
            self.records.append((now, t_host, len(data)))
            if data.dtype.names and "t_host" in data.dtype.names:
                self.t_host_all.append(now - data["t_host"])
        return 0


def _pct(values_ns: np.ndarray) -> dict:
    us = np.asarray(values_ns, dtype=np.float64) / 1e3
    return {"n": int(us.size), "p50_us": round(float(np.percentile(us, 50)), 1),
            "p99_us": round(float(np.percentile(us, 99)), 1),
            "max_us": round(float(us.max()), 1)}


def _node(cls: type, **params: Any) -> tuple[Any, TimingEmitter]:
    em = TimingEmitter()
    node = cls("bench", build_params(cls.Params, params), emitter=em)
    node.setup()
    return node, em


def bench_serial(seconds: float) -> dict:
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    node, em = _node(SerialImu, port=os.ttyname(slave), protocol="xbus", rate_hz=100)
    node.on_start()
    os.set_blocking(master, False)
    # (a) throughput: keep the pty full for `seconds`
    k, t_busy = 0, 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        burst = b"".join(mti_frame(k + i) for i in range(64))  # counters keep increasing
        try:
            os.write(master, burst)
            k += 64
        except BlockingIOError:
            pass
        t0 = time.perf_counter_ns()
        node.poll(0.0)
        t_busy += time.perf_counter_ns() - t0
    for _ in range(50):
        t0 = time.perf_counter_ns()
        node.poll(0.0)
        t_busy += time.perf_counter_ns() - t0
    n_out = sum(n for _, _, n in em.records)
    throughput = {"frames_written": k, "samples_emitted": n_out,
                  "node_samples_per_s": round(n_out / (t_busy / 1e9)),
                  "frame_bytes": len(mti_frame(0))}
    # (b) latency at 100 Hz: write one frame, poll until it is emitted
    em.records.clear()
    lat = []
    for i in range(int(seconds * 100)):
        before = len(em.records)
        t_write = time.monotonic_ns()
        os.write(master, mti_frame(k + i))
        deadline = time.monotonic() + 0.1
        while len(em.records) == before and time.monotonic() < deadline:
            node.poll(0.002)
        if len(em.records) > before:
            lat.append(em.records[-1][0] - t_write)
        time.sleep(max(0.0, 0.01 - (time.monotonic_ns() - t_write) / 1e9))
    node.teardown()
    os.close(master)
    os.close(slave)
    return {"throughput": throughput, "write_to_emit_latency": _pct(np.array(lat))}


def bench_ble(seconds: float, sensors: int) -> dict:
    fake_bleak.reset()
    addrs = [f"D4:22:CD:00:10:{i:02X}" for i in range(sensors)]
    for a in addrs:
        fake_bleak.add_device(fake_bleak.FakeDot(a))
    node, em = _node(MovellaDot, sensors=[{"name": f"s{i}", "address": a}
                                          for i, a in enumerate(addrs)],
                     rate_hz=60, backend="tests.fake_bleak")
    node.on_start()
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        node.poll(0.02)
    node.on_stop()
    node.teardown()
    ages = np.concatenate(em.t_host_all) if em.t_host_all else np.zeros(1)
    n = sum(r[2] for r in em.records)
    return {"sensors": sensors, "rate_hz": 60, "samples": n,
            "samples_per_block": round(n / max(len(em.records), 1), 2),
            "callback_to_emit_latency": _pct(ages)}


def run(seconds: float, sensors: int) -> dict:
    """Run both benchmarks; return one JSON-able dict."""
    from importlib.metadata import version

    import serial
    return {
        "command": "imuflow bench drivers " + " ".join(sys.argv[1:]),
        "machine": {"platform": platform.platform(), "cpu": machine_info.cpu_model(),
                    "cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "numpy": np.__version__, "pyserial": serial.VERSION,
                    "bleak": version("bleak")},
        "serial_mti_pty": bench_serial(seconds),
        "ble_movella_dot_fake": bench_ble(seconds, sensors),
    }


def main() -> None:
    """Print a table, or one JSON object with --json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each part, s")
    ap.add_argument("--sensors", type=int, default=5, help="simulated DOT sensors")
    args = ap.parse_args()
    res = run(args.seconds, args.sensors)
    if args.json:
        print(json.dumps(res))
        return
    m = res["machine"]
    print(f"{m['cpu']} ({m['cpus']} cpus) | {m['platform']} | Python {m['python']}")
    s = res["serial_mti_pty"]
    print(f"serial MTi over pty: {s['throughput']['node_samples_per_s']:,} samples/s of node time "
          f"({s['throughput']['samples_emitted']:,} samples)")
    lat = s["write_to_emit_latency"]
    print(f"  write -> emit at 100 Hz: p50 {lat['p50_us']} us, p99 {lat['p99_us']} us, "
          f"max {lat['max_us']} us (n={lat['n']})")
    b = res["ble_movella_dot_fake"]
    lat = b["callback_to_emit_latency"]
    print(f"BLE MovellaDot, {b['sensors']} fake sensors at 60 Hz: {b['samples']} samples, "
          f"{b['samples_per_block']} per block")
    print(f"  notification -> emit: p50 {lat['p50_us']} us, p99 {lat['p99_us']} us, "
          f"max {lat['max_us']} us")


if __name__ == "__main__":
    main()
