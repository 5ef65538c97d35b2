"""ImportedStream: one stream read from a vendor or dataset file; writing streams to a session."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.recording.session_format import pack_array
from pipeline.recording.session_writer import SessionWriter
from pipeline.runtime.atomic_file import atomic_path
from pipeline.runtime.errors import ImuflowError
from pipeline.runtime.message import Encoder, StreamInfo
from pipeline.runtime.streams import RAW_IMU, raw_imu_info

log = logging.getLogger("imuflow.importers")

ORIENTATION_TRUTH = "orientation.truth"
# ground-truth orientation of imported datasets (BROAD): t_host int64 ns; q (4,) float32
# w,x,y,z, sensor to the dataset's reference frame (ENU for BROAD); movement u1, 1 where
# the dataset scores errors
ORIENTATION_TRUTH_DTYPE = np.dtype([("t_host", "<i8"), ("q", "<f4", (4,)), ("movement", "u1")])


class ImportFileError(ImuflowError):
    """A file to import is malformed; the message names the file, line and column."""


@dataclass(frozen=True)
class ImportedStream:
    """One imported stream: samples of a known dtype plus what the stream info needs.

    Attributes:
        name: sensor name (``StreamInfo.source``), e.g. the Movella DOT device tag.
        kind: message kind, ``imu.raw`` (RAW_IMU_DTYPE) or ``orientation.truth``.
        data: (n,) structured samples; ``t_host`` int64 ns (synthesised, see ``meta``).
        rate_hz: nominal sample rate, Hz.
        meta: provenance: source file, units conversions, how t_host was made.
    """

    name: str
    kind: str
    data: np.ndarray
    rate_hz: float
    meta: dict = field(default_factory=dict)

    def info(self, node: str = "import") -> StreamInfo:
        """The StreamInfo this stream gets in a session file (stream id ``node/kind:name``)."""
        stream = f"{node}/{self.kind}:{self.name}"
        if self.kind == RAW_IMU:
            return raw_imu_info(stream, self.name, self.rate_hz, **self.meta)
        dt = self.data.dtype
        return StreamInfo.for_array(stream, self.kind, dt, rate_hz=self.rate_hz, source=self.name,
                                    channels=dt.names or (), meta=dict(self.meta))


def write_session(streams: list[ImportedStream], path: str | Path, *, block: int = 1,
                  node: str = "import", compression: str = "zstd",
                  session_meta: dict | None = None) -> Path:
    """Write streams to an MCAP session as a driver would have sent them; return the path.

    ``block`` samples a message; streams are interleaved by ``t_host`` while each keeps
    its file order (a message's log time is the running maximum of its stream's
    ``t_host``, so a sensor clock stepping back never reorders that sensor's samples).
    The file appears at ``path`` only when complete (temporary file, then a rename).
    """
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = SessionWriter(tmp, compression=compression, flush_s=3600.0,
                               session_meta=dict(session_meta or {}, imported=True))
        try:
            _write_messages(writer, streams, block, node)
        except BaseException:
            writer.abandon()
            raise
        writer.close()
    log.info("wrote %s: %d streams, %d messages", path, len(streams), writer.messages)
    return path


def _write_messages(writer: SessionWriter, streams: list[ImportedStream], block: int,
                    node: str) -> None:
    """Every stream's messages, merged by time, each stream in its own order."""
    order = []
    for si, s in enumerate(streams):
        starts = np.arange(0, len(s.data), block)
        key = np.maximum.accumulate(s.data["t_host"][starts]) if len(starts) else starts
        order.append(np.stack([key, np.full(len(starts), si), starts], 1))
    if not order:
        return
    allm = np.concatenate(order)
    allm = allm[np.lexsort((allm[:, 2], allm[:, 1], allm[:, 0]))]
    infos = [s.info(node) for s in streams]
    enc = Encoder()
    for log_t, si, k in allm.tolist():
        chunk = streams[si].data[k:k + block]
        t = int(chunk["t_host"][0])
        t_sensor = int(chunk["t_sensor"][0]) if "t_sensor" in chunk.dtype.names else -1
        writer.write_raw(infos[si], pack_array(infos[si], chunk, seq=k // block, t_host=t,
                                               t_sensor=t_sensor, encoder=enc),
                         log_time=log_t, publish_time=t, sequence=k // block)
