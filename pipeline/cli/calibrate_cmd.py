"""``imuflow calibrate SOURCE -o calibration.yaml``: sensor-to-segment rotations.

SOURCE is a recording (``.mcap``) of the calibration procedure, or a graph (``.yaml``) whose
sensors are live: then the procedure is run now, with prompts on the terminal and a progress
bar per phase (``--lead-in-s`` to get into position, ``--static-s`` holding the neutral pose,
``--functional-s`` moving each joint), while the graph's sources are recorded
(``--keep FILE.mcap`` keeps the recording). The procedure: the neutral pose (joints
straight, segments upright) held still for a few seconds, then each joint flexed and
extended about ten times. Without ``--static`` / ``--functional`` the phases are found in
the data automatically. The file is written either way; a poor calibration is marked
``ok: false`` with its problems, the exit code is 3, and the filter refuses to apply it.
Examples::

    imuflow calibrate configs/movella_dot_knee.yaml -o knee-calibration.yaml
    imuflow import femur.csv tibia.csv -o knee.mcap --name femur=thigh --name tibia=shank
    imuflow calibrate knee.mcap --chain configs/chains/knee.yaml -o knee-calibration.yaml
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from pipeline.calibration import Calibration, CalibrationError, write_calibration
from pipeline.calibration.session_input import calibrate_session
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
                   help="seconds from the start holding the neutral pose (default: detect)")
    p.add_argument("--functional", metavar="T2:T3",
                   help="seconds from the start with the joint motion (default: all motion)")
    p.add_argument("--rate-hz", type=float, default=100.0,
                   help="resampling rate for the estimation, Hz (default 100)")
    live = p.add_argument_group("live procedure (SOURCE is a graph)")
    live.add_argument("--lead-in-s", type=float, default=3.0,
                      help="seconds to get into the neutral pose (default 3)")
    live.add_argument("--static-s", type=float, default=4.0,
                      help="seconds to hold the neutral pose still (default 4)")
    live.add_argument("--functional-s", type=float, default=25.0,
                      help="seconds of joint motion (default 25)")
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
                                sensors=sensors, chain_name=chain_name, **windows_ns)
    except (ValueError, CalibrationError) as exc:
        raise ImuflowError(f"calibrate: {exc}") from None
    write_calibration(cal, args.output)
    print("\n".join(report(cal)))
    if not cal.ok:
        print(f"wrote {args.output} (marked poor: the filter will not apply it)")
        return EXIT_POOR
    print(f"wrote {args.output}")
    return 0


STILL_MARGIN_S = 0.5     # s cut from each end of the still phase: settling in, moving off
MOTION_MARGIN_S = 0.25   # s cut from each end of the motion phase


def _live(args: argparse.Namespace) -> int:
    """Run the graph's sources, prompt through the procedure while recording, calibrate."""
    graph = load_graph(args.source)
    chain_file = args.chain or graph.chain
    if chain_file is None:
        raise ConfigError("the graph names no 'chain:'; give --chain", file=str(args.source))
    chain = _chain(Path(chain_file))
    with tempfile.TemporaryDirectory(prefix="imuflow-calibrate-") as tmp:
        session = args.keep or Path(tmp) / "procedure.mcap"
        marks = _record_procedure(args, chain, session)
        print(f"recorded the procedure ({session}); calibrating", flush=True)
        # the phases as prompted (host clock, the sessions' t_host), not as detected: a
        # user's quietest moment may be the pose after the motion, not the neutral one
        still = (marks[1] + _ns(STILL_MARGIN_S), marks[2] - _ns(STILL_MARGIN_S))
        motion = (marks[2] + _ns(MOTION_MARGIN_S), marks[3] - _ns(MOTION_MARGIN_S))
        return _calibrate(args, session, chain, str(chain_file), dict(graph.sensors),
                          static_ns=still, functional_ns=motion)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


def _record_procedure(args: argparse.Namespace, chain: Chain, session: Path) -> list[int]:
    """Record the graph's sources through the prompted phases (lead-in, still, motion).

    Returns the phases' boundaries on the host monotonic clock (ns, as t_host): the start of
    each of the three phases and the end of the last.
    """
    joints = ", ".join(chain.body_names[i] for i in chain.hinge_bodies) or "every joint"
    phases = [(args.lead_in_s, "get into the neutral pose: joints straight, segments upright"),
              (args.static_s, "hold still in the neutral pose"),
              (args.functional_s, "flex and extend each joint through its range, about ten "
                                  f"times ({joints}), at a steady pace")]
    if any(not seconds > 0 for seconds, _ in phases):
        raise ImuflowError("calibrate: --lead-in-s, --static-s and --functional-s must be > 0")
    marks: list[int] = []
    bar: tqdm | None = None

    def until() -> bool:
        nonlocal bar
        now = time.monotonic_ns()
        if marks:
            elapsed = (now - marks[-1]) * 1e-9
            if elapsed < phases[len(marks) - 1][0]:
                bar.n = round(elapsed, 1)
                bar.refresh()
                return False
            bar.n = bar.total
            bar.close()
        marks.append(now)
        if len(marks) > len(phases):
            return True
        seconds, what = phases[len(marks) - 1]
        print(f"step {len(marks)}/{len(phases)}: {what} ({seconds:g} s)", flush=True)
        bar = tqdm(total=seconds, unit="s", mininterval=0.25, leave=False, disable=None,
                   bar_format="{l_bar}{bar}| {n:.1f}/{total:g} s")
        return False

    path = write_recording_graph(args.source, session)
    try:
        sup = Supervisor(load_graph(path))
        sup.start()
        code = sup.run(until=until)
    finally:
        path.unlink(missing_ok=True)
    if code != 0 or len(marks) <= len(phases):
        raise ImuflowError(f"calibrate: the graph {args.source} stopped before the procedure "
                           "ended (see above); nothing calibrated")
    return marks


def report(cal: Calibration) -> list[str]:
    """Lines for the terminal: the phases, each sensor's rotation and quality, problems."""
    lines = [f"static pose {cal.static[0]:.2f}-{cal.static[1]:.2f} s, functional motion "
             f"{cal.functional[0]:.2f}-{cal.functional[1]:.2f} s"]
    for s in cal.sensors.values():
        q = ", ".join(f"{x:+.4f}" for x in s.rotation)
        lines.append(f"  {s.imu:<10} {s.method:<13} rotation [{q}]  " + ", ".join(
            f"{k} {v:.3g}" for k, v in s.quality.items()))
    return lines + [f"POOR: {p}" for p in cal.problems()]
