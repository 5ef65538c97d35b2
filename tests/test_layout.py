"""The dependency rules of docs/architecture.md, checked by reading every import statement."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("pipeline", "nodes", "drivers")

# (package of the importing module, forbidden import prefixes, why)
RULES: list[tuple[str, tuple[str, ...], str]] = [
    ("pipeline.runtime", ("pipeline.kinematics", "pipeline.recording", "pipeline.evaluation",
                          "pipeline.cli", "nodes", "drivers", "tools"),
     "the runtime imports no other part of the product; kinds load by dotted path"),
    ("pipeline.kinematics", ("pipeline.runtime", "pipeline.recording", "pipeline.evaluation",
                             "pipeline.cli", "nodes", "drivers", "tools"),
     "kinematics imports nothing of the runtime"),
    ("pipeline.recording", ("pipeline.evaluation", "pipeline.cli", "nodes", "drivers", "tools"),
     "recording builds on the runtime only"),
    ("pipeline.evaluation", ("pipeline.cli", "nodes", "drivers", "tools"),
     "evaluation imports no node or driver"),
    ("pipeline.calibration", ("pipeline.evaluation", "pipeline.cli", "nodes", "drivers", "tools"),
     "calibration imports no node or driver"),
    ("pipeline.estimation", ("pipeline.runtime", "pipeline.recording", "pipeline.evaluation",
                             "pipeline.calibration", "pipeline.cli", "nodes", "drivers",
                             "tools"),
     "estimators build on kinematics only, so nodes and training share them"),
    ("pipeline.cli", ("nodes", "drivers", "tools"),
     "the cli loads nodes and drivers through the registry and entry points"),
    ("nodes", ("drivers", "tools", "pipeline.cli"), "nodes never import drivers"),
    ("drivers", ("nodes", "tools", "pipeline.cli"), "drivers never import nodes"),
]


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of a source file under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@functools.lru_cache(maxsize=None)  # the mutation tests re-read unchanged copies of each file
def imports_of(source: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def node_unit(module: str) -> str | None:
    """The node a module of ``nodes`` belongs to (``nodes.viewer`` and ``nodes.view`` are one)."""
    parts = module.split(".")
    if parts[0] != "nodes" or len(parts) < 2:
        return None
    return "view" if parts[1] == "viewer" else parts[1]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations(root: Path) -> list[str]:
    """Every import in the product under ``root`` that breaks a rule, as 'file:line: text'."""
    found = []
    for top in PRODUCT:
        for path in sorted((root / top).rglob("*.py")):
            mod = module_name(path, root)
            where = path.relative_to(root)
            for line, target in imports_of(path.read_text(encoding="utf-8")):
                for owner, forbidden, why in RULES:
                    if _within(mod, owner) and any(_within(target, f) for f in forbidden):
                        found.append(f"{where}:{line}: imports {target} ({why})")
                unit, other = node_unit(mod), node_unit(target)
                if unit and other and unit != other:
                    found.append(f"{where}:{line}: imports {target} (nodes never import another "
                                 "node; shared code belongs in pipeline/)")
    return found


def test_product_keeps_the_dependency_rules() -> None:
    assert violations(REPO) == []


def _copy_product(dst: Path) -> None:
    for top in PRODUCT:
        for path in (REPO / top).rglob("*.py"):
            target = dst / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")


@pytest.mark.parametrize("file, line, rule", [
    ("pipeline/runtime/bus.py", "from nodes.sync import Sync", "runtime"),
    ("pipeline/kinematics/fk.py", "from pipeline.runtime.errors import ConfigError", "kinematics"),
    ("pipeline/cli/devices_cmd.py", "from drivers.device_survey import survey_devices", "cli"),
    ("drivers/sim.py", "    import nodes.fk", "drivers never import nodes"),
    ("nodes/fk.py", "from drivers.replay import Replay", "nodes never import drivers"),
    ("nodes/fk.py", "from nodes.observer.fit import chain_for", "another node"),
    ("nodes/sync/sync.py", "import tools.training", "tools"),
])
def test_a_forbidden_import_is_reported(tmp_path: Path, file: str, line: str, rule: str) -> None:
    _copy_product(tmp_path)
    assert violations(tmp_path) == []
    path = tmp_path / file
    body = path.read_text(encoding="utf-8")
    if line.startswith(" "):  # nested in a function, as lazy imports are
        body += f"\n\ndef _lazy():\n{line}\n"
    else:
        body += f"\n{line}\n"
    path.write_text(body, encoding="utf-8")
    found = violations(tmp_path)
    assert len(found) == 1 and found[0].startswith(file + ":"), found
    assert rule in found[0]


def test_own_package_and_viewer_parts_are_allowed(tmp_path: Path) -> None:
    _copy_product(tmp_path)
    (tmp_path / "nodes/observer/runner.py").write_text(
        "from nodes.observer.gru_step import CompiledStep\n", encoding="utf-8")
    (tmp_path / "nodes/viewer.py").write_text("from nodes.view.pose_slot import PoseSlot\n",
                                             encoding="utf-8")
    assert violations(tmp_path) == []
