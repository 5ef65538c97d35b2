"""``imuflow validate CONFIG``: check a graph config without running it.

Besides the graph itself (keys, types, ranges, wiring, sensor names) the files it
names are read: the chain, each node's model, session or chain (``Node.check_files``).
Errors name the file, the line and the node; the exit status is 2.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.kinematics.chain import ChainError, load_chain
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import GraphSpec, load_graph
from pipeline.runtime.node import GraphContext
from pipeline.runtime.params import build_params
from pipeline.runtime.registry import resolve


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Declare the command's arguments."""
    p.add_argument("config", nargs="+", help="graph YAML file(s), e.g. configs/default.yaml")


def check_files(graph: GraphSpec) -> None:
    """Read the chain and every node's input files; ConfigError naming file, line and node."""
    f = str(graph.file)
    if graph.chain is not None:
        try:
            load_chain(graph.chain)
        except (ChainError, OSError, ValueError) as exc:
            raise ConfigError(f"'chain': {_one_line(exc)}", file=f, key="chain") from None
    for spec in graph.nodes:
        cls = resolve(spec.kind)
        params = build_params(cls.Params, spec.params, where=f"node '{spec.id}': ", file=f)
        context = GraphContext(config_file=graph.file, chain_file=graph.chain,
                               model_dirs=graph.model_dirs, sensors=dict(graph.sensors),
                               sources={p: [e.source for e in es]
                                        for p, es in spec.inputs.items()})
        try:
            cls.check_files(params, context)
        except (ImuflowError, OSError, ValueError) as exc:
            msg = _one_line(exc.bare_message if isinstance(exc, ConfigError) else exc)
            raise ConfigError(f"node '{spec.id}': {msg}", file=f, line=spec.line) from None


def _one_line(message: object) -> str:
    """An error message on one line (YAML parser messages span several)."""
    return " ".join(str(message).split())


def run(args: argparse.Namespace) -> int:
    """Load and check each config; print a summary line per config."""
    for path in args.config:
        g = load_graph(path)
        check_files(g)
        print(f"{Path(path)}: ok: graph '{g.name}', {len(g.nodes)} nodes in {len(g.groups)} "
              f"process(es): {' -> '.join(n.id for n in g.nodes)}")
    return 0
