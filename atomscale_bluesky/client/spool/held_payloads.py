"""The payloads of spooled chunks, kept in memory until they are uploaded.

A chunk's payload is written with ``O_DIRECT`` (:mod:`.direct_write`), so its file is not in
the page cache: reading it back for the upload would go to the device and copy it into the
cache once more. The buffers the spool was handed (zstd's output, the shard index, a time
series body) are never changed afterwards, so the spool keeps them and the upload sends them.
Memory is bounded by a byte budget: chunks are held in the order they are spooled while it
lasts, and a chunk past it (during an outage, the later ones) or one resumed from an earlier
client is read from its file.
"""

from __future__ import annotations

import bisect
import io
import os
import threading
from collections.abc import Hashable, Sequence
from typing import Any, BinaryIO, cast

__all__ = ["HOLD_MAX_BYTES", "HeldPayloads", "PayloadReader"]

#: Default budget: about three 2 s chunks of 640x480 frames at 120 fps, which covers the
#: uploads in flight; during an outage the rest waits on disk, not in memory.
HOLD_MAX_BYTES = 128 * 1024 * 1024


class PayloadReader(io.RawIOBase):
    """A read-only, seekable file over buffers that are one payload one after another."""

    def __init__(self, parts: Sequence[Any]) -> None:
        super().__init__()
        self._parts = [memoryview(p).cast("B") for p in parts]
        self._starts: list[int] = []
        total = 0
        for part in self._parts:
            self._starts.append(total)
            total += part.nbytes
        self._size = total
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        bases = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}
        if whence not in bases:
            raise ValueError(f"invalid whence {whence!r}")
        base = bases[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes from the position (all that is left when negative or None)."""
        self._checkClosed()  # type: ignore[attr-defined]
        end = self._size if size is None or size < 0 else min(self._size, self._pos + size)
        pieces: list[memoryview] = []
        i = max(bisect.bisect_right(self._starts, self._pos) - 1, 0)
        while i < len(self._parts) and self._starts[i] < end:
            start = self._starts[i]
            pieces.append(self._parts[i][max(self._pos - start, 0) : end - start])
            i += 1
        self._pos = max(self._pos, end)
        return b"".join(pieces)

    def readinto(self, buffer: Any) -> int:
        data = self.read(memoryview(buffer).nbytes)
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


class HeldPayloads:
    """Payloads by entry key, up to ``max_bytes`` in all (thread-safe)."""

    def __init__(self, max_bytes: int = HOLD_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._held: dict[Hashable, tuple[Sequence[Any], int]] = {}
        self._bytes = 0
        self._closed = False

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        with self._lock:
            return self._bytes

    def hold(self, key: Hashable, parts: Sequence[Any], nbytes: int) -> bool:
        """Keep the payload ``parts`` (``nbytes`` long in all) for ``key`` if the budget allows."""
        with self._lock:
            if self._closed or key in self._held or self._bytes + nbytes > self.max_bytes:
                return False
            self._held[key] = (parts, nbytes)
            self._bytes += nbytes
            return True

    def reader(self, key: Hashable) -> BinaryIO | None:
        """A file over the payload held for ``key``; None when it is not held."""
        with self._lock:
            found = self._held.get(key)
        return None if found is None else cast(BinaryIO, PayloadReader(found[0]))

    def drop(self, key: Hashable) -> None:
        """Forget the payload of ``key`` (its entry is finished)."""
        with self._lock:
            found = self._held.pop(key, None)
            if found is not None:
                self._bytes -= found[1]

    def close(self) -> None:
        """Forget every payload and hold no more (the spool is closing)."""
        with self._lock:
            self._closed = True
            self._held.clear()
            self._bytes = 0
