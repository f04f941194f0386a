"""The two ways reading external frames fails: not yet (retry) and never (lost)."""

from __future__ import annotations

__all__ = ["ExternalDataError", "ExternalNotReady"]


class ExternalDataError(Exception):
    """The external data cannot be read and never will be (missing document, no handler)."""


class ExternalNotReady(ExternalDataError):
    """The file or the frames are not there yet (still being written): retry later."""
