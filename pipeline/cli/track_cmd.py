"""``imuflow track SESSION -o OUT``: run a recording through the tracking chain, write the angles.

The graph is ``configs/replay.yaml`` (or ``--config``): replay -> sync -> filter
(sensor-to-segment calibration) -> observer -> fk, run in this one thread as fast as
the machine allows (no window, no recorder, nothing paced). The nodes are those of a
live run, so the numbers are the live ones. Output by suffix:

- ``.csv``: one row per frame; header names each column with its unit: ``time_s``,
  ``t_host_ns``, ``<hinge>_angle_deg``, ``<body>_q_rel_w..z`` (body to parent),
  ``<body>_pos_x_m..`` and ``<body>_quat_w..z`` (earth frame, z up);
- ``.mot``: OpenSim motion file, time and hinge angles in degrees;
- ``.mcap``: the ``chain.state`` and ``chain.pose`` streams as a session file.

Without ``--calibration`` the session is calibrated first, as ``imuflow calibrate``
does (neutral pose and joint motion found in the recording); the file is written
next to the output. Examples::

    imuflow track /tmp/knee.mcap -o knee.csv
    imuflow track lab.mcap --sensor femur=thigh --sensor tibia=shank -o knee.mot
    imuflow track /tmp/knee.mcap --model models/knee.onnx --calibration cal.yaml -o rnn.csv
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from pipeline.calibration import CalibrationError, write_calibration
from pipeline.calibration.session_input import calibrate_session
from pipeline.cli.calibrate_cmd import EXIT_POOR, report
from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.recording.motion_export import motion_from_blocks, write_csv, write_mot
from pipeline.recording.session_writer import SessionWriter
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import GraphSpec, NodeSpec, load_graph
from pipeline.runtime.inline import InlineGraph
from pipeline.runtime.message import Block
from pipeline.runtime.registry import resolve
from pipeline.runtime.sensor_check import check_sensors
from pipeline.runtime.streams import POSE, STATE

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "replay.yaml"
FORMATS = (".csv", ".mot", ".mcap")
log = logging.getLogger("imuflow.track")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("session", type=Path, help="session file (.mcap) from `imuflow record` or "
                   "`imuflow import`")
    p.add_argument("-o", "--output", type=Path, required=True,
                   help="output file: .csv (angles and poses), .mot (OpenSim) or .mcap")
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                   help="tracking graph (default configs/replay.yaml: constraint observer)")
    p.add_argument("--model", help="track with this ONNX observer model instead of the "
                   "graph's observer (e.g. models/knee.onnx)")
    cal = p.add_mutually_exclusive_group()
    cal.add_argument("--calibration", type=Path,
                     help="calibration file (`imuflow calibrate`); default: calibrate from SESSION")
    cal.add_argument("--no-calibration", action="store_true",
                     help="use the sensors as mounted (only for sensors aligned with the segments)")
    p.add_argument("--sensor", action="append", default=[], metavar="OLD=NEW",
                   help="rename a recorded sensor to the chain's IMU site (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the tracking graph for SESSION, run it inline, write OUT; 3 if calibration is poor."""
    out = args.output
    if out.suffix.lower() not in FORMATS:
        raise ImuflowError(f"{out}: unknown output format '{out.suffix}'; use one of {FORMATS}")
    if not args.session.is_file():
        raise ImuflowError(f"{args.session}: no such session file")
    graph = load_graph(args.config, check_sensor_names=False)
    graph = replace(graph, sensors=dict(graph.sensors, **_renames(args.sensor)))
    graph = _for_session(graph, args.session.resolve())
    if args.model:
        graph = _with_model(graph, args.model)
    calibration = _calibration(graph, args, out)
    if calibration is None and not args.no_calibration:
        return EXIT_POOR
    graph = _with_calibration(graph, calibration)
    graph = _tracking_part(graph)
    check_sensors(graph)
    state_topic, pose_topic = _producer(graph, STATE), _producer(graph, POSE, required=False)
    return _track(graph, args.session, out, state_topic, pose_topic, args.quiet)


def _renames(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ImuflowError(f"--sensor {item!r}: write it as OLD=NEW, e.g. femur=thigh")
        pairs[old] = new
    return pairs


def _nodes_of(graph: GraphSpec, base: type) -> list[NodeSpec]:
    return [n for n in graph.nodes if issubclass(resolve(n.kind), base)]


def _set_node(graph: GraphSpec, spec: NodeSpec) -> GraphSpec:
    return replace(graph, nodes=[spec if n.id == spec.id else n for n in graph.nodes])


def _for_session(graph: GraphSpec, session: Path) -> GraphSpec:
    """Every replay source plays SESSION as fast as possible, with its recorded times."""
    replays = _nodes_of(graph, resolve("replay"))  # the cli reaches nodes through the registry
    if len(replays) != 1:
        raise ConfigError(f"a tracking graph needs exactly one replay node, found "
                          f"{[n.id for n in replays]}", file=str(graph.file))
    spec = replays[0]
    params = dict(spec.params, path=str(session), speed=0, restamp=False, loop=False)
    return _set_node(graph, replace(spec, params=params))


def _with_model(graph: GraphSpec, model: str) -> GraphSpec:
    """The node producing chain.state becomes the ONNX observer running ``model``."""
    spec = graph.node(_producer(graph, STATE).split("/")[0])
    return _set_node(graph, replace(spec, kind="nodes.observer.RnnObserver",
                                    params={"model": model, "mode": "block"}))


def _calibration(graph: GraphSpec, args: argparse.Namespace, out: Path) -> Path | None:
    """The calibration file to apply: given, or made from the session (None: poor / off)."""
    if args.no_calibration:
        return None
    if args.calibration:
        if not args.calibration.is_file():
            raise ImuflowError(f"{args.calibration}: no such calibration file")
        return args.calibration
    if graph.chain is None:
        raise ConfigError("the tracking graph names no 'chain:'", file=str(graph.file))
    try:
        chain = load_chain(graph.chain)
    except (ChainError, OSError) as exc:
        raise ConfigError(f"chain: {exc}", file=str(graph.chain)) from None
    try:
        cal = calibrate_session(args.session, chain, sensors=dict(graph.sensors),
                                chain_name=str(graph.chain))
    except (ValueError, CalibrationError) as exc:
        raise ImuflowError(f"calibrating from {args.session}: {exc}; give --calibration FILE "
                           "or --no-calibration") from None
    path = out.with_name(out.stem + ".calibration.yaml")
    write_calibration(cal, path)
    log.info("calibrated from the session (%s):\n%s", path, "\n".join(report(cal)))
    if not cal.ok:
        log.error("the calibration from %s is poor (written to %s); record the procedure "
                  "(docs/calibration.md) and pass --calibration, or --no-calibration",
                  args.session, path)
        return None
    return path


def _with_calibration(graph: GraphSpec, calibration: Path | None) -> GraphSpec:
    """Set (or clear) the filter's ``calibration`` parameter."""
    for spec in _nodes_of(graph, resolve("filter")):
        params = {k: v for k, v in spec.params.items() if k != "calibration"}
        if calibration is not None:
            params["calibration"] = str(calibration.resolve())
        graph = _set_node(graph, replace(spec, params=params))
    return graph


def _producer(graph: GraphSpec, kind: str, required: bool = True) -> str | None:
    """``node/topic`` of the one node publishing ``kind`` (the last one, in data order)."""
    found = [f"{n.id}/{kind}" for n in graph.nodes if kind in n.outputs]
    if not found and required:
        raise ConfigError(f"the tracking graph has no node publishing '{kind}'",
                          file=str(graph.file))
    return found[-1] if found else None


def _tracking_part(graph: GraphSpec) -> GraphSpec:
    """Only the nodes that chain.state and chain.pose depend on (no window, no recorder)."""
    keep: set[str] = set()
    todo = [t.split("/")[0] for t in (_producer(graph, STATE), _producer(graph, POSE, False)) if t]
    while todo:
        nid = todo.pop()
        if nid not in keep:
            keep.add(nid)
            todo.extend(e.node for es in graph.node(nid).inputs.values() for e in es)
    nodes = [n for n in graph.nodes if n.id in keep]
    return replace(graph, nodes=nodes,
                   groups={g: [i for i in ids if i in keep] for g, ids in graph.groups.items()})


def _log_span_s(session: Path) -> float:
    """Session length in recorder receive time (MCAP log time) from its summary, s (0: unknown).

    A recording made at speed 0 spans less log time than data time; progress is shown in
    log time because that is what replay walks through.
    """
    from mcap.reader import make_reader

    with open(session, "rb") as f:
        summary = make_reader(f).get_summary()
    stats = summary.statistics if summary else None
    return (stats.message_end_time - stats.message_start_time) / 1e9 if stats else 0.0


def _track(graph: GraphSpec, session: Path, out: Path, state_topic: str,
           pose_topic: str | None, quiet: bool) -> int:
    states: list[Block] = []
    poses: list[Block] = []
    span = [0, -1, 0]  # first and last t_host (ns), frames
    writer = SessionWriter(out) if out.suffix.lower() == ".mcap" else None

    def on_state(block: Block) -> None:
        (writer.write_block(block) if writer else states.append(block))
        if not span[2]:
            span[0] = int(block.data["t_host"][0])
        span[1], span[2] = int(block.data["t_host"][-1]), span[2] + block.n

    def on_pose(block: Block) -> None:
        (writer.write_block(block) if writer else poses.append(block))

    taps = {state_topic: on_state} | ({pose_topic: on_pose} if pose_topic else {})
    inline = InlineGraph(graph, taps)
    replay = next(n for _, n in inline.nodes if isinstance(n, resolve("replay")))
    bar = tqdm(total=round(_log_span_s(session), 1), unit="s", desc=f"tracking {session.name}",
               disable=quiet, leave=False)

    def on_poll() -> None:
        bar.n = min(round(replay.position_s, 1), bar.total)
        bar.refresh()

    try:
        setup_s, data_s = inline.run(on_poll)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    if writer is None:
        motion = motion_from_blocks(states, poses)
        (write_csv if out.suffix.lower() == ".csv" else write_mot)(motion, out)
    frames = span[2]
    seconds = (span[1] - span[0]) / 1e9 * frames / (frames - 1) if frames > 1 else 0.0
    speed = f", {seconds / data_s:.0f}x real time" if seconds and data_s > 0 else ""
    print(f"wrote {out}: {frames} frames; {seconds:.1f} s of data tracked in {data_s:.3f} s"
          f"{speed} (set-up {setup_s:.2f} s)")
    return 0
