"""Import vendor and dataset files into one imuflow session file (``imuflow import``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from drivers.importers import broad_hdf5, generic_csv, movella_dot_csv
from drivers.importers.imported_stream import ImportedStream, ImportFileError, write_session

FORMATS = ("auto", "movella_dot", "broad", "csv")
DATA_SUFFIXES = (".csv", ".hdf5", ".h5")  # what a folder given as a source contributes


def expand_sources(sources: list[str | Path]) -> list[Path]:
    """The files to import: each file as given, each folder's data files (DATA_SUFFIXES) in
    name order, as a Movella DOT export folder holds one CSV per sensor."""
    paths: list[Path] = []
    for s in map(Path, sources):
        if not s.is_dir():
            paths.append(s)
            continue
        found = sorted(p for p in s.iterdir() if p.is_file() and p.suffix.lower() in DATA_SUFFIXES)
        if not found:
            raise ValueError(f"{s}: a folder with no data files in it (looked for "
                             f"{', '.join(DATA_SUFFIXES)}); give the files themselves")
        paths += found
    return paths


def detect_format(path: Path) -> str:
    """``broad`` for HDF5, ``movella_dot`` for a DOT export, else ``csv`` (needs a mapping)."""
    if path.suffix.lower() in (".hdf5", ".h5"):
        return "broad"
    try:
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            head = [f.readline() for _ in range(movella_dot_csv.HEADER_LINES + 2)]
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot open: {exc.strerror}") from None
    if any(movella_dot_csv.is_column_header(line) for line in head):
        return "movella_dot"
    return "csv"


def read_sources(sources: list[str | Path], fmt: str = "auto", *,
                 mapping: list[str] | dict[str, str] | None = None,
                 rate_hz: float | None = None, delimiter: str = ",",
                 skip_rows: int = 0) -> list[ImportedStream]:
    """Read the files of one session (folders: their data files); all of one format."""
    paths = expand_sources(sources)
    if not paths:
        raise ValueError("nothing to import: give one or more files")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    kinds = {detect_format(p) for p in paths} if fmt == "auto" else {fmt}
    if len(kinds) > 1:
        raise ValueError(f"files of different formats ({', '.join(sorted(kinds))}); "
                         "import them separately")
    (kind,) = kinds
    if kind == "movella_dot":
        return movella_dot_csv.read_session(paths)
    if kind == "broad":
        streams: list[ImportedStream] = []
        for p in paths:
            streams += broad_hdf5.read_trial(p, name=p.stem if len(paths) > 1 else "imu")
        return streams
    if mapping is None:
        raise ValueError(f"{paths[0]}: not a known vendor format; map its columns with "
                         "--map FIELD=COLUMN[:UNIT] (e.g. --map acc_x=AccX:g) or --map-file")
    cols = generic_csv.parse_mapping(mapping)
    return [generic_csv.read_csv(p, cols, rate_hz=rate_hz, delimiter=delimiter,
                                 skip_rows=skip_rows) for p in paths]


def import_session(sources: list[str | Path], output: str | Path, fmt: str = "auto", *,
                   block: int = 1, names: dict[str, str] | None = None,
                   shifts: dict[str, float] | None = None,
                   **read_kw: object) -> tuple[Path, list[ImportedStream]]:
    """Read ``sources`` and write them to the session file ``output``; return it and the streams.

    ``names`` renames sensors (file's name -> chain IMU site name, e.g. femur -> thigh);
    ``shifts`` then moves sensors' samples later in time (name after renaming -> s).
    """
    paths = expand_sources(sources)
    streams = read_sources(paths, fmt, **read_kw)
    streams = shift_sensors(rename_sensors(streams, names or {}), shifts or {})
    path = write_session(streams, output, block=block,
                         session_meta={"sources": [str(p) for p in paths]})
    return path, streams


def rename_sensors(streams: list[ImportedStream], names: dict[str, str]) -> list[ImportedStream]:
    """Streams with sensors renamed by ``names``; ValueError naming the unknown or clashing ones."""
    have = [st.name for st in streams]
    unknown = sorted(set(names) - set(have))
    if unknown:
        raise ValueError(f"--name: no sensor {unknown} in the sources; they have "
                         f"{sorted(set(have))}")
    renamed = [names.get(n, n) for n in have]
    kinds = [(st.kind, n) for st, n in zip(streams, renamed, strict=True)]
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"--name: two sensors would share a name: {renamed}")
    return [replace(st, name=n, meta=dict(st.meta, original_name=st.name)) if n != st.name else st
            for st, n in zip(streams, renamed, strict=True)]


def shift_sensors(streams: list[ImportedStream], shifts: dict[str, float]) -> list[ImportedStream]:
    """Streams with the named sensors' ``t_host`` moved by ``shifts[name]`` s (positive: later),
    as a calibration that found two clocks apart asks; ValueError naming an unknown sensor."""
    unknown = sorted(set(shifts) - {st.name for st in streams})
    if unknown:
        raise ValueError(f"--shift: no sensor {unknown} in the sources; they have "
                         f"{sorted({st.name for st in streams})}")
    out = []
    for st in streams:
        if st.name not in shifts:
            out.append(st)
            continue
        data = st.data.copy()
        data["t_host"] += round(shifts[st.name] * 1e9)
        out.append(replace(st, data=data, meta=dict(st.meta, t_host_shift_s=shifts[st.name])))
    return out
