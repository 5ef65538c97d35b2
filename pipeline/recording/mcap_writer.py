"""McapWriter: a small, fast writer of chunked MCAP files (the subset session files use).

Why not ``mcap.writer.Writer``: it builds every record through a ``BytesIO`` with
a Python call per field (about 20 us per message) and compresses zstd at level
3 only. Here a message costs one ``struct.pack`` and a list append (its data may
come in parts, large payloads as views); a chunk is compressed (lz4: one streaming
frame over the parts, no joined copy) and written in one go with its message
indexes, built from arrays. The output follows the MCAP spec (https://mcap.dev/spec): header,
schemas and channels as top-level records written when registered (always
before the first chunk that uses them), metadata records, chunks each followed
by their message indexes, and on :meth:`finish` DataEnd, a summary (schemas,
channels, statistics, chunk and metadata indexes, summary offsets) and the
footer, so the ``mcap`` library and other MCAP tools read it.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

import lz4.frame
import numpy as np
import zstandard

MAGIC = b"\x89MCAP0\r\n"
OP_HEADER, OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 1, 2, 3, 4, 5, 6
OP_MESSAGE_INDEX, OP_CHUNK_INDEX, OP_STATISTICS, OP_METADATA = 7, 8, 0x0B, 0x0C
OP_METADATA_INDEX, OP_SUMMARY_OFFSET, OP_DATA_END = 0x0D, 0x0E, 0x0F
_MSG = struct.Struct("<BQHIQQ")  # opcode, record length, channel, sequence, log_time, publish_time
ZSTD_LEVEL = 1  # 2-3x faster than level 3 and as small on noisy IMU samples (bench_replay)


def _compressors() -> dict[str, Callable[[bytes], bytes]]:
    zc = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
    return {"lz4": lz4.frame.compress, "zstd": zc.compress, "none": bytes}


COMPRESSIONS = ("lz4", "zstd", "none")


def _coalesce(parts: list[bytes | memoryview], large: int = 16384) -> list[bytes | memoryview]:
    """``parts`` with runs of small ones joined (fewer calls); parts of ``large`` bytes or
    more are kept as they are (no copy)."""
    out: list[bytes | memoryview] = []
    small: list[bytes | memoryview] = []
    for p in parts:
        if len(p) >= large:
            if small:
                out.append(b"".join(small))
                small = []
            out.append(p)
        else:
            small.append(p)
    if small:
        out.append(b"".join(small) if len(small) > 1 else small[0])
    return out


def _s(text: str | bytes) -> bytes:
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<I", len(raw)) + raw


def _map(d: dict[str, str]) -> bytes:
    body = b"".join(_s(k) + _s(v) for k, v in d.items())
    return struct.pack("<I", len(body)) + body


def _record(op: int, body: bytes) -> bytes:
    return struct.pack("<BQ", op, len(body)) + body


class McapWriter:
    """Writes an MCAP file to ``out``: register, add messages, :meth:`flush`, :meth:`finish`.

    Not thread-safe (the caller locks). Times are int64 ns as given. OSError from
    ``out`` propagates unchanged (the caller adds the file name and advice).

    ``background``: a closed chunk is compressed, checksummed and written by
    one helper thread (lz4, zstd and crc32 release the GIL), so the caller goes on
    with the next messages meanwhile; at most ``MAX_PENDING`` chunks wait, in order.
    :meth:`flush` and :meth:`finish` wait for them; an OSError of a background write
    is raised by the next call that waits (add_message, flush, finish). Records
    written by the caller (channels, metadata) wait for the pending chunks first.
    """

    MAX_PENDING = 2

    def __init__(self, out: BinaryIO, *, compression: str = "lz4", chunk_bytes: int = 1 << 20,
                 crc: bool = True, background: bool = False) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}, "
                             f"got {compression!r}")
        self._out = out
        self._compression = "" if compression == "none" else compression
        self._compress = _compressors()[compression]
        self._chunk_bytes = chunk_bytes
        self._crc = crc
        self._schemas: list[bytes] = []
        self._channels: list[bytes] = []
        self._metadata_index: list[bytes] = []
        self._chunk_index: list[bytes] = []
        self._counts: dict[int, int] = {}
        self.message_count = 0
        self._t_first: int | None = None
        self._t_last = 0
        self._chunk_count = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="mcap-chunk") if background \
            else None
        self._pending: deque[Future] = deque()
        self._reset_chunk()

    def _reset_chunk(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._index: dict[int, list[int]] = {}  # channel -> [log_time, offset, ...]
        self._t0: int | None = None
        self._t1 = 0

    # -- top-level records ----------------------------------------------------------------------
    def start(self, profile: str, library: str) -> None:
        """Write the magic and the header record."""
        self._out.write(MAGIC + _record(OP_HEADER, _s(profile) + _s(library)))

    def register_schema(self, name: str, encoding: str, data: bytes) -> int:
        """Write a schema record now; return its id (1, 2, ...)."""
        self.wait()
        sid = len(self._schemas) + 1
        rec = _record(OP_SCHEMA, struct.pack("<H", sid) + _s(name) + _s(encoding) + _s(data))
        self._schemas.append(rec)
        self._out.write(rec)
        return sid

    def register_channel(self, topic: str, message_encoding: str, schema_id: int,
                         metadata: dict[str, str]) -> int:
        """Write a channel record now (before the chunk that uses it); return its id."""
        self.wait()
        cid = len(self._channels) + 1
        if cid > 0xFFFF:
            raise ValueError(f"MCAP allows 65535 channels; '{topic}' would be channel {cid}")
        rec = _record(OP_CHANNEL, struct.pack("<HH", cid, schema_id) + _s(topic)
                      + _s(message_encoding) + _map(metadata))
        self._channels.append(rec)
        self._out.write(rec)
        return cid

    def add_metadata(self, name: str, data: dict[str, str]) -> None:
        """Write a metadata record (indexed in the summary)."""
        self.wait()
        rec = _record(OP_METADATA, _s(name) + _map(data))
        offset = self._out.tell()
        self._out.write(rec)
        self._metadata_index.append(_record(
            OP_METADATA_INDEX, struct.pack("<QQ", offset, len(rec)) + _s(name)))

    # -- messages -------------------------------------------------------------------------------
    def add_message(self, channel_id: int, *, log_time: int, publish_time: int, sequence: int,
                    data: bytes | memoryview | tuple[bytes | memoryview, ...]) -> int:
        """Append a message to the open chunk (closed once it holds ``chunk_bytes``).

        ``data`` may come in parts (kept, not joined, until the chunk is written: the
        caller must not change them). Returns the message data's size in bytes.
        """
        if isinstance(data, tuple):
            n = sum(map(len, data)) if len(data) > 1 else len(data[0])
            self._parts.append(_MSG.pack(OP_MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF,
                                         log_time, publish_time))
            self._parts.extend(data)
        else:
            n = len(data)
            self._parts.append(_MSG.pack(OP_MESSAGE, 22 + n, channel_id, sequence & 0xFFFFFFFF,
                                         log_time, publish_time))
            self._parts.append(data)
        idx = self._index.get(channel_id)
        if idx is None:
            idx = self._index[channel_id] = []
        idx.append(log_time)
        idx.append(self._size)
        self._size += _MSG.size + n
        if self._t0 is None or log_time < self._t0:
            self._t0 = log_time
        self._t1 = max(self._t1, log_time)
        self.message_count += 1
        if self._size >= self._chunk_bytes:
            self.close_chunk()
        return n

    def close_chunk(self) -> None:
        """Compress and write the open chunk and its message indexes (nothing if empty)."""
        if not self._parts:
            return
        job = (self._parts, self._index, self._t0, self._t1)
        self._reset_chunk()
        if self._pool is None:
            self._write_chunk(*job)
            return
        while len(self._pending) >= self.MAX_PENDING:  # bounded memory, errors surface here
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._write_chunk, *job))

    def wait(self) -> None:
        """Wait until every closed chunk is written (re-raises a background OSError)."""
        while self._pending:
            self._pending.popleft().result()

    def _write_chunk(self, parts: list[bytes], index: dict[int, list[int]], t0: int,
                     t1: int) -> None:
        parts = _coalesce(parts)  # small records joined; large payloads stay views
        size = sum(map(len, parts))
        crc = 0
        if self._crc:
            for p in parts:
                crc = zlib.crc32(p, crc)
        if self._compression == "lz4":  # a streaming frame over the parts: no joined copy
            lz4c = lz4.frame.LZ4FrameCompressor()
            comp = [lz4c.begin(size), *map(lz4c.compress, parts), lz4c.flush()]
        elif self._compression:
            comp = [self._compress(b"".join(parts))]
        else:
            comp = parts
        comp_len = sum(map(len, comp))
        start = self._out.tell()
        body = (struct.pack("<QQQI", t0, t1, size, crc) + _s(self._compression)
                + struct.pack("<Q", comp_len))
        self._out.write(struct.pack("<BQ", OP_CHUNK, len(body) + comp_len) + body)
        for piece in comp:
            self._out.write(piece)
        chunk_len = 9 + len(body) + comp_len
        index_start = start + chunk_len
        offsets = []
        pos = index_start
        for cid, entries in index.items():
            pairs = np.asarray(entries, dtype="<u8").tobytes()
            rec = _record(OP_MESSAGE_INDEX, struct.pack("<HI", cid, len(pairs)) + pairs)
            self._out.write(rec)
            offsets.append(struct.pack("<HQ", cid, pos))
            pos += len(rec)
            self._counts[cid] = self._counts.get(cid, 0) + len(entries) // 2
        self._chunk_index.append(_record(OP_CHUNK_INDEX, struct.pack(
            "<QQQQI", t0, t1, start, chunk_len, 10 * len(offsets)) + b"".join(offsets)
            + struct.pack("<Q", pos - index_start) + _s(self._compression)
            + struct.pack("<QQ", comp_len, size)))
        if self._t_first is None or t0 < self._t_first:
            self._t_first = t0
        self._t_last = max(self._t_last, t1)
        self._chunk_count += 1

    def flush(self) -> None:
        """Close the open chunk and hand everything written to the OS (no fsync)."""
        self.close_chunk()
        self.wait()
        self._out.flush()

    def finish(self) -> None:
        """Close the chunk, write DataEnd, the summary section and the footer."""
        self.close_chunk()
        self.wait()
        self.shutdown()
        self._out.write(_record(OP_DATA_END, struct.pack("<I", 0)))
        summary_start = self._out.tell()
        counts = b"".join(struct.pack("<HQ", c, n) for c, n in sorted(self._counts.items()))
        stats = _record(OP_STATISTICS, struct.pack(
            "<QHIIIIQQI", self.message_count, len(self._schemas), len(self._channels), 0,
            len(self._metadata_index), self._chunk_count, self._t_first or 0, self._t_last,
            len(counts)) + counts)
        groups = [(OP_SCHEMA, self._schemas), (OP_CHANNEL, self._channels),
                  (OP_STATISTICS, [stats]), (OP_CHUNK_INDEX, self._chunk_index),
                  (OP_METADATA_INDEX, self._metadata_index)]
        summary, offsets = [], []
        pos = summary_start
        for op, records in groups:
            if not records:
                continue
            blob = b"".join(records)
            summary.append(blob)
            offsets.append(_record(OP_SUMMARY_OFFSET, struct.pack("<BQQ", op, pos, len(blob))))
            pos += len(blob)
        offset_start = pos
        data = b"".join(summary + offsets)
        head = struct.pack("<BQQQ", OP_FOOTER, 20, summary_start, offset_start)
        crc = zlib.crc32(head, zlib.crc32(data)) if self._crc else 0
        self._out.write(data + head + struct.pack("<I", crc) + MAGIC)
        self._out.flush()

    def shutdown(self) -> None:
        """Stop the helper thread (after :meth:`wait`, or to abandon pending chunks)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
            self._pending.clear()
