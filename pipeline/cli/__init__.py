"""The ``imuflow`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from pipeline.errors import ImuflowError
from pipeline.log_setup import setup_logging

# sub-command name -> module in pipeline.cli (each has add_arguments(parser) and run(args))
COMMANDS = {
    "run": "Run a graph config (default: the simulated demo) until Ctrl-C or its end.",
    "validate": "Check a graph config without running it.",
    "status": "Show a live table of every node's stats of a running graph.",
    "nodes": "List registered node kinds with their parameters.",
    "command": "Send a control command to a node of a running graph.",
    "bench": "Run a benchmark (bus, fk, parsers, observer, replay, viewer, e2e).",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="imuflow",
        description="Real-time IMU streaming pipeline: sensors -> sync -> filter -> RNN "
                    "observer -> forward kinematics -> live view.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"pipeline.cli.{name}_cmd")
        p = sub.add_parser(name, help=help_text, description=help_text)
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
