"""``imuflow calibrate SOURCE -o calibration.yaml``: sensor-to-segment rotations.

SOURCE is a recording (``.mcap``) of the calibration procedure, or a graph (``.yaml``) whose
sensors are live: then the procedure is run now, with prompts on the terminal and a progress
bar per phase (``--lead-in-s`` to get into position, ``--static-s`` holding the neutral pose,
``--functional-s`` moving each joint), while the graph's sources are recorded
(``--keep FILE.mcap`` keeps the recording). The procedure: the neutral pose (joints
straight, segments upright; ``--pose`` names another still pose of the chain, the knee's
``sitting``) held still for a few seconds, then each joint flexed and extended about ten
times. Without ``--static`` / ``--functional`` the phases are found in the data
automatically, and when no still window fits the neutral pose the chain's other poses are
tried. The file is written either way; a poor calibration is marked
``ok: false`` with its problems, the exit code is 3, and the filter refuses to apply it.
Examples::

    imuflow calibrate configs/movella_dot_knee.yaml -o knee-calibration.yaml
    imuflow import femur.csv tibia.csv -o knee.mcap --name femur=thigh --name tibia=shank
    imuflow calibrate knee.mcap --chain configs/chains/knee.yaml -o knee-calibration.yaml
    imuflow calibrate knee.mcap --static 0.1:1.4 --pose sitting -o knee-calibration.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from pipeline.calibration import CalibrationError, write_calibration
from pipeline.calibration.procedure import (
    FUNCTIONAL_S,
    LEAD_IN_S,
    STATIC_S,
    ProcedureClock,
    found_phases_hint,
    how_to_use,
    procedure_phases,
    report_lines,
)
from pipeline.calibration.session_input import calibrate_session
from pipeline.calibration.still_pose import NEUTRAL
from pipeline.kinematics.chain import Chain, ChainError, load_chain
from pipeline.recording.record_graph import write_recording_graph
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.supervisor import Supervisor

EXIT_POOR = 3
REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("source", type=Path, help="session file (.mcap) holding the procedure, or "
                   "a graph (.yaml) to run the procedure live with its sensors")
    p.add_argument("-o", "--output", type=Path, required=True, help="calibration file (.yaml)")
    p.add_argument("--chain", type=Path, default=None,
                   help="chain file naming the IMU sites (default: the graph's `chain:`, for "
                        "a recording configs/chains/knee.yaml)")
    p.add_argument("--static", metavar="T0:T1",
                   help="seconds from the start holding the still pose (--pose; default: "
                        "detect)")
    p.add_argument("--pose", metavar="NAME",
                   help="the still pose of the static window: neutral (joints straight, "
                        "segments upright) or one the chain file names under poses: (the "
                        "knee's: sitting); default: neutral, live; found, from a recording")
    p.add_argument("--functional", metavar="T2:T3",
                   help="seconds from the start with the joint motion (default: all motion)")
    p.add_argument("--rate-hz", type=float, default=100.0,
                   help="resampling rate for the estimation, Hz (default 100)")
    live = p.add_argument_group("live procedure (SOURCE is a graph)")
    live.add_argument("--lead-in-s", type=float, default=LEAD_IN_S,
                      help=f"seconds to get into the neutral pose (default {LEAD_IN_S:g})")
    live.add_argument("--static-s", type=float, default=STATIC_S,
                      help=f"seconds to hold the neutral pose still (default {STATIC_S:g})")
    live.add_argument("--functional-s", type=float, default=FUNCTIONAL_S,
                      help=f"seconds of joint motion (default {FUNCTIONAL_S:g})")
    live.add_argument("--keep", type=Path, metavar="FILE.mcap",
                      help="keep the recording of the procedure here")


def run(args: argparse.Namespace) -> int:
    """Calibrate, write the file, print per sensor what was found; 3 when poor."""
    if not args.source.is_file():
        raise ImuflowError(f"{args.source}: no such file (a recording .mcap or a graph .yaml)")
    if args.source.suffix.lower() in (".yaml", ".yml"):
        return _live(args)
    chain_file = args.chain or Path("configs/chains/knee.yaml")
    return _calibrate(args, args.source, _chain(chain_file), str(chain_file), {})


def _chain(path: Path) -> Chain:
    """Load a chain file (the shipped ones also from any working directory)."""
    if not path.exists() and not path.is_absolute() and (REPO / path).exists():
        path = REPO / path
    try:
        return load_chain(path)
    except (ChainError, OSError) as exc:
        raise ConfigError(f"chain: {exc}", file=str(path)) from None


def _calibrate(args: argparse.Namespace, session: Path, chain: Chain, chain_name: str,
               sensors: dict[str, str], **windows_ns: tuple[int, int]) -> int:
    """Calibrate from ``session``, write and report; 3 when poor."""
    try:
        cal = calibrate_session(session, chain, args.rate_hz, args.static, args.functional,
                                sensors=sensors, chain_name=chain_name, pose=args.pose,
                                **windows_ns)
    except (ValueError, CalibrationError) as exc:
        raise ImuflowError(f"calibrate: {exc}") from None
    write_calibration(cal, args.output)
    print("\n".join(report_lines(cal)))
    if not cal.ok:
        print(f"wrote {args.output} (marked poor: the filter will not apply it)")
        if args.static is None and not windows_ns:
            print(found_phases_hint(session, chain))
        return EXIT_POOR
    print(f"wrote {args.output}")
    print(how_to_use(args.output))
    return 0


def _live(args: argparse.Namespace) -> int:
    """Run the graph's sources, prompt through the procedure while recording, calibrate."""
    graph = load_graph(args.source)
    chain_file = args.chain or graph.chain
    if chain_file is None:
        raise ConfigError("the graph names no 'chain:'; give --chain", file=str(args.source))
    chain = _chain(Path(chain_file))
    try:
        clock = ProcedureClock(procedure_phases(chain, args.lead_in_s, args.static_s,
                                                args.functional_s, args.pose or NEUTRAL))
    except ValueError as exc:
        raise ImuflowError(f"calibrate: {exc} (--lead-in-s, --static-s, --functional-s, "
                           "--pose)") from None
    with tempfile.TemporaryDirectory(prefix="imuflow-calibrate-") as tmp:
        session = args.keep or Path(tmp) / "procedure.mcap"
        _record_procedure(args, clock, session)
        print(f"recorded the procedure ({session}); calibrating", flush=True)
        still, motion = clock.windows()  # the phases as prompted (host clock, t_host)
        return _calibrate(args, session, chain, str(chain_file), dict(graph.sensors),
                          static_ns=still, functional_ns=motion)


def _record_procedure(args: argparse.Namespace, clock: ProcedureClock, session: Path) -> None:
    """Record the graph's sources while ``clock`` walks the prompted phases (lead-in, still,
    motion), with a prompt and a progress bar per phase."""
    n = len(clock.phases)
    bar: tqdm | None = None

    def until() -> bool:
        nonlocal bar
        at = clock.update(time.monotonic_ns())
        if at is not None and not at.began:
            bar.n = round(at.elapsed_s, 1)
            bar.refresh()
            return False
        if bar is not None:
            bar.n = bar.total
            bar.close()
        if at is None:
            return True
        print(f"step {at.index + 1}/{n}: {at.phase.prompt} ({at.phase.seconds:g} s)", flush=True)
        bar = tqdm(total=at.phase.seconds, unit="s", mininterval=0.25, leave=False,
                   disable=None, bar_format="{l_bar}{bar}| {n:.1f}/{total:g} s")
        return False

    path = write_recording_graph(args.source, session)
    try:
        sup = Supervisor(load_graph(path))
        sup.start()
        code = sup.run(until=until)
    finally:
        path.unlink(missing_ok=True)
    if code != 0 or not clock.done:
        raise ImuflowError(f"calibrate: the graph {args.source} stopped before the procedure "
                           "ended (see above); nothing calibrated")
