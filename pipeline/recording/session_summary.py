"""A session file's summary section (written at a clean stop), read with the mcap library.

Used before reading the data: the sensors a replay will publish (checked when a graph
is loaded) and where the chunks start (to go on after a damaged record). Any damage
makes these return nothing; the reader then reports the file's problem.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pipeline.recording.session_format import META_STREAM_INFO
from pipeline.runtime.message import StreamInfo
from pipeline.runtime.streams import RAW_IMU


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
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError,
            struct.error, McapError):
        return None  # unreadable or damaged: replay's setup names the file and the problem


def summary_chunk_starts(path: Path) -> list[int]:
    """Start offsets of the chunks listed in the file's summary (empty without one)."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as f:
            summary = make_reader(f).get_summary()
    except (OSError, ValueError, struct.error, McapError, UnicodeDecodeError, KeyError,
            IndexError, MemoryError):
        return []
    if summary is None:
        return []
    return sorted(ci.chunk_start_offset for ci in summary.chunk_indexes)
