"""Graph config loader: good configs load; each bad config names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.calibration import calibrate, write_calibration
from pipeline.cli.validate_cmd import check_files
from pipeline.kinematics.calibration_motion import simulated_procedure
from pipeline.kinematics.chain import load_chain
from pipeline.runtime.errors import ConfigError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.ports import QueuePolicy
from tests.test_recorder import synth_session

REPO = Path(__file__).resolve().parents[1]

GOOD = """\
version: 1
name: t
nodes:
  - id: src
    kind: nodes.counter.Counter
    params: {total: 10, block: 2}
  - id: mid
    kind: relay
    group: pair
    inputs: {in: src/count}
  - id: sink
    kind: nodes.sequence_check.SequenceCheck
    group: pair
    params: {report: /tmp/x.json}
    inputs:
      in: [{source: mid/out, queue_policy: drop_oldest, queue_size: 2}]
"""


def test_good_config_loads_in_topological_order(write_graph):
    g = load_graph(write_graph(GOOD))
    assert [n.id for n in g.nodes] == ["src", "mid", "sink"]
    assert g.groups == {"src": ["src"], "pair": ["mid", "sink"]}
    edge = g.node("sink").inputs["in"][0]
    assert edge.policy is QueuePolicy.DROP_OLDEST and edge.queue_size == 2
    assert g.subscribers("src/count") == 1


# files the configs' comments tell the user to make first (docs/calibration.md), made by the
# test from simulated data: a machine's /tmp is no part of the project
USER_INPUTS = {"/tmp/knee.mcap": "knee.mcap", "/tmp/knee-calibration.yaml": "knee-calibration.yaml"}


def _with_user_inputs(name: str, tmp_path: Path) -> Path:
    """configs/``name``, or where it reads USER_INPUTS a copy reading ones made in tmp_path."""
    text = (REPO / "configs" / name).read_text()
    if not any(p in text for p in USER_INPUTS):
        return REPO / "configs" / name
    synth_session(tmp_path / "knee.mcap", 2.0, sensors=("thigh", "shank"))
    chain = load_chain(REPO / "configs/chains/knee.yaml")
    acc, gyr = simulated_procedure(chain, 1, 100.0)
    write_calibration(calibrate(chain, acc, gyr, 100.0, source="sim"),
                      tmp_path / "knee-calibration.yaml")
    for user_path, made in USER_INPUTS.items():
        text = text.replace(user_path, str(tmp_path / made))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "chains").symlink_to(REPO / "configs" / "chains")
    (tmp_path / "models").symlink_to(REPO / "models")  # relative paths resolve as in the repo
    config = tmp_path / "configs" / name
    config.write_text(text)
    return config


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_shipped_configs_validate(name, tmp_path):
    """As `imuflow validate` checks them: the graph and the files it names (chain, models,
    sessions) load, and every input reads a stream an earlier node publishes."""
    g = load_graph(_with_user_inputs(name, tmp_path))
    check_files(g)
    assert g.nodes and sorted(sum(g.groups.values(), [])) == sorted(n.id for n in g.nodes)
    seen: dict[str, list[str]] = {}
    for n in g.nodes:  # topological order: sources come first
        for edges in n.inputs.values():
            for e in edges:
                topic = e.source.split("/", 1)[1]
                assert topic in seen.get(e.node, []), f"{n.id} reads {e.source} before it exists"
        seen[n.id] = list(n.outputs)


BAD = {
    "unknown kind": (GOOD.replace("kind: relay", "kind: nodes.nothing.Here"),
                     "graph.yaml:8: node 'mid': unknown kind 'nodes.nothing.Here': module "
                     "'nodes.nothing' not found"),
    "unknown alias with hint": (GOOD.replace("kind: relay", "kind: rellay"),
                                "unknown kind 'rellay'; did you mean relay"),
    "duplicate id": (GOOD.replace("id: sink", "id: mid"),
                     "graph.yaml:11: node 'mid': duplicate id (first defined on line 7)"),
    "missing topic": (GOOD.replace("inputs: {in: src/count}", "inputs: {in: src/counts}"),
                      "graph.yaml:10: node 'mid': input 'in' reads 'src/counts', but node 'src' "
                      "publishes only count"),
    "missing node": (GOOD.replace("inputs: {in: src/count}", "inputs: {in: nope/count}"),
                     "input 'in' reads 'nope/count', but there is no node 'nope'"),
    "wrong param type": (GOOD.replace("total: 10", "total: ten"),
                         "graph.yaml:6: node 'src': parameter 'total': expected integer, "
                         "got 'ten'"),
    "missing required param": (GOOD.replace("params: {report: /tmp/x.json}", "params: {}"),
                               "node 'sink': missing required parameter 'report' (path)"),
    "unknown param": (GOOD.replace("block: 2", "blok: 2"),
                      "node 'src': unknown parameter 'blok'; known parameters: block, "
                      "rate_hz, total"),
    "param out of range": (GOOD.replace("block: 2", "block: 0"), "block must be >= 1"),
    "cycle": (GOOD.replace("inputs: {in: src/count}", "inputs: {in: sink/out}").replace(
        "kind: nodes.sequence_check.SequenceCheck\n    group: pair\n    params: {report: "
        "/tmp/x.json}", "kind: relay\n    group: pair").replace(
        "in: [{source: mid/out, queue_policy: drop_oldest, queue_size: 2}]", "in: mid/out"),
        "the graph has a cycle: mid -> sink -> mid"),
    "unknown node key": (GOOD.replace("group: pair\n    inputs: {in: src/count}",
                                      "group: pair\n    input: {in: src/count}"),
                         "graph.yaml:10: node 'mid': unknown key 'input'"),
    "unknown port": (GOOD.replace("inputs: {in: src/count}", "inputs: {data: src/count}"),
                     "node 'mid': unknown input port 'data'; ports: in"),
    "unwired required port": (GOOD.replace("    inputs: {in: src/count}\n", ""),
                              "node 'mid': input 'in' must be wired"),
    "bad queue policy": (GOOD.replace("drop_oldest", "drop_newest"),
                         "queue_policy must be one of ['lossless', 'drop_oldest']"),
    "bad version": (GOOD.replace("version: 1", "version: 2"), "graph.yaml:1: 'version' must be 1"),
    "bad id": (GOOD.replace("id: src", "id: Src-1"), "node id must be snake_case"),
    "duplicate yaml key": (GOOD.replace("name: t", "name: t\nname: u"),
                           "graph.yaml:3: duplicate key 'name'"),
    "not yaml": ("version: 1\nnodes: [\n", "graph.yaml:3: not valid YAML"),
    "unknown output": (GOOD.replace("params: {total: 10, block: 2}",
                                    "params: {total: 10, block: 2}\n    outputs: [counts]"),
                       "node 'src': nodes.counter.Counter has no output 'counts'"),
    "remote endpoint": (GOOD.replace("group: pair\n    inputs: {in: src/count}",
                                     "group: pair\n    endpoint: http://x\n"
                                     "    inputs: {in: src/count}"),
                        "'endpoint' must be tcp://HOST:PORT"),
    "direct group unknown": (GOOD.replace("nodes:\n", "direct_groups: [live]\nnodes:\n", 1),
                             "graph.yaml:3: 'direct_groups': no node is in group 'live'; groups: "
                             "pair, src"),
    "direct groups not a list": (GOOD.replace("nodes:\n", "direct_groups: pair\nnodes:\n", 1),
                                 "'direct_groups' must be a list of group names"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_gives_expected_message(case, write_graph):
    text, expected = BAD[case]
    path = write_graph(text)
    with pytest.raises(ConfigError) as info:
        load_graph(path)
    message = str(info.value)
    assert expected in message, message
    assert str(path) in message  # every error names the file


def test_yaml_cannot_execute_code(write_graph):
    path = write_graph("version: 1\nnodes: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_graph(path)


def test_validate_command_reports_errors_with_exit_code(write_graph, capsys):
    from pipeline.cli import main
    assert main(["validate", str(write_graph(GOOD))]) == 0
    assert "ok: graph 't', 3 nodes in 2 process(es)" in capsys.readouterr().out
    assert main(["validate", str(write_graph(GOOD.replace("total: 10", "total: x")))]) == 2


def test_direct_edges_are_lossless_same_group_only(write_graph):
    """In a direct group, the lossless edge is a call; the drop_oldest one stays on the bus."""
    graph = load_graph(write_graph(GOOD.replace("nodes:\n", "direct_groups: [pair]\nnodes:\n", 1)))
    mid, sink = graph.node("mid"), graph.node("sink")
    assert graph.direct_groups == {"pair"}
    assert not graph.direct_edge(mid, mid.inputs["in"][0])  # src is in another group
    assert not graph.direct_edge(sink, sink.inputs["in"][0])  # drop_oldest
    text = GOOD.replace("nodes:\n", "direct_groups: [pair]\nnodes:\n", 1)
    lossless = load_graph(write_graph(text.replace("queue_policy: drop_oldest",
                                                   "queue_policy: lossless")))
    sink = lossless.node("sink")
    assert lossless.direct_edge(sink, sink.inputs["in"][0])
