"""Which IMUs flow where: checked when a graph is loaded, so a mismatch fails before start.

Each node class says which IMU names its outputs carry (:meth:`Node.sensors_out`):
sources from their files, chains or device lists (after the graph's ``sensors:`` map),
sync its ``imus``, others what their inputs carry. A node that needs a sensor that
does not arrive (sync's ``imus``, an observer model's IMUs) raises ConfigError naming
both lists and the fix, and ``imuflow run`` exits at once instead of waiting for data
that never comes. Where a source cannot know its sensors before data flows (a line
protocol board, an LSL stream) the check downstream of it is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.runtime.errors import ConfigError
from pipeline.runtime.node import GraphContext
from pipeline.runtime.params import build_params
from pipeline.runtime.registry import resolve

if TYPE_CHECKING:
    from pipeline.runtime.graph import GraphSpec, NodeSpec


def check_sensors(graph: GraphSpec) -> dict[str, list[str] | None]:
    """IMU names on each node's outputs (None: unknown before data flows); raise on a mismatch."""
    carried: dict[str, list[str] | None] = {}
    for spec in graph.nodes:  # topological: a node's inputs come first
        cls = resolve(spec.kind)
        params = build_params(cls.Params, spec.params, where=f"node '{spec.id}': ",
                              file=str(graph.file))
        context = GraphContext(config_file=graph.file, chain_file=graph.chain,
                               model_dirs=graph.model_dirs, sensors=dict(graph.sensors),
                               sources={p: [e.source for e in es]
                                        for p, es in spec.inputs.items()})
        try:
            carried[spec.id] = cls.sensors_out(params, context, _upstream(spec, carried))
        except ConfigError as exc:
            raise ConfigError(f"node '{spec.id}': {exc.bare_message}", file=str(graph.file),
                              line=spec.line, key=exc.key or "sensors") from None
    return carried


def _upstream(spec: NodeSpec, carried: dict[str, list[str] | None]) -> list[str] | None:
    """Union (in order) of the IMU names on a node's inputs; None if any input's are unknown."""
    names: list[str] = []
    for edges in spec.inputs.values():
        for e in edges:
            got = carried.get(e.node)
            if got is None:
                return None
            names.extend(n for n in got if n not in names)
    return names if spec.inputs else None


def require_sensors(what: str, needed: list[str], upstream: list[str] | None) -> None:
    """Raise ConfigError if ``needed`` names are not all in ``upstream`` (None: not known)."""
    if upstream is None:
        return
    missing = [n for n in needed if n not in upstream]
    if missing:
        hint = ("name the sensors after the chain's IMU sites with the graph's `sensors:` map "
                "(e.g. `sensors: {%s: %s}`) or `imuflow import --name OLD=NEW`"
                % (next((u for u in upstream if u not in needed), "femur"), missing[0]))
        raise ConfigError(f"{what} {needed}: {missing} not among the sensors its inputs carry "
                          f"{upstream}; {hint}", key="sensors")
