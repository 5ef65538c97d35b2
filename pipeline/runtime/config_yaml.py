"""Config YAML: safe loading with line numbers and limits (size, encoding, aliases, keys).

Used for graph configs and other small YAML files users write (mapping files). Every
error is a ConfigError naming the file and, where known, the line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from pipeline.runtime.errors import ConfigError


class LineDict(dict):
    """A mapping that remembers the line of itself and of each key (1-based)."""

    line: int = 0
    lines: dict[str, int]


MAX_CONFIG_BYTES = 1 << 20  # a graph config is a few KB; more is not a config
MAX_ALIASES = 100  # YAML aliases (*name) in one file
MAX_VALUES = 100_000  # values after aliases are expanded (a "billion laughs" file has 1e9)


class _LineLoader(yaml.SafeLoader):
    """Safe YAML loader (no code execution) that records line numbers and limits aliases.

    Floats are read as YAML 1.2 does (``1.0e9``, ``1e-3`` are numbers, not strings).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        """Count aliases; too many is refused (an alias bomb would expand exponentially)."""
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise ConfigError(f"more than {MAX_ALIASES} YAML aliases (*name); write the "
                                  "values out", line=mark.line + 1)
        return super().compose_node(parent, index)


_LineLoader.yaml_implicit_resolvers = {  # own lists: SafeLoader's stay as they are
    ch: list(rs) for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_LineLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"""^(?:
    [-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X), list("-+0123456789."))


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigError(f"key {key!r} is a {type(key).__name__}, not a string; keys are "
                              f"names (quote it: '{key_node.value}')",
                              line=key_node.start_mark.line + 1, key=str(key))
        if key in out:
            raise ConfigError(f"duplicate key '{key}'", line=key_node.start_mark.line + 1,
                              key=str(key))
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file safely, keeping line numbers; errors name the file and line."""
    text = read_config_text(path)
    try:
        doc = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
        _check_size(doc)
        return doc
    except ConfigError as exc:
        raise ConfigError(exc.bare_message, file=str(path), line=exc.line, key=exc.key) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                          line=mark.line + 1 if mark else None) from None
    except RecursionError:
        raise ConfigError("nested too deeply to be a config", file=str(path)) from None


def read_config_text(path: Path) -> str:
    """A config file's text: UTF-8, at most MAX_CONFIG_BYTES; ConfigError naming file and line."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", file=str(path)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"over {MAX_CONFIG_BYTES // 1024} KB: not a config file", file=str(path))
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ConfigError("the file is UTF-16; save it as UTF-8", file=str(path), line=1)
    if b"\0" in raw:
        line = raw[:raw.index(b"\0")].count(b"\n") + 1
        raise ConfigError("binary data (a NUL byte): not a YAML text file", file=str(path),
                          line=line)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8",
                          file=str(path), line=line) from None


def _check_size(doc: Any) -> None:
    """Refuse a document that expands (through aliases) to more than MAX_VALUES values."""
    stack, n = [doc], 0
    while stack:
        v = stack.pop()
        n += 1
        if n > MAX_VALUES:
            raise ConfigError(f"the config expands to more than {MAX_VALUES} values "
                              "(YAML aliases?); write it out")
        if isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
