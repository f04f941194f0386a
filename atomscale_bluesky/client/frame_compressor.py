"""Compress a RHEED stream's frames as they arrive, on a small thread pool, in groups of a few MB.

Frames are gathered into groups of about ``GROUP_BYTES`` and each group is compressed by one
zstd call that releases the GIL for the whole group (``multi_compress_to_buffer``, one zstd frame
per input, the bytes :func:`~atomscale_bluesky.shards.compress_frame` gives). Compression then
overlaps acquisition and uses every core, without a GIL hand-over per frame that would make the
RunEngine's thread wait. A chunk's push :meth:`~FrameCompressor.flush` es the group still filling
and waits for its frames' results. While one group at a time is enough, the threads keep off one
core (:mod:`~atomscale_bluesky.core_share`), so a paced RunEngine waking up finds it free.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from ..core_share import CoreShare
from ..shards import check_level, compressor
from ..thread_priority import lower_this_thread

__all__ = [
    "COMPRESS_THREADS",
    "GROUP_BYTES",
    "CompressedFrame",
    "FrameCompressor",
    "SharedCompressors",
]

#: Threads compressing groups (zstd releases the GIL: they use every core).
COMPRESS_THREADS = max(2, min(os.cpu_count() or 1, 4))
#: A group is handed to the pool once its frames hold this many bytes (or at a push).
GROUP_BYTES = 4 * 1024 * 1024


class _Group:
    """Frames compressed together by one pool task."""

    __slots__ = ("future", "views")

    def __init__(self) -> None:
        self.views: list[bytes | bytearray | memoryview] = []
        self.future: Future[list[Any]] | None = None


class CompressedFrame:
    """One frame's place in its group; :meth:`result` waits for the group and is its zstd frame."""

    __slots__ = ("_group", "_index")

    def __init__(self, group: _Group, index: int) -> None:
        self._group = group
        self._index = index

    @property
    def dispatched(self) -> bool:
        return self._group.future is not None

    def result(self) -> Any:
        """The frame's zstd frame (a buffer); raises what the compression raised."""
        future = self._group.future
        if future is None:
            raise RuntimeError("frame compression was never started; flush the compressor first")
        return future.result()[self._index]


def _compress_group(views: list[bytes | bytearray | memoryview], level: int) -> list[Any]:
    result = compressor(level).multi_compress_to_buffer(views, threads=1)
    return [result[i] for i in range(len(result))]


class FrameCompressor:
    """Compresses uint8 (H, W) frames at one zstd level, a group at a time on its own threads,
    which run ``nice`` steps below the process's priority."""

    def __init__(
        self,
        level: int,
        *,
        threads: int = COMPRESS_THREADS,
        group_bytes: int = GROUP_BYTES,
        nice: int = 0,
    ) -> None:
        self.level = check_level(level)
        self.group_bytes = group_bytes
        self._pool = ThreadPoolExecutor(
            threads,
            thread_name_prefix="atomscale-compress",
            initializer=lower_this_thread,
            initargs=(nice,),
        )
        self._lock = threading.Lock()
        self._group = _Group()
        self._group_bytes = 0
        self._in_pool = 0  # groups handed to the pool and not yet compressed
        self._cores = CoreShare()

    def submit(self, frame: np.ndarray) -> CompressedFrame:
        """Add one frame to the group filling; the group goes to the pool once it is full."""
        plane = np.ascontiguousarray(frame)
        with self._lock:
            group = self._group
            handle = CompressedFrame(group, len(group.views))
            group.views.append(plane.data)
            self._group_bytes += plane.nbytes
            if self._group_bytes >= self.group_bytes:
                self._dispatch()
        return handle

    def flush(self) -> None:
        """Hand the group still filling to the pool (a chunk is about to wait for its frames)."""
        with self._lock:
            if self._group.views:
                self._dispatch()

    def close(self, wait: bool = False) -> None:
        """Let the threads go once the groups handed over are done (``wait``: return only then)."""
        self._pool.shutdown(wait=wait)

    def _compress(self, views: list[bytes | bytearray | memoryview]) -> list[Any]:
        """A pool task: one group, on all cores but one unless another group waits behind it."""
        self._cores.place_this_thread(behind=self._in_pool > 1)
        try:
            return _compress_group(views, self.level)
        finally:
            with self._lock:
                self._in_pool -= 1

    def _dispatch(self) -> None:
        """Called under the lock: the filling group to the pool, a new one to fill.

        Once the pool takes no more work (closed, or the interpreter exiting: its threads stop
        before ``atexit`` handlers that flush a run), the group is compressed right here."""
        group = self._group
        try:
            group.future = self._pool.submit(self._compress, group.views)
            self._in_pool += 1
        except RuntimeError:
            group.future = _compressed_here(group.views, self.level)
        self._group = _Group()
        self._group_bytes = 0


class SharedCompressors:
    """A client's frame compressors, one per zstd level, shared by all its RHEED streams.

    Frames of every camera fill the same groups on the same threads: compression never has more
    threads than ``COMPRESS_THREADS`` however many cameras stream, and the cameras' groups are
    dispatched one after another instead of all at once on every core (which made a paced
    RunEngine wait for a core at each group).
    """

    def __init__(self, *, nice: int = 0) -> None:
        self.nice = nice
        self._lock = threading.Lock()
        self._by_level: dict[int, FrameCompressor] = {}

    def get(self, level: int) -> FrameCompressor:
        """The compressor for ``level``, started on first use."""
        with self._lock:
            found = self._by_level.get(level)
            if found is None:
                found = self._by_level[level] = FrameCompressor(level, nice=self.nice)
            return found

    def close(self) -> None:
        """Hand over the groups still filling and let the threads go once they are done."""
        with self._lock:
            compressors, self._by_level = list(self._by_level.values()), {}
        for each in compressors:
            each.flush()
            each.close()


def _compressed_here(views: list[bytes | bytearray | memoryview], level: int) -> Future[list[Any]]:
    """A finished future of one group compressed on the calling thread."""
    future: Future[list[Any]] = Future()
    try:
        future.set_result(_compress_group(views, level))
    except Exception as exc:  # noqa: BLE001 - handed to whoever waits for the frames
        future.set_exception(exc)
    return future
