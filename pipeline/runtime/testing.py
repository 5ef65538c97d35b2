"""Helpers for node tests: build blocks as the bus would deliver them."""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.runtime.message import Block, Flag, Header, StreamInfo


def make_block(info: StreamInfo, data: Any, *, t_host: int = 0, t_sensor: int = -1,
               seq: int = 0, gap: bool = False, eos: bool = False) -> Block:
    """A read-only Block of ``data`` (n, *info.shape) on topic ``info.stream``."""
    arr = np.array(data, dtype=info.np_dtype, copy=True)
    arr.flags.writeable = False
    flags = (Flag.GAP if gap else Flag.NONE) | (Flag.EOS if eos else Flag.NONE)
    header = Header(info=info, seq=seq, t_host=t_host, t_sensor=t_sensor, n=len(arr),
                    flags=flags)
    return Block(topic=info.stream.split(":")[0], header=header, data=arr, gap=gap)
