"""Exception hierarchy: one base class, a few leaves that say what went wrong."""

from __future__ import annotations


class ImuflowError(Exception):
    """Base class of every error imuflow raises on purpose."""


class ConfigError(ImuflowError):
    """A graph, chain or parameter file is invalid; the message names file, line, key and fix."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None) -> None:
        self.file, self.line, self.key = file, line, key
        where = ""
        if file:
            where = f"{file}:{line}: " if line else f"{file}: "
        super().__init__(f"{where}{message}")
        self.bare_message = message


class MessageError(ImuflowError):
    """A bus message is malformed: wrong schema version, bad header, payload size mismatch."""


class DeviceLost(ImuflowError):
    """A sensor that was streaming disconnected."""


class DeviceTimeout(ImuflowError):
    """A sensor did not answer within the allowed time."""


class ModelRejected(ImuflowError):
    """A model does not fit the graph or is not a valid model file; the old model keeps running."""


class SessionFileError(ImuflowError):
    """A session file cannot be read: not MCAP, not an imuflow session, or corrupt."""


class RecordingError(ImuflowError):
    """A session file cannot be created or written (path, permission, full disk)."""


class UnsafeRunFolder(ImuflowError):
    """A runs folder or run folder is owned by another user or writable by others: not used."""
