"""SessionReader: a tolerant, vectorised reader of imuflow MCAP session files.

Reads the data section record by record, so a file whose writer was killed
(no summary, a torn last record) reads back up to its last complete chunk;
``truncated`` tells. Messages come out per chunk and per channel as numpy
arrays (:class:`ChannelRun`): with the message indexes the writer puts after
each chunk, a chunk is parsed without a Python loop over its messages.
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

from pipeline.errors import ImuflowError
from pipeline.message import StreamInfo
from pipeline.session_format import (
    FIXED_SIZE,
    MESSAGE_ENCODINGS,
    META_BUS_TOPIC,
    META_STREAM_INFO,
    SESSION_METADATA,
)

log = logging.getLogger("imuflow.session_reader")

MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 1, 2, 3, 4, 5, 6
_OP_MESSAGE_INDEX, _OP_METADATA, _OP_DATA_END = 7, 0x0C, 0x0F
_MSG_HEAD = 1 + 8 + 2 + 4 + 8 + 8  # opcode, length, channel, sequence, log_time, publish_time
HEADER_DTYPE = np.dtype([("schema", "<u2"), ("flags", "<u2"), ("epoch", "<u4"), ("seq", "<u8"),
                         ("t_host", "<i8"), ("t_sensor", "<i8"), ("n", "<u4"),
                         ("info_len", "<u4")])
assert HEADER_DTYPE.itemsize == FIXED_SIZE


class SessionFileError(ImuflowError):
    """A session file cannot be read: not MCAP, not an imuflow session, or corrupt."""


@dataclass(frozen=True)
class SessionChannel:
    """One recorded stream: MCAP channel id, stream id, bus topic and its StreamInfo."""

    id: int
    stream: str
    bus_topic: str
    info: StreamInfo

    @property
    def kind(self) -> str:
        """Message kind (``imu.raw``, ``chain.truth``, ...)."""
        return self.info.kind


@dataclass(frozen=True)
class ChannelRun:
    """The messages of one channel in one chunk, in file order.

    Attributes:
        channel: the stream they belong to.
        log_time: (k,) int64 ns, recorder receive time (monotonic clock).
        header: (k,) HEADER_DTYPE, the fixed bus header of each message (t_host, t_sensor ns).
        payload: (k, nbytes) uint8 when every message has the same size, else a list of
            (nbytes_i,) uint8 arrays; use :meth:`payload_bytes`.
    """

    channel: SessionChannel
    log_time: np.ndarray
    header: np.ndarray
    payload: np.ndarray | list[np.ndarray]

    def __len__(self) -> int:
        return len(self.log_time)

    def payload_bytes(self, start: int, stop: int) -> np.ndarray:
        """Payloads of messages ``start:stop`` concatenated, (nbytes,) uint8 (do not modify)."""
        if isinstance(self.payload, np.ndarray):
            return self.payload[start:stop].reshape(-1)
        return np.concatenate(self.payload[start:stop]) if stop > start else np.empty(0, np.uint8)


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

    def runs(self) -> Iterator[list[ChannelRun]]:
        """Yield, per chunk in file order, one :class:`ChannelRun` per channel present."""
        skip: set[int] = set()  # message indexes are read only for chunks that need them
        records = self._records(skip)
        pending: tuple[bytes, dict[int, np.ndarray]] | None = None
        for op, body in records:
            if op == _OP_CHUNK:
                if pending is not None:
                    yield self._parse_chunk(*pending)
                    pending = None
                raw = self._chunk_records(body)
                runs = self._uniform_runs(raw, np.frombuffer(raw, np.uint8))
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
                self._handle(op, memoryview(body))
        if pending is not None:
            yield self._parse_chunk(*pending)

    def _parse_chunk(self, raw: bytes, index: dict[int, np.ndarray]) -> list[ChannelRun]:
        """Runs of a chunk whose messages differ in length: from the message indexes."""
        arr = np.frombuffer(raw, np.uint8)
        offsets = self._index_offsets(raw, arr, index)
        for cid in offsets:
            if cid not in self.channels:
                raise SessionFileError(f"session '{self.path}': message on unknown channel {cid}")
        if not offsets:
            return []
        cids = list(offsets)
        offs = np.concatenate([offsets[c] for c in cids])
        bounds = np.cumsum([0] + [len(offsets[c]) for c in cids])
        fixed = _rows(arr, offs + 1, _MSG_HEAD - 1)  # every message of the chunk at once
        lengths = np.ascontiguousarray(fixed[:, 0:8]).view("<u8").ravel().astype(np.int64)
        log_time = np.ascontiguousarray(fixed[:, 14:22]).view("<i8").ravel()
        start = offs + _MSG_HEAD
        header = _rows(arr, start, FIXED_SIZE).view(HEADER_DTYPE).ravel()
        pstart = start + FIXED_SIZE + header["info_len"].astype(np.int64)
        pay_len = lengths - (_MSG_HEAD - 9) - (pstart - start)
        runs = []
        uniform = pay_len.min() == pay_len.max()  # typical: one payload size in the chunk
        every = _rows(arr, pstart, int(pay_len[0])) if uniform else None
        for i, cid in enumerate(cids):
            a, b = int(bounds[i]), int(bounds[i + 1])
            pl = pay_len[a:b]
            if every is not None:
                payload = every[a:b]
            elif pl.min() == pl.max():
                payload = _rows(arr, pstart[a:b], int(pl[0]))
            else:
                payload = [arr[s:s + n] for s, n in zip(pstart[a:b].tolist(), pl.tolist())]
            runs.append(ChannelRun(self.channels[cid], log_time[a:b], header[a:b], payload))
        return runs

    def _uniform_runs(self, raw: bytes, arr: np.ndarray) -> list[ChannelRun] | None:
        """Runs of a chunk whose messages all have one record length, in bulk; else None.

        Typical chunks qualify (one payload size per stream, v2 headers): the messages
        are then rows of a (k, length) byte matrix and each channel's headers, log
        times and payloads are gathered with one fancy index each, no per-message work.
        """
        first = self._first_message(raw)
        if first >= len(raw):
            return []
        (length,) = struct.unpack_from("<Q", raw, first + 1)
        width = 9 + length
        if width < _MSG_HEAD + FIXED_SIZE or (len(raw) - first) % width:
            return None
        rows = arr[first:].reshape(-1, width)
        # every row a message record of the same length: then parsing record by record
        # from ``first`` lands exactly on these rows
        if not ((rows[:, 0] == _OP_MESSAGE).all() and (rows[:, 1:9] == rows[0, 1:9]).all()):
            return None
        info_len = rows[:, _MSG_HEAD + FIXED_SIZE - 4:_MSG_HEAD + FIXED_SIZE]
        if not (info_len == info_len[0]).all():
            return None
        pstart = _MSG_HEAD + FIXED_SIZE + int(np.frombuffer(info_len[0].tobytes(), "<u4")[0])
        if pstart > width:
            return None
        cid = np.ascontiguousarray(rows[:, 9:11]).view("<u2").ravel()
        runs = self._interleaved_runs(rows, cid, pstart)
        if runs is not None:
            return runs
        order = np.argsort(cid, kind="stable")
        cids, starts = np.unique(cid[order], return_index=True)
        for c in cids.tolist():
            if c not in self.channels:
                raise SessionFileError(f"session '{self.path}': message on unknown channel {c}")
        log_time = rows[order, 15:23].view("<i8").ravel()
        header = rows[order, _MSG_HEAD:_MSG_HEAD + FIXED_SIZE].view(HEADER_DTYPE).ravel()
        payload = rows[order, pstart:]
        bounds = starts.tolist() + [len(rows)]
        return [ChannelRun(self.channels[c], log_time[a:b], header[a:b], payload[a:b])
                for c, a, b in zip(cids.tolist(), bounds[:-1], bounds[1:])]

    def _interleaved_runs(self, rows: np.ndarray, cid: np.ndarray,
                          pstart: int) -> list[ChannelRun] | None:
        """Runs as strided views when channels repeat in a fixed order (no copy); else None.

        Sensors sampled together and recorded in turn give rows ``c1 c2 .. cn c1 c2 ..``;
        each channel is then every n-th row of the chunk (the chunk may start mid-cycle).
        """
        matches = np.flatnonzero(cid == cid[0])
        period = int(matches[1]) if len(matches) > 1 else len(cid)
        cycle = cid[:period]
        if len(set(cycle.tolist())) != period or not (cid == np.resize(cycle, len(cid))).all():
            return None
        for c in cycle.tolist():
            if c not in self.channels:
                raise SessionFileError(f"session '{self.path}': message on unknown channel {c}")
        runs = []
        for j in np.argsort(cycle).tolist():
            mine = rows[j::period]  # a chunk may start and end anywhere in the cycle
            runs.append(ChannelRun(
                self.channels[int(cycle[j])], mine[:, 15:23].view("<i8")[:, 0],
                mine[:, _MSG_HEAD:_MSG_HEAD + FIXED_SIZE].view(HEADER_DTYPE)[:, 0],
                mine[:, pstart:]))
        return runs

    def _first_message(self, raw: bytes) -> int:
        """Offset of the chunk's first message record (records before it are handled)."""
        mv = memoryview(raw)
        pos = 0
        while pos + 9 <= len(raw):
            op, length = struct.unpack_from("<BQ", mv, pos)
            if op == _OP_MESSAGE:
                return pos
            self._handle(op, mv[pos + 9:pos + 9 + length])
            pos += 9 + length
        return len(raw)

    def _index_offsets(self, raw: bytes, arr: np.ndarray,
                       index: dict[int, np.ndarray]) -> dict[int, np.ndarray]:
        """Per channel, record offsets of its messages in the chunk (from indexes, else a scan)."""
        pos = 0
        scanned: dict[int, list[int]] = {}
        mv = memoryview(raw)
        # with indexes, the scan stops at the first message unless a channel is still unknown
        full_scan = not index or any(cid not in self.channels for cid in index)
        while pos + 9 <= len(raw):
            op, length = struct.unpack_from("<BQ", mv, pos)
            if op == _OP_MESSAGE:
                if index and not full_scan:
                    break
                scanned.setdefault(struct.unpack_from("<H", mv, pos + 9)[0], []).append(pos)
            else:
                self._handle(op, mv[pos + 9:pos + 9 + length])
            pos += 9 + length
        if index and not (full_scan and sum(map(len, scanned.values())) != sum(
                len(rows) for rows in index.values())):
            return {cid: np.sort(rows[:, 1].astype(np.int64)) for cid, rows in index.items()
                    if len(rows)}
        return {cid: np.asarray(v, np.int64) for cid, v in scanned.items()}


def _rows(arr: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``arr[s:s + width]`` for every s in ``starts`` as a (k, width) copy (no index matrix)."""
    if width == 0:
        return np.empty((len(starts), 0), np.uint8)
    windows = np.lib.stride_tricks.as_strided(arr, shape=(len(arr) - width + 1, width),
                                              strides=(1, 1), writeable=False)
    return windows[starts]


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
