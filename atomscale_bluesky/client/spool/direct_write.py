"""Write a spooled chunk's payload with ``O_DIRECT``, past the page cache.

A buffered write copies every byte of a chunk into the page cache, the fsync then writes those
pages out, and the delete after the upload throws them away: for a 2 s chunk of 640x480 frames at
120 fps (about 42 MB) that is about 0.08 ms of CPU per frame in the writing thread on the 2-core
test machine, for pages nobody reads. With ``O_DIRECT`` the device reads the bytes straight from
the writer's memory. The payload's buffers are copied, a few MB at a time, into a page-aligned
staging buffer (``O_DIRECT`` needs the memory, the length and the file offset aligned to the
device's block), and the unaligned tail of the file is written through the page cache.

Where the system or the filesystem refuses ``O_DIRECT`` (no such flag, ``EINVAL`` on open or on
the first write), the payload is written buffered and the writer does not try again. A spool in
memory (tmpfs, ramfs), which takes ``O_DIRECT`` since Linux 6.6 but keeps the bytes in memory all
the same, is written buffered from the start. The file's bytes are the same either way.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ALIGN", "DIRECT_MIN_BYTES", "STAGE_BYTES", "DirectWriter"]

log = logging.getLogger(__name__)

#: Alignment of memory, length and offset for ``O_DIRECT``: a page, which covers 512-byte and
#: 4 KiB logical blocks.
ALIGN = 4096
#: Bytes staged per ``O_DIRECT`` write.
STAGE_BYTES = 4 * 1024 * 1024
#: Payloads smaller than this are written buffered (a time series body, a small shard).
DIRECT_MIN_BYTES = 1024 * 1024

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
#: ``statfs`` magic numbers of filesystems that live in memory (linux/magic.h).
_MEMORY_FILESYSTEMS = {0x01021994: "tmpfs", 0x858458F6: "ramfs"}


def memory_filesystem(folder: Path) -> str | None:
    """The name of the in-memory filesystem ``folder`` is on; None for any other (or unknown)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        buf = ctypes.create_string_buffer(256)  # struct statfs; f_type is its first word
        if libc.statfs(os.fsencode(folder), buf) != 0:
            return None
    except (OSError, AttributeError):
        return None
    return _MEMORY_FILESYSTEMS.get(ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF)


class DirectWriter:
    """Writes payloads to new files with ``O_DIRECT``, or buffered where that is refused.

    Thread-safe: each write takes a staging buffer from a pool (one per concurrent writer, kept
    for the next write, so the staging memory is touched once).
    """

    def __init__(self, folder: Path, *, enabled: bool = True) -> None:
        self.enabled = enabled and _O_DIRECT != 0 and memory_filesystem(folder) is None
        self._stages: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
        self._lock = threading.Lock()

    def wants(self, nbytes: int) -> bool:
        """Whether a payload of ``nbytes`` is written with ``O_DIRECT``."""
        return self.enabled and nbytes >= DIRECT_MIN_BYTES

    def write_new(
        self, path: os.PathLike[str] | str, parts: Iterable[Any], mode: int
    ) -> int | None:
        """Create ``path`` (``mode``, truncated) holding ``parts`` one after another; the fd,
        which the caller syncs and closes. None, with nothing created, when the filesystem
        refuses ``O_DIRECT`` at open: the caller writes buffered.
        """
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT, mode)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            self._refused(f"open: {error}")
            return None
        try:
            self._write_staged(fd, parts)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refused(self, why: str) -> None:
        with self._lock:
            if not self.enabled:
                return
            self.enabled = False
        log.info("the spool writes buffered: its filesystem refused O_DIRECT (%s)", why)

    def _write_staged(self, fd: int, parts: Iterable[Any]) -> None:
        try:
            stage = self._stages.get_nowait()
        except queue.Empty:
            stage = mmap.mmap(-1, STAGE_BYTES)
        try:
            _StagedFile(fd, memoryview(stage), self).write(parts)
        finally:
            self._stages.put(stage)


class _StagedFile:
    """One file being written: fills the staging buffer and writes it out whole."""

    def __init__(self, fd: int, stage: memoryview, writer: DirectWriter) -> None:
        self.fd = fd
        self.stage = stage
        self.writer = writer
        self.fill = 0
        self.direct = True

    def write(self, parts: Iterable[Any]) -> None:
        for part in parts:
            view = memoryview(part).cast("B")
            while view.nbytes:
                n = min(view.nbytes, len(self.stage) - self.fill)
                self.stage[self.fill : self.fill + n] = view[:n]
                self.fill += n
                view = view[n:]
                if self.fill == len(self.stage):
                    self._flush(self.fill)
        aligned = self.fill - self.fill % ALIGN
        if aligned:
            self._flush(aligned)
        if self.fill:
            self._buffered()
            _write_all(self.fd, self.stage[: self.fill])

    def _flush(self, n: int) -> None:
        """Write the first ``n`` staged bytes (a multiple of ALIGN) and keep what follows."""
        data = self.stage[:n]
        if self.direct:
            try:
                written = os.write(self.fd, data)
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                self.writer._refused(f"write: {error}")
                self._buffered()
                written = 0
            if written < n:  # a short write: the rest goes through the page cache
                self._buffered()
                _write_all(self.fd, data[written:])
        else:
            _write_all(self.fd, data)
        rest = self.fill - n
        if rest:
            self.stage[:rest] = self.stage[n : self.fill]
        self.fill = rest

    def _buffered(self) -> None:
        if self.direct:
            self.direct = False
            flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
            fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~_O_DIRECT)


def _write_all(fd: int, data: memoryview) -> None:
    while data.nbytes:
        data = data[os.write(fd, data) :]
