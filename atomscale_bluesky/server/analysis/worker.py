"""The analysis worker: one thread that analyses stored chunks, off the request path.

Storage calls ``submit`` (through its chunk listener) after a chunk is stored: that only queues
a notice. The worker reads the chunk back from storage, decoding it into a buffer it keeps per
frame shape (a chunk's frames are tens of MB: a new array per chunk would cost a page fault per
4 KB), unless the notice carries the frames itself. The worker analyses each stream's chunks in
index order; a chunk still missing while later ones wait is skipped after ``gap_wait_s`` (its frames were not stored,
so its time is a gap in the series). Shutter states come from the time-series channels of the
stream's related streams (same sample, else same project, else the run's stream name), read
incrementally by the stream's ``ShutterFeed``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomscale_bluesky.server.analysis.results import StreamResults
from atomscale_bluesky.server.analysis.shutter_feed import ShutterFeed
from atomscale_bluesky.server.analysis.stream_analysis import AnalysisParams, StreamAnalysis
from atomscale_bluesky.shards import ShardError

__all__ = ["AnalysisWorker", "ChunkNotice"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChunkNotice:
    """A stored chunk: which, when its first frame was taken, at what rate; ``frames`` only
    from callers that hold them already (storage's notices leave them to be read back)."""

    data_id: str
    chunk_idx: int
    n_frames: int
    start_ms: int | None
    fps: float | None
    frames: np.ndarray | None = field(default=None, repr=False)


@dataclass
class _StreamState:
    analysis: StreamAnalysis
    shutters: ShutterFeed
    fps: float
    next_idx: int = 0
    next_frame: int = 0
    last_time: float | None = None
    last_start: float | None = None  # first-frame time and size of the last analysed chunk
    last_n: int = 0
    last_idx: int = -1
    spacing: float | None = None  # frame spacing measured between consecutive chunks
    pending: dict[int, ChunkNotice] = field(default_factory=dict)
    waiting_since: float | None = None


class AnalysisWorker:
    """Analyses every RHEED stream's chunks as they are stored; holds the results."""

    def __init__(
        self,
        storage: Any,
        *,
        shutter_pattern: str = "*shutter*",
        params: AnalysisParams | None = None,
        gap_wait_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._pattern = shutter_pattern.lower()
        self._params = params or AnalysisParams()
        self._gap_wait_s = gap_wait_s
        self._clock = clock
        self._queue: queue.Queue[ChunkNotice | None] = queue.Queue()
        self._buffers: dict[tuple[int, int], np.ndarray] = {}  # per frame shape, reused
        self._streams: dict[str, _StreamState] = {}
        self._results: dict[str, StreamResults] = {}
        self._results_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="atomscale-analysis", daemon=True)
        self.errors = 0
        self.chunks_analysed = 0
        self.cpu_s = 0.0  # thread CPU time spent analysing

    # -- request side (any thread): cheap, never blocks ------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def submit(self, notice: ChunkNotice) -> None:
        """Queue a stored chunk for analysis."""
        self._queue.put(notice)

    def results(self, data_id: str) -> StreamResults | None:
        with self._results_lock:
            return self._results.get(data_id)

    # -- worker thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                notice = self._queue.get(timeout=0.5)
            except queue.Empty:
                self._skip_stale_gaps()
                continue
            try:
                if notice is None:
                    return
                started = time.thread_time()
                try:
                    self._accept(notice)
                    self._skip_stale_gaps()
                except Exception as exc:  # noqa: BLE001 - one bad chunk must not stop analysis
                    self.errors += 1
                    log.warning(
                        "analysis of chunk %d of stream %s failed: %s",
                        notice.chunk_idx, notice.data_id, exc,
                        exc_info=not isinstance(exc, ShardError),  # stored bytes that do not decode
                    )  # fmt: skip
                self.cpu_s += time.thread_time() - started
            finally:
                self._queue.task_done()

    def _state(self, data_id: str) -> _StreamState:
        state = self._streams.get(data_id)
        if state is None:
            row = self._storage.stream_row(data_id, "rheed")
            results = StreamResults(data_id, row["azimuth_label"])
            analysis = StreamAnalysis(
                results, rotations_per_min=row["rotations_per_min"] or 0.0, params=self._params
            )
            shutters = ShutterFeed(self._storage, data_id, self._pattern)
            state = _StreamState(analysis, shutters, float(row["fps"] or 0.0))
            self._streams[data_id] = state
            with self._results_lock:
                self._results[data_id] = results
        return state

    def _accept(self, notice: ChunkNotice) -> None:
        state = self._state(notice.data_id)
        if notice.chunk_idx < state.next_idx:
            return  # a re-upload of a chunk already analysed (or skipped)
        state.pending[notice.chunk_idx] = notice
        self._drain(notice.data_id, state)

    def _drain(self, data_id: str, state: _StreamState) -> None:
        while state.next_idx in state.pending:
            notice = state.pending.pop(state.next_idx)
            self._analyse(data_id, state, notice)
            state.next_idx += 1
        state.waiting_since = self._clock() if state.pending else None

    def _skip_stale_gaps(self) -> None:
        now = self._clock()
        for data_id, state in list(self._streams.items()):
            waiting = state.waiting_since
            if not state.pending or waiting is None or now - waiting < self._gap_wait_s:
                continue
            first = min(state.pending)
            log.info(
                "analysis of stream %s skips missing chunk(s) %d..%d",
                data_id, state.next_idx, first - 1,
            )  # fmt: skip
            state.next_frame += (first - state.next_idx) * max(1, state.pending[first].n_frames)
            state.next_idx = first
            self._drain(data_id, state)

    def _analyse(self, data_id: str, state: _StreamState, notice: ChunkNotice) -> None:
        frames = notice.frames
        if frames is None:
            frames = self._read_back(data_id, notice.chunk_idx)
        fps = notice.fps or state.fps
        n = frames.shape[0]
        if notice.start_ms is not None:
            t0 = notice.start_ms / 1000.0
            self._measure_spacing(state, notice.chunk_idx, t0, fps)
        elif state.last_time is not None:
            t0 = state.last_time + 1.0 / fps
        else:
            t0 = time.time() - n / fps
        spacing = state.spacing or 1.0 / fps
        times = t0 + np.arange(n) * spacing
        shutters = state.shutters.refresh()
        state.analysis.add_chunk(frames, times, state.next_frame, shutters.interval_at)
        state.next_frame += n
        state.last_time = float(times[-1])
        state.last_start, state.last_n, state.last_idx = t0, n, notice.chunk_idx
        self.chunks_analysed += 1

    def _read_back(self, data_id: str, chunk_idx: int) -> np.ndarray:
        """The stored chunk's frames, decoded into the worker's buffer for their frame shape
        (made, or grown, when there is none or it is too small)."""
        row = self._storage.stream_row(data_id, "rheed")
        shape = (int(row["height"] or 0), int(row["width"] or 0))
        buffer = self._buffers.get(shape)
        frames = self._storage.read_chunk(data_id, chunk_idx, buffer)
        if buffer is None or frames.base is not buffer:
            self._buffers[shape] = frames  # a new array: this shape's buffer from now on
        return frames

    @staticmethod
    def _measure_spacing(state: _StreamState, chunk_idx: int, t0: float, fps: float) -> None:
        """The real frame spacing, from the first-frame times of two consecutive chunks: the
        declared fps is the one measured when the stream opened, and a camera's cadence drifts.
        The previous chunk's times are corrected with it; the new chunk is timed by it."""
        if state.last_start is None or chunk_idx != state.last_idx + 1 or state.last_n < 2:
            return
        spacing = (t0 - state.last_start) / state.last_n
        if 0.5 / fps < spacing < 2.0 / fps:
            state.spacing = spacing
            state.analysis.retime_last(state.last_start, state.last_n, spacing)
