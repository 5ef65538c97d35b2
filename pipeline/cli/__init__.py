"""The ``imuflow`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from pipeline.runtime.errors import ImuflowError
from pipeline.runtime.log_setup import setup_logging

# Each sub-command is a module ``pipeline/cli/<name>_cmd.py`` with a docstring whose
# first line is the help text, ``add_arguments(parser)`` and ``run(args) -> int``.
ORDER = ["run", "validate", "status", "nodes", "command", "swap", "record", "import", "calibrate",
         "track", "eval",
         "devices", "keys", "bench"]


def commands() -> dict[str, str]:
    """Sub-command name -> module name, in help order."""
    found = {m.name[:-4]: m.name for m in pkgutil.iter_modules(__path__)
             if m.name.endswith("_cmd")}
    return dict(sorted(found.items(), key=lambda kv: (
        ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0])))


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="imuflow",
        description="Real-time IMU streaming pipeline: sensors -> sync -> filter -> RNN "
                    "observer -> forward kinematics -> live view.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in commands().items():
        module = importlib.import_module(f"pipeline.cli.{module_name}")
        help_text = (module.__doc__ or name).strip().splitlines()[0].split("``: ", 1)[-1]
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imuflow`` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args._run(args) or 0)
    except ImuflowError as exc:
        logging.getLogger("imuflow.cli").error("%s", exc)
        return 2
    except (LookupError, TimeoutError, RuntimeError) as exc:
        logging.getLogger("imuflow.cli").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
