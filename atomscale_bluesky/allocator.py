"""Keep a streaming process's memory flat: frame-sized buffers go straight back to the system.

glibc raises its mmap threshold each time a large mmapped block is freed, so after the first
multi-megabyte chunk every frame-sized buffer (0.3-4 MB, allocated and freed by different threads
hundreds of times a second) lands in per-thread heaps that fragment and never shrink: the
process's RSS climbs by hundreds of MB over a run although its live data stays the same. Fixing
the threshold keeps buffers of ``mmap_threshold`` bytes and more in their own mappings, released
on free. This is process-wide; call it where you own the process (the CLI, the IPython profile).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

__all__ = ["DEFAULT_MMAP_THRESHOLD", "tune_allocator"]

log = logging.getLogger(__name__)

DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, held fixed
_M_MMAP_THRESHOLD = -3  # mallopt parameter number in glibc's malloc.h


def tune_allocator(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` bytes; False where it does not apply.

    Nothing happens (False) on other C libraries or platforms, when ``MALLOC_MMAP_THRESHOLD_`` is
    already in the environment (the user's choice wins), or when ``ATOMSCALE_TUNE_MALLOC`` is false.
    """
    if mmap_threshold <= 0:
        raise ValueError(f"mmap_threshold must be a positive number of bytes; got {mmap_threshold}")
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
    if done:
        log.debug("glibc mmap threshold fixed at %d bytes", mmap_threshold)
    return done
