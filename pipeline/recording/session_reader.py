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
import zlib
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
    CorruptChunk,
    SessionChannel,
    SessionFileError,
)
from pipeline.recording.session_format import (
    MESSAGE_ENCODINGS,
    META_BUS_TOPIC,
    META_STREAM_INFO,
    SESSION_METADATA,
)
from pipeline.recording.session_summary import session_sensors as session_sensors
from pipeline.recording.session_summary import summary_chunk_starts
from pipeline.runtime.message import StreamInfo

log = logging.getLogger("imuflow.session_reader")
__all__ = ["HEADER_DTYPE", "MAGIC", "ChannelRun", "SessionChannel", "SessionFileError",
           "SessionReader", "StoredStream", "read_streams", "session_sensors"]

MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK = 1, 2, 3, 4, 5, 6
_OP_MESSAGE_INDEX, _OP_METADATA, _OP_DATA_END = 7, 0x0C, 0x0F
_MAX_CHUNK_BYTES = 1 << 30  # a chunk claiming more is damaged (the recorder writes ~1 MiB)
_PARSE_ERRORS = (CorruptChunk, struct.error, ValueError, IndexError, TypeError, OverflowError)


class SessionReader:
    """Reads a session file; ``channels`` and ``metadata`` fill in as the data section is read."""

    def __init__(self, path: str | Path, *, logger: logging.Logger | logging.LoggerAdapter | None
                 = None) -> None:
        self.path = Path(path)
        self.log = logger or log
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
        self.corrupt_chunks = 0  # chunks skipped: CRC mismatch, undecodable, records out of line
        self.corrupt_records = 0  # damaged records outside chunks (skipped or resynchronised)
        self._chunk_starts: list[int] | None = None  # from the summary, to resynchronise
        self._pos = 0  # file offset of the record being handled
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
            self._pos = pos
            if pos + 9 + length > self._size:
                self._size = os.fstat(f.fileno()).st_size  # the file may still be growing
            fits = pos + 9 + length <= self._size
            if not _OP_HEADER <= op <= _OP_DATA_END or (not fits and self._complete()):
                nxt = self._resync(pos, f"record (opcode {op}, length {length})")
                if nxt is None:
                    return
                f.seek(nxt)
                pos = nxt
                continue
            if not fits:  # a torn last record: the writer was killed (or is still writing)
                self.truncated = True
                self.log.warning("session '%s': torn record at byte %d (file ends early); read up "
                            "to the last complete chunk", self.path, pos)
                return
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
                self.log.warning("session '%s': torn record at byte %d (file ends early); read up "
                            "to the last complete chunk", self.path, pos)
                return
            yield op, body
            pos += 9 + length
            if op in (_OP_DATA_END, _OP_FOOTER):
                return

    def _complete(self) -> bool:
        """True when the file ends with a footer and the magic (the writer finished it)."""
        if self._size < 2 * len(MAGIC) + 9:
            return False
        self._file.seek(self._size - len(MAGIC))
        tail = self._file.read(len(MAGIC))
        return tail == MAGIC

    def _resync(self, pos: int, what: str) -> int | None:
        """Offset of the first chunk after a damaged record at ``pos`` (summary's chunk index).

        None when there is none (or no summary): reading ends there.
        """
        self.corrupt_records += 1
        if self._chunk_starts is None:
            self._chunk_starts = summary_chunk_starts(self.path)
        # a damaged summary may list offsets past the end (or past any seekable offset)
        nxt = next((c for c in self._chunk_starts if pos < c < self._size), None)
        self.log.warning("session '%s': damaged %s at byte %d; %s", self.path, what, pos,
                         f"going on at the next chunk (byte {nxt})" if nxt is not None else
                         "nothing after it can be read")
        if nxt is None:
            self.truncated = True
        return nxt

    def _skip_chunk(self, exc: Exception) -> None:
        """Count and report a chunk that cannot be used; reading goes on after it."""
        self.corrupt_chunks += 1
        self.log.warning("session '%s': chunk at byte %d skipped (%s); %d skipped so far",
                         self.path, self._pos, exc, self.corrupt_chunks)

    def _scan_preamble(self) -> None:
        """Read channels and metadata before the first chunk (and the first chunk's channels)."""
        for op, body in self._records():
            if op == _OP_CHUNK:
                break
            self._handle(op, memoryview(body))

    def _handle(self, op: int, rec: memoryview) -> None:
        """Use a channel or metadata record; a damaged one is counted and skipped."""
        try:
            self._handle_record(op, rec)
        except SessionFileError:
            raise  # not an imuflow session: refused, not skipped
        except (struct.error, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            self.corrupt_records += 1
            self.log.warning("session '%s': damaged record (opcode %d) at byte %d skipped: %s",
                             self.path, op, self._pos, exc)

    def _handle_record(self, op: int, rec: memoryview) -> None:
        if op == _OP_CHANNEL:
            cid, _schema = struct.unpack_from("<HH", rec, 0)
            topic, p = _string(rec, 4)
            enc, p = _string(rec, p)
            meta = _string_map(rec, p)
            if META_STREAM_INFO not in meta:
                raise SessionFileError(f"session '{self.path}': channel '{topic}' has no "
                                       f"'{META_STREAM_INFO}' metadata: not an imuflow session "
                                       "(import vendor files with `imuflow import`)")
            if enc not in MESSAGE_ENCODINGS:
                raise SessionFileError(f"session '{self.path}': channel '{topic}' has message "
                                       f"encoding '{enc}'; this imuflow reads "
                                       f"{', '.join(MESSAGE_ENCODINGS)}: update imuflow")
            if cid not in self.channels:
                raw = meta[META_STREAM_INFO]
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
        """The chunk's records, decompressed and checked against its size and CRC.

        Raises CorruptChunk when the chunk cannot be used.
        """
        rec = memoryview(body)
        try:
            _t0, _t1, usize, crc = struct.unpack_from("<QQQI", rec, 0)
            comp, p = _string(rec, 28)
            (rlen,) = struct.unpack_from("<Q", rec, p)
            if p + 8 + rlen > len(rec) or usize > _MAX_CHUNK_BYTES:
                raise CorruptChunk(f"sizes out of range (records {rlen} B, uncompressed {usize} B)")
            data = rec[p + 8:p + 8 + rlen]
            if comp == "zstd":
                raw = self._zstd.decompress(data, max_output_size=usize)
            elif comp == "lz4":
                raw = lz4.frame.decompress(data)
            elif comp == "":
                raw = bytes(data)
            else:
                raise CorruptChunk(f"compression {comp!r} unknown")
        except CorruptChunk:
            raise
        except (struct.error, UnicodeDecodeError, RuntimeError, ValueError, MemoryError,
                zstandard.ZstdError) as exc:
            raise CorruptChunk(f"cannot decode: {type(exc).__name__}: {exc}") from None
        if len(raw) != usize:
            raise CorruptChunk(f"{len(raw)} bytes decompressed, the chunk says {usize}")
        if crc and zlib.crc32(raw) != crc:
            raise CorruptChunk(f"CRC mismatch ({zlib.crc32(raw):08x}, recorded {crc:08x})")
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
                    yield self._indexed(*pending)
                    pending = None
                try:
                    raw = self._chunk_records(body)
                except CorruptChunk as exc:
                    self._skip_chunk(exc)
                    continue
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
                try:
                    runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
                except _PARSE_ERRORS as exc:
                    self._skip_chunk(exc)
                    continue
                if runs is not None:
                    skip.add(_OP_MESSAGE_INDEX)
                    yield runs
                else:
                    skip.discard(_OP_MESSAGE_INDEX)
                    pending = (raw, {})
            elif op == _OP_MESSAGE_INDEX and pending is not None:
                try:
                    (cid, n) = struct.unpack_from("<HI", body, 0)
                    pending[1][cid] = np.frombuffer(body, dtype="<u8", count=n // 16 * 2,
                                                    offset=6).reshape(-1, 2)
                except (struct.error, ValueError):
                    self.corrupt_records += 1  # the chunk is then scanned instead
            else:
                if group and op != _OP_MESSAGE_INDEX:  # a record between chunks: keep order
                    yield from self._parse_group(group)
                    group = []
                self._handle(op, memoryview(body))
        yield from self._parse_group(group)
        if pending is not None:
            yield self._indexed(*pending)

    def _indexed(self, raw: bytes, index: dict[int, np.ndarray]) -> list[ChannelRun]:
        """Runs of a chunk from its message indexes; a chunk that does not parse is skipped."""
        try:
            return self._chunks.indexed(raw, index)
        except _PARSE_ERRORS as exc:
            self._skip_chunk(exc)
            return []

    def _parse_group(self, group: list[bytes]) -> Iterator[list[ChannelRun]]:
        """Runs of a batch of chunks: as one chunk if their records line up, else one by one."""
        if not group:
            return
        raw = group[0] if len(group) == 1 else b"".join(group)
        try:
            runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
        except _PARSE_ERRORS:
            runs = None
        if runs is not None:
            yield runs
            return
        for raw in group:  # layouts differ between the chunks: each on its own (no indexes)
            try:
                runs = self._chunks.bulk(raw, np.frombuffer(raw, np.uint8))
            except _PARSE_ERRORS as exc:
                self._skip_chunk(exc)
                continue
            yield runs if runs is not None else self._indexed(raw, {})

    @property
    def unknown_messages(self) -> int:
        """Messages dropped because their channel record is missing or damaged."""
        return self._chunks.unknown_messages

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
