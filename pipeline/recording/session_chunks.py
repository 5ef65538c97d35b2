"""Parsing one decompressed MCAP chunk of a session into per-channel runs of messages.

Three ways, fastest first: streams recorded in turn (``c1 c2 .. cn c1 ..``, one
record length) are strided views of the chunk seen as a ``(messages, length)``
byte matrix; other chunks with one record length are gathered per channel with
one fancy index; chunks with mixed lengths use the writer's message indexes (or
a scan when there are none). No path loops over messages in Python.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.recording.session_format import FIXED_SIZE
from pipeline.runtime.errors import SessionFileError
from pipeline.runtime.message import StreamInfo

_OP_MESSAGE = 5
_MSG_HEAD = 1 + 8 + 2 + 4 + 8 + 8  # opcode, length, channel, sequence, log_time, publish_time
HEADER_DTYPE = np.dtype([("schema", "<u2"), ("flags", "<u2"), ("epoch", "<u4"), ("seq", "<u8"),
                         ("t_host", "<i8"), ("t_sensor", "<i8"), ("n", "<u4"),
                         ("info_len", "<u4")])
assert HEADER_DTYPE.itemsize == FIXED_SIZE


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
        if isinstance(self.payload, np.ndarray):  # rows of a byte matrix, usually strided:
            # ascontiguousarray gathers them ~2x faster than reshape's copy
            return np.ascontiguousarray(self.payload[start:stop]).reshape(-1)
        return np.concatenate(self.payload[start:stop]) if stop > start else np.empty(0, np.uint8)

class CorruptChunk(SessionFileError):
    """One chunk of a session cannot be used (CRC mismatch, bad compression, bad records)."""


class ChunkParser:
    """Turns chunk records into :class:`ChannelRun` lists for a reader's ``channels``.

    ``handle(opcode, content)`` is called for non-message records met inside a
    chunk (channels, schemas), so channels declared there are known in time.
    """

    def __init__(self, path: Path, channels: dict[int, SessionChannel],
                 handle: Callable[[int, memoryview], None]) -> None:
        self.path = path
        self.channels = channels
        self._handle = handle
        self.unknown_messages = 0  # messages on channels with no (intact) channel record

    def indexed(self, raw: bytes, index: dict[int, np.ndarray]) -> list[ChannelRun]:
        """Runs of a chunk whose messages differ in length: from the message indexes."""
        arr = np.frombuffer(raw, np.uint8)
        offsets = self._index_offsets(raw, arr, index)
        if index and not self._offsets_fit(arr, offsets):
            offsets = self._index_offsets(raw, arr, {})  # a damaged index: scan the chunk
        if not self._offsets_fit(arr, offsets):
            raise CorruptChunk(f"session '{self.path}': chunk records do not line up")
        for cid in [c for c in offsets if c not in self.channels]:
            self.unknown_messages += len(offsets.pop(cid))
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
        if (pay_len < 0).any():
            raise CorruptChunk(f"session '{self.path}': a message's header is longer than it")
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

    def uniform(self, raw: bytes) -> bool:
        """True if the chunk holds only message records, all of one length (cheap test)."""
        if len(raw) < 9 or raw[0] != _OP_MESSAGE:
            return False
        (length,) = struct.unpack_from("<Q", raw, 1)
        width = 9 + length
        if len(raw) % width:
            return False
        rows = np.frombuffer(raw, np.uint8).reshape(-1, width)
        return bool((rows[:, 0] == _OP_MESSAGE).all() and (rows[:, 1:9] == rows[0, 1:9]).all())

    def bulk(self, raw: bytes, arr: np.ndarray) -> list[ChannelRun] | None:
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
        if not (rows[:, 0:9] == rows[0, 0:9]).all() or rows[0, 0] != _OP_MESSAGE:
            return None  # (opcode and length bytes in one pass)
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
        log_time = rows[order, 15:23].view("<i8").ravel()
        header = rows[order, _MSG_HEAD:_MSG_HEAD + FIXED_SIZE].view(HEADER_DTYPE).ravel()
        payload = rows[order, pstart:]
        bounds = starts.tolist() + [len(rows)]
        return self._known([ChannelRun(self.channels.get(c), log_time[a:b], header[a:b],
                                       payload[a:b])
                            for c, a, b in zip(cids.tolist(), bounds[:-1], bounds[1:])])

    def _known(self, runs: list[ChannelRun]) -> list[ChannelRun]:
        """Runs of known channels; messages on unknown ones are counted and dropped."""
        for r in runs:
            if r.channel is None:
                self.unknown_messages += len(r)
        return [r for r in runs if r.channel is not None]

    @staticmethod
    def _offsets_fit(arr: np.ndarray, offsets: dict[int, np.ndarray]) -> bool:
        """True when every offset starts a whole message record inside the chunk."""
        for offs in offsets.values():
            if not len(offs):
                continue
            if offs.min() < 0 or offs.max() + _MSG_HEAD + FIXED_SIZE > len(arr):
                return False
            if not (arr[offs] == _OP_MESSAGE).all():
                return False
            lengths = _rows(arr, offs + 1, 8).view("<u8").ravel()
            if (lengths < _MSG_HEAD - 9 + FIXED_SIZE).any() or (
                    offs + 9 + lengths.astype(np.int64) > len(arr)).any() or (
                    lengths > len(arr)).any():
                return False
        return True

    def _interleaved_runs(self, rows: np.ndarray, cid: np.ndarray,
                          pstart: int) -> list[ChannelRun] | None:
        """Runs as strided views when channels repeat in a fixed order (no copy); else None.

        Sensors sampled together and recorded in turn give rows ``c1 c2 .. cn c1 c2 ..``;
        each channel is then every n-th row of the chunk (the chunk may start mid-cycle).
        """
        matches = np.flatnonzero(cid == cid[0])
        period = int(matches[1]) if len(matches) > 1 else len(cid)
        cycle = cid[:period]
        if len(set(cycle.tolist())) != period:
            return None
        whole = len(cid) - len(cid) % period  # full cycles, then the rest of one
        if not ((cid[:whole].reshape(-1, period) == cycle).all()
                and (cid[whole:] == cycle[:len(cid) - whole]).all()):
            return None
        runs = []
        for j in np.argsort(cycle).tolist():
            mine = rows[j::period]  # a chunk may start and end anywhere in the cycle
            runs.append(ChannelRun(
                self.channels.get(int(cycle[j])), mine[:, 15:23].view("<i8")[:, 0],
                mine[:, _MSG_HEAD:_MSG_HEAD + FIXED_SIZE].view(HEADER_DTYPE)[:, 0],
                mine[:, pstart:]))
        return self._known(runs)

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


