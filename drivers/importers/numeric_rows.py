"""Data rows of a text export parsed to numbers, naming the line of a malformed one.

A malformed row is refused, except a file's last: a recording or logger that stopped
mid-write leaves its last row cut short, and that row is skipped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from drivers.importers.imported_stream import ImportFileError

log = logging.getLogger("imuflow.importers")

Parse = Callable[[list[str]], list[float]]  # a row's fields -> its numbers; ValueError(why)


def numeric_rows(path: Path, rows: list[tuple[int, list[str]]],
                 parse: Parse) -> tuple[list[list[float]], list[int]]:
    """Each (line, fields) row through ``parse``, and the lines of those kept.

    ImportFileError ``path:line: why`` for a row ``parse`` refuses, but for the last row when
    earlier ones parsed: that one is logged and skipped."""
    values: list[list[float]] = []
    lines: list[int] = []
    for k, (line, fields) in enumerate(rows):
        try:
            values.append(parse(fields))
            lines.append(line)
        except ValueError as exc:
            if k < len(rows) - 1 or not values:
                raise ImportFileError(f"{path}:{line}: {exc}") from None
            log.warning("%s:%d: the last row is cut short (%s): skipped, as a recording that "
                        "ended mid-write leaves it", path, line, exc)
    return values, lines


def number(text: str, column: str) -> float:
    """``text`` as a float; ValueError naming ``column`` when it is none."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"column '{column}' is {text!r}, not a number") from None
