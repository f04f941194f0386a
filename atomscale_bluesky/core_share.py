"""Keep busy background threads off one core, so a RunEngine's thread always finds one free.

On Linux each thread has its own set of allowed cores (``sched_setaffinity``). A paced
RunEngine sleeps between events; when it wakes to find every core busy with compression or a
local server, it waits for one, and the run stretches. Threads confined to all cores but one
leave that core to whatever wakes next. Compression confines itself only while it keeps up and
takes every core once groups queue behind it, so it never falls behind a fast run for it.
Elsewhere (other systems, a single allowed core) nothing changes.
"""

from __future__ import annotations

import logging
import os
import threading

__all__ = ["CoreShare", "process_cores", "process_leaves_one_core", "spare_cores"]

log = logging.getLogger(__name__)


def process_cores() -> frozenset[int]:
    """The cores the calling thread may run on (empty where the system does not say)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset()


def spare_cores(cores: frozenset[int]) -> frozenset[int]:
    """``cores`` without the lowest; empty when there are fewer than two to share."""
    return cores - {min(cores)} if len(cores) >= 2 else frozenset()


def _confine(cores: frozenset[int], tid: int = 0) -> bool:
    try:
        os.sched_setaffinity(tid, cores)
    except (AttributeError, OSError) as exc:  # a sandbox refusing it: the thread runs anywhere
        log.debug("could not set the cores of thread %s: %s", tid or threading.get_native_id(), exc)
        return False
    return True


def process_leaves_one_core() -> frozenset[int]:
    """Confine every thread of this process, and the threads they start, to all cores but one.

    For a process that only serves (the local server), including threads libraries started at
    import. Returns the cores it may use now (empty: unchanged).
    """
    spare = spare_cores(process_cores())
    if not spare:
        return frozenset()
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [0]
    return spare if all([_confine(spare, tid) for tid in tids]) else frozenset()


class CoreShare:
    """Where a pool's threads run: all cores but one while they keep up, every core when behind.

    Built on the thread that owns the pool, whose allowed cores are the ones shared.
    """

    def __init__(self) -> None:
        self.cores = process_cores()
        self.spare = spare_cores(self.cores)
        self._placed = threading.local()

    def place_this_thread(self, behind: bool) -> None:
        """Move the calling pool thread to every core (``behind``) or to all but one."""
        if not self.spare:
            return
        want = self.cores if behind else self.spare
        if getattr(self._placed, "cores", None) == want:
            return
        if _confine(want):
            self._placed.cores = want
        else:
            self.spare = frozenset()
