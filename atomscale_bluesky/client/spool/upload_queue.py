"""The entries waiting for upload, oldest first, and which of them a worker holds."""

from __future__ import annotations

import bisect
from collections.abc import Callable

from .disk_format import Entry, EntryKey

__all__ = ["UploadQueue"]


class UploadQueue:
    """Entries ordered by ``(spooled_at_ms, seq, data_id)``; claimed ones are in flight.

    Not thread-safe: the spool calls it under its lock.
    """

    def __init__(self) -> None:
        self._entries: dict[EntryKey, Entry] = {}
        self._order: list[EntryKey] = []
        self._in_flight: set[EntryKey] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, entry: Entry) -> bool:
        return entry.key in self._entries

    def oldest_ms(self) -> int | None:
        """When the oldest waiting entry was spooled (unix ms), None when nothing waits."""
        return self._order[0][0] if self._order else None

    def add(self, entry: Entry) -> None:
        self._entries[entry.key] = entry
        bisect.insort(self._order, entry.key)

    def claim_oldest(self, ready: Callable[[str], bool]) -> Entry | None:
        """The oldest entry no worker holds of a stream that is ``ready``, now held; else None."""
        for key in self._order:
            if key not in self._in_flight and ready(key[2]):
                self._in_flight.add(key)
                return self._entries[key]
        return None

    def release(self, entry: Entry) -> bool:
        """Give a held entry back to the queue; False when it has left the queue meanwhile."""
        if entry.key not in self._entries:
            return False
        self._in_flight.discard(entry.key)
        return True

    def remove(self, entry: Entry) -> bool:
        """Take an entry out of the queue; False when it already was."""
        if self._entries.pop(entry.key, None) is None:
            return False
        self._order.remove(entry.key)
        self._in_flight.discard(entry.key)
        return True

    def remove_stream(self, data_id: str) -> list[Entry]:
        """Take out every entry of a stream, held or not."""
        taken = [self._entries[key] for key in self._order if key[2] == data_id]
        for entry in taken:
            self.remove(entry)
        return taken

    def idle(self) -> list[Entry]:
        """The entries no worker holds."""
        return [e for k, e in self._entries.items() if k not in self._in_flight]
