"""Logging configuration shared by the CLI and worker processes."""

from __future__ import annotations

import logging
import os

# set by `imuflow run` when it prints the status line on the terminal: nodes that would
# print one of their own (the headless viewer) log theirs at debug level instead
TERMINAL_STATUS_ENV = "IMUFLOW_TERMINAL_STATUS"


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr with time, level, process and logger name; node ids come from adapters."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)-7s pid={os.getpid()} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
