"""``imuflow bench NAME [--json]``: the one entry point for the benchmarks in ``tools/``.

Benchmarks live in ``tools/bench_<name>.py`` (the product never imports
``tools/``); this command runs the script in a fresh interpreter and passes the
remaining arguments on.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def available() -> list[str]:
    """Names of the benchmarks found in tools/."""
    return sorted(p.stem[len("bench_"):] for p in TOOLS.glob("bench_*.py"))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("name", help=f"benchmark name; available: {', '.join(available()) or 'none'}")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    """Run ``tools/bench_<name>.py``."""
    script = TOOLS / f"bench_{args.name}.py"
    if not script.exists():
        raise LookupError(f"no benchmark '{args.name}' ({script} not found); "
                          f"available: {', '.join(available()) or 'none'}")
    rest = [a for a in args.rest if a != "--"]  # REMAINDER keeps options after NAME
    if args.json and "--json" not in rest:
        rest.insert(0, "--json")
    cmd = [sys.executable, str(script)] + rest
    return subprocess.call(cmd)
