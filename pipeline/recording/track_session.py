"""A recording through a tracking graph, inline and as fast as the machine allows.

The graph is a live tracking graph (e.g. ``configs/replay.yaml``) rewritten for offline
work: its one replay node plays the session at speed 0 with the recorded times, only the
nodes that ``chain.state`` and ``chain.pose`` depend on are kept (no window, no recorder),
and everything runs in the calling thread (:class:`pipeline.runtime.inline.InlineGraph`),
so the numbers are those of a live run. With :func:`with_torques` (or a graph that has a
``chain.torque`` node) the joint torques are kept as well. Used by ``imuflow track`` and
``tools/bench_track.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from pipeline.calibration.calibration_file import CALIBRATION_PARAMS
from pipeline.recording.motion_export import (
    motion_from_blocks,
    torque_file,
    write_csv,
    write_mot,
    write_sto_torques,
)
from pipeline.recording.session_writer import SessionWriter
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import EdgeSpec, GraphSpec, NodeSpec
from pipeline.runtime.inline import InlineGraph
from pipeline.runtime.message import Block
from pipeline.runtime.registry import resolve
from pipeline.runtime.sensor_check import check_sensors
from pipeline.runtime.streams import POSE, STATE, TORQUE, frames_usable

FORMATS = (".csv", ".mot", ".mcap")


@dataclass(frozen=True)
class TrackSummary:
    """One tracking run: frames out, seconds of data, wall seconds of set-up and data path."""

    frames: int
    data_s: float   # span of the chain.state stamps (+ one period), s
    run_s: float    # wall time of the data path (sources polled until every stream ended), s
    setup_s: float  # wall time of the nodes' set-up (model load, kernel compilation), s
    held_frames: int = 0  # frames a sensor was missing or invalid in (the estimate held)

    @property
    def x_real_time(self) -> float:
        """Seconds of data per second of data-path wall time (0 when nothing ran)."""
        return self.data_s / self.run_s if self.data_s and self.run_s > 0 else 0.0


def nodes_of(graph: GraphSpec, base: type) -> list[NodeSpec]:
    """The graph's nodes whose class is ``base`` or derives from it."""
    return [n for n in graph.nodes if issubclass(resolve(n.kind), base)]


def set_node(graph: GraphSpec, spec: NodeSpec) -> GraphSpec:
    """The graph with the node of ``spec.id`` replaced by ``spec``."""
    return replace(graph, nodes=[spec if n.id == spec.id else n for n in graph.nodes])


def producer(graph: GraphSpec, kind: str, required: bool = True) -> str | None:
    """``node/topic`` of the node publishing ``kind`` (the last one, in data order)."""
    found = [f"{n.id}/{kind}" for n in graph.nodes if kind in n.outputs]
    if not found and required:
        raise ConfigError(f"the tracking graph has no node publishing '{kind}'",
                          file=str(graph.file))
    return found[-1] if found else None


def for_session(graph: GraphSpec, session: Path) -> GraphSpec:
    """Every replay source plays ``session`` as fast as possible, with its recorded times."""
    replays = nodes_of(graph, resolve("replay"))
    if len(replays) != 1:
        raise ConfigError(f"a tracking graph needs exactly one replay node, found "
                          f"{[n.id for n in replays]}", file=str(graph.file))
    spec = replays[0]
    params = dict(spec.params, path=str(session), speed=0, restamp=False, loop=False)
    return set_node(graph, replace(spec, params=params))


def with_model(graph: GraphSpec, model: str) -> GraphSpec:
    """The node producing chain.state becomes the ONNX observer running ``model`` in block mode."""
    spec = graph.node(producer(graph, STATE).split("/")[0])
    return set_node(graph, replace(spec, kind="nodes.observer.RnnObserver",
                                   params={"model": model, "mode": "block"}))


def with_calibration(graph: GraphSpec, calibration: Path | None) -> GraphSpec:
    """Set (or, for None, clear) every filter's ``calibration`` parameter and every observer's
    ``joint_centres`` (the same file: its joints' lever arms)."""
    for kind, key in CALIBRATION_PARAMS:
        for spec in nodes_of(graph, resolve(kind)):
            params = {k: v for k, v in spec.params.items() if k != key}
            if calibration is not None:
                params[key] = str(Path(calibration).resolve())
            graph = set_node(graph, replace(spec, params=params))
    return graph


def with_torques(graph: GraphSpec) -> GraphSpec:
    """The graph with a ``nodes.dynamics.Dynamics`` node on the estimated chain.state (joint
    torques by Newton-Euler over the chain's segment inertias), unless it has one already."""
    if producer(graph, TORQUE, required=False):
        return graph
    state = producer(graph, STATE)
    ids = {n.id for n in graph.nodes}
    node_id = next(name for i in range(len(ids) + 1)
                   if (name := f"dynamics{i or ''}") not in ids)
    group = graph.node(state.split("/")[0]).group
    spec = NodeSpec(id=node_id, kind="nodes.dynamics.Dynamics", params={},
                    inputs={"state": [EdgeSpec(state)]}, outputs=[TORQUE], group=group)
    return replace(graph, nodes=[*graph.nodes, spec],
                   groups={**graph.groups, group: [*graph.groups.get(group, []), node_id]})


def tracking_part(graph: GraphSpec) -> GraphSpec:
    """Only the nodes that chain.state, chain.pose and chain.torque depend on (no window, no
    recorder)."""
    keep: set[str] = set()
    tops = (producer(graph, STATE), producer(graph, POSE, False), producer(graph, TORQUE, False))
    todo = [t.split("/")[0] for t in tops if t]
    while todo:
        nid = todo.pop()
        if nid not in keep:
            keep.add(nid)
            todo.extend(e.node for es in graph.node(nid).inputs.values() for e in es)
    nodes = [n for n in graph.nodes if n.id in keep]
    return replace(graph, nodes=nodes,
                   groups={g: [i for i in ids if i in keep] for g, ids in graph.groups.items()})


def log_span_s(session: Path) -> float:
    """Session length in recorder receive time (MCAP log time) from its summary, s (0: unknown).

    A recording made at speed 0 spans less log time than data time; progress is counted
    in log time because that is what replay walks through.
    """
    from mcap.reader import make_reader

    with open(session, "rb") as f:
        summary = make_reader(f).get_summary()
    stats = summary.statistics if summary else None
    return (stats.message_end_time - stats.message_start_time) / 1e9 if stats else 0.0


def track(graph: GraphSpec, session: Path, out: Path,
          on_progress: Callable[[float], None] | None = None) -> TrackSummary:
    """Run ``session`` through the tracking part of ``graph``; write ``out`` (.csv, .mot, .mcap).

    ``graph`` is prepared with :func:`for_session` (and :func:`with_model`,
    :func:`with_calibration` as wanted). ``on_progress`` gets the replay position in
    log-time seconds while the graph runs.
    """
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise ImuflowError(f"{out}: unknown output format '{out.suffix}'; use one of {FORMATS}")
    graph = tracking_part(graph)
    check_sensors(graph)
    state_topic, pose_topic = producer(graph, STATE), producer(graph, POSE, required=False)
    torque_topic = producer(graph, TORQUE, required=False)
    states: list[Block] = []
    poses: list[Block] = []
    torques: list[Block] = []
    writer = SessionWriter(out) if out.suffix.lower() == ".mcap" else None
    keep_state = writer.write_block if writer else states.append
    frames = [0, 0, -1]  # count, first and last t_host (ns)
    inputs: list[tuple[np.ndarray, np.ndarray]] = []  # the observer's frames: t_host, usable

    def on_input(block: Block) -> None:
        inputs.append((block.data["t_host"].copy(), frames_usable(block.data)))

    def on_state(block: Block) -> None:
        if not frames[0]:
            frames[1] = int(block.data["t_host"][0])
        frames[0], frames[2] = frames[0] + block.n, int(block.data["t_host"][-1])
        keep_state(block)

    taps = {state_topic: on_state}
    if pose_topic:
        taps[pose_topic] = writer.write_block if writer else poses.append
    if torque_topic:
        taps[torque_topic] = writer.write_block if writer else torques.append
    observer = graph.node(state_topic.split("/")[0])
    for edge in observer.inputs.get("frame", [])[:1]:
        taps[edge.source] = on_input
    inline = InlineGraph(graph, taps)
    replay = next(n for _, n in inline.nodes if isinstance(n, resolve("replay")))
    try:
        poll = (lambda: on_progress(replay.position_s)) if on_progress else None
        setup_s, run_s = inline.run(poll)
    finally:
        if writer is not None:
            writer.close()
    t_in = np.concatenate([t for t, _ in inputs]) if inputs else np.zeros(0, np.int64)
    usable = np.concatenate([u for _, u in inputs]) if inputs else np.zeros(0, bool)
    if writer is None:
        motion = motion_from_blocks(states, poses, torques, (t_in, usable))
        if out.suffix.lower() == ".csv":
            write_csv(motion, out)
        else:
            write_mot(motion, out)
            if motion.torque is not None:
                write_sto_torques(motion, torque_file(out))
    n = frames[0]
    data_s = (frames[2] - frames[1]) / 1e9 * n / (n - 1) if n > 1 else 0.0
    return TrackSummary(frames=n, data_s=data_s, run_s=run_s, setup_s=setup_s,
                        held_frames=int(np.count_nonzero(~usable)))
