"""Bus benchmark: hop latency and throughput of imuflow's publisher/subscriber.

Run: ``imuflow bench bus [--json]`` (or ``python tools/bench_bus.py``). A hop is
publish (header encode + send) to receive (recv + header decode + numpy view),
measured with the monotonic clock, which is shared by processes on Linux.
Latency is measured at a paced 1 kHz so queues stay empty; throughput sends as
fast as possible and counts at the receiver.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time

import numpy as np
import zmq

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from pipeline.runtime.bus import Publisher, Subscriber  # noqa: E402
from pipeline.runtime.direct import DirectEmitter  # noqa: E402
from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info  # noqa: E402
from tools import machine_info  # noqa: E402

N_LAT = 3000
N_TPUT = {1: 30000, 16: 20000, 256: 4000}
INFO = raw_imu_info("bench/imu.raw:s0", "s0", 100.0)


def machine() -> dict:
    """Platform, CPU model and library versions."""
    return machine_info.machine("numpy", "zmq")


def _block(n: int) -> np.ndarray:
    return np.zeros(n, RAW_IMU_DTYPE)


def _receive_latency(endpoint: str, n: int, conn) -> None:
    ctx = zmq.Context()
    sub = Subscriber(ctx, [(endpoint, "bench/imu.raw")])
    conn.send("ready")
    lat = []
    while len(lat) < n:
        blk = sub.recv(block=True)
        if blk is not None:
            lat.append(time.monotonic_ns() - blk.t_host)
    conn.send(lat)
    sub.close()
    ctx.term()


def _receive_count(endpoint: str, n_msgs: int, conn) -> None:
    ctx = zmq.Context()
    sub = Subscriber(ctx, [(endpoint, "bench/imu.raw")])
    conn.send("ready")
    got, samples, t_first = 0, 0, None
    while got < n_msgs:
        blk = sub.recv(block=True)
        if blk is None:
            continue
        t_first = t_first or time.perf_counter()
        got += 1
        samples += blk.n
    conn.send((got, samples, time.perf_counter() - t_first))
    sub.close()
    ctx.term()


def _wait_subscribed(pub: Publisher) -> None:
    if not pub.wait_subscribers({"bench/imu.raw": 1}, 10.0):
        raise RuntimeError("subscriber did not connect")


def latency_same_process(endpoint: str) -> list[int]:
    """Hop latency (ns) with publisher and subscriber in one thread."""
    ctx = zmq.Context()
    pub = Publisher(ctx, [endpoint])
    sub = Subscriber(ctx, [(endpoint, "bench/imu.raw")])
    _wait_subscribed(pub)
    data, lat = _block(1), []
    for _ in range(N_LAT):
        pub.publish("bench/imu.raw", INFO, data, t_host=time.monotonic_ns())
        blk = sub.recv(block=True)
        lat.append(time.monotonic_ns() - blk.t_host)
    sub.close()
    pub.close()
    ctx.term()
    return lat


class _LockedSink:
    """Stands in for a node loop in a direct group: deliver() takes a lock, keeps the latency."""

    def __init__(self) -> None:
        import threading
        self.lock = threading.RLock()
        self.lat: list[int] = []

    def deliver(self, port: str, blk) -> None:
        with self.lock:
            self.lat.append(time.monotonic_ns() - blk.t_host)


def latency_direct() -> list[int]:
    """Hop latency (ns) of a direct-group edge: emit -> consumer called in the same thread."""
    ctx = zmq.Context()
    pub = Publisher(ctx, ["inproc://bench_direct"])
    sink = _LockedSink()
    emitter = DirectEmitter(pub, {"bench/imu.raw": [(sink, "in")]})
    data = _block(1)
    for _ in range(N_LAT):
        emitter.publish("bench/imu.raw", INFO, data, t_host=time.monotonic_ns())
    pub.close()
    ctx.term()
    return sink.lat


def latency_cross_process(endpoint: str) -> list[int]:
    """Hop latency (ns) from this process to a subscriber process, paced at 1 kHz."""
    ctx = zmq.Context()
    pub = Publisher(ctx, [endpoint])
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_receive_latency, args=(endpoint, N_LAT, child))
    proc.start()
    parent.recv()
    _wait_subscribed(pub)
    data = _block(1)
    t = time.perf_counter()
    for _ in range(N_LAT):
        t += 0.001
        while time.perf_counter() < t:
            pass
        pub.publish("bench/imu.raw", INFO, data, t_host=time.monotonic_ns())
    lat = parent.recv()
    proc.join()
    pub.close()
    ctx.term()
    return lat


def throughput(endpoint: str, block: int) -> dict:
    """Messages/s and samples/s from this process to a subscriber process."""
    ctx = zmq.Context()
    pub = Publisher(ctx, [endpoint])
    n = N_TPUT[block]
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_receive_count, args=(endpoint, n, child))
    proc.start()
    parent.recv()
    _wait_subscribed(pub)
    data = _block(block)
    for _ in range(n):
        pub.publish("bench/imu.raw", INFO, data, t_host=time.monotonic_ns())
    got, samples, dt = parent.recv()
    proc.join()
    pub.close()
    ctx.term()
    return {"messages_per_s": got / dt, "samples_per_s": samples / dt, "messages": got}


def stats_us(lat_ns: list[int]) -> dict:
    """p50/p99/max of latencies in microseconds."""
    a = np.asarray(lat_ns[len(lat_ns) // 10:], dtype=np.float64) / 1e3  # skip warm-up
    return {"p50_us": round(float(np.percentile(a, 50)), 1),
            "p99_us": round(float(np.percentile(a, 99)), 1), "max_us": round(float(a.max()), 1)}


def main() -> None:
    """Run every measurement; print JSON (--json) or a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="imfb")
    ipc = f"ipc://{tmp}/bench"
    tcp = "tcp://127.0.0.1:47611"
    result = {
        "benchmark": "bus", "command": "imuflow bench bus --json", "machine": machine(),
        "hop_latency": {
            "inproc": stats_us(latency_same_process("inproc://bench")),
            "ipc_same_process": stats_us(latency_same_process(ipc + "0")),
            "ipc_cross_process": stats_us(latency_cross_process(ipc + "1")),
            "tcp_loopback_cross_process": stats_us(latency_cross_process(tcp)),
            "direct_group_same_thread": stats_us(latency_direct()),
        },
        "throughput_ipc_cross_process": {
            f"block_{b}": throughput(ipc + f"t{b}", b) for b in (1, 16, 256)},
    }
    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"machine: {result['machine']['cpu']} ({result['machine']['cores']} cores)")
    for k, v in result["hop_latency"].items():
        print(f"hop {k:28s} p50 {v['p50_us']:8.1f} us  p99 {v['p99_us']:8.1f} us")
    for k, v in result["throughput_ipc_cross_process"].items():
        print(f"throughput {k:10s} {v['messages_per_s']:10.0f} msg/s "
              f"{v['samples_per_s']:12.0f} samples/s")


if __name__ == "__main__":
    main()
