"""The two ways reading external frames fails: not yet (retry) and never (lost)."""

from __future__ import annotations

__all__ = ["ExternalDataError", "ExternalNotReady"]


class ExternalDataError(Exception):
    """The external data cannot be read and never will be (missing document, no handler)."""


class ExternalNotReady(ExternalDataError):
    """The file or the frames are not there yet (still being written): retry later.

    ``missing`` says the file does not exist at all (as opposed to existing but not readable
    yet, or holding too few frames yet): only a missing file is given up during the run."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing
