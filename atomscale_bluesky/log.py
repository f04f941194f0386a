"""``config_atomscale_logging``: show this package's log lines, the way bluesky and ophyd do.

Every module logs to ``logging.getLogger(__name__)``, so the names follow the code
(``atomscale_bluesky.callback.intake``, ``atomscale_bluesky.client.uploader`` ...) and all sit
under the ``atomscale_bluesky`` logger. Importing the package adds no handler: a library leaves
that to the application. A session (the IPython profile, a notebook, the commands) calls
:func:`config_atomscale_logging` once, as it calls ``config_bluesky_logging`` and
``config_ophyd_logging``, to see the run summaries and upload notices at INFO.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO

__all__ = ["LOGGER_NAME", "config_atomscale_logging", "get_handler", "logger"]

LOGGER_NAME = "atomscale_bluesky"
DEFAULT_FORMAT = "[%(levelname)1.1s %(asctime)s.%(msecs)03d %(name)s] %(message)s"

logger = logging.getLogger(LOGGER_NAME)
_handler: logging.Handler | None = None  # the one this module set; replaced on each call


def _level_number(level: str | int) -> int:
    """A logging level given as a name (any case) or a number; a clear error otherwise."""
    if isinstance(level, int):
        return level
    number = logging.getLevelName(str(level).strip().upper())
    if not isinstance(number, int):
        raise ValueError(
            f"unknown logging level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return number


def config_atomscale_logging(
    level: str | int | None = None,
    file: str | os.PathLike[str] | IO[str] | None = None,
    datefmt: str = "%H:%M:%S",
    fmt: str = DEFAULT_FORMAT,
) -> logging.Handler:
    """Send the ``atomscale_bluesky`` log lines of ``level`` and above to ``file``.

    ``level`` None reads ``ATOMSCALE_LOG_LEVEL`` (default INFO); ``file`` is a path (appended
    to) or a stream, None meaning ``sys.stdout`` at the time of the call. A second call replaces
    the handler the first one added, so calling it again changes the level or the file. Returns
    the handler (already added to the logger).
    """
    global _handler
    if level is None:
        from atomscale_bluesky.settings import load_settings

        level = load_settings().log_level
    number = _level_number(level)
    if file is None or hasattr(file, "write"):
        handler: logging.Handler = logging.StreamHandler(file or sys.stdout)  # type: ignore[arg-type]
    else:
        handler = logging.FileHandler(os.fspath(file), encoding="utf-8")  # type: ignore[arg-type]
    handler.setLevel(number)
    handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
    if _handler is not None:
        logger.removeHandler(_handler)
        _handler.close()
    logger.addHandler(handler)
    logger.setLevel(number)
    _handler = handler
    return handler


def get_handler() -> logging.Handler | None:
    """The handler the last :func:`config_atomscale_logging` call added (None before any)."""
    return _handler
