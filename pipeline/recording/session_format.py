"""Session files: how imuflow bus messages are stored in MCAP (see docs/recordings.md).

One MCAP channel per stream id (``node/topic[:source]``); the channel's
metadata holds the StreamInfo JSON, stored once. A message's data (encoding
``imuflow-bus-frame-v2``) is the 40-byte fixed part of the bus header
(:mod:`pipeline.runtime.message`) with ``info_len`` = 0, then the payload frame (the raw
numpy buffer, or UTF-8 JSON when the JSON flag is set). Files written before
(``imuflow-bus-frame-v1``) repeat the StreamInfo JSON in every message
(``info_len`` > 0, the exact bus frames); readers take both, since ``info_len``
makes every record self-delimiting. MCAP ``log_time`` is the recorder's
monotonic receive time (int64 ns), ``publish_time`` the block's ``t_host``;
the ``imuflow.session`` metadata record holds the UTC anchor that maps the
monotonic clock to wall-clock time.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.runtime.errors import MessageError
from pipeline.runtime.message import Block, Decoder, Encoder, Flag, Header, StreamInfo

MESSAGE_ENCODING = "imuflow-bus-frame-v2"  # what the writer writes
MESSAGE_ENCODING_V1 = "imuflow-bus-frame-v1"  # StreamInfo JSON in every message (still read)
MESSAGE_ENCODINGS = (MESSAGE_ENCODING, MESSAGE_ENCODING_V1)
SCHEMA_NAME = "imuflow.bus_frame"
SCHEMA_ENCODING = "imuflow-bus-frame-v2"
SCHEMA_TEXT = (b"imuflow bus frame v2: fixed bus header (struct '<HHIQqqII': schema, flags, "
               b"epoch, seq, t_host ns, t_sensor ns, n, info_len = 0) followed by the payload "
               b"(C-contiguous numpy buffer of n samples of the dtype and shape of the "
               b"channel's stream_info metadata, or UTF-8 JSON when flags & 4). v1 messages "
               b"have info_len > 0: that many bytes of StreamInfo JSON precede the payload.")
SESSION_METADATA = "imuflow.session"
META_STREAM_INFO = "stream_info"
META_BUS_TOPIC = "bus_topic"
META_KIND = "kind"
# the fixed header of pipeline.runtime.message (schema 1); tests check it matches the bus encoder
FIXED_HEADER = struct.Struct("<HHIQqqII")
FIXED_SIZE = FIXED_HEADER.size
_INFO_LEN = struct.Struct("<I")  # the last field of the fixed header
_JSON = int(Flag.JSON)


@dataclass(frozen=True)
class FrameHeader:
    """The fixed part of a stored bus header; times int64 ns."""

    schema: int
    flags: int
    epoch: int
    seq: int
    t_host: int
    t_sensor: int
    n: int
    info_len: int

    @property
    def payload_offset(self) -> int:
        """Byte offset of the payload in the stored message data."""
        return FIXED_SIZE + self.info_len


def pack_record(block: Block) -> bytes:
    """The stored message data of ``block`` (v2: fixed header without StreamInfo, payload)."""
    h = block.header
    fixed = FIXED_HEADER.pack(h.schema, h.flags, h.epoch & 0xFFFFFFFF, h.seq, h.t_host,
                              h.t_sensor, h.n, 0)
    if h.flags & _JSON:
        return fixed + json.dumps(block.data, separators=(",", ":")).encode()
    if block.data is None:
        return fixed
    arr = np.ascontiguousarray(block.data)
    return fixed + memoryview(arr).cast("B") if arr.nbytes else fixed


def record_parts(block: Block) -> tuple[bytes] | tuple[bytes, memoryview]:
    """:func:`pack_record` in parts, without copying a large read-only payload.

    Bus and direct deliveries hand out read-only arrays that nobody writes again, so
    a writer may keep a view of a payload of 64 KB or more until it writes its chunk
    (:class:`~pipeline.recording.mcap_writer.McapWriter` compresses the parts without joining
    them); other payloads are packed (copied) as pack_record does.
    """
    data = block.data
    h = block.header
    if (isinstance(data, np.ndarray) and data.nbytes >= 65536 and not data.flags.writeable
            and data.flags.c_contiguous and not h.flags & _JSON):
        return (FIXED_HEADER.pack(h.schema, h.flags, h.epoch & 0xFFFFFFFF, h.seq, h.t_host,
                                  h.t_sensor, h.n, 0), memoryview(data).cast("B"))
    return (pack_record(block),)


def to_record(data: bytes | memoryview) -> bytes | memoryview:
    """Stored message data (v2) from bus frames (v1: StreamInfo JSON dropped) or v2 data."""
    (info_len,) = _INFO_LEN.unpack_from(data, FIXED_SIZE - 4)
    if info_len == 0:
        return data
    mv = memoryview(data)
    return b"".join((mv[:FIXED_SIZE - 4], b"\0\0\0\0", mv[FIXED_SIZE + info_len:]))


def pack_block(block: Block, encoder: Encoder | None = None) -> bytes:
    """The bus frames of ``block`` (header + StreamInfo JSON + payload) as one bytes object.

    This is the v1 stored layout; the writer keeps v2 (:func:`to_record`).
    """
    enc = encoder or Encoder()
    _, head, body = enc.encode(b"", block.header, block.data if block.data is not None
                               else np.empty(0, np.uint8))
    return head + bytes(body)


def pack_array(info: StreamInfo, data: np.ndarray, *, seq: int, t_host: int,
               t_sensor: int = -1, flags: Flag = Flag.NONE, epoch: int = 0,
               encoder: Encoder | None = None) -> bytes:
    """Bus frames for ``data`` (n, *info.shape) of ``info``'s dtype, as one bytes object."""
    header = Header(info=info, seq=seq, t_host=t_host, t_sensor=t_sensor, n=len(data),
                    flags=flags, epoch=epoch)
    return pack_block(Block(topic="", header=header, data=data), encoder)


def read_header(data: Any) -> FrameHeader:
    """Parse the fixed part of a stored message (bytes or memoryview)."""
    return FrameHeader(*FIXED_HEADER.unpack_from(data))


def decode_message(data: Any, decoder: Decoder | None = None, topic: str = "",
                   info: StreamInfo | None = None) -> Block:
    """Decode one stored message (v1 or v2) into a :class:`Block` (arrays are read-only views).

    v2 messages carry no StreamInfo: pass the channel's (``SessionChannel.info``).
    """
    mv = memoryview(data)
    (info_len,) = _INFO_LEN.unpack_from(mv, FIXED_SIZE - 4)
    if info_len == 0:
        if info is None:
            raise MessageError(f"{topic or 'message'}: stored without StreamInfo (format v2); "
                               "pass the channel's info (SessionChannel.info)")
        raw = info.to_json()  # through the bus decoder: same checks, same Block
        mv = memoryview(b"".join((mv[:FIXED_SIZE - 4], _INFO_LEN.pack(len(raw)), raw,
                                  mv[FIXED_SIZE:])))
        info_len = len(raw)
    split = FIXED_SIZE + info_len
    dec = decoder or Decoder()
    return dec.decode([topic.encode(), mv[:split], mv[split:]])


def bus_topic(stream: str) -> str:
    """The bus topic (``node/topic``) of a stream id (``node/topic[:source]``)."""
    return stream.split(":", 1)[0]


def kind_of(stream: str) -> str:
    """The message kind (topic name) of a stream id."""
    return bus_topic(stream).split("/", 1)[-1]
