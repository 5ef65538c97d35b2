"""``imuflow import SRC... -o FILE.mcap``: Movella DOT CSV, BROAD HDF5 or mapped CSV to a session.

Examples::

    imuflow import femur.csv tibia.csv -o knee.mcap          # Movella DOT exports, aligned
    imuflow import knee_tracking1/ -o knee.mcap              # a folder: its .csv/.hdf5 files
    imuflow import femur.csv tibia.csv -o knee.mcap --name femur=thigh --name tibia=shank
    imuflow import femur.csv tibia.csv -o knee.mcap --name femur=thigh --name tibia=shank \\
        --shift shank=0.118              # its samples were stamped 118 ms early
    imuflow import 02_undisturbed_slow_rotation_B.hdf5 -o broad02.mcap
    imuflow import log.csv -o log.mcap --map acc_x=AX:g --map acc_y=AY:g --map acc_z=AZ:g \\
        --map gyr_x=GX:deg/s --map gyr_y=GY:deg/s --map gyr_z=GZ:deg/s --map t_sensor=time:ms

Replay the result with ``drivers.replay.Replay`` (configs/replay.yaml tracks it,
configs/rerecord.yaml re-records it).
"""

from __future__ import annotations

import argparse
import importlib
import math

from pipeline.runtime.errors import ImuflowError

IMPORTERS = "drivers.importers"  # loaded by dotted path: the core imports no driver


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("sources", nargs="+",
                   help="files of one session, or folders of them (their .csv, .hdf5 and .h5 "
                        "files, in name order)")
    p.add_argument("-o", "--output", required=True, help="session file to write (.mcap)")
    p.add_argument("--format", default="auto", choices=["auto", "movella_dot", "broad", "csv"],
                   help="input format (default: detect)")
    p.add_argument("--map", action="append", metavar="FIELD=COLUMN[:UNIT]",
                   help="generic CSV column mapping, repeatable (e.g. acc_x=AccX:g)")
    p.add_argument("--map-file", help="YAML mapping file: columns, rate_hz, delimiter, skip_rows")
    p.add_argument("--rate-hz", type=float, help="sample rate when the CSV has no time column")
    p.add_argument("--delimiter", default=",", help="CSV delimiter (default ',')")
    p.add_argument("--skip-rows", type=int, default=0, help="lines before the CSV header row")
    p.add_argument("--name", action="append", default=[], metavar="OLD=NEW",
                   help="rename a sensor to the chain's IMU name, repeatable "
                        "(e.g. --name femur=thigh --name tibia=shank)")
    p.add_argument("--shift", action="append", default=[], metavar="NAME=SECONDS",
                   help="move a sensor's samples later in time (earlier if negative), named "
                        "after --name, e.g. --shift shank=0.118 as a calibration that found the "
                        "clocks apart asks; repeatable")
    p.add_argument("--block", type=int, default=1, help="samples per stored message (default 1)")


def parse_shifts(items: list[str]) -> dict[str, float]:
    """``--shift NAME=SECONDS`` items as {name: s}; ImuflowError naming a malformed one."""
    shifts = {}
    for item in items:
        name, _, seconds = item.partition("=")
        try:
            value = float(seconds)
        except ValueError:
            value = math.nan
        if not name.strip() or not math.isfinite(value):
            raise ImuflowError(f"--shift {item!r}: expected NAME=SECONDS (a finite number of "
                               "seconds), e.g. shank=0.118")
        shifts[name.strip()] = value
    return shifts


def run(args: argparse.Namespace) -> int:
    """Import and report what was written."""
    importers = importlib.import_module(IMPORTERS)
    generic = importlib.import_module(f"{IMPORTERS}.generic_csv")
    kw: dict = {"mapping": None, "rate_hz": args.rate_hz, "delimiter": args.delimiter,
                "skip_rows": args.skip_rows}
    if args.map_file:
        doc = generic.load_mapping_file(args.map_file)
        kw.update(mapping=doc["columns"], rate_hz=args.rate_hz or doc.get("rate_hz"),
                  delimiter=doc.get("delimiter", args.delimiter),
                  skip_rows=int(doc.get("skip_rows", args.skip_rows)))
    if args.map:
        kw["mapping"] = args.map
    names = {}
    for item in args.name:
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise importers.ImportFileError(f"--name {item!r}: expected OLD=NEW, e.g. femur=thigh")
        names[old.strip()] = new.strip()
    try:
        path, streams = importers.import_session(args.sources, args.output, args.format,
                                                 block=args.block, names=names,
                                                 shifts=parse_shifts(args.shift), **kw)
    except ValueError as exc:
        raise importers.ImportFileError(str(exc)) from None
    for s in streams:
        print(f"{s.kind}:{s.name}: {len(s.data)} samples at {s.rate_hz:.4g} Hz "
              f"({len(s.data) / s.rate_hz if s.rate_hz else 0:.1f} s)")
    print(f"wrote {path}")
    return 0
