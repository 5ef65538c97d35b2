"""SessionReader: a tolerant, vectorised reader of imuflow MCAP session files.

Reads the data section record by record, so a file whose writer was killed
(no summary, a torn last record) reads back up to its last complete chunk;
``truncated`` tells. Messages come out per chunk and per channel as numpy
arrays (:class:`ChannelRun`): with the message indexes the writer puts after
each chunk, a chunk is parsed without a Python loop over its messages
(:mod:`pipeline.recording.session_chunks`).
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import numpy as np
import zstandard

from pipeline.recording.session_chunks import (
    HEADER_DTYPE,
    ChannelRun,
    ChunkParser,
    SessionChannel,
    SessionFileError,
)
from pipeline.recording.session_format import (
    MESSAGE_ENCODINGS,
    META_BUS_TOPIC,
    META_STREAM_INFO,
    SESSION_METADATA,
)
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.streams import RAW_IMU

log = logging.getLogger("imuflow.session_reader")
__all__ = ["HEADER_DTYPE", "MAGIC", "ChannelRun", "SessionChannel", "SessionFileError",
           "SessionReader", "StoredStream", "read_streams"]

MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 1, 2, 3, 4, 5, 6
_OP_MESSAGE_INDEX, _OP_METADATA, _OP_DATA_END = 7, 0x0C, 0x0F


class SessionReader:
    """Reads a session file; ``channels`` and ``metadata`` fill in as the data section is read."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            size = self._size = self.path.stat().st_size
        except OSError as exc:
            raise SessionFileError(f"session '{self.path}': cannot open: {exc.strerror}") from None
        if size < len(MAGIC) or self._file.read(len(MAGIC)) != MAGIC:
            self._file.close()
            raise SessionFileError(f"session '{self.path}': not an MCAP file (bad magic); "
                                   "import vendor files with `imuflow import`")
        self.channels: dict[int, SessionChannel] = {}
        self.metadata: dict[str, dict[str, str]] = {}
        self.truncated = False
        self._zstd = zstandard.ZstdDecompressor()
        self._chunks = ChunkParser(self.path, self.channels, self._handle)
        self._scan_preamble()

    def close(self) -> None:
        """Release the file."""
        self._file.close()

    def __enter__(self) -> "SessionReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- records -------------------------------------------------------------------------------
    def _records(self, skip: set[int] | frozenset[int] = frozenset()
                 ) -> Iterator[tuple[int, bytes]]:
        """(opcode, content) of each top-level record of the data section, read sequentially.

        Records whose opcode is in ``skip`` (checked as the reading goes on) are
        stepped over without reading their content.
        """
        f = self._file
        f.seek(len(MAGIC))
        pos = len(MAGIC)
        while True:
            head = f.read(9)
            if len(head) < 9:
                self.truncated = True  # no DataEnd record: the writer did not finish
                return
            op, length = struct.unpack("<BQ", head)
            if op in skip:
                end = pos + 9 + length
                if end > self._size:  # the file may still be growing: look again
                    self._size = os.fstat(f.fileno()).st_size
                if end <= self._size:
                    f.seek(end)
                    pos = end
                    continue
            body = f.read(length)
            if len(body) < length:
                self.truncated = True
                log.warning("session '%s': torn record at byte %d (file ends early); read up "
                            "to the last complete chunk", self.path, pos)
                return
            yield op, body
            pos += 9 + length
            if op in (_OP_DATA_END, _OP_FOOTER):
                return

    def _scan_preamble(self) -> None:
        """Read channels and metadata before the first chunk (and the first chunk's channels)."""
        for op, body in self._records():
            if op == _OP_CHUNK:
                break
            self._handle(op, memoryview(body))

    def _handle(self, op: int, rec: memoryview) -> None:
        if op == _OP_CHANNEL:
            cid, _schema = struct.unpack_from("<HH", rec, 0)
            topic, p = _string(rec, 4)
            enc, p = _string(rec, p)
            meta = _string_map(rec, p)
            if enc not in MESSAGE_ENCODINGS:
                raise SessionFileError(f"session '{self.path}': channel '{topic}' has message "
                                       f"encoding '{enc}'; this imuflow reads "
                                       f"{', '.join(MESSAGE_ENCODINGS)}: update imuflow")
            if cid not in self.channels:
                raw = meta.get(META_STREAM_INFO)
                if raw is None:
                    raise SessionFileError(f"session '{self.path}': channel '{topic}' has no "
                                           f"'{META_STREAM_INFO}' metadata; not an imuflow session")
                info = StreamInfo.from_json(raw.encode())
                self.channels[cid] = SessionChannel(cid, topic, meta.get(META_BUS_TOPIC, topic),
                                                    info)
        elif op == _OP_METADATA:
            name, p = _string(rec, 0)
            self.metadata[name] = _string_map(rec, p)

    @property
    def session(self) -> dict[str, str]:
        """The ``imuflow.session`` metadata: UTC anchor (utc_ns, monotonic_ns) and more."""
        return self.metadata.get(SESSION_METADATA, {})

    # -- chunks --------------------------------------------------------------------------------
    def _chunk_records(self, body: bytes) -> bytes:
        rec = memoryview(body)
        _t0, _t1, usize, _crc = struct.unpack_from("<QQQI", rec, 0)
        comp, p = _string(rec, 28)
        (rlen,) = struct.unpack_from("<Q", rec, p)
        data = rec[p + 8:p + 8 + rlen]
        if comp == "zstd":
            raw = self._zstd.decompress(data, max_output_size=usize)
        elif comp == "lz4":
            raw = lz4.frame.decompress(data)
        elif comp == "":
            raw = bytes(data)
        else:
            raise SessionFileError(f"session '{self.path}': chunk compression '{comp}' unknown")
        return raw

    def runs(self, batch_ns: int = 0) -> Iterator[list[ChannelRun]]:
        """Yield, per chunk in file order, one :class:`ChannelRun` per channel present.

        ``batch_ns`` > 0 (offline replay): consecutive chunks whose messages all lie in
        one window of that length (windows counted from the first chunk's first message
        time; chunk headers tell) are parsed as one when they share one record layout,
        so a run then spans several chunks and the per-chunk work is done once.
        """
        skip: set[int] = set()  # message indexes are read only for chunks that need them
        records = self._records(skip)
        pending: tuple[bytes, dict[int, np.ndarray]] | None = None
        group: list[bytes] = []  # decompressed chunks of one batch window, parsed in bulk
        window = origin = None
        for op, body in records:
            if op == _OP_CHUNK:
                if pending is not None:
                    yield self._chunks.indexed(*pending)
                    pending = None
                raw = self._chunk_records(body)
                if batch_ns > 0:
                    t0, t1 = struct.unpack_from("<QQ", body, 0)
                    origin = t0 if origin is None else origin
                    w0, w1 = (t0 - origin) // batch_ns, (t1 - origin) // batch_ns
                    if group and w0 == w1 == window:
                        group.append(raw)
                        continue
                    yield from self._parse_group(group)
                    group = []
                    if w0 == w1 and self._chunks.uniform(raw):
                        group, window = [raw], w0
                        skip.add(_OP_MESSAGE_INDEX)
                        continue
                runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
                if runs is not None:
                    skip.add(_OP_MESSAGE_INDEX)
                    yield runs
                else:
                    skip.discard(_OP_MESSAGE_INDEX)
                    pending = (raw, {})
            elif op == _OP_MESSAGE_INDEX and pending is not None:
                (cid, n) = struct.unpack_from("<HI", body, 0)
                pending[1][cid] = np.frombuffer(body, dtype="<u8", count=n // 8,
                                                offset=6).reshape(-1, 2)
            else:
                if group and op != _OP_MESSAGE_INDEX:  # a record between chunks: keep order
                    yield from self._parse_group(group)
                    group = []
                self._handle(op, memoryview(body))
        yield from self._parse_group(group)
        if pending is not None:
            yield self._chunks.indexed(*pending)

    def _parse_group(self, group: list[bytes]) -> Iterator[list[ChannelRun]]:
        """Runs of a batch of chunks: as one chunk if their records line up, else one by one."""
        if not group:
            return
        raw = group[0] if len(group) == 1 else b"".join(group)
        runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
        if runs is not None:
            yield runs
            return
        for raw in group:  # layouts differ between the chunks: each on its own (no indexes)
            runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
            yield runs if runs is not None else self._chunks.indexed(raw, {})

def _string(rec: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", rec, pos)
    return bytes(rec[pos + 4:pos + 4 + n]).decode(), pos + 4 + n


def _string_map(rec: memoryview, pos: int) -> dict[str, str]:
    (n,) = struct.unpack_from("<I", rec, pos)
    end = pos + 4 + n
    pos += 4
    out = {}
    while pos < end:
        k, pos = _string(rec, pos)
        v, pos = _string(rec, pos)
        out[k] = v
    return out


@dataclass(frozen=True)
class StoredStream:
    """One stream of a session read whole: samples, per-message headers and log times.

    Attributes:
        info: the recorded StreamInfo.
        data: (n_samples, *info.shape) of info's dtype, every message's payload concatenated.
        header: (n_messages,) HEADER_DTYPE (t_host/t_sensor int64 ns of each block's first sample).
        log_time: (n_messages,) int64 ns, recorder receive time.
    """

    info: StreamInfo
    data: np.ndarray
    header: np.ndarray
    log_time: np.ndarray


def read_streams(path: str | Path) -> dict[str, StoredStream]:
    """Read every numpy stream of a session file into memory, keyed by stream id (tools, tests)."""
    parts: dict[int, list[ChannelRun]] = {}
    with SessionReader(path) as reader:
        for runs in reader.runs():
            for run in runs:
                parts.setdefault(run.channel.id, []).append(run)
        out = {}
        for cid, runs in parts.items():
            ch = reader.channels[cid]
            header = np.concatenate([r.header for r in runs])
            if np.any(header["flags"] & 4):  # JSON payloads (status): not a numpy stream
                continue
            raw = np.concatenate([r.payload_bytes(0, len(r)) for r in runs])
            data = np.frombuffer(raw.tobytes(), ch.info.np_dtype).reshape((-1, *ch.info.shape))
            out[ch.stream] = StoredStream(ch.info, data, header,
                                          np.concatenate([r.log_time for r in runs]))
    return out


def session_sensors(path: str | Path) -> list[str] | None:
    """Sensor names of the ``imu.raw`` streams of a session, from its summary section.

    None when the file cannot tell without reading it all (no summary: a torn recording)
    or is not readable; replay's setup then reports the file's problem.
    """
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
    except (OSError, ValueError, struct.error, McapError):
        return None  # unreadable: replay's setup names the file and the problem
    if summary is None:
        return None
    names: list[str] = []
    for ch in summary.channels.values():
        raw = ch.metadata.get(META_STREAM_INFO)
        if raw is None:
            continue
        info = StreamInfo.from_json(raw.encode())
        if info.kind == RAW_IMU and info.source and info.source not in names:
            names.append(info.source)
    return names
