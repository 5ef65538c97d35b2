"""Session recordings: the MCAP session format, its writer and reader, and the record graph.

May import: :mod:`pipeline.runtime` (messages, errors, graphs) and third-party packages.
"""

from pipeline.recording.session_chunks import SessionFileError as SessionFileError
from pipeline.recording.session_reader import SessionReader as SessionReader
from pipeline.recording.session_reader import read_streams as read_streams
from pipeline.recording.session_writer import RecordingError as RecordingError
from pipeline.recording.session_writer import SessionWriter as SessionWriter
