"""Replay: plays an imuflow MCAP session back onto the bus, in real time or faster."""

from __future__ import annotations

import fnmatch
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.recording.session_reader import (
    ChannelRun,
    SessionChannel,
    SessionReader,
    session_sensors,
)
from pipeline.runtime.errors import SessionFileError
from pipeline.runtime.message import Flag, StreamInfo
from pipeline.runtime.node import GraphContext, Source
from pipeline.runtime.streams import FRAME, RAW_IMU, STATE, TRUTH

ORIENTATION_TRUTH = "orientation.truth"
RESUME_SAVE_S = 0.1  # s of wall time between saves of the position (a restart may repeat this
# much times speed)
_SPEED0_MERGE_S = 60.0  # s: speed 0 merges up to this span per message (see Params.merge_s)
_GAP, _JSON = int(Flag.GAP), int(Flag.JSON)  # plain ints: enum operators cost per message


@dataclass(frozen=True)
class _Item:
    """Messages ``start:stop`` of ``run``, then ``more`` pieces of the same stream (next chunks)."""

    log_time: int
    run: ChannelRun
    start: int
    stop: int
    more: tuple[_Item, ...] = ()

    def pieces(self) -> tuple[_Item, ...]:
        """Every piece of the block in order."""
        return (self, *self.more)


def _usable(info: StreamInfo) -> bool:
    """True when a recorded stream's sample dtype and shape can be built (not damaged)."""
    try:
        info.np_dtype  # noqa: B018 - built for the check
        return all(isinstance(n, int) and n >= 0 for n in info.shape)
    except Exception:  # noqa: BLE001 - numpy raises TypeError, ValueError, SyntaxError here
        return False


class _CorruptItem(ValueError):
    """A recorded block whose payload does not match its header (skipped, counted)."""


def _first_runs(reader: SessionReader, runs: Iterator[list[ChannelRun]]
                ) -> list[list[ChannelRun]]:
    """Read ``runs`` until the session's channels are known; SessionFileError if it has none."""
    head: list[list[ChannelRun]] = []
    while not reader.channels:
        got = next(runs, None)
        if got is None:
            break
        head.append(got)
    if not reader.channels:
        why = ("only the MCAP magic" if reader.path.stat().st_size <= 8 else
               "no readable imuflow stream in it")
        raise SessionFileError(f"session '{reader.path}': nothing to replay ({why})")
    return head


class Replay(Source):
    """Republish the streams of a session file with their original StreamInfo and time stamps.

    Ports (only the kinds present in the file are emitted):
        imu.raw (out): per-sensor raw samples (RAW_IMU_DTYPE: m/s^2, rad/s, uT, sensor frame).
        chain.truth (out): ground-truth chain state of simulated sessions.
        imu.frame (out): aligned frames, if the session recorded them.
        chain.state (out): observer output, if recorded.
        orientation.truth (out): optical ground truth of imported datasets (t_host, q w,x,y,z).
    Stream ids are rewritten to ``<this node>/<kind>[:<source>]``; source names,
    ``t_sensor`` and the ``t_host`` of every sample stay as recorded unless
    ``restamp`` shifts ``t_host`` to now. Pacing follows the recorder's receive
    time (MCAP log_time) divided by ``speed``.
    """

    outputs = (RAW_IMU, TRUTH, FRAME, STATE, ORIENTATION_TRUTH)

    @dataclass(frozen=True)
    class Params:
        path: Path  # session file (.mcap) written by the recorder or `imuflow import`
        # sensors are renamed by the graph's `sensors:` map (recorded name -> IMU site)
        speed: float = 1.0  # 1 = real time, 10 = ten times faster, 0 = as fast as possible
        loop: bool = False  # start over at the end (each restart is flagged as a gap)
        start_s: float = 0.0  # skip this many seconds from the start of the session
        end_s: float = 0.0  # stop at this many seconds from the start; 0 = at the end
        topics: tuple[str, ...] = ()  # stream-id or kind patterns (fnmatch); empty = all
        restamp: bool = False  # shift t_host (header and samples) so the session starts now
        merge_s: float = -1.0  # merge one stream's consecutive blocks up to this span, s;
        # -1 = auto: as recorded when speed > 0 (real-time replay sends each recorded message
        # on its own, on time), 60 s blocks when speed == 0 (as fast as possible: every node
        # pays per message, so fewer, larger messages; docs/recordings.md); 0 = never merge

        def __post_init__(self) -> None:
            if self.speed < 0 or self.start_s < 0 or self.end_s < 0:
                raise ValueError("speed, start_s and end_s must be >= 0")
            if self.end_s and self.end_s <= self.start_s:
                raise ValueError("end_s must be greater than start_s (or 0 for the end)")

    @classmethod
    def sensors_out(cls, params: Params, context: GraphContext,
                    upstream: list[str] | None) -> list[str] | None:
        """The session's sensors (its summary), renamed by the graph's ``sensors:`` map."""
        names = session_sensors(context.resolve(params.path))
        return None if names is None else [context.site(n) for n in names]

    @classmethod
    def check_files(cls, params: Params, context: GraphContext) -> None:
        """The session opens and holds imuflow streams (as setup checks)."""
        with SessionReader(context.resolve(params.path)) as reader:
            _first_runs(reader, reader.runs())

    def setup(self) -> None:
        p = self.params
        self.path = self.context.resolve(p.path)
        merge = p.merge_s if p.merge_s >= 0 else (0.0 if p.speed > 0 else _SPEED0_MERGE_S)
        self._merge_ns = int(merge * 1e9)
        self._open()  # raises SessionFileError naming the file: not MCAP, foreign, empty
        self._out: dict[int, StreamInfo | None] = {}
        self._dtypes: dict[int, tuple[np.dtype, int]] = {}  # channel -> (dtype, bytes/sample)
        self._taken: dict[str, str] = {}
        self._loops = 0
        self._items: Iterator[_Item] | None = None
        self._pending: _Item | None = None
        self._t0_file: int | None = None
        self._position_ns = 0
        self._corrupt_messages = 0
        self._corrupt_streams = 0  # channels whose stream info is damaged: not replayed
        self._resumed = False
        self._ended = False  # played to the end (not stopped, not crashed)
        self._restarted: set[int] = set()
        self.stats.extra["path"] = str(self.path)
        self._resume_file = (self.context.run_dir / f"{self.id}.replay.json"
                             if self.context.run_dir else None)
        self._resume_ns, self._resume_due = self._read_resume(), 0.0
        self._report_damage()

    def _open(self) -> None:
        """Open the session and read up to its first messages; refuse a file with no streams."""
        self._reader = SessionReader(self.path, logger=self.log)
        self._runs = self._reader.runs(batch_ns=self._merge_ns)
        try:
            self._head = _first_runs(self._reader, self._runs)
        except BaseException:
            self._reader.close()
            raise

    def _session_runs(self) -> Iterator[list[ChannelRun]]:
        """The session's runs: those read while opening, then the rest."""
        yield from self._head
        self._head = []
        yield from self._runs

    def _read_resume(self) -> int:
        """Log time (ns since the session start) this node replayed up to before a restart."""
        if self._resume_file is None or not self._resume_file.exists():
            return -1
        try:
            done = int(json.loads(self._resume_file.read_text())["position_ns"])
        except (OSError, ValueError, KeyError, TypeError):
            return -1
        self.log.warning("restarted: going on after %.3f s of the session (not from its start); "
                         "the first block of each stream is flagged as a gap", done / 1e9)
        self._resumed = True  # flags each stream's next block as a gap
        return done

    def _save_resume(self) -> None:
        """Write how far replay got (every RESUME_SAVE_S), for a restart after a crash."""
        now = time.monotonic()
        if self._resume_file is None or now < self._resume_due:
            return
        self._resume_due = now + RESUME_SAVE_S
        tmp = self._resume_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"position_ns": self._position_ns}))
        tmp.replace(self._resume_file)

    def _report_damage(self) -> None:
        """Damage found in the file so far, in status."""
        r = self._reader
        self.stats.extra.update(corrupt_chunks=r.corrupt_chunks, corrupt_records=r.corrupt_records,
                                corrupt_messages=self._corrupt_messages + r.unknown_messages,
                                corrupt_streams=self._corrupt_streams)

    def on_start(self) -> None:
        self._wall0 = time.monotonic_ns()
        self._items = self._iter_items()

    # -- reading -------------------------------------------------------------------------------
    def _out_info(self, ch: SessionChannel) -> StreamInfo | None:
        """The replayed stream info of a channel, None if the channel is not replayed."""
        if ch.id in self._out:
            return self._out[ch.id]
        info: StreamInfo | None = None
        pats = self.params.topics
        if ch.kind in self.outputs and not _usable(ch.info):
            self._corrupt_streams += 1
            self.log.warning("not replaying %s: its stream info is damaged (dtype %r, shape %r)",
                             ch.stream, ch.info.dtype, ch.info.shape)
        elif ch.kind in self.outputs and (not pats or any(
                fnmatch.fnmatchcase(ch.stream, x) or fnmatch.fnmatchcase(ch.kind, x)
                for x in pats)):
            suffix = ch.stream.split(":", 1)[1] if ":" in ch.stream else ""
            info = ch.info
            if ch.kind == RAW_IMU and self.context.site(info.source) != info.source:
                site = self.context.site(info.source)  # the graph's sensors: map
                info = replace(info, source=site, meta=dict(info.meta, recorded_as=info.source))
                suffix = site if suffix == ch.info.source else suffix
            stream = f"{self.id}/{ch.kind}" + (f":{suffix}" if suffix else "")
            if self._taken.get(stream, ch.stream) != ch.stream:  # two recorded streams collide
                stream += f":{ch.stream.split('/', 1)[0]}"
            self._taken[stream] = ch.stream
            info = replace(info, stream=stream)
            self.log.info("replaying %s as %s", ch.stream, stream)
        else:
            self.log.info("not replaying %s (kind %s)", ch.stream, ch.kind)
        self._out[ch.id] = info
        return info

    def _iter_items(self) -> Iterator[_Item]:
        p = self.params
        pending: dict[int, _Item] = {}  # per channel: the block still growing (merge windows)
        for runs in self._session_runs():  # chunks of one merge window parsed as one
            items: list[_Item] = []
            if not runs:
                continue
            if self._t0_file is None:
                self._t0_file = min(int(run.log_time.min()) for run in runs)
            if p.end_s and min(int(r.log_time[0]) for r in runs) - self._t0_file >= p.end_s * 1e9:
                break  # chunks are in time order: nothing after end_s is wanted
            for run in runs:
                if self._out_info(run.channel) is None:
                    continue
                items.extend(self._split(run))
            items.sort(key=lambda it: it.log_time)
            if self._merge_ns > 0:
                horizon = max(int(r.log_time[-1]) for r in runs)
                items = self._merge_across_chunks(items, pending, horizon)
            yield from items
        yield from sorted(pending.values(), key=lambda it: it.log_time)
        if p.loop and self._t0_file is not None:
            self._loops += 1
            self._restarted = set()
            self._reader.close()
            self._open()
            self._wall0 = time.monotonic_ns()
            yield from self._iter_items()

    def _merge_across_chunks(self, items: list[_Item], pending: dict[int, _Item],
                             horizon: int) -> list[_Item]:
        """Join a stream's pieces from consecutive chunks within one merge window.

        Returns the blocks that are complete: their window ended before ``horizon``
        (the chunk's last log time, ns; chunks are in time order) or the stream's
        next piece cannot join (new window, gap flag, messages left out between).
        """
        done: list[_Item] = []
        m, t0 = self._merge_ns, self._t0_file
        for it in items:
            cid = it.run.channel.id
            prev = pending.get(cid)
            if prev is not None:
                last = prev.more[-1] if prev.more else prev
                if (last.stop == len(last.run) and it.start == 0
                        and (prev.log_time - t0) // m == (int(it.run.log_time[it.stop - 1]) - t0) // m
                        and not it.run.header["flags"][it.start] & _GAP):
                    pending[cid] = replace(prev, more=prev.more + (it,))
                    continue
                done.append(prev)
            pending[cid] = it
        window_end = ((horizon - t0) // m) * m + t0  # start of the horizon's window
        for cid in [c for c, it in pending.items() if it.log_time < window_end]:
            done.append(pending.pop(cid))
        done.sort(key=lambda it: it.log_time)
        return done

    def _split(self, run: ChannelRun) -> list[_Item]:
        p = self.params
        t0, t1 = int(run.log_time[0]) - self._t0_file, int(run.log_time[-1]) - self._t0_file
        flags = run.header["flags"]
        if (self._merge_ns > 0 and t0 >= p.start_s * 1e9 and (not p.end_s or t1 < p.end_s * 1e9)
                and t0 // self._merge_ns == t1 // self._merge_ns
                and (not flags.any() or (not (flags[1:] & (_GAP | _JSON)).any()
                                         and not flags[0] & _JSON))):
            return [_Item(int(run.log_time[0]), run, 0, len(run))]  # the whole run: one block
        t = run.log_time - self._t0_file
        keep = t >= int(p.start_s * 1e9)
        if p.end_s:
            keep &= t < int(p.end_s * 1e9)
        keep &= (flags & _JSON) == 0
        idx = np.flatnonzero(keep)
        if not len(idx):
            return []
        if self._merge_ns <= 0:
            return [_Item(int(run.log_time[i]), run, i, i + 1) for i in idx.tolist()]
        # runs of consecutive kept messages, split at merge windows and at publisher gaps
        win = t[idx] // self._merge_ns
        cut = (np.diff(idx) != 1) | (np.diff(win) != 0) | (
            (flags[idx[1:]] & _GAP) != 0)
        bounds = np.concatenate(([0], np.flatnonzero(cut) + 1, [len(idx)]))
        return [_Item(int(run.log_time[idx[a]]), run, int(idx[a]), int(idx[b - 1]) + 1)
                for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist())]

    # -- emitting ------------------------------------------------------------------------------
    def poll(self, timeout_s: float) -> bool:
        assert self._items is not None, "on_start() was not called"
        speed = self.params.speed
        deadline = time.monotonic_ns() + int(timeout_s * 1e9)
        while True:
            item = self._pending or next(self._items, None)
            self._pending = None
            if item is None:
                self._report_damage()
                self._ended = True
                return False
            if self._resume_ns >= 0:
                if item.log_time - self._t0_file <= self._resume_ns:
                    continue  # replayed before this node's restart
                if speed > 0:  # play on at once, not after the part already replayed
                    self._wall0 -= int((item.log_time - self._t0_file
                                        - self.params.start_s * 1e9) / speed)
                self._resume_ns = -1
            if speed > 0:
                due = self._wall0 + int((item.log_time - self._t0_file
                                         - self.params.start_s * 1e9) / speed)
                now = time.monotonic_ns()
                if due > now:
                    if due > deadline:
                        self._pending = item
                        self._save_resume()
                        time.sleep(max(deadline - time.monotonic_ns(), 0) / 1e9)
                        return True
                    time.sleep((due - now) / 1e9)
            try:
                self._emit_item(item)
            except _CorruptItem as exc:
                self._corrupt_messages += item.stop - item.start
                self.log.warning("%s; block skipped", exc)
            if time.monotonic_ns() >= deadline:
                self._save_resume()
                self._report_damage()
                return True

    @property
    def position_s(self) -> float:
        """How far into the session replay is: recorder receive time (log time) since its start, s."""
        return self._position_ns / 1e9

    def _sample_type(self, run: ChannelRun, info: StreamInfo) -> tuple[np.dtype, int]:
        """A stream's sample dtype and bytes per sample (info.shape of them), cached."""
        dtype = info.np_dtype
        size = dtype.itemsize * int(np.prod(info.shape, dtype=np.int64))
        self._dtypes[run.channel.id] = (dtype, size)
        return dtype, size

    def _emit_item(self, item: _Item) -> None:
        self._position_ns = item.log_time - self._t0_file
        run = item.run
        info = self._out[run.channel.id]
        dtype, sample_bytes = self._dtypes.get(run.channel.id) or self._sample_type(run, info)
        head = run.header
        a = item.start
        if item.more:
            raw = np.concatenate([x.run.payload_bytes(x.start, x.stop) for x in item.pieces()])
            n_expected = sum(int(x.run.header["n"][x.start:x.stop].sum()) for x in item.pieces())
        else:
            raw = run.payload_bytes(a, item.stop)
            n_expected = int(head["n"][a:item.stop].sum())
        if len(raw) != n_expected * sample_bytes:
            raise _CorruptItem(f"session '{self.path}': stream {run.channel.stream}: payload of "
                               f"{len(raw)} bytes, headers say {n_expected} samples; the file "
                               "is corrupt there")
        data = np.frombuffer(raw, dtype=dtype).reshape((-1, *info.shape))
        t_host = int(head["t_host"][a])
        gap = bool(head["flags"][a] & _GAP)
        if (self._loops or self._resumed) and run.channel.id not in self._restarted:
            self._restarted.add(run.channel.id)  # first block of a stream after a loop restart
            gap = True
        if self.params.restamp:
            shift = self._wall0 - self._t0_file - int(self.params.start_s * 1e9)
            t_host += shift
            if data.dtype.names and "t_host" in data.dtype.names:
                data = data.copy()
                data["t_host"] += shift
        self.emit(info.kind, data, t_host=t_host, t_sensor=int(head["t_sensor"][a]), info=info,
                  gap=gap)

    def on_stop(self) -> None:
        self.stats.extra["loops"] = self._loops
        self._report_damage()
        if self._resume_file is not None and self._ended:
            self._resume_file.unlink(missing_ok=True)  # played to the end: nothing to go on from

    def teardown(self) -> None:
        if hasattr(self, "_reader"):
            self._reader.close()
