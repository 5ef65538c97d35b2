"""What each node parameter means, read from the comments of its ``Params`` dataclass.

The project documents parameters where they are declared, as comments on the field::

    rate_hz: float = 100.0  # sensor sample rate, Hz

and sometimes in full-line comments just above it. ``imuflow nodes`` shows them; this
module reads them from the class's source (``inspect`` + ``tokenize`` + ``ast``), so the
declaration stays the one place they are written. The unit comes from the name's suffix
(``_hz``, ``_s``, ``_deg``, ...) when the comment does not state it.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import re
import textwrap
import tokenize

UNIT_SUFFIXES = {  # name suffix -> unit, per the project's naming convention (STYLE.md 1)
    "_hz": "Hz", "_s": "s", "_ms": "ms", "_us": "us", "_ns": "ns", "_m": "m", "_mm": "mm",
    "_kg": "kg", "_deg": "deg", "_rad": "rad", "_ppm": "ppm", "_ms2": "m/s^2",
    "_rad_s": "rad/s", "_deg_s": "deg/s", "_mb": "MB", "_bytes": "bytes", "_pct": "%",
}


def unit_of(name: str) -> str:
    """The unit a parameter name's suffix says ('' when it has none)."""
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return UNIT_SUFFIXES[suffix]
    return ""


def param_notes(cls: type) -> dict[str, str]:
    """Field name -> its comment, with the unit.

    A field's comment is the one after it on its line(s) plus full-line comments around it:
    a block of full-line comments above a field without its own comment is that field's;
    a block that follows a commented field and precedes another commented field (or ends
    the class) continues the field above. Fields without a comment get the unit alone, or
    nothing; a class whose source cannot be read (built at run time) gives {}.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, alone on its line)
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                alone = not tok.line[:tok.start[1]].strip()
                comments[tok.start[0]] = (tok.string.lstrip("#").strip(), alone)
        tree = ast.parse(source)
    except (tokenize.TokenError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
    spans = {}  # field -> (first line, last line); in source order
    for stmt in body:
        if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and (
                stmt.target.id in fields):
            spans[stmt.target.id] = (stmt.lineno, stmt.end_lineno)
    trailing = {name: [comments[n][0] for n in range(a, b + 1)
                       if n in comments and not comments[n][1]] for name, (a, b) in spans.items()}
    starts = {a: name for name, (a, _) in spans.items()}
    ends = {b: name for name, (_, b) in spans.items()}
    blocks: list[list[int]] = []  # runs of full-line comments
    for n in sorted(n for n, (_, alone) in comments.items() if alone):
        if blocks and blocks[-1][-1] == n - 1:
            blocks[-1].append(n)
        else:
            blocks.append([n])
    above: dict[str, list[str]] = {name: [] for name in spans}
    for block in blocks:
        text = [comments[n][0] for n in block]
        below, prev = starts.get(block[-1] + 1), ends.get(block[0] - 1)
        # a block between two commented fields continues the one above (`x = 1  # a;` then
        # `# b` then `y = 2  # c`); above an uncommented field, or after the last, likewise
        if below and not (prev and trailing[below] and trailing[prev]):
            above[below].append(" ".join(text))
        elif prev:
            trailing[prev].append(" ".join(text))
    notes = {}
    for name in spans:
        text = ""
        for part in [*above[name], *trailing[name]]:
            part = re.sub(r"\s+", " ", part).strip()
            if not part or part.startswith("noqa"):
                continue
            # a comment that ends in ; or , goes on in the next line; else a new note
            text = f"{text}{' ' if text.endswith((';', ',')) else '; '}{part}" if text else part
        unit = unit_of(name)
        said = unit == "s" and re.search(r"\bseconds?\b", text)
        if unit and not said and not re.search(
                rf"(^|[\s,(;]){re.escape(unit)}($|[\s,).;])", text):
            text = f"{text} [{unit}]" if text else f"[{unit}]"
        if text:
            notes[name] = text
    return notes
