"""Bad configs: every case of the report fails `imuflow validate` with one file:line message.

`validate` runs in-process (pipeline.cli.main); the message is the CLI's error log line.
"""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from pipeline.cli import main
from pipeline.cli.validate_cmd import check_files
from pipeline.runtime.config_yaml import MAX_ALIASES
from pipeline.runtime.errors import ConfigError, ImuflowError
from pipeline.runtime.graph import load_graph
from pipeline.runtime.registry import resolve
from tests.test_recorder import synth_session

REPO = Path(__file__).resolve().parents[1]
CHAIN = REPO / "configs" / "chains" / "knee.yaml"
COUNTER = """\
version: 1
nodes:
  - id: src
    kind: nodes.counter.Counter
    params: {{total: 10, rate_hz: {rate}}}
"""


def _validate(path: Path, caplog: pytest.LogCaptureFixture) -> tuple[int, str]:
    caplog.clear()
    code = main(["validate", str(path)])
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    return code, errors[-1] if errors else ""


def _fails(path: Path, caplog, pattern: str) -> str:
    code, message = _validate(path, caplog)
    assert code == 2, message
    assert pattern in message, message
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("data, pattern", [
    (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "graph.yaml:3: binary data"),
    ("version: 1\nnodes: []\n".encode("utf-16"), "graph.yaml:1: the file is UTF-16"),
    (b"version: 1\nname: caf\xe9\n", "graph.yaml:2: not UTF-8 text (byte 0xe9)"),
])
def test_binary_utf16_and_latin1_files(tmp_path, caplog, data, pattern):
    path = tmp_path / "graph.yaml"
    path.write_bytes(data)
    _fails(path, caplog, pattern)


def test_oversized_file_is_refused(tmp_path, caplog):
    path = tmp_path / "graph.yaml"
    path.write_text("version: 1\n# " + "x" * (2 << 20) + "\n")
    _fails(path, caplog, "not a config file")


def test_alias_bomb_is_refused_at_once(tmp_path, caplog):
    """The report's 1 KB "billion laughs": validate was busy for more than 30 s."""
    lines = ["version: 1", 'a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    path = tmp_path / "graph.yaml"
    path.write_text("\n".join(lines) + "\nnodes: [*a9]\n")
    assert len(path.read_bytes()) < 1500

    def on_alarm(*_: object) -> None:
        raise AssertionError("validate hung on an alias bomb")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    try:
        _fails(path, caplog, "(YAML aliases?)")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_many_aliases_are_refused(tmp_path, caplog):
    path = tmp_path / "graph.yaml"
    path.write_text("version: 1\nx: &x 1\nl: [" + ", ".join(["*x"] * (MAX_ALIASES + 1))
                    + "]\nnodes: []\n")
    _fails(path, caplog, f"graph.yaml:3: more than {MAX_ALIASES} YAML aliases")


def test_few_aliases_that_expand_hugely_are_refused(tmp_path, caplog):
    lines = ["version: 1", "a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]"]
    for i in range(1, 6):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = tmp_path / "graph.yaml"
    path.write_text("\n".join(lines) + "\nnodes: [*a5]\n")
    _fails(path, caplog, "expands to more than")


@pytest.mark.parametrize("snippet, pattern", [
    ("    params: {1: 2}", "graph.yaml:5: key 1 is a int, not a string"),
    ("    params: {total: 10, rate_hz: 100}\n    2.5: x", "graph.yaml:6: key 2.5 is a float"),
    ("    params: {on: 1}", "key True is a bool, not a string; keys are names (quote it: 'on')"),
])
def test_non_string_keys(write_graph, caplog, snippet, pattern):
    text = COUNTER.format(rate=100).replace("    params: {total: 10, rate_hz: 100}\n", "")
    _fails(write_graph(text + snippet + "\n"), caplog, pattern)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
def test_nan_and_inf_parameters_are_refused(write_graph, caplog, value):
    _fails(write_graph(COUNTER.format(rate=value)), caplog,
           "parameter 'rate_hz': expected number")
    with pytest.raises(ConfigError, match="not a finite number"):
        load_graph(write_graph(COUNTER.format(rate=value)))


@pytest.mark.parametrize("value, expected", [("1.0e3", 1000.0), ("1e3", 1000.0),
                                             ("2.5E+2", 250.0), ("5", 5.0)])
def test_exponent_numbers_are_numbers(write_graph, value, expected):
    graph = load_graph(write_graph(COUNTER.format(rate=value)))
    assert graph.nodes[0].params["rate_hz"] == expected


def test_model_dirs_number_is_a_file_line_error(write_graph, caplog):
    text = COUNTER.format(rate=100).replace("version: 1", "version: 1\nmodel_dirs: 5")
    _fails(write_graph(text), caplog, "graph.yaml:2: 'model_dirs' must be a folder path")


def test_run_name_outside_the_runs_folder(write_graph, caplog):
    text = COUNTER.format(rate=100).replace("version: 1", "version: 1\nname: ../../x")
    _fails(write_graph(text), caplog, "graph.yaml:2: 'name': run name '../../x'")


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:0",
                                      "tcp://127.0.0.1", "tcp://127.0.0.1:http"])
def test_port_out_of_range(write_graph, caplog, endpoint):
    text = COUNTER.format(rate=100) + f"    endpoint: {endpoint}\n"
    _fails(write_graph(text), caplog, "with a port 1-65535")


# -- kinds: only known packages are imported ---------------------------------------------------

@pytest.fixture
def plugin_dir(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path with a package whose import leaves a marker file."""
    root = tmp_path / "plug"
    (root / "evilpkg").mkdir(parents=True)
    marker = tmp_path / "imported"
    (root / "evilpkg" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n")
    (root / "evilpkg" / "broken.py").write_text("def f(:\n    pass\n")
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("evilpkg")]:
        monkeypatch.delitem(sys.modules, name)
    return marker


def test_kind_from_an_unknown_package_is_refused_without_importing_it(write_graph, caplog,
                                                                      plugin_dir):
    text = COUNTER.format(rate=100).replace("nodes.counter.Counter", "evilpkg.mod.Node")
    _fails(write_graph(text), caplog, "graph.yaml:4: node 'src': kind 'evilpkg.mod.Node': "
                                      "module 'evilpkg.mod' is not in a known package")
    assert not plugin_dir.exists()


def test_kind_module_with_a_syntax_error_names_file_and_line(write_graph, caplog, plugin_dir,
                                                             monkeypatch):
    monkeypatch.setenv("IMUFLOW_KIND_PACKAGES", "tests,evilpkg")
    text = COUNTER.format(rate=100).replace("nodes.counter.Counter", "evilpkg.broken.Node")
    message = _fails(write_graph(text), caplog, "has a syntax error at ")
    assert "broken.py:1:" in message
    with pytest.raises(ConfigError, match="syntax error"):
        resolve("evilpkg.broken.Node")


# -- files the graph names: chain, model, session -----------------------------------------------

def test_malformed_and_missing_chain(write_graph, tmp_path, caplog):
    bad = tmp_path / "chain.yaml"
    bad.write_text("bodies: [1, 2\n")
    text = ("version: 1\nchain: {chain}\nnodes:\n  - id: sim\n    kind: drivers.sim.SimImu\n")
    _fails(write_graph(text.format(chain=bad)), caplog, "'chain':")
    _fails(write_graph(text.format(chain=tmp_path / "none.yaml")), caplog, "not found")
    ok = write_graph(text.format(chain=CHAIN))
    assert _validate(ok, caplog)[0] == 0
    own = write_graph(text.format(chain=CHAIN) + f"    params: {{chain: {bad}}}\n")
    _fails(own, caplog, "node 'sim':")


def test_missing_and_malformed_model(write_graph, tmp_path, caplog):
    models = tmp_path / "models"
    models.mkdir()
    (models / "m.onnx").write_bytes(b"not onnx")
    text = textwrap.dedent(f"""\
        version: 1
        chain: {CHAIN}
        model_dirs: {models}
        nodes:
          - id: sim
            kind: drivers.sim.SimImu
          - id: sync
            kind: nodes.sync.Sync
            params: {{imus: [thigh, shank]}}
            inputs: {{raw: sim/imu.raw}}
          - id: observer
            kind: nodes.observer.RnnObserver
            params: {{model: {{model}}}}
            inputs: {{frame: sync/imu.frame}}
        """)
    _fails(write_graph(text.replace("{model}", str(models / "none.onnx"))), caplog,
           "node 'observer': model")
    _fails(write_graph(text.replace("{model}", str(models / "m.onnx"))), caplog,
           "node 'observer':")


def test_missing_empty_and_foreign_session(write_graph, tmp_path, caplog):
    text = ("version: 1\nnodes:\n  - id: replay\n    kind: drivers.replay.Replay\n"
            "    params: {{path: {path}}}\n")
    _fails(write_graph(text.format(path=tmp_path / "none.mcap")), caplog, "cannot open")
    magic = tmp_path / "magic.mcap"
    magic.write_bytes(b"\x89MCAP0\r\n")
    _fails(write_graph(text.format(path=magic)), caplog, "nothing to replay")
    good = tmp_path / "good.mcap"
    synth_session(good, 0.2)
    assert _validate(write_graph(text.format(path=good)), caplog)[0] == 0


@pytest.mark.parametrize("data, pattern", [
    (b"name: x\nbodies: caf\xe9\n", "chain.yaml:2: not UTF-8 text"),
    (("x: &x 1\nl: [" + ", ".join(["*x"] * 101) + "]\n").encode(), "more than 100 aliases"),
])
def test_chain_file_limits(write_graph, tmp_path, caplog, data, pattern):
    chain = tmp_path / "chain.yaml"
    chain.write_bytes(data)
    text = f"version: 1\nchain: {chain}\nnodes:\n  - id: sim\n    kind: drivers.sim.SimImu\n"
    _fails(write_graph(text), caplog, pattern)


@given(flips=hs.lists(hs.tuples(hs.floats(0, 1, exclude_max=True),
                                hs.sampled_from(list(b" :-[]{}&*!|>'\"#,.0e9\n\xff"))),
                      min_size=1, max_size=4),
       config=hs.sampled_from(["default.yaml", "sim_truth.yaml", "serial_diy.yaml"]))
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_fuzz_damaged_configs_give_config_errors_only(tmp_path, monkeypatch, flips, config):
    """Shipped configs with random bytes changed: only ImuflowError (one line) ever escapes."""
    monkeypatch.chdir(REPO)
    bad = bytearray((REPO / "configs" / config).read_bytes())
    for where, byte in flips:
        bad[int(where * len(bad))] = byte
    path = tmp_path / "graph.yaml"
    path.write_bytes(bytes(bad))
    try:
        check_files(load_graph(path))
    except ImuflowError as exc:
        assert str(exc)
