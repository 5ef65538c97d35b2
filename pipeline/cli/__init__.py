"""The ``imuflow`` command line: one sub-command per module in this package."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import re
import sys
from importlib.metadata import PackageNotFoundError, version

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


def plain(text: str) -> str:
    """Help text without reStructuredText markup: ``code`` -> code, `x` -> x, :role:`x` -> x."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return re.sub(r"`{1,2}([^`]+)`{1,2}", r"\1", text)


class _PlainHelp(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks; argument help without reST markup."""

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


def imuflow_version() -> str:
    """The installed package version (``unknown`` when run from a bare source tree)."""
    try:
        return version("imuflow")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="imuflow",
        description="Real-time IMU streaming pipeline: sensors -> sync -> filter -> RNN "
                    "observer -> forward kinematics -> live view.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    parser.add_argument("--version", action="version",
                        version=f"imuflow {imuflow_version()} (Python {sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in commands().items():
        module = importlib.import_module(f"pipeline.cli.{module_name}")
        help_text = plain((module.__doc__ or name).strip().splitlines()[0].split("``: ", 1)[-1])
        p = sub.add_parser(name, help=help_text, description=plain(module.__doc__ or ""),
                           formatter_class=_PlainHelp)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``imuflow`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # bare `imuflow`: what can it do?
        parser.print_help()
        return 0
    setup_logging(args.log_level)
    try:
        return int(args._run(args) or 0)
    except ImuflowError as exc:
        logging.getLogger("imuflow.cli").error("%s", exc)
        return 2
    except (LookupError, TimeoutError, RuntimeError, FileExistsError) as exc:
        logging.getLogger("imuflow.cli").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
