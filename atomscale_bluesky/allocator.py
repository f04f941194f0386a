"""Tune glibc's malloc for a process that moves frames: reused heap memory, one arena, flat RSS.

A streaming process allocates and frees frame-sized buffers (0.1 to a few MB: frames, their
zstd output, shard pieces, upload bodies) hundreds of times a second, from several threads.
glibc's defaults serve them badly both ways:

- Buffers above the mmap threshold (128 KiB at first) each get a fresh mapping, and the kernel
  faults in and zeroes every 4 KB page on first write: on the 2-core test machine about 4 us a
  page, 0.3 ms per 640x480 frame for each buffer of its size, half the local server's CPU.
- glibc raises that threshold whenever a mapped block is freed, after which such buffers land in
  per-thread arenas (one per thread, up to 8 per core) that fragment and never shrink: the RSS
  of a 640x480, 120 fps session climbed by hundreds of MB in minutes.

:func:`tune_allocator` fixes the threshold at ``MMAP_THRESHOLD`` (32 MiB, glibc's largest), so
every buffer below it comes from the heap and is reused, keeps up to ``TRIM_THRESHOLD`` of free
heap for the next chunk instead of returning it at once, and gives every thread the one arena
(``ARENA_MAX``), where freed buffers coalesce whichever thread freed them. The RSS then rises to
the peak working set and stays there. This is process-wide; call it where you own the process
(the CLI and the local server do, and the IPython profile), before other threads start: a thread
that already has an arena keeps it, and later threads share the arenas that exist by then.
Without the one arena, frame buffers spread over per-thread arenas and the RSS crept by about
3 MB a minute in a 120 fps soak.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = [
    "ARENA_MAX",
    "MMAP_THRESHOLD",
    "TRIM_THRESHOLD",
    "USER_SETTINGS",
    "on_glibc",
    "tune_allocator",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
MMAP_THRESHOLD = 32 * MiB  # glibc's largest on 64-bit systems
TRIM_THRESHOLD = 64 * MiB  # free heap kept for the next chunk
ARENA_MAX = 1

# mallopt parameter numbers in glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

#: Environment variables that tune glibc's malloc: when one is set, the user's choice wins.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_ARENA_MAX")


def on_glibc() -> bool:
    """Whether this process runs on Linux with glibc, the only place :func:`tune_allocator` acts."""
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError, OSError):  # no confstr, or no such name (musl)
        return False


def tune_allocator(
    mmap_threshold: int = MMAP_THRESHOLD,
    *,
    trim_threshold: int = TRIM_THRESHOLD,
    arena_max: int = ARENA_MAX,
) -> bool:
    """Set glibc's mmap threshold, trim threshold and arena limit; False where it does not apply.

    Nothing happens (False) on other C libraries or platforms, when one of ``USER_SETTINGS`` or
    a ``glibc.malloc`` tunable is in the environment (the user's choice wins), or when
    ``ATOMSCALE_TUNE_MALLOC`` is false.
    """
    settings = (
        ("mmap_threshold", _M_MMAP_THRESHOLD, mmap_threshold),
        ("trim_threshold", _M_TRIM_THRESHOLD, trim_threshold),
        ("arena_max", _M_ARENA_MAX, arena_max),
    )
    for name, _, value in settings:
        if value <= 0:
            raise ValueError(f"{name} must be a positive number; got {value}")
    from atomscale_bluesky.settings import load_settings

    if not on_glibc() or not load_settings().tune_malloc:
        return False
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(mallopt(param, int(value)) for _, param, value in settings)
    if done:
        log.debug(
            "glibc malloc: mmap threshold %d, trim threshold %d, %d arena(s)",
            mmap_threshold, trim_threshold, arena_max,
        )  # fmt: skip
    return done
