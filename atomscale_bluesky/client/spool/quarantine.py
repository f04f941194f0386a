"""Moving damaged spool files aside instead of deleting them: ``<root>/quarantine/<folder>/``.

A file or folder found unusable at start-up (truncated, empty, corrupt, or naming no stream) is
renamed under the quarantine folder, next to a ``<name>.reason.txt`` that says why, and logged.
Nothing there is read again by the spool; a person can inspect it or delete it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["QUARANTINE_DIR", "Quarantined", "move_aside"]

log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
REASON_SUFFIX = ".reason.txt"


@dataclass(frozen=True)
class Quarantined:
    """A file or folder moved aside, where it went, and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def _free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``name.<n>`` when a file of that name was quarantined before."""
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
        target = folder / f"{name}.{n}"
        n += 1
    return target


def move_aside(root: Path, item: Path, reason: str) -> Quarantined | None:
    """Move ``item`` (a file in a stream folder, or a stream folder) under the quarantine.

    Returns the record, or None when the item could not be moved (then it stays where it is,
    still never deleted, and the failure is logged).
    """
    relative = item.relative_to(root)
    folder = root / QUARANTINE_DIR / relative.parent
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        target = _free_name(folder, relative.name)
        os.replace(item, target)
        note = target.with_name(target.name + REASON_SUFFIX)
        fd = os.open(note, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w") as fh:
            fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {relative}: {reason}\n")
    except OSError as error:
        log.error("could not move the damaged spool file %s aside (%s): %s", item, reason, error)
        return None
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    log.warning("moved damaged spool file %s to %s: %s", item, target, reason)
    return Quarantined(str(target), reason)
