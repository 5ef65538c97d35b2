"""Graph configs (``configs/*.yaml``): load, check and describe a pipeline graph.

Every error names the file, the line, the node and the key, and says what was
expected. See ``configs/README.md`` for the format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.runtime.bus import check_endpoint, is_remote
from pipeline.runtime.config_yaml import LineDict, load_yaml
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.params import build_params
from pipeline.runtime.ports import QueuePolicy
from pipeline.runtime.registry import resolve
from pipeline.runtime.run_dir import check_run_name
from pipeline.runtime.sensor_check import check_sensors

_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_TOP_KEYS = {"version", "name", "description", "chain", "nodes", "model_dirs",
             "direct_groups", "realtime_groups", "sensors"}
_NODE_KEYS = {"id", "kind", "params", "inputs", "outputs", "group", "endpoint", "allow_remote",
              "curve", "restart"}
_EDGE_KEYS = {"source", "queue_size", "queue_policy"}
RESTART_POLICIES = ("on-failure", "never")


@dataclass(frozen=True)
class EdgeSpec:
    """One wired input: ``source`` is ``node/topic``."""

    source: str
    policy: QueuePolicy = QueuePolicy.LOSSLESS
    queue_size: int = 4

    @property
    def node(self) -> str:
        """Id of the publishing node."""
        return self.source.split("/", 1)[0]


@dataclass(frozen=True)
class NodeSpec:
    """One node of a graph, checked against its class."""

    id: str
    kind: str
    params: dict
    inputs: dict[str, list[EdgeSpec]]
    outputs: list[str]
    group: str
    endpoint: str | None = None
    allow_remote: bool = False
    restart: str = "on-failure"
    curve: dict[str, str] | None = None  # {secret: key_secret file, authorized: folder}
    line: int = 0
    input_lines: dict[str, int] = field(default_factory=dict)  # port -> line of its source


@dataclass(frozen=True)
class GraphSpec:
    """A checked graph: nodes in a topological order (sources first)."""

    file: Path
    name: str
    nodes: list[NodeSpec]
    chain: Path | None = None
    model_dirs: tuple[Path, ...] = (Path("models"),)
    description: str = ""
    groups: dict[str, list[str]] = field(default_factory=dict)
    direct_groups: frozenset[str] = frozenset()  # groups whose nodes call each other directly
    realtime_groups: frozenset[str] = frozenset()  # groups whose threads run under SCHED_FIFO
    sensors: dict[str, str] = field(default_factory=dict)  # sensor id/address/name -> IMU site

    def node(self, node_id: str) -> NodeSpec:
        """The node with id ``node_id``."""
        return next(n for n in self.nodes if n.id == node_id)

    def direct_edge(self, consumer: NodeSpec, edge: EdgeSpec) -> bool:
        """True when ``edge`` into ``consumer`` is a direct call, not a bus message.

        That is when both nodes are in the same group, the group is listed in
        ``direct_groups``, the edge is lossless and neither node needs the main thread (GUI).
        """
        src = self.node(edge.node)
        return (consumer.group in self.direct_groups and src.group == consumer.group
                and edge.policy is QueuePolicy.LOSSLESS
                and not resolve(consumer.kind).main_thread and not resolve(src.kind).main_thread)

    def subscribers(self, source: str) -> int:
        """How many input edges read ``node/topic``."""
        return sum(e.source == source for n in self.nodes for es in n.inputs.values() for e in es)


def load_graph(path: str | Path, *, check_sensor_names: bool = True) -> GraphSpec:
    """Load and check a graph config; raise ConfigError naming file, line and key.

    ``check_sensor_names=False`` leaves out the sensor check (:func:`check_sensors`), for
    callers that change the graph before running it (``imuflow track``) and check then.
    """
    path = Path(path)
    doc = load_yaml(path)
    f = str(path)
    if not isinstance(doc, dict):
        raise ConfigError("a graph config must be a mapping with 'version' and 'nodes'", file=f)
    _unknown_keys(doc, _TOP_KEYS, f, "")
    if doc.get("version") != 1:
        raise ConfigError(f"'version' must be 1, got {doc.get('version')!r}", file=f,
                          line=doc.lines.get("version", doc.line), key="version")
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ConfigError("'nodes' must be a non-empty list of nodes", file=f,
                          line=doc.lines.get("nodes", doc.line), key="nodes")
    chain = _path_field(doc, "chain", path)
    model_dirs = tuple(_resolve_rel(p, path) for p in _path_list(doc, "model_dirs", f,
                                                                   default=["models"]))
    name = _run_name(doc, path)
    specs: dict[str, NodeSpec] = {}
    classes = {}
    for raw in raw_nodes:
        spec, cls = _node_spec(raw, f, specs)
        specs[spec.id] = spec
        classes[spec.id] = cls
    for spec in specs.values():
        _check_inputs(spec, classes[spec.id], specs, f)
    order = _topological(specs, f)
    groups: dict[str, list[str]] = {}
    for spec in order:
        groups.setdefault(spec.group, []).append(spec.id)
    graph = GraphSpec(file=path, name=name, nodes=order, chain=chain,
                      model_dirs=model_dirs, description=str(doc.get("description", "")),
                      groups=groups, direct_groups=_group_list(doc, "direct_groups", groups, f),
                      realtime_groups=_group_list(doc, "realtime_groups", groups, f),
                      sensors=_sensor_map(doc, f))
    if check_sensor_names:
        check_sensors(graph)
    return graph


def _path_list(doc: LineDict, key: str, f: str, *, default: list[str]) -> list[Path]:
    """A top-level list of paths; a single path string is a list of one (never split)."""
    value = doc.get(key, default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"'{key}' must be a folder path or a list of folder paths, e.g. "
                          f"[models, /data/models], got {value!r}", file=f,
                          line=doc.lines.get(key, doc.line), key=key)
    return [Path(v) for v in value]


def _run_name(doc: LineDict, path: Path) -> str:
    """The graph's ``name`` (default: the file's stem), a plain name that names its run folder."""
    value = doc.get("name", path.stem)
    if "name" not in doc:
        value = re.sub(r"\.\.+", ".", re.sub(r"[^A-Za-z0-9_.-]", "_", value))[:64].strip(".")
        value = value or "graph"
    try:
        return check_run_name(value)
    except ValueError as exc:
        raise ConfigError(f"'name': {exc}", file=str(path), line=doc.lines.get("name", doc.line),
                          key="name") from None


def _sensor_map(doc: LineDict, f: str) -> dict[str, str]:
    """The top-level ``sensors:`` map (sensor id, address or recorded name -> IMU site)."""
    value = doc.get("sensors", {})
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
        raise ConfigError("'sensors' must map sensor ids, addresses or recorded names to the "
                          "chain's IMU sites, e.g. `sensors: {femur: thigh, \"D4:22:CD:00:1A:2B\": "
                          "shank}`", file=f, line=doc.lines.get("sensors", doc.line), key="sensors")
    sites = list(value.values())
    twice = sorted({s for s in sites if sites.count(s) > 1})
    if twice:
        raise ConfigError(f"'sensors' maps more than one sensor to {twice}; each IMU site takes "
                          "one sensor", file=f, line=doc.lines.get("sensors", doc.line),
                          key="sensors")
    return dict(value)


def _group_list(doc: LineDict, key: str, groups: dict[str, list[str]], f: str) -> frozenset[str]:
    """A top-level list of group names (``direct_groups``, ``realtime_groups``), checked."""
    value = doc.get(key, [])
    line = doc.lines.get(key)
    if not isinstance(value, list) or not all(isinstance(g, str) for g in value):
        raise ConfigError(f"'{key}' must be a list of group names, e.g. [live]", file=f,
                          line=line, key=key)
    for g in value:
        if g not in groups:
            raise ConfigError(f"'{key}': no node is in group '{g}'; groups: "
                              f"{', '.join(sorted(groups))}", file=f, line=line, key=key)
    return frozenset(value)


def _resolve_rel(p: Path, config: Path) -> Path:
    if p.is_absolute() or p.exists():
        return p
    for base in (config.parent, config.parent.parent):
        if (base / p).exists():
            return base / p
    return p


def _path_field(doc: LineDict, key: str, config: Path) -> Path | None:
    if key not in doc:
        return None
    value = doc[key]
    if not isinstance(value, str):
        raise ConfigError(f"'{key}' must be a path string", file=str(config),
                          line=doc.lines[key], key=key)
    p = _resolve_rel(Path(value), config)
    if not p.exists():
        raise ConfigError(f"'{key}': file '{value}' not found (relative paths are looked up "
                          "from the working directory, the config's folder and its parent)",
                          file=str(config), line=doc.lines[key], key=key)
    return p


def _unknown_keys(d: LineDict, allowed: set[str], f: str, where: str) -> None:
    for key in d:
        if key not in allowed:
            raise ConfigError(f"{where}unknown key '{key}'; allowed: {', '.join(sorted(allowed))}",
                              file=f, line=d.lines.get(key, d.line), key=str(key))


def _node_spec(raw: Any, f: str, seen: dict[str, NodeSpec]) -> tuple[NodeSpec, type]:
    if not isinstance(raw, dict):
        raise ConfigError("each entry of 'nodes' must be a mapping with 'id' and 'kind'", file=f)
    line = raw.line
    node_id = raw.get("id")
    if not isinstance(node_id, str) or not _ID.match(node_id):
        raise ConfigError(f"node id must be snake_case (a-z, 0-9, _), got {node_id!r}", file=f,
                          line=raw.lines.get("id", line), key="id")
    where = f"node '{node_id}': "
    if node_id in seen:
        raise ConfigError(f"{where}duplicate id (first defined on line {seen[node_id].line})",
                          file=f, line=raw.lines.get("id", line), key="id")
    _unknown_keys(raw, _NODE_KEYS, f, where)
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"{where}'kind' is required: a dotted class path such as "
                          "nodes.sync.Sync", file=f, line=line, key="kind")
    try:
        cls = resolve(kind)
    except ConfigError as exc:
        raise ConfigError(where + exc.bare_message, file=f, line=raw.lines.get("kind"),
                          key="kind") from None
    params = raw.get("params") or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{where}'params' must be a mapping", file=f,
                          line=raw.lines.get("params"), key="params")
    build_params(cls.Params, params, where=where, file=f,
                 lines=getattr(params, "lines", None))
    outputs = raw.get("outputs", list(cls.outputs))
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise ConfigError(f"{where}'outputs' must be a list of topic names", file=f,
                          line=raw.lines.get("outputs"), key="outputs")
    for topic in outputs:
        if topic not in cls.outputs and "*" not in cls.outputs:
            raise ConfigError(f"{where}{kind} has no output '{topic}'; its outputs: "
                              f"{', '.join(cls.outputs) or '(none)'}", file=f,
                              line=raw.lines.get("outputs"), key="outputs")
    restart = raw.get("restart", "on-failure")
    if restart not in RESTART_POLICIES:
        raise ConfigError(f"{where}'restart' must be one of {RESTART_POLICIES}", file=f,
                          line=raw.lines.get("restart"), key="restart")
    group = raw.get("group", node_id)
    if not isinstance(group, str) or not _ID.match(group):
        raise ConfigError(f"{where}'group' must be snake_case", file=f,
                          line=raw.lines.get("group"), key="group")
    endpoint = raw.get("endpoint")
    if endpoint is not None and not (isinstance(endpoint, str)
                                     and endpoint.startswith("tcp://")):
        raise ConfigError(f"{where}'endpoint' must be tcp://HOST:PORT", file=f,
                          line=raw.lines.get("endpoint"), key="endpoint")
    curve = _curve(raw, f, where)
    if endpoint is not None:
        try:
            check_endpoint(endpoint, allow_remote=bool(raw.get("allow_remote", False)))
        except ConfigError as exc:
            raise ConfigError(where + exc.bare_message, file=f, line=raw.lines.get("endpoint"),
                              key="endpoint") from None
        if is_remote(endpoint) and curve is None:
            raise ConfigError(f"{where}endpoint {endpoint} is reachable from other hosts: add "
                              "`curve: {secret: KEYS/server.key_secret, authorized: KEYS/authorized}` "
                              "(create keys with `imuflow keys KEYS`)", file=f,
                              line=raw.lines.get("endpoint"), key="curve")
    spec = NodeSpec(id=node_id, kind=kind, params=_plain(params), inputs=_edges(raw, cls, f, where),
                    outputs=list(outputs), group=group, endpoint=endpoint,
                    allow_remote=bool(raw.get("allow_remote", False)), restart=restart,
                    curve=curve, line=line,
                    input_lines=dict(getattr(raw.get("inputs"), "lines", {})))
    return spec, cls


def _curve(raw: LineDict, f: str, where: str) -> dict[str, str] | None:
    value = raw.get("curve")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"secret", "authorized"} or not all(
            isinstance(v, str) for v in value.values()):
        raise ConfigError(f"{where}'curve' must be {{secret: FILE.key_secret, authorized: FOLDER}}",
                          file=f, line=raw.lines.get("curve"), key="curve")
    return {k: str(_resolve_rel(Path(v), Path(f))) for k, v in value.items()}


def _edges(raw: LineDict, cls: type, f: str, where: str) -> dict[str, list[EdgeSpec]]:
    inputs = raw.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise ConfigError(f"{where}'inputs' must map port names to sources (node/topic)",
                          file=f, line=raw.lines.get("inputs"), key="inputs")
    out: dict[str, list[EdgeSpec]] = {}
    for port, value in inputs.items():
        line = inputs.lines.get(port)
        if port not in cls.inputs:
            raise ConfigError(f"{where}unknown input port '{port}'; ports: "
                              f"{', '.join(cls.inputs) or '(none)'}", file=f, line=line, key=port)
        decl = cls.inputs[port]
        items = value if isinstance(value, list) else [value]
        if len(items) > 1 and not decl.many:
            raise ConfigError(f"{where}input '{port}' takes one source, got {len(items)}",
                              file=f, line=line, key=port)
        out[port] = [_edge(item, decl, f, line, f"{where}input '{port}': ") for item in items]
    for port, decl in cls.inputs.items():
        if decl.required and port not in out:
            raise ConfigError(f"{where}input '{port}' must be wired (accepts "
                              f"{', '.join(decl.accepts)})", file=f, line=raw.line, key="inputs")
    return out


def _edge(item: Any, decl: Any, f: str, line: int | None, where: str) -> EdgeSpec:
    if isinstance(item, str):
        item = {"source": item}
    if not isinstance(item, dict) or not isinstance(item.get("source"), str):
        raise ConfigError(f"{where}each source must be 'node/topic' or a mapping with 'source'",
                          file=f, line=line, key="source")
    if hasattr(item, "lines"):
        _unknown_keys(item, _EDGE_KEYS, f, where)
    source = item["source"]
    if source.count("/") != 1 or not all(source.split("/")):
        raise ConfigError(f"{where}source '{source}' must be 'node/topic'", file=f, line=line,
                          key="source")
    try:
        policy = QueuePolicy(item.get("queue_policy", decl.policy))
    except ValueError:
        raise ConfigError(f"{where}queue_policy must be one of "
                          f"{[p.value for p in QueuePolicy]}", file=f, line=line,
                          key="queue_policy") from None
    size = item.get("queue_size", decl.queue_size)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ConfigError(f"{where}queue_size must be a positive integer", file=f, line=line,
                          key="queue_size")
    return EdgeSpec(source=source, policy=policy, queue_size=size)


def _check_inputs(spec: NodeSpec, cls: type, specs: dict[str, NodeSpec], f: str) -> None:
    where = f"node '{spec.id}': "
    for port, edges in spec.inputs.items():
        line = spec.input_lines.get(port, spec.line)
        for edge in edges:
            src_node, topic = edge.source.split("/")
            if src_node not in specs:
                raise ConfigError(f"{where}input '{port}' reads '{edge.source}', but there is no "
                                  f"node '{src_node}'", file=f, line=line, key=port)
            if topic not in specs[src_node].outputs:
                raise ConfigError(f"{where}input '{port}' reads '{edge.source}', but node "
                                  f"'{src_node}' publishes only "
                                  f"{', '.join(specs[src_node].outputs) or 'nothing'}",
                                  file=f, line=line, key=port)
            if not cls.inputs[port].takes(topic):
                raise ConfigError(f"{where}input '{port}' accepts "
                                  f"{', '.join(cls.inputs[port].accepts)}, not '{topic}'",
                                  file=f, line=line, key=port)


def _topological(specs: dict[str, NodeSpec], f: str) -> list[NodeSpec]:
    deps = {nid: {e.node for es in s.inputs.values() for e in es} for nid, s in specs.items()}
    order: list[NodeSpec] = []
    state: dict[str, int] = {}

    def visit(nid: str, path: list[str]) -> None:
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            cycle = " -> ".join(path[path.index(nid):] + [nid])
            raise ConfigError(f"the graph has a cycle: {cycle}; graphs must be acyclic",
                              file=f, line=specs[nid].line, key="inputs")
        state[nid] = 1
        for dep in sorted(deps[nid]):
            visit(dep, path + [nid])
        state[nid] = 2
        order.append(specs[nid])

    for nid in specs:
        visit(nid, [])
    return order


def _plain(value: Any) -> Any:
    """Strip line-tracking wrappers so a spec is plain JSON-able data."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
