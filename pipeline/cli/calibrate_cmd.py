"""``imuflow calibrate SESSION.mcap -o calibration.yaml``: sensor-to-segment rotations from a recording.

The recording holds the calibration procedure: the neutral pose (joints straight, segments
upright) held still for a few seconds, then each joint flexed and extended about five times.
Without ``--static`` / ``--functional`` the phases are found automatically. The file is
written either way; a poor calibration is marked ``ok: false`` with its problems, the exit
code is 3, and the filter refuses to apply it. Example::

    imuflow import femur.csv tibia.csv -o knee.mcap --name femur=thigh --name tibia=shank
    imuflow calibrate knee.mcap --chain configs/chains/knee.yaml -o knee-calibration.yaml
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.calibration import Calibration, CalibrationError, write_calibration
from pipeline.calibration.session_input import calibrate_session
from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.runtime.errors import ConfigError, ImuflowError

EXIT_POOR = 3
REPO = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("source", type=Path, help="session file (.mcap) holding the procedure")
    p.add_argument("-o", "--output", type=Path, required=True, help="calibration file (.yaml)")
    p.add_argument("--chain", type=Path, default=Path("configs/chains/knee.yaml"),
                   help="chain file naming the IMU sites (default configs/chains/knee.yaml)")
    p.add_argument("--static", metavar="T0:T1",
                   help="seconds from the start holding the neutral pose (default: detect)")
    p.add_argument("--functional", metavar="T2:T3",
                   help="seconds from the start with the joint motion (default: all motion)")
    p.add_argument("--rate-hz", type=float, default=100.0,
                   help="resampling rate for the estimation, Hz (default 100)")


def run(args: argparse.Namespace) -> int:
    """Calibrate, write the file, print per sensor what was found; 3 when poor."""
    if args.source.suffix.lower() in (".yaml", ".yml"):
        raise ImuflowError(f"{args.source}: live calibration from a graph is not available yet; "
                           "record the procedure (`imuflow record CONFIG -o cal.mcap`) and "
                           "calibrate from the recording")
    chain_path = args.chain
    if not chain_path.exists() and not chain_path.is_absolute() and (REPO / chain_path).exists():
        chain_path = REPO / chain_path  # the shipped chains, from any working directory
    try:
        chain = load_chain(chain_path)
    except (ChainError, OSError) as exc:
        raise ConfigError(f"chain: {exc}", file=str(args.chain)) from None
    try:
        cal = calibrate_session(args.source, chain, args.rate_hz, args.static, args.functional,
                                chain_name=str(args.chain))
    except (ValueError, CalibrationError) as exc:
        raise ImuflowError(f"calibrate: {exc}") from None
    write_calibration(cal, args.output)
    print("\n".join(report(cal)))
    if not cal.ok:
        print(f"wrote {args.output} (marked poor: the filter will not apply it)")
        return EXIT_POOR
    print(f"wrote {args.output}")
    return 0


def report(cal: Calibration) -> list[str]:
    """Lines for the terminal: the phases, each sensor's rotation and quality, problems."""
    lines = [f"static pose {cal.static[0]:.2f}-{cal.static[1]:.2f} s, functional motion "
             f"{cal.functional[0]:.2f}-{cal.functional[1]:.2f} s"]
    for s in cal.sensors.values():
        q = ", ".join(f"{x:+.4f}" for x in s.rotation)
        lines.append(f"  {s.imu:<10} {s.method:<13} rotation [{q}]  " + ", ".join(
            f"{k} {v:.3g}" for k, v in s.quality.items()))
    return lines + [f"POOR: {p}" for p in cal.problems()]
