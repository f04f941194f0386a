"""Background threads run below the process's CPU priority, so the RunEngine comes first.

The callback's worker, the frame compression threads and the upload threads call
:func:`lower_this_thread` when they start. On Linux each thread has its own nice value; threads
nicer than the main thread let the RunEngine's thread take a core the moment it is runnable,
and where they have a core to themselves (an idle computer) nothing changes. Other systems have
no per-thread nice value: the call does nothing there.

It is off by default. Lowered threads cannot slow a RunEngine that reads frames faster than
they can be compressed, so the work queue sheds frames (counted) where level threads would have
slowed the run and kept them; ``docs/performance.md`` has the measured trade-off.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = [
    "DEFAULT_THREAD_NICE",
    "MAX_NICE",
    "check_thread_nice",
    "lower_this_thread",
    "resolve_thread_nice",
]

log = logging.getLogger(__name__)

#: Steps of nice below the process that background threads take by default: none.
DEFAULT_THREAD_NICE = 0
#: The lowest priority Linux has.
MAX_NICE = 19


def check_thread_nice(value: object) -> int:
    """``value`` as a thread nice increment, 0 (off) to 19; a ValueError names the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NICE:
        raise ValueError(f"thread_nice must be an integer from 0 to {MAX_NICE}; got {value!r}")
    return value


def resolve_thread_nice(explicit: int | None, configured: int | None) -> int:
    """The argument, else the setting (``ATOMSCALE_THREAD_NICE``), else the default; checked."""
    for value in (explicit, configured):
        if value is not None:
            return check_thread_nice(value)
    return DEFAULT_THREAD_NICE


def lower_this_thread(nice: int) -> int | None:
    """Run the calling thread ``nice`` steps below the process's main thread (at most 19).

    Returns the thread's nice value now, or None where it has none of its own (not Linux, or
    ``nice`` 0). Never raises a priority: a thread already lower (inherited from the thread that
    started it) stays as it is.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return None
    tid = threading.get_native_id()
    try:
        target = min(MAX_NICE, os.getpriority(os.PRIO_PROCESS, os.getpid()) + nice)
        if os.getpriority(os.PRIO_PROCESS, tid) < target:
            os.setpriority(os.PRIO_PROCESS, tid, target)
        return os.getpriority(os.PRIO_PROCESS, tid)
    except OSError as exc:  # a sandbox refusing setpriority: the thread keeps its priority
        log.debug(
            "could not lower the priority of thread %s: %s", threading.current_thread().name, exc
        )
        return None
