"""Importers: vendor exports and public datasets as per-sensor raw arrays and session files."""

from drivers.importers.imported_stream import ORIENTATION_TRUTH as ORIENTATION_TRUTH
from drivers.importers.imported_stream import ORIENTATION_TRUTH_DTYPE as ORIENTATION_TRUTH_DTYPE
from drivers.importers.imported_stream import ImportedStream as ImportedStream
from drivers.importers.imported_stream import ImportFileError as ImportFileError
from drivers.importers.imported_stream import write_session as write_session
from drivers.importers.session_import import import_session as import_session
from drivers.importers.session_import import read_sources as read_sources
