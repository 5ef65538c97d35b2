"""SessionWriter: writes one MCAP session file of bus messages, chunked and flushed periodically.

The file layout is described in :mod:`pipeline.recording.session_format` and
docs/recordings.md. Chunks are closed and written to the OS at least every
``flush_s`` seconds (or ``chunk_bytes`` of uncompressed data), so a process
killed with SIGKILL leaves a file that :class:`pipeline.recording.session_reader.SessionReader`
reads up to the last flushed chunk. :meth:`close` writes the summary section.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.recording.mcap_writer import COMPRESSIONS, McapWriter
from pipeline.recording.session_format import (
    MESSAGE_ENCODING,
    META_BUS_TOPIC,
    META_KIND,
    META_STREAM_INFO,
    SCHEMA_ENCODING,
    SCHEMA_NAME,
    SCHEMA_TEXT,
    SESSION_METADATA,
    bus_topic,
    record_parts,
    to_record,
)
from pipeline.runtime.errors import RecordingError
from pipeline.runtime.message import Block, Encoder, StreamInfo

log = logging.getLogger("imuflow.session_writer")

DEFAULT_COMPRESSION = "lz4"  # see docs/recordings.md, "Compression"
__all__ = ["COMPRESSIONS", "DEFAULT_COMPRESSION", "RecordingError", "SessionWriter",
           "expand_path", "utc_anchor"]


def expand_path(path: str | Path, now_utc: datetime | None = None) -> Path:
    """Replace ``{time}`` in ``path`` by the UTC time as ``YYYYmmddTHHMMSSZ``."""
    stamp = (now_utc or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path(str(path).replace("{time}", stamp)).expanduser()


def utc_anchor() -> dict[str, str]:
    """Wall clock and monotonic clock read together: ``utc_ns``, ``monotonic_ns``, ISO time."""
    mono0 = time.monotonic_ns()
    utc = time.time_ns()
    mono1 = time.monotonic_ns()
    mono = (mono0 + mono1) // 2
    iso = datetime.fromtimestamp(utc / 1e9, timezone.utc).isoformat(timespec="microseconds")
    return {"utc_ns": str(utc), "monotonic_ns": str(mono), "utc_iso": iso,
            "anchor_uncertainty_ns": str(mono1 - mono0)}


class SessionWriter:
    """Writes bus messages to an MCAP file; thread-safe (a flush timer may call :meth:`flush`)."""

    def __init__(self, path: str | Path, *, compression: str = DEFAULT_COMPRESSION,
                 chunk_bytes: int = 1 << 20, flush_s: float = 1.0,
                 session_meta: dict[str, Any] | None = None) -> None:
        if compression not in COMPRESSIONS:
            raise RecordingError(f"recording '{path}': compression must be one of "
                                 f"{', '.join(COMPRESSIONS)}, got {compression!r}")
        self.path = Path(path)
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._enc = Encoder()
        self._channels: dict[tuple[str, bytes], int] = {}
        self._last_flush = time.monotonic()
        self._dirty = False
        self._closed = False
        self.messages = 0
        self.bytes_in = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise RecordingError(self._why("cannot create the file", exc)) from None
        try:
            # chunks are compressed and written by a helper thread: recording does not hold up
            # the node that feeds it (flush/close wait for them; errors surface there)
            self._mcap = McapWriter(self._file, chunk_bytes=chunk_bytes, compression=compression,
                                    background=True)
            self._mcap.start(profile="imuflow", library="imuflow")
            self._schema = self._mcap.register_schema(SCHEMA_NAME, SCHEMA_ENCODING, SCHEMA_TEXT)
            self.anchor = utc_anchor()
            meta = {k: (v if isinstance(v, str) else json.dumps(v))
                    for k, v in (session_meta or {}).items()}
            self._mcap.add_metadata(SESSION_METADATA, dict(
                self.anchor, format="imuflow-session-v1", host=socket.gethostname(),
                pid=str(os.getpid()), **meta))
            self._mcap.flush()
        except OSError as exc:
            self._mcap.shutdown()
            self._file.close()
            raise RecordingError(self._why("cannot write the file header", exc)) from None

    def _why(self, what: str, exc: OSError) -> str:
        reason = exc.strerror or str(exc)
        hint = ("the disk is full; free space or record elsewhere" if exc.errno == 28
                else "choose a writable path (recorder param 'path' / record -o)")
        return f"recording '{self.path}': {what}: {reason}; {hint}"

    def channel(self, info: StreamInfo) -> int:
        """The channel id of ``info``'s stream (registered on first use, one per distinct info)."""
        raw = self._enc.info_bytes(info)
        key = (info.stream, raw)
        cid = self._channels.get(key)
        if cid is None:
            cid = self._mcap.register_channel(
                topic=info.stream, message_encoding=MESSAGE_ENCODING, schema_id=self._schema,
                metadata={META_STREAM_INFO: raw.decode(), META_BUS_TOPIC: bus_topic(info.stream),
                          META_KIND: info.kind})
            self._channels[key] = cid
        return cid

    def write_block(self, block: Block, log_time: int | None = None) -> None:
        """Store one received block (header fields and payload bytes); ``log_time`` int64 ns.

        A read-only payload of 64 KB or more (as the bus and direct groups deliver) is kept
        as a view until its chunk is written, not copied
        (:func:`~pipeline.recording.session_format.record_parts`).
        """
        self._write(block.info, record_parts(block), log_time=time.monotonic_ns()
                    if log_time is None else log_time, publish_time=block.t_host,
                    sequence=block.header.seq)

    def write_raw(self, info: StreamInfo, data: bytes, *, log_time: int, publish_time: int,
                  sequence: int = 0) -> None:
        """Store packed bus frames (:func:`pack_array`) of stream ``info``; times int64 ns.

        The StreamInfo JSON in ``data`` is not stored again: the channel holds it.
        """
        self._write(info, (to_record(data),), log_time=log_time, publish_time=publish_time,
                    sequence=sequence)

    def _write(self, info: StreamInfo, data: tuple[bytes | memoryview, ...], *, log_time: int,
               publish_time: int, sequence: int) -> None:
        with self._lock:
            if self._closed:
                raise RecordingError(f"recording '{self.path}': write after close")
            try:
                cid = self.channel(info)
                size = self._mcap.add_message(cid, log_time=log_time, publish_time=publish_time,
                                              sequence=sequence, data=data)
                self.messages += 1
                self.bytes_in += size
                self._dirty = True
                if time.monotonic() - self._last_flush >= self.flush_s:
                    self._flush_locked()
            except OSError as exc:
                raise RecordingError(self._why("write failed", exc)) from None

    def flush(self) -> None:
        """Close the open chunk and hand everything to the OS (readable after a crash)."""
        with self._lock:
            if not self._closed:
                try:
                    self._flush_locked()
                except OSError as exc:
                    raise RecordingError(self._why("flush failed", exc)) from None

    def flush_if_due(self) -> None:
        """Flush when data is pending and ``flush_s`` has passed since the last flush."""
        if self._dirty and time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def _flush_locked(self) -> None:
        self._mcap.flush()
        self._last_flush = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        """Write the last chunk and the summary section (indexes, statistics), close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._mcap.finish()
                self._file.close()
            except OSError as exc:
                self._mcap.shutdown()
                try:
                    self._file.close()
                except OSError:
                    pass  # the first error is the one reported
                raise RecordingError(self._why("cannot finish the file", exc)) from None
        log.info("recording '%s' closed: %d messages, %.1f MB of frames", self.path,
                 self.messages, self.bytes_in / 1e6)

    def abandon(self) -> None:
        """Close the file without a summary (after a write error); flushed chunks stay readable."""
        with self._lock:
            self._closed = True
            self._mcap.shutdown()  # a chunk being written is finished, waiting ones dropped
            try:
                self._file.close()
            except OSError:
                pass  # the write error that led here was already raised with context
