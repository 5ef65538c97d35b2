"""Benchmark the protocol parsers: frames/s and MB/s on large synthetic streams.

Run: `python tools/bench_parsers.py [--json] [--frames N] [--seed S]`. Streams are
fed in realistic chunk sizes (64-4096 bytes, random); one core, pure Python.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drivers.ble.movella_dot_protocol import DotPayloadDecoder  # noqa: E402
from drivers.ble.witmotion_ble_protocol import WitBleParser  # noqa: E402
from drivers.serial.line_protocol import LineParser, format_line  # noqa: E402
from drivers.serial.witmotion import WitSerialParser  # noqa: E402
from drivers.serial.xbus import XbusParser, build_message  # noqa: E402
from tools import machine_info  # noqa: E402

CHUNKS = (64, 128, 256, 512, 1024, 2048, 4096)


def _xbus(n: int) -> tuple[bytes, int]:
    frames = []
    for i in range(n):
        data = struct.pack(">HBH", 0x1020, 2, i & 0xFFFF) + struct.pack(">HBI", 0x1060, 4, 100 * i)
        data += struct.pack(">HB3f", 0x4020, 12, 0.01 * i, -0.2, 9.81)
        data += struct.pack(">HB3f", 0x8020, 12, 0.001, -0.002, 0.003 * (i % 100))
        data += struct.pack(">HB3f", 0xC020, 12, 0.5, 0.1, -0.8)
        frames.append(build_message(0x36, data))
    return b"".join(frames), n


def _wit(n: int) -> tuple[bytes, int]:
    def frame(typ: int, *v: int) -> bytes:
        body = bytes((0x55, typ)) + struct.pack("<4h", *v)
        return body + bytes((sum(body) & 0xFF,))
    return b"".join(frame(0x51, i % 3000, -512, 2048, 2500) + frame(0x52, 40, -i % 3000, 7, 0)
                    + frame(0x53, 100, 200, 300, 0x123) + frame(0x54, 360, 105, 122, 0)
                    for i in range(n)), n


def _line(n: int) -> tuple[bytes, int]:
    return b"".join(format_line("imu01", 10_000 * i, (0.01 * i, -0.05, 9.81),
                                (0.001, -0.002, 0.03)) for i in range(n)), n


def _wit_ble(n: int) -> list[bytes]:
    return [b"\x55\x61" + struct.pack("<9h", i % 3000, -512, 2048, 4096, -2048, 0, 0, 0, 0)
            for i in range(n)]


def _dot(n: int) -> list[bytes]:
    return [struct.pack("<I3f3f", (16667 * i) % 2**32, 0.5, -1.25, 9.81, 10.0, -2.5, 0.0)
            + bytes(12) for i in range(n)]


def _bench_stream(parser, stream: bytes, frames: int, rng: random.Random) -> dict:
    cuts = []
    pos = 0
    while pos < len(stream):
        n = rng.choice(CHUNKS)
        cuts.append(stream[pos:pos + n])
        pos += n
    t0 = time.perf_counter()
    out = 0
    for c in cuts:
        out += len(parser.feed(c))
    if hasattr(parser, "flush"):
        out += len(parser.flush())
    dt = time.perf_counter() - t0
    assert parser.stats.frames_ok >= frames and out == frames, (out, frames)
    return {"frames": frames, "bytes": len(stream), "seconds": round(dt, 4),
            "frames_per_s": round(frames / dt), "mb_per_s": round(len(stream) / dt / 1e6, 2),
            "chunk_bytes": "64-4096"}


def _bench_packets(parser, packets: list[bytes]) -> dict:
    t0 = time.perf_counter()
    out = 0
    for p in packets:
        out += len(parser.feed(p))
    dt = time.perf_counter() - t0
    nbytes = sum(map(len, packets))
    assert out == len(packets)
    return {"frames": len(packets), "bytes": nbytes, "seconds": round(dt, 4),
            "frames_per_s": round(len(packets) / dt), "mb_per_s": round(nbytes / dt / 1e6, 2),
            "chunk_bytes": "one notification"}


def run(frames: int, seed: int) -> dict:
    """Run all benchmarks; return a JSON-serialisable result dict."""
    rng = random.Random(seed)
    res = {}
    s, n = _xbus(frames)
    res["xbus"] = _bench_stream(XbusParser(), s, n, rng)
    s, n = _wit(frames)
    res["witmotion_serial (4 frames/sample)"] = _bench_stream(WitSerialParser(), s, n, rng)
    s, n = _line(frames)
    res["line_protocol"] = _bench_stream(LineParser(), s, n, rng)
    res["witmotion_ble"] = _bench_packets(WitBleParser(), _wit_ble(frames))
    res["movella_dot_mode21"] = _bench_packets(DotPayloadDecoder(21), _dot(frames))
    return {
        "machine": {"platform": platform.platform(), "cpu": machine_info.cpu_model(),
                    "python": sys.version.split()[0], "implementation": platform.python_implementation()},
        "results": res,
    }


def main() -> None:
    """Command line entry: print a table, or one JSON object with --json."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--frames", type=int, default=200_000, help="samples per protocol")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    result = run(args.frames, args.seed)
    if args.json:
        print(json.dumps(result))
        return
    m = result["machine"]
    print(f"{m['cpu']} | {m['platform']} | Python {m['python']}")
    print(f"{'protocol':38s} {'samples/s':>12s} {'MB/s':>8s} {'bytes':>12s} {'s':>8s}")
    for name, r in result["results"].items():
        print(f"{name:38s} {r['frames_per_s']:12,d} {r['mb_per_s']:8.2f} {r['bytes']:12,d} "
              f"{r['seconds']:8.3f}")


if __name__ == "__main__":
    main()
