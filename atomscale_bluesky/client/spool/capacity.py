"""How many bytes the spool may hold: a byte cap and a free-disk floor, checked before each write.

With the reference's defaults and reasons: a byte cap (default min(20 GB, 10 % of free disk at
open)) and a free-disk floor (default 1 GB). A write that would break either is refused, and the
spool drops that chunk with the reason returned here.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["Capacity"]

MAX_BYTES_CEILING = 20_000_000_000
MAX_BYTES_FREE_DIVISOR = 10
DEFAULT_MIN_FREE_BYTES = 1_000_000_000

FreeSpace = Callable[[Path], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


class Capacity:
    """Bytes stored and reserved by writes under way, against the limits.

    Not thread-safe: the spool calls it under its lock.
    """

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int | None = None,
        min_free_bytes: int | None = None,
        free_space: FreeSpace | None = None,
    ) -> None:
        self.root = root
        self._free_space = free_space or disk_free
        self.min_free_bytes = DEFAULT_MIN_FREE_BYTES if min_free_bytes is None else min_free_bytes
        self.max_bytes = self._default_max_bytes() if max_bytes is None else max_bytes
        self.used = 0
        self.reserved = 0

    def _default_max_bytes(self) -> int:
        try:
            return min(MAX_BYTES_CEILING, self._free_space(self.root) // MAX_BYTES_FREE_DIVISOR)
        except OSError:
            return MAX_BYTES_CEILING

    def free_bytes(self) -> int | None:
        """Free space on the spool's disk; None when it cannot be measured."""
        try:
            return self._free_space(self.root)
        except OSError:
            return None

    def reserve(self, need: int) -> str | None:
        """Reserve ``need`` bytes for a write; the reason when the limits refuse them."""
        used = self.used + self.reserved
        if used + need > self.max_bytes:
            return f"spool is full ({used} of {self.max_bytes} bytes waiting to upload)"
        free = self.free_bytes()  # an unmeasurable disk is no reason to lose data
        if free is not None:
            free = max(free - self.reserved, 0)
            if free < need + self.min_free_bytes:
                return (
                    f"disk has {free} bytes free, and the spool leaves at least "
                    f"{self.min_free_bytes}"
                )
        self.reserved += need
        return None

    def unreserve(self, need: int) -> None:
        """A reserved write did not happen (or its entry was thrown away)."""
        self.reserved -= need

    def store(self, need: int) -> None:
        """A reserved write is now an entry on disk."""
        self.reserved -= need
        self.used += need

    def add_stored(self, nbytes: int) -> None:
        """An entry found on disk at start-up."""
        self.used += nbytes

    def release(self, nbytes: int) -> None:
        """An entry left the spool."""
        self.used -= nbytes
