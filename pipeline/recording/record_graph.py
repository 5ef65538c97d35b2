"""Recording a graph: the same graph plus a recorder node on every source's outputs.

``imuflow record CONFIG -o FILE`` runs :func:`recording_graph`'s result with the
supervisor. Workers load the graph from a file, so the augmented graph is
written as YAML next to the original (``pipeline.runtime.derived_graph``).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from pipeline.runtime.derived_graph import config_document, write_derived_graph
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import GraphSpec, load_graph
from pipeline.runtime.node import Source
from pipeline.runtime.registry import resolve

RECORDER_KIND = "nodes.recorder.Recorder"


def recorded_topics(graph: GraphSpec, patterns: list[str] | None = None) -> list[str]:
    """``node/topic`` of every output of every source node, plus outputs matching ``patterns``."""
    out = []
    for spec in graph.nodes:
        is_source = issubclass(resolve(spec.kind), Source)
        for topic in spec.outputs:
            name = f"{spec.id}/{topic}"
            if is_source or any(fnmatch.fnmatchcase(name, p) for p in patterns or ()):
                out.append(name)
    return out


def write_recording_graph(config: str | Path, output: str | Path,
                          patterns: list[str] | None = None, *, compression: str = "zstd",
                          flush_s: float = 1.0) -> Path:
    """Write the graph ``config`` plus a recorder of its source outputs; return the new file."""
    config = Path(config)
    graph = load_graph(config)
    topics = recorded_topics(graph, patterns)
    if not topics:
        raise ConfigError("nothing to record: the graph has no source outputs and no output "
                          "matches --topics", file=str(config))
    doc = config_document(config)
    ids = {n.id for n in graph.nodes}
    rec_id = "recorder"
    while rec_id in ids:
        rec_id += "_"
    doc["nodes"].append({
        "id": rec_id, "kind": RECORDER_KIND, "group": rec_id, "restart": "never",
        "params": {"path": str(Path(output).expanduser().absolute()),
                   "compression": compression, "flush_s": flush_s},
        "inputs": {"in": topics}})
    doc["name"] = f"{doc.get('name', config.stem)}-record"
    return write_derived_graph(config, doc, "record")
