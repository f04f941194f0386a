"""The bounded FIFO between the delivering threads and the worker (bounded in bytes of frames)."""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, TypeVar

__all__ = ["WorkQueue"]

T = TypeVar("T")


class WorkQueue(Generic[T]):
    """Data items count their bytes against ``max_bytes``; control items always go in.

    Once a wait for room times out the queue is ``shedding``: further waits give up at once until
    it has drained to half, so a worker slower than the stream costs dropped items, not a
    delivering thread paced at the worker's rate (which piles the stream up upstream, unbounded).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.shedding = False

    def try_put_data(self, item: T, nbytes: int) -> bool:
        """Queue ``item`` if its bytes fit now (an empty queue takes any item)."""
        with self._cond:
            if not self._fits(nbytes):
                return False
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()
            return True

    def wait_for_room(self, nbytes: int, deadline: float) -> bool:
        """Wait until ``nbytes`` would fit, at most until ``deadline`` (``time.monotonic``)."""
        with self._cond:
            while not self._fits(nbytes):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.shedding:
                    self.shedding = True
                    return False
                self._cond.wait(remaining)
            return True

    def _fits(self, nbytes: int) -> bool:
        return not self._bytes or self._bytes + nbytes <= self.max_bytes

    def put_control(self, item: T) -> None:
        with self._cond:
            self._items.append((item, 0))
            self._cond.notify_all()

    def get(self, timeout: float) -> T | None:
        """The oldest item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            self.shedding = self.shedding and self._bytes > self.max_bytes // 2
            self._cond.notify_all()
            return item

    def depth(self) -> tuple[int, int]:
        """Items and bytes waiting."""
        with self._cond:
            return len(self._items), self._bytes
