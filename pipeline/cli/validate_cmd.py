"""``imuflow validate CONFIG``: check a graph config without running it."""

from __future__ import annotations

import argparse

from pipeline.runtime.graph import load_graph


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("config", nargs="+", help="graph YAML file(s), e.g. configs/default.yaml")


def run(args: argparse.Namespace) -> int:
    """Load and check each config; print a summary line per config."""
    for path in args.config:
        g = load_graph(path)
        print(f"{path}: ok: graph '{g.name}', {len(g.nodes)} nodes in {len(g.groups)} "
              f"process(es): {' -> '.join(n.id for n in g.nodes)}")
    return 0
