"""LSL outlet node: IMU frames, joint angles and body poses as Lab Streaming Layer streams.

Every input stream (``node/topic``) becomes one LSL outlet, created when its first
message arrives, with the channel layout, units and source id described in the
stream's XML meta-data (XDF conventions: ``<desc><channels><channel><label/>
<unit/><type/>...``), so that LabRecorder, MATLAB or pylsl clients see named
channels. Each sample is pushed with its own time stamp: the sample's ``t_host``
(int64 ns, host monotonic clock) on LSL's clock ``pylsl.local_clock()`` (s).
Clocks, names and the discovery configuration: docs/lsl.md.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pylsl

from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import load_yaml
from pipeline.runtime.message import Block, StreamInfo
from pipeline.runtime.node import Node
from pipeline.runtime.ports import Input
from pipeline.runtime.streams import FRAME, POSE, ROOT, STATE, TRUTH

# LSL content type of each topic kind (XDF: "MoCap" for poses and joint angles)
DEFAULT_TYPES = {FRAME: "IMU", STATE: "MoCap", TRUTH: "MoCap", POSE: "MoCap", ROOT: "MoCap"}
_AXES = ("x", "y", "z")
_QUAT = ("w", "x", "y", "z")
_XDF_POS = ("PositionX", "PositionY", "PositionZ")
_XDF_QUAT = ("OrientationA", "OrientationB", "OrientationC", "OrientationD")  # A = w (scalar)
_XDF_ACC = ("AccelerationX", "AccelerationY", "AccelerationZ")
_XDF_GYR = ("AngularVelocityX", "AngularVelocityY", "AngularVelocityZ")
CONSUMER_CHECK_S = 1.0  # how often the `consumers` status extra is refreshed, s


def lsl_clock_offset_ns(tries: int = 9) -> int:
    """Offset of LSL's clock from the host monotonic clock, ns: ``lsl_ns = monotonic_ns + offset``.

    Each try reads ``time.monotonic_ns()``, ``pylsl.local_clock()``, ``time.monotonic_ns()``;
    the try with the shortest bracket wins. On Linux both are CLOCK_MONOTONIC, so the
    offset is 0 to within the read time (< 1 us).
    """
    best: tuple[int, int] | None = None
    for _ in range(tries):
        a = time.monotonic_ns()
        lsl_s = pylsl.local_clock()
        b = time.monotonic_ns()
        cand = (b - a, round(lsl_s * 1e9) - (a + b) // 2)
        if best is None or cand[0] < best[0]:
            best = cand
    return best[1]


def apply_lsl_config(path: Path | None) -> None:
    """Make liblsl load ``path`` (an lsl_api.cfg) in this process; no effect once LSL is running.

    Sets ``LSLAPICFG`` (read by liblsl when it first needs its configuration) and, where
    the installed pylsl has it, ``pylsl.set_config_filename`` (which takes precedence).
    """
    if path is None:
        return
    os.environ["LSLAPICFG"] = str(path)
    setter = getattr(pylsl, "set_config_filename", None)
    if setter is not None:
        try:
            setter(str(path))
        except NotImplementedError:  # liblsl older than 1.17.7: LSLAPICFG does it
            pass


@dataclass(frozen=True)
class Layout:
    """Channel layout of one LSL outlet: what each channel is and how to fill it from a block.

    Attributes:
        labels, units, types, objects: per channel, as written to ``<desc><channels>``.
        extract: (n,) structured samples -> (n, n_channels) float32 values.
    """

    labels: tuple[str, ...]
    units: tuple[str, ...]
    types: tuple[str, ...]
    objects: tuple[str, ...]
    extract: Callable[[np.ndarray], np.ndarray]


def frame_layout(info: StreamInfo) -> Layout:
    """imu.frame: per IMU acc x,y,z (m/s^2) then gyr x,y,z (rad/s), labels ``<imu>_acc_x``."""
    m = info.np_dtype["acc"].shape[0]
    imus = [str(s) for s in info.meta.get("imus") or []]
    if len(imus) != m:
        imus = [f"imu{i}" for i in range(m)]
    labels, units, types, objects = [], [], [], []
    for imu in imus:
        for q, unit, xdf in (("acc", "m/s^2", _XDF_ACC), ("gyr", "rad/s", _XDF_GYR)):
            labels += [f"{imu}_{q}_{a}" for a in _AXES]
            units += [unit] * 3
            types += list(xdf)
            objects += [imu] * 3

    def extract(data: np.ndarray) -> np.ndarray:
        n = len(data)
        both = np.concatenate([data["acc"], data["gyr"]], axis=2)  # (n, m, 6)
        return np.ascontiguousarray(both.reshape(n, m * 6), dtype=np.float32)

    return Layout(tuple(labels), tuple(units), tuple(types), tuple(objects), extract)


def state_layout(info: StreamInfo) -> Layout:
    """chain.state / chain.truth: hinge bodies as the hinge angle (degrees), others q_rel w,x,y,z.

    Labels ``<body>_angle`` and ``<body>_quat_w`` ...; q_rel is body to parent (root: earth).
    """
    dt = info.np_dtype
    n_bodies = dt["q_rel"].shape[0]
    n_hinge = int(np.prod(dt["angle"].shape))
    bodies = [str(s) for s in info.meta.get("bodies") or []]
    if len(bodies) != n_bodies:
        bodies = [f"body{i}" for i in range(n_bodies)]
    hinges = [str(s) for s in info.meta.get("hinges") or []]
    if len(hinges) != n_hinge:
        hinges = []  # unnamed hinges: angles go out after the quaternions, as hinge<i>
    slot = {name: i for i, name in enumerate(hinges)}
    labels, units, types, objects, cols = [], [], [], [], []
    for b, body in enumerate(bodies):
        if body in slot:
            labels.append(f"{body}_angle")
            units.append("degrees")
            types.append("JointAngle")
            objects.append(body)
            cols.append(n_bodies * 4 + slot[body])
        else:
            labels += [f"{body}_quat_{c}" for c in _QUAT]
            units += ["normalized"] * 4
            types += list(_XDF_QUAT)
            objects += [body] * 4
            cols += [b * 4 + c for c in range(4)]
    if not hinges:
        for h in range(n_hinge):
            labels.append(f"hinge{h}_angle")
            units.append("degrees")
            types.append("JointAngle")
            objects.append(f"hinge{h}")
            cols.append(n_bodies * 4 + h)
    index = np.asarray(cols, dtype=np.intp)

    def extract(data: np.ndarray) -> np.ndarray:
        n = len(data)
        angles = np.degrees(data["angle"].reshape(n, -1).astype(np.float32))
        both = np.concatenate([data["q_rel"].reshape(n, n_bodies * 4), angles], axis=1)
        return np.ascontiguousarray(both[:, index], dtype=np.float32)

    return Layout(tuple(labels), tuple(units), tuple(types), tuple(objects), extract)


def pose_layout(info: StreamInfo) -> Layout:
    """chain.pose: per body position x,y,z (m, earth frame), quaternion w,x,y,z (body to earth)."""
    n_bodies = info.np_dtype["pos"].shape[0]
    bodies = [str(s) for s in info.meta.get("bodies") or []]
    if len(bodies) != n_bodies:
        bodies = [f"body{i}" for i in range(n_bodies)]
    labels, units, types, objects = [], [], [], []
    for body in bodies:
        labels += [f"{body}_pos_{a}" for a in _AXES] + [f"{body}_quat_{c}" for c in _QUAT]
        units += ["meters"] * 3 + ["normalized"] * 4
        types += list(_XDF_POS) + list(_XDF_QUAT)
        objects += [body] * 7

    def extract(data: np.ndarray) -> np.ndarray:
        n = len(data)
        both = np.concatenate([data["pos"], data["quat"]], axis=2)  # (n, bodies, 7)
        return np.ascontiguousarray(both.reshape(n, n_bodies * 7), dtype=np.float32)

    return Layout(tuple(labels), tuple(units), tuple(types), tuple(objects), extract)


def root_layout(info: StreamInfo) -> Layout:
    """root.orientation: quaternion w,x,y,z of the root body to earth, labels ``root_quat_w``..."""
    obj = info.source or "root"

    def extract(data: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(data["q"], dtype=np.float32)

    return Layout(tuple(f"root_quat_{c}" for c in _QUAT), ("normalized",) * 4, _XDF_QUAT,
                  (obj,) * 4, extract)


LAYOUTS: dict[str, Callable[[StreamInfo], Layout]] = {
    FRAME: frame_layout, STATE: state_layout, TRUTH: state_layout, POSE: pose_layout,
    ROOT: root_layout}


@dataclass
class _Out:
    """One live outlet: the input stream info it was built for, its layout and counters."""

    info: StreamInfo
    layout: Layout
    outlet: pylsl.StreamOutlet
    name: str
    source_id: str
    rate_hz: float  # the outlet's nominal rate, Hz (0: irregular)
    samples: int = 0
    gaps: int = 0


class LslOutlet(Node):
    """Publish chosen topics as Lab Streaming Layer outlets with full stream meta-data.

    Ports:
        in: any of imu.frame (acc m/s^2, gyr rad/s per IMU), chain.state or chain.truth
            (hinge angles in degrees, other joints' q_rel w,x,y,z), chain.pose (position m,
            quaternion w,x,y,z per body), root.orientation (w,x,y,z); many sources. One
            LSL outlet per input stream, float32 channels, nominal rate = the stream's
            rate_hz, each sample time-stamped with its t_host (ns) on pylsl.local_clock() (s).
    Stats extra: ``streams`` (LSL name -> samples pushed), ``consumers`` (outlets with an
    inlet connected), ``lsl_clock_offset_ns``.
    """

    inputs = {"in": Input(accepts=(FRAME, STATE, TRUTH, POSE, ROOT), many=True)}
    outputs = ()

    @dataclass(frozen=True)
    class Params:
        name_prefix: str = "imuflow"  # LSL stream name: "<name_prefix> <node>/<topic>"
        names: dict[str, str] = field(default_factory=dict)  # input "node/topic" -> LSL name
        source_id_prefix: str = ""  # source_id "<prefix>/<this node>/<node>/<topic>"; "": graph
        types: dict[str, str] = field(default_factory=dict)  # topic kind -> LSL content type
        rates: dict[str, float] = field(default_factory=dict)  # input "node/topic" -> nominal
        # rate, Hz, for streams that declare none (rate_hz 0 goes out as LSL's irregular rate)
        # (defaults: imu.frame "IMU", chain.state/chain.truth/chain.pose/root.orientation "MoCap")
        wait_for_consumer_s: float = 0.0  # at a stream's first message wait up to this long for an
        # inlet (LabRecorder) before pushing, s; for replays at full speed; 0 = push at once
        max_buffered_s: int = 360  # seconds of samples an outlet keeps for slow inlets
        lsl_config: Path | None = None  # lsl_api.cfg to use in this process (docs/lsl.md);
        # default: LSL's own search (LSLAPICFG, ./lsl_api.cfg, ~/lsl_api/lsl_api.cfg, /etc/lsl_api)

        def __post_init__(self) -> None:
            if self.wait_for_consumer_s < 0 or self.max_buffered_s < 1:
                raise ValueError("wait_for_consumer_s must be >= 0 and max_buffered_s >= 1")
            if any(r <= 0 for r in self.rates.values()):
                raise ValueError(f"rates must be > 0 Hz, got {self.rates}")

    def setup(self) -> None:
        p = self.params
        if p.lsl_config is not None:
            path = self.context.resolve(p.lsl_config)
            if not path.is_file():
                raise ConfigError(f"node '{self.id}': lsl_config {path} is not a file (an "
                                  "lsl_api.cfg, docs/lsl.md)", key="lsl_config")
            apply_lsl_config(path)
        self._prefix = p.source_id_prefix or self._graph_name()
        self._outs: dict[str, _Out] = {}
        self._offset_ns = lsl_clock_offset_ns()
        self._next_consumer_check = 0.0
        self.stats.extra["lsl_clock_offset_ns"] = self._offset_ns
        self.log.info("pylsl %s (liblsl %s); LSL clock = host monotonic clock %+d ns",
                      getattr(pylsl, "__version__", "?"), pylsl.library_version(),
                      self._offset_ns)

    def _graph_name(self) -> str:
        """The graph's ``name:`` (else its file name), or ``imuflow`` for a standalone node."""
        cfg = self.context.config_file
        if cfg is None:
            return "imuflow"
        try:
            doc = load_yaml(cfg)
        except (OSError, ConfigError):
            return cfg.stem
        name = doc.get("name") if isinstance(doc, dict) else None
        return str(name) if name else cfg.stem

    # -- data --------------------------------------------------------------------------------
    def on_block(self, port: str, block: Block) -> None:
        info = block.info
        out = self._outs.get(info.stream)
        if out is None or (out.info is not info and out.info != info):
            out = self._bind(info, out)
        if block.gap:
            out.gaps += 1
        n = block.n
        if n == 0:
            return
        data = block.data
        values = out.layout.extract(data)
        stamps = (data["t_host"] + self._offset_ns) / 1e9  # float64 s on pylsl.local_clock()
        if n == 1:
            out.outlet.push_chunk(values, float(stamps[0]))
        else:
            out.outlet.push_chunk(values, stamps.tolist())
        out.samples += n
        self._update_stats()

    def _bind(self, info: StreamInfo, old: _Out | None) -> _Out:
        """The outlet for ``info``: the old one if its channels are unchanged, else a new one."""
        make = LAYOUTS.get(info.kind)
        if make is None:
            raise ValueError(f"node '{self.id}': cannot publish {info.stream} of kind "
                             f"'{info.kind}' on LSL; wire {', '.join(LAYOUTS)} streams")
        try:
            layout = make(info)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"node '{self.id}': stream {info.stream} ({info.kind}) does not "
                             f"have the fields of its contract (streams.py): {exc}") from exc
        if old is not None:
            if old.layout.labels == layout.labels and old.info.rate_hz == info.rate_hz:  # same
                old.info = info
                return old
            self.log.warning("%s changed its channels or rate: LSL stream '%s' is created anew",
                             info.stream, old.name)
            del self._outs[info.stream]  # the old outlet closes when its last reference goes
        out = self._create(info, layout)
        self._outs[info.stream] = out
        return out

    def _create(self, info: StreamInfo, layout: Layout) -> _Out:
        p = self.params
        name = p.names.get(info.stream) or f"{p.name_prefix} {info.stream}".strip()
        source_id = f"{self._prefix}/{self.id}/{info.stream}"
        ctype = p.types.get(info.kind) or DEFAULT_TYPES[info.kind]
        rate = p.rates.get(info.stream) or info.rate_hz or pylsl.IRREGULAR_RATE
        sinfo = pylsl.StreamInfo(name, ctype, len(layout.labels), rate, "float32", source_id)
        self._describe(sinfo, info, layout)
        outlet = pylsl.StreamOutlet(sinfo, 0, p.max_buffered_s)
        self.log.info("LSL outlet '%s' (type %s, source_id %s): %d channels at %g Hz from %s",
                      name, ctype, source_id, len(layout.labels), rate, info.stream)
        if p.wait_for_consumer_s > 0:
            if outlet.wait_for_consumers(p.wait_for_consumer_s):
                self.log.info("LSL outlet '%s': an inlet connected", name)
            else:
                self.log.warning("LSL outlet '%s': no inlet within %g s; pushing anyway", name,
                                 p.wait_for_consumer_s)
        return _Out(info, layout, outlet, name, source_id, rate)

    def _describe(self, sinfo: pylsl.StreamInfo, info: StreamInfo, layout: Layout) -> None:
        """Write the XDF meta-data: channels, acquisition, and imuflow's own stream record."""
        desc = sinfo.desc()
        channels = desc.append_child("channels")
        for label, unit, typ, obj in zip(layout.labels, layout.units, layout.types,
                                         layout.objects):
            ch = channels.append_child("channel")
            ch.append_child_value("label", label)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", typ)
            ch.append_child_value("object", obj)
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "imuflow")
        acq.append_child_value("model", info.kind)
        acq.append_child_value("compensated_lag", "0")
        own = desc.append_child("imuflow")
        own.append_child_value("graph", self._prefix)
        own.append_child_value("node", self.id)
        own.append_child_value("stream", info.stream)
        own.append_child_value("kind", info.kind)
        own.append_child_value("frame", str(info.meta.get("frame", "")))
        own.append_child_value("clock", "time stamps = t_host (host monotonic clock) on "
                               "pylsl.local_clock(); lsl_s = (t_host_ns + offset_ns) / 1e9")
        own.append_child_value("lsl_clock_offset_ns", str(self._offset_ns))
        for key in ("chain", "model", "imus", "bodies", "hinges"):
            if key in info.meta:
                value = info.meta[key]
                own.append_child_value(key, ",".join(map(str, value))
                                       if isinstance(value, (list, tuple)) else str(value))

    def _update_stats(self) -> None:
        now = time.monotonic()
        extra = self.stats.extra
        extra["streams"] = {o.name: o.samples for o in self._outs.values()}
        if now >= self._next_consumer_check:
            self._next_consumer_check = now + CONSUMER_CHECK_S
            extra["consumers"] = sum(o.outlet.have_consumers() for o in self._outs.values())
            extra["gaps"] = sum(o.gaps for o in self._outs.values())

    def on_command(self, command: str, args: dict) -> dict:
        if command == "streams":
            return {"ok": True, "streams": [
                {"name": o.name, "source_id": o.source_id, "from": o.info.stream,
                 "channels": len(o.layout.labels), "rate_hz": o.rate_hz,
                 "samples": o.samples, "consumers": o.outlet.have_consumers()}
                for o in self._outs.values()]}
        return super().on_command(command, args)

    def teardown(self) -> None:
        outs = getattr(self, "_outs", {})
        if outs:
            self.log.info("closing %d LSL outlet(s)", len(outs))
        outs.clear()  # pylsl destroys an outlet when its last reference goes
