"""Keep a streaming process's memory flat: frame-sized buffers go straight back to the system.

glibc raises its mmap threshold each time a large mmapped block is freed, so after the first
multi-megabyte chunk every frame-sized buffer (0.3-4 MB, allocated and freed by different threads
hundreds of times a second) lands in per-thread heaps that fragment and never shrink: the
process's RSS climbs by hundreds of MB over a run although its live data stays the same. Fixing
the threshold keeps buffers of ``mmap_threshold`` bytes and more in their own mappings, released
on free. This is process-wide; call it where you own the process (the CLI, the IPython profile).

The local server is the exception (``SERVER_MMAP_THRESHOLD``): every upload body is tens of MB,
copied in pieces of up to a few hundred KB by the HTTP stack, and each fresh mapping costs a page
fault per 4 KB on first touch. Those faults were half the server's CPU per frame, so the server
keeps buffers up to glibc's largest threshold in its heap, and lets the heap keep
``SERVER_TRIM_THRESHOLD`` free bytes for the next upload instead of handing them back at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = [
    "DEFAULT_MMAP_THRESHOLD",
    "SERVER_MMAP_THRESHOLD",
    "SERVER_TRIM_THRESHOLD",
    "tune_allocator",
]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, held fixed
SERVER_MMAP_THRESHOLD = 32 * MiB  # glibc's largest on 64-bit systems
SERVER_TRIM_THRESHOLD = 64 * MiB  # free heap kept for the next upload body
_M_TRIM_THRESHOLD = -1  # mallopt parameter numbers in glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def tune_allocator(
    mmap_threshold: int = DEFAULT_MMAP_THRESHOLD, *, trim_threshold: int | None = None
) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes (and, when given, the free bytes
    the heap keeps before it shrinks at ``trim_threshold``); False where it does not apply.

    Nothing happens (False) on other C libraries or platforms, when ``MALLOC_MMAP_THRESHOLD_`` is
    already in the environment (the user's choice wins), or when ``ATOMSCALE_TUNE_MALLOC`` is false.
    """
    for name, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if value is not None and value <= 0:
            raise ValueError(f"{name} must be a positive number of bytes; got {value}")
    from atomscale_bluesky.settings import load_settings

    if not sys.platform.startswith("linux") or not load_settings().tune_malloc:
        return False
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others have no such knob
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
    if done and trim_threshold is not None:
        done = bool(mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)))
    if done:
        log.debug(
            "glibc mmap threshold fixed at %d bytes, trim threshold %s",
            mmap_threshold, trim_threshold or "glibc's",
        )  # fmt: skip
    return done
