"""``imuflow track SESSION -o OUT``: run a recording through the tracking chain, write the angles.

The graph is ``configs/replay.yaml`` (or ``--config``): replay -> sync -> filter
(sensor-to-segment calibration) -> observer -> fk, run in this one thread as fast as
the machine allows (no window, no recorder, nothing paced). The nodes are those of a
live run, so the numbers are the live ones. Output by suffix:

- ``.csv``: one row per frame; header names each column with its unit: ``time_s``,
  ``t_host_ns``, ``<hinge>_angle_deg``, ``<body>_q_rel_w..z`` (body to parent),
  ``<body>_pos_x_m..`` and ``<body>_quat_w..z`` (earth frame, z up), last ``sensors_ok``
  (0 where a sensor was missing or invalid and the estimate is held);
- ``.mot``: OpenSim motion file, time and hinge angles in degrees;
- ``.mcap``: the ``chain.state`` and ``chain.pose`` streams as a session file.

``--torques`` adds joint torques by Newton-Euler over the chain's segment inertias (the
``dynamics`` node, docs/dynamics.md; a graph with its own ``chain.torque`` node keeps it):
CSV columns ``<coordinate>_torque_Nm`` (``_N`` for translations) and ``residual_*`` of the
root, the ``chain.torque`` stream in ``.mcap``, and ``<stem>_torques.sto`` beside a ``.mot``.
The first and last 3 frames (half the differentiator's 7-frame window) have none (NaN).

SESSION may also be the recording's exports (a Movella DOT export folder, its CSV files'
folder, a BROAD .hdf5): they are imported first as ``imuflow import`` does, to
``<OUT stem>.session.mcap`` next to the output. Without ``--calibration`` the session is
calibrated first, as ``imuflow calibrate`` does (neutral pose and joint motion found in the
recording); the file is written next to the output. Examples::

    imuflow track /tmp/knee.mcap -o knee.csv
    imuflow track knee_tracking1/ --sensor femur=thigh --sensor tibia=shank -o knee.csv
    imuflow track knee_tracking1/ --sensor femur=thigh --sensor tibia=shank \\
        --shift shank=0.118 -o knee.csv  # shank's samples stamped 118 ms early (calibrate)
    imuflow track lab.mcap --sensor femur=thigh --sensor tibia=shank -o knee.mot
    imuflow track /tmp/knee.mcap --model models/knee.onnx --calibration cal.yaml -o rnn.csv
    imuflow track /tmp/knee.mcap --torques -o knee.csv
"""

from __future__ import annotations

import argparse
import importlib
import logging
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from pipeline.calibration import CalibrationError, write_calibration
from pipeline.calibration.procedure import found_phases_hint, report_lines
from pipeline.calibration.session_input import calibrate_session
from pipeline.cli.calibrate_cmd import EXIT_POOR
from pipeline.cli.import_cmd import parse_shifts
from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.recording.track_session import (
    FORMATS,
    TrackSummary,
    for_session,
    log_span_s,
    track,
    with_calibration,
    with_model,
    with_torques,
)
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import GraphSpec, load_graph

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO / "configs" / "replay.yaml"
IMPORTERS = "drivers.importers"  # loaded by dotted path: the core imports no driver
log = logging.getLogger("imuflow.track")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("session", type=Path, help="session file (.mcap) from `imuflow record` or "
                   "`imuflow import`, or a recording's exports (a Movella DOT export folder, a "
                   "BROAD .hdf5), imported first to <OUT stem>.session.mcap")
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
    p.add_argument("--shift", action="append", default=[], metavar="NAME=SECONDS",
                   help="with exports: move a sensor's samples later in time (NEW name or "
                        "recorded one), as a calibration that finds two clocks apart asks")
    p.add_argument("--torques", action="store_true", help="also write joint torques (N m) "
                   "by Newton-Euler over the chain's segment inertias (docs/dynamics.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Build the tracking graph for SESSION, run it inline, write OUT; 3 if calibration is poor."""
    out = args.output
    if out.suffix.lower() not in FORMATS:
        raise ImuflowError(f"{out}: unknown output format '{out.suffix}'; use one of {FORMATS}")
    graph = load_graph(args.config, check_sensor_names=False)
    graph = replace(graph, sensors=dict(graph.sensors, **_renames(args.sensor)))
    args.session = _session_file(args.session, out,
                                 _recorded_names(parse_shifts(args.shift), graph.sensors))
    graph = for_session(graph, args.session.resolve())
    if args.model:
        graph = with_model(graph, args.model)
    if args.torques:
        graph = with_torques(graph)
    calibration = _calibration(graph, args, out)
    if calibration is None and not args.no_calibration:
        return EXIT_POOR
    graph = with_calibration(graph, calibration)
    done = _track(graph, args.session, out, args.quiet)
    speed = f", {done.x_real_time:.0f}x real time" if done.x_real_time else ""
    print(f"wrote {out}: {done.frames} frames; {done.data_s:.1f} s of data tracked in "
          f"{done.run_s:.3f} s{speed} (set-up {done.setup_s:.2f} s)")
    if done.held_frames:
        where = ", sensors_ok 0 in the CSV" if out.suffix.lower() == ".csv" else ""
        print(f"{done.held_frames} frames had a sensor missing or invalid (no data from it yet, "
              f"or a dropout): the estimate is held there{where}")
    return 0


def _recorded_names(shifts: dict[str, float], renames: dict[str, str]) -> dict[str, float]:
    """``--shift`` keyed by the recorded sensor names (a chain name given maps back through
    the graph's ``sensors:`` and ``--sensor``)."""
    recorded = {new: old for old, new in renames.items()}
    return {recorded.get(name, name): s for name, s in shifts.items()}


def _session_file(source: Path, out: Path, shifts: dict[str, float]) -> Path:
    """The session to track: ``source`` when it is a session file (.mcap), else the
    recording's exports in ``source`` imported (sensors moved by ``shifts``, s) to
    ``<out stem>.session.mcap`` beside ``out``."""
    if source.is_file() and source.suffix.lower() == ".mcap":
        if shifts:
            raise ImuflowError(f"--shift applies while importing exports; {source} is a "
                               "session: import its sources again with `imuflow import "
                               "--shift`")
        return source
    if not source.exists():
        raise ImuflowError(f"{source}: no such session file or export folder")
    importers = importlib.import_module(IMPORTERS)
    path = out.with_name(out.stem + ".session.mcap")
    try:
        path, streams = importers.import_session([source], path, shifts=shifts)
    except ValueError as exc:
        raise importers.ImportFileError(
            f"{exc}; or import the files with `imuflow import` (--map for other CSV layouts) "
            "and track the .mcap it writes") from None
    print(f"imported {source} to {path}: " + ", ".join(
        f"{s.name} ({len(s.data)} samples at {s.rate_hz:.4g} Hz)" for s in streams))
    return path


def _renames(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            raise ImuflowError(f"--sensor {item!r}: write it as OLD=NEW, e.g. femur=thigh")
        pairs[old] = new
    return pairs


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
    log.info("calibrated from the session (%s):\n%s", path, "\n".join(report_lines(cal)))
    if not cal.ok:
        log.error("the calibration from %s is poor (written to %s): %s; then pass "
                  "--calibration FILE, or --no-calibration", args.session, path,
                  found_phases_hint(args.session, chain))
        return None
    return path


def _track(graph: GraphSpec, session: Path, out: Path, quiet: bool) -> TrackSummary:
    """Track with a progress bar in replay log-time seconds."""
    bar = tqdm(total=round(log_span_s(session), 1), unit="s", desc=f"tracking {session.name}",
               disable=quiet, leave=False)

    def on_progress(position_s: float) -> None:
        bar.n = min(round(position_s, 1), bar.total)
        bar.refresh()

    try:
        return track(graph, session, out, on_progress)
    finally:
        bar.close()
