"""Typed node parameters: a frozen dataclass per node, checked against the YAML ``params``."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from pipeline.runtime.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class NoParams:
    """A node without parameters."""


def build_params(cls: type, raw: dict | None, *, where: str = "",
                 lines: dict[str, int] | None = None, file: str | None = None) -> Any:
    """Validate ``raw`` against dataclass ``cls`` and return an instance.

    Raises ConfigError naming the file, line and key for unknown keys, missing
    required keys and wrong types.
    """
    raw = dict(raw or {})
    lines = lines or {}
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            known = ", ".join(sorted(fields)) or "(none)"
            raise ConfigError(f"{where}unknown parameter '{key}'; known parameters: {known}",
                              file=file, line=lines.get(key), key=key)
    values = {}
    for name, f in fields.items():
        if name not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}missing required parameter '{name}' "
                                  f"({type_name(hints[name])})", file=file, key=name)
            continue
        try:
            values[name] = coerce(raw[name], hints[name])
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}parameter '{name}': expected {type_name(hints[name])}, "
                              f"got {raw[name]!r} ({exc})",
                              file=file, line=lines.get(name), key=name) from None
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:  # __post_init__ range checks
        raise ConfigError(f"{where}{exc}", file=file) from None


def coerce(value: Any, hint: Any) -> Any:
    """Convert a YAML value to ``hint``; raise TypeError/ValueError if it does not fit."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (TypeError, ValueError) as exc:
                errors.append(str(exc))
        raise TypeError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ValueError(f"must be one of {list(args)}")
        return value
    if origin in (list, tuple, typing.Sequence):
        if isinstance(value, (str, Path)) and args and args[0] is Path and (
                origin is not tuple or args[-1] is Ellipsis):
            value = [value]  # one path, not a list of its characters
        if not isinstance(value, (list, tuple)):
            raise TypeError("not a list")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ValueError(f"need {len(args)} items")
            return tuple(coerce(v, a) for v, a in zip(value, args))
        item = args[0] if args else Any
        out = [coerce(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError("not a mapping")
        kt, vt = args or (Any, Any)
        return {coerce(k, kt): coerce(v, vt) for k, v in value.items()}
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError("not true/false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("not an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError("not a number")
        if not math.isfinite(value):
            raise ValueError("not a finite number (.nan and .inf are not accepted)")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise TypeError("not a string")
        return value
    if hint is Path:
        if not isinstance(value, (str, Path)):
            raise TypeError("not a path string")
        return Path(value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            raise ValueError(f"must be one of {[m.value for m in hint]}") from None
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise TypeError("not a mapping")
        return build_params(hint, value)
    raise TypeError(f"unsupported parameter type {hint!r}")


def type_name(hint: Any) -> str:
    """Readable name of a type hint for error messages and ``imuflow nodes``."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(type_name(a) for a in args if a is not type(None)) + (
            " or null" if type(None) in args else "")
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is not None:
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"{origin.__name__}[{inner}]"
    if isinstance(hint, type) and issubclass(hint, Enum):
        return "one of " + ", ".join(repr(m.value) for m in hint)
    return {Path: "path", float: "number", int: "integer", bool: "true/false",
            str: "string"}.get(hint, getattr(hint, "__name__", str(hint)))


def describe(cls: type) -> list[tuple[str, str, str]]:
    """(name, type, default) of each parameter, for ``imuflow nodes``."""
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "(required)"
        out.append((f.name, type_name(hints[f.name]), default))
    return out


def to_jsonable(params: Any) -> dict:
    """Parameters as a JSON-able dict (paths and enums as strings)."""
    def conv(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, Enum):
            return v.value
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return {f.name: conv(getattr(params, f.name)) for f in dataclasses.fields(params)}
