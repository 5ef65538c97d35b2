"""Replay throughput: a one-hour, 100 Hz, 10-IMU session replayed as fast as possible.

Synthesises the session file (vectorised: MCAP records built with numpy, one
message per sample per sensor as a live driver sends them, or ``--block``; in
the recorder's current layout v2 with lz4 chunks unless ``--format``/``--compression``
say otherwise), then runs graphs on it with the real runtime and reports the
multiple of real time, messages/s and CPU seconds per worker process:
  replay -> recorder                         (replay and record)
  replay -> sync -> filter -> recorder        (if nodes/sync/sync.py and nodes/filter/filter.py exist)
each in two layouts, one after the other: ``bus`` (a process per node, ZeroMQ between
them) and ``direct`` (all nodes in one thread group under ``direct_groups``: blocks are
handed on by function call, no serialisation, natural back-pressure).
``--profile N`` also runs the full chain in one process without the bus under
cProfile (tools/replay_profile.py): top N functions to stderr, CPU s per node.
Run: ``imuflow bench replay [--json] [--minutes 60] [--imus 10] [--block 1]
[--compression lz4|zstd|none] [--format v2|v1] [--session FILE] [--only rec|full]
[--layout both|bus|direct] [--merge-s S] [--profile N] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

import lz4.frame
import lz4.version
import numpy as np
import yaml
import zstandard

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.recording.session_format import (  # noqa: E402
    MESSAGE_ENCODING,
    MESSAGE_ENCODING_V1,
    META_BUS_TOPIC,
    META_KIND,
    META_STREAM_INFO,
    SCHEMA_ENCODING,
    SCHEMA_NAME,
    SCHEMA_TEXT,
    SESSION_METADATA,
)
from pipeline.recording.session_reader import HEADER_DTYPE, MAGIC, SessionReader  # noqa: E402
from pipeline.recording.session_writer import utc_anchor  # noqa: E402
from pipeline.runtime.graph import load_graph  # noqa: E402
from pipeline.runtime.message import Encoder  # noqa: E402
from pipeline.runtime.streams import RAW_IMU_DTYPE, raw_imu_info  # noqa: E402
from pipeline.runtime.supervisor import Supervisor  # noqa: E402
from tools import machine_info  # noqa: E402
from tools.replay_profile import profile_chain  # noqa: E402

RATE_HZ = 100.0


def _rec(op: int, body: bytes) -> bytes:
    return struct.pack("<BQ", op, len(body)) + body


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<I", len(raw)) + raw


def _map(d: dict[str, str]) -> bytes:
    body = b"".join(_s(k) + _s(v) for k, v in d.items())
    return struct.pack("<I", len(body)) + body


def synthesise(path: Path, minutes: float, imus: int, block: int, compression: str = "lz4",
               fmt: str = "v2") -> int:
    """Write the session (no summary section: valid MCAP); return the message count.

    ``fmt`` v2 is what the recorder writes now; v1 repeats the StreamInfo JSON in
    every message (files recorded before). ``compression``: lz4, zstd or none.
    """
    n = int(minutes * 60 * RATE_HZ)
    names = [f"imu{i:02d}" for i in range(imus)]
    infos = [raw_imu_info(f"bench/imu.raw:{s}", s, RATE_HZ, simulated=True) for s in names]
    raw_infos = [Encoder().info_bytes(i) for i in infos]
    assert len({len(r) for r in raw_infos}) == 1, "equal-length stream ids keep records uniform"
    k = n // block
    period = int(1e9 / RATE_HZ)
    t = np.arange(n, dtype=np.int64) * period + 10**12
    rng = np.random.default_rng(0)
    info_len = len(raw_infos[0]) if fmt == "v1" else 0
    hdr_len = HEADER_DTYPE.itemsize + info_len
    data_len = hdr_len + block * RAW_IMU_DTYPE.itemsize
    rec_len = 1 + 8 + 2 + 4 + 8 + 8 + data_len
    out = open(path, "wb")  # noqa: SIM115
    out.write(MAGIC + _rec(1, _s("imuflow") + _s("imuflow bench")))
    out.write(_rec(3, struct.pack("<H", 1) + _s(SCHEMA_NAME) + _s(SCHEMA_ENCODING)
                   + _s(SCHEMA_TEXT)))
    out.write(_rec(0x0C, _s(SESSION_METADATA) + _map(dict(utc_anchor(), format="imuflow-session-v1",
                                                          synthetic="bench_replay"))))
    for cid, (info, raw) in enumerate(zip(infos, raw_infos), start=1):
        encoding = MESSAGE_ENCODING_V1 if fmt == "v1" else MESSAGE_ENCODING
        out.write(_rec(4, struct.pack("<HH", cid, 1) + _s(info.stream) + _s(encoding)
                       + _map({META_STREAM_INFO: raw.decode(), META_BUS_TOPIC: "bench/imu.raw",
                               META_KIND: info.kind})))
    compress = {"zstd": zstandard.ZstdCompressor(level=1).compress,
                "lz4": lz4.frame.compress, "none": bytes}[compression]
    per_chunk = max(1, int(RATE_HZ / block))  # one second of messages per sensor per chunk
    messages = 0
    for c0 in range(0, k, per_chunk):
        m = min(per_chunk, k - c0)
        recs = np.zeros((m, imus, rec_len), np.uint8)  # time-major: interleaved sensors
        for i in range(imus):
            idx = (c0 + np.arange(m))[:, None] * block + np.arange(block)
            samples = np.zeros((m, block), RAW_IMU_DTYPE)
            samples["t_host"] = t[idx]
            samples["t_sensor"] = t[idx] * 1.00002 + i * 7_000_000
            samples["counter"] = idx
            samples["acc"] = rng.normal(0, 1, (m, block, 3)) + [0, 0, 9.81]
            samples["gyr"] = rng.normal(0, 0.5, (m, block, 3))
            samples["mag"] = np.nan
            head = np.zeros(m, HEADER_DTYPE)
            head["schema"], head["epoch"], head["seq"] = 1, 1, c0 + np.arange(m)
            head["t_host"], head["t_sensor"] = samples["t_host"][:, 0], samples["t_sensor"][:, 0]
            head["n"], head["info_len"] = block, info_len
            r = recs[:, i]
            r[:, 0] = 5
            r[:, 1:9] = np.frombuffer(struct.pack("<Q", rec_len - 9), np.uint8)
            r[:, 9:11] = np.frombuffer(struct.pack("<H", i + 1), np.uint8)
            r[:, 11:15] = head["seq"].astype("<u4").view(np.uint8).reshape(m, 4)
            log_time = np.ascontiguousarray(samples["t_host"][:, 0]) + 50_000
            r[:, 15:23] = log_time.view(np.uint8).reshape(m, 8)
            r[:, 23:31] = np.ascontiguousarray(head["t_host"]).view(np.uint8).reshape(m, 8)
            r[:, 31:31 + HEADER_DTYPE.itemsize] = head.view(np.uint8).reshape(m, -1)
            if info_len:
                r[:, 31 + HEADER_DTYPE.itemsize:31 + hdr_len] = np.frombuffer(raw_infos[i],
                                                                               np.uint8)
            r[:, 31 + hdr_len:] = samples.view(np.uint8).reshape(m, -1)
        flat = recs.reshape(-1)
        comp = compress(flat.tobytes())
        t_lo, t_hi = int(t[c0 * block]), int(t[min((c0 + m) * block, n) - 1]) + 50_000
        out.write(_rec(6, struct.pack("<QQQI", t_lo, t_hi, flat.nbytes, 0) + _s("" if compression == "none" else compression)
                       + struct.pack("<Q", len(comp)) + comp))
        offs = (np.arange(m)[:, None] * imus + np.arange(imus)) * rec_len
        for i in range(imus):
            pairs = np.zeros((m, 2), "<u8")
            pairs[:, 0] = t[(c0 + np.arange(m)) * block] + 50_000
            pairs[:, 1] = offs[:, i]
            out.write(_rec(7, struct.pack("<HI", i + 1, pairs.nbytes) + pairs.tobytes()))
        messages += m * imus
    out.write(_rec(0x0F, struct.pack("<I", 0)))
    out.write(_rec(2, struct.pack("<QQI", 0, 0, 0)) + MAGIC)
    out.close()
    return messages


LAYOUTS = ("bus", "direct")


def _graph(folder: Path, session: Path, imus: int, full: bool, merge_s: float,
           layout: str = "bus") -> Path:
    """Graph file: ``bus``: one process per node, ZeroMQ between them; ``direct``: all nodes
    in one thread group listed under direct_groups (function calls, no serialisation)."""
    names = [f"imu{i:02d}" for i in range(imus)]
    nodes = [{"id": "replay", "kind": "drivers.replay.Replay", "outputs": ["imu.raw"],
              "params": {"path": str(session), "speed": 0, "merge_s": merge_s}}]
    rec_inputs = ["replay/imu.raw"]
    if full:
        nodes += [{"id": "sync", "kind": "nodes.sync.Sync", "inputs": {"raw": "replay/imu.raw"},
                   # default latency_s: sync does not take sensors sent in turn for stalled
                   "params": {"imus": names, "rate_hz": RATE_HZ}},
                  {"id": "filter", "kind": "nodes.filter.Filter",
                   "inputs": {"frame": "sync/imu.frame"}}]
        rec_inputs.append("filter/imu.frame")
    tag = f"{'full' if full else 'rec'}_{layout}"
    nodes.append({"id": "recorder", "kind": "nodes.recorder.Recorder",
                  "params": {"path": str(folder / f"out_{tag}.mcap")},
                  "inputs": {"in": rec_inputs}})
    doc: dict = {"version": 1, "name": f"bench_replay_{layout}"}
    if layout == "direct":
        for node in nodes:
            node["group"] = "all"
        doc["direct_groups"] = ["all"]
    doc["nodes"] = nodes
    path = folder / f"bench_{tag}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _describe(session: Path) -> tuple[int, float]:
    """Message count and duration (s, from the log times) of an existing session file."""
    messages, t_lo, t_hi = 0, None, None
    with SessionReader(session) as reader:
        for runs in reader.runs():
            for run in runs:
                messages += len(run)
                lo, hi = int(run.log_time.min()), int(run.log_time.max())
                t_lo = lo if t_lo is None else min(t_lo, lo)
                t_hi = hi if t_hi is None else max(t_hi, hi)
    return messages, ((t_hi - t_lo) / 1e9 + 1 / RATE_HZ) if messages else 0.0


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``pid``, None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(graph_path: Path) -> dict:
    """Run the graph to its end; wall time and CPU seconds per worker process from ready on."""
    sup = Supervisor(load_graph(graph_path))
    sup.start()
    t0 = time.perf_counter()
    first: dict[str, float] = {}
    last: dict[str, float] = {}

    def sample() -> bool:  # called by the supervisor loop (every few ms): never stops the graph
        for group, w in sup.workers.items():
            c = _cpu_s(w.proc.pid) if w.proc is not None else None
            if c is not None:
                first.setdefault(group, c)
                last[group] = c
        return False

    sample()
    code = sup.run(until=sample)
    elapsed = time.perf_counter() - t0
    cpu = {g: round(last[g] - first[g], 2) for g in last}
    return {"elapsed_s": elapsed, "exit": code, "status": dict(sup.status), "cpu_s": cpu}


def machine() -> dict:
    """Platform, CPU model, Python and key library versions."""
    return machine_info.machine("numpy", "zmq", "mcap", "zstandard", "lz4")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--imus", type=int, default=10)
    ap.add_argument("--block", type=int, default=1, help="samples per recorded message")
    ap.add_argument("--keep", help="folder to keep the files in (default: a temp folder, "
                    "removed at the end)")
    ap.add_argument("--compression", default="lz4", choices=("lz4", "zstd", "none"),
                    help="chunk compression of the synthesised session")
    ap.add_argument("--format", default="v2", choices=("v1", "v2"),
                    help="session message layout (v1: StreamInfo JSON in every message)")
    ap.add_argument("--merge-s", type=float, default=-1.0,
                    help="replay param merge_s (-1: its default at speed 0, see drivers/replay.py)")
    ap.add_argument("--layout", choices=("both", *LAYOUTS), default="both",
                    help="bus: a process per node over ZeroMQ; direct: one thread group with "
                         "direct_groups (function calls); both: one after the other")
    ap.add_argument("--session", help="replay this session file instead of synthesising one")
    ap.add_argument("--only", choices=("rec", "full"), help="run one graph only")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also run the full chain in one process under cProfile, print the "
                         "top N functions (to stderr) and per-node CPU seconds")
    args = ap.parse_args()
    os.environ.setdefault("IMUFLOW_RUNS", tempfile.mkdtemp(prefix="imf"))
    os.environ.setdefault("IMUFLOW_LOG_LEVEL", "WARNING")
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench_replay_"))  # removed at the end
    try:
        return _bench(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)  # ~1 GB of session and recordings


def _bench(args: argparse.Namespace, folder: Path) -> int:
    """Synthesise (or scan) the session in ``folder``, run the graphs, print the report."""
    folder.mkdir(parents=True, exist_ok=True)
    session = Path(args.session) if args.session else folder / "session.mcap"
    t0 = time.perf_counter()
    if args.session:
        messages, duration_s = _describe(session)
    else:
        messages = synthesise(session, args.minutes, args.imus, args.block, args.compression,
                              args.format)
        duration_s = args.minutes * 60
        os.sync()  # write the 230 MB out now, not while the first graph runs
    synth_s = time.perf_counter() - t0
    samples = int(duration_s * RATE_HZ) * args.imus
    results: dict[str, dict[str, dict]] = {}
    have_full = all(importlib.util.find_spec(m) for m in ("nodes.sync", "nodes.filter"))
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    for label, full in (("replay_recorder", False), ("replay_sync_filter_recorder", True)):
        if (full and not have_full) or (args.only and args.only != ("full" if full else "rec")):
            continue
        for layout in layouts:  # side by side, one after the other on the same file
            r = _run(_graph(folder, session, args.imus, full, args.merge_s, layout))
            out_blocks = r["status"].get("replay", {}).get("blocks_out")
            results.setdefault(label, {})[layout] = {
                "elapsed_s": round(r["elapsed_s"], 2),
                "x_real_time": round(duration_s / r["elapsed_s"], 1),
                "recorded_messages_per_s": round(messages / r["elapsed_s"]),
                "samples_per_s": round(samples / r["elapsed_s"]),
                "replay_blocks_out": out_blocks, "exit": r["exit"],
                "cpu_s_per_process": r["cpu_s"],
                "cpu_s_total": round(sum(r["cpu_s"].values()), 2),
                "sync_frames": {k: r["status"].get("sync", {}).get(k) for k in (
                    "frames", "missing", "interpolated", "invalid")} if full else None,
                "x_real_time_per_busiest_process_cpu": round(
                    duration_s / max(max(r["cpu_s"].values(), default=0), 1e-9), 1)}
    report = {"bench": "replay", "command": " ".join(["imuflow", "bench", "replay"] + sys.argv[1:]),
              "replay_merge_s": args.merge_s,
              "session": {"minutes": args.minutes, "imus": args.imus, "rate_hz": RATE_HZ,
                          "messages": messages, "samples_per_message": args.block,
                          "file_mb": round(session.stat().st_size / 1e6, 1),
                          "synthesis_s" if not args.session else "scan_s": round(synth_s, 2),
                          "file": str(session) if args.session else None},
              "results": results, "machine": machine()}
    if args.profile:
        report["profile_in_one_process"] = profile_chain(session, folder, args.imus,
                                                         args.profile, args.merge_s)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"session: {args.minutes:g} min, {args.imus} IMUs at {RATE_HZ:g} Hz, {messages} "
              f"messages, {report['session']['file_mb']} MB ("
              f"{'read' if args.session else 'synthesised'} in {synth_s:.1f} s)")
        print(f"replay merge_s: {args.merge_s:g} ({'replay default' if args.merge_s < 0 else 'set'})")
        print(f"{'graph':30s} {'layout':7s} {'elapsed s':>9s} {'x real time':>11s} "
              f"{'blocks':>7s}  CPU s per process (x real time per busiest process CPU)")
        for label, per_layout in results.items():
            for layout, r in per_layout.items():
                print(f"{label:30s} {layout:7s} {r['elapsed_s']:9.2f} {r['x_real_time']:11.1f} "
                      f"{r['replay_blocks_out'] or 0:7d}  {r['cpu_s_per_process']} "
                      f"({r['x_real_time_per_busiest_process_cpu']}x)")
        if args.profile:
            print(f"in one process, no bus (CPU s): {report['profile_in_one_process']}")
        print(f"machine: {report['machine']['cpu']}, python {report['machine']['python']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
