"""Recorder: writes every message it receives, bit for bit, to one MCAP session file."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from pipeline.recording.session_writer import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    RecordingError,
    SessionWriter,
    expand_path,
)
from pipeline.runtime.message import Block
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input


class Recorder(Node):
    """Record any topics (raw packets first-class) to an MCAP session file.

    Ports:
        in: any message kind, many sources, lossless. Each stream id
            (``node/topic[:source]``) becomes one MCAP channel whose metadata
            holds the StreamInfo JSON; each message stores the exact bus frames
            (header + payload), so replay reproduces every sample bit for bit.
    The file is chunked and flushed every ``flush_s`` (or ``chunk_bytes``), so
    it reads back after a crash up to the last flushed chunk; stop or end of
    stream writes the summary. A path that cannot be written, or a full disk,
    raises :class:`RecordingError` naming the path (use ``restart: never``).
    Format: docs/recordings.md.
    """

    inputs = {"in": Input(accepts=("*",), many=True)}
    outputs = ()

    @dataclass(frozen=True)
    class Params:
        path: str  # session file; "{time}" becomes the UTC start time (YYYYmmddTHHMMSSZ)
        compression: str = DEFAULT_COMPRESSION  # lz4 (fast), zstd (smaller) or none, per chunk
        flush_s: float = 1.0  # close the chunk and write it out at least this often, seconds
        chunk_bytes: int = 1 << 20  # close a chunk once it holds this many uncompressed bytes

        def __post_init__(self) -> None:
            if self.compression not in COMPRESSIONS:
                raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
            if self.flush_s <= 0 or self.chunk_bytes < 1024:
                raise ValueError("flush_s must be > 0 and chunk_bytes >= 1024")

    def setup(self) -> None:
        p = self.params
        self.path = expand_path(p.path)
        ctx = self.context
        meta = {"recorder": self.id, "sources": ctx.sources,
                "graph": str(ctx.config_file) if ctx.config_file else ""}
        self._writer = SessionWriter(self.path, compression=p.compression,
                                     chunk_bytes=p.chunk_bytes, flush_s=p.flush_s,
                                     session_meta=meta)
        self._failed: RecordingError | None = None
        self._stop = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name=f"{self.id}-flush",
                                         daemon=True)
        self._flusher.start()
        self.stats.extra["path"] = str(self.path)
        self.log.info("recording to %s", self.path)

    def _flush_loop(self) -> None:
        """Flush pending data when no new block arrives (a quiet stream still reaches disk)."""
        while not self._stop.wait(self.params.flush_s / 4):
            try:
                self._writer.flush_if_due()
            except RecordingError as exc:
                self._failed = exc  # raised on the node thread by the next on_block
                return

    def on_block(self, port: str, block: Block) -> None:
        if self._failed is not None:
            raise self._failed
        try:
            self._writer.write_block(block, log_time=time.monotonic_ns())
        except RecordingError as exc:
            self._failed = exc
            raise
        w = self._writer
        self.stats.extra["messages"] = w.messages
        self.stats.extra["mbytes"] = round(w.bytes_in / 1e6, 3)

    def on_command(self, command: str, args: dict) -> dict:
        if command == "flush":
            self._writer.flush()
            return {"ok": True, "path": str(self.path), "messages": self._writer.messages}
        if command == "info":
            return {"ok": True, "path": str(self.path), "messages": self._writer.messages,
                    "bytes": self._writer.bytes_in}
        return super().on_command(command, args)

    def on_eos(self) -> None:
        self._finish()

    def teardown(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if not hasattr(self, "_writer"):
            return  # setup failed before the file existed
        self._stop.set()
        if self._failed is not None:
            self._writer.abandon()
            return
        self._writer.close()
