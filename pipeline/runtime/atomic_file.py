"""Files written whole or not at all: a temporary sibling renamed into place when complete."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_text(path: str | Path) -> Iterator[TextIO]:
    """Open a text file for writing that appears at ``path`` only when the block succeeds.

    An error (or a full disk) leaves any existing file at ``path`` untouched. The new file
    gets the mode ``open()`` would give it (an existing file's mode is kept).
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        yield f


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary sibling path to write (any way, e.g. by a writer class); renamed to ``path``.

    The file appears at ``path`` only when the block succeeds; on an error the
    temporary file is removed and any existing file at ``path`` is left untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode(path: Path) -> int:
    """Mode of the file at ``path`` if there is one, else 0666 less the process umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        pass
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        umask = 0o022
    return 0o666 & ~umask
