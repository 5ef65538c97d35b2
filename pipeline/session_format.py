"""Session files: how imuflow bus messages are stored in MCAP (see docs/recordings.md).

One MCAP channel per stream id (``node/topic[:source]``). A message's data is
the exact bus frames of one block, concatenated: the header frame (40-byte
fixed part + StreamInfo JSON, :mod:`pipeline.message`) then the payload frame
(the raw numpy buffer, or UTF-8 JSON when the JSON flag is set). The header's
``info_len`` field makes the record self-delimiting, so decoding needs nothing
but :class:`pipeline.message.Decoder`. MCAP ``log_time`` is the recorder's
monotonic receive time (int64 ns), ``publish_time`` the block's ``t_host``;
the ``imuflow.session`` metadata record holds the UTC anchor that maps the
monotonic clock to wall-clock time.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.message import Block, Decoder, Encoder, Flag, Header, StreamInfo

MESSAGE_ENCODING = "imuflow-bus-frame-v1"
SCHEMA_NAME = "imuflow.bus_frame"
SCHEMA_ENCODING = "imuflow-bus-frame-v1"
SCHEMA_TEXT = (b"imuflow bus frame v1: header frame (struct '<HHIQqqII': schema, flags, epoch, "
               b"seq, t_host ns, t_sensor ns, n, info_len; then info_len bytes of StreamInfo "
               b"JSON) followed by the payload frame (C-contiguous numpy buffer of n samples "
               b"of the info's dtype and shape, or UTF-8 JSON when flags & 4).")
SESSION_METADATA = "imuflow.session"
META_STREAM_INFO = "stream_info"
META_BUS_TOPIC = "bus_topic"
META_KIND = "kind"
# the fixed header of pipeline.message (schema 1); tests check it matches the bus encoder
FIXED_HEADER = struct.Struct("<HHIQqqII")
FIXED_SIZE = FIXED_HEADER.size


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


def pack_block(block: Block, encoder: Encoder | None = None) -> bytes:
    """The bus frames of ``block`` (header + payload) as one bytes object, as stored in MCAP."""
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


def decode_message(data: Any, decoder: Decoder | None = None, topic: str = "") -> Block:
    """Decode one stored message into a :class:`Block` (arrays are read-only views)."""
    mv = memoryview(data)
    info_len = struct.unpack_from("<I", mv, FIXED_SIZE - 4)[0]
    split = FIXED_SIZE + info_len
    dec = decoder or Decoder()
    return dec.decode([topic.encode(), mv[:split], mv[split:]])


def bus_topic(stream: str) -> str:
    """The bus topic (``node/topic``) of a stream id (``node/topic[:source]``)."""
    return stream.split(":", 1)[0]


def kind_of(stream: str) -> str:
    """The message kind (topic name) of a stream id."""
    return bus_topic(stream).split("/", 1)[-1]
