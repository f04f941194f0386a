"""``AtomscaleCallback``: stream every Bluesky run's RHEED frames and scalar readings to Atomscale.

Subscribe it to a RunEngine (``RE.subscribe(AtomscaleCallback(...))``), put it in a RunRouter or
run it behind bluesky's 0MQ RemoteDispatcher. It keeps one router per run (built from the start
document) and never endangers the run:

* The thread that delivers a document (the RunEngine's, or ophyd's monitor dispatcher thread for
  monitor events) only routes it and puts a reference on a bounded queue. Normalisation, HDF5
  reads, stream opening (HTTP), zstd encoding/spooling and finalize run on one worker thread
  (finalize drains on a short-lived finalizer thread per run).
* Queue policy: the queue is bounded in bytes of frame data (``queue_max_bytes``). When it is
  full, the delivering thread waits at most ``queue_timeout_s`` for room; after that the event's
  data is dropped, counted (``counters.dropped_overflow`` and the run summary) and logged.
  Control documents (start, descriptor, resource, stop ...) are never dropped.
* Every exception is caught, logged with run uid, document and key, and counted; the run goes
  on. With ``strict=True`` the next document delivered after a failure raises
  ``AtomscaleCallbackError`` on the delivering thread, so the RunEngine aborts the run.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

import numpy as np

from atomscale_bluesky.chunking import CameraChunker, Chunk, PointBatcher, normalise_frames
from atomscale_bluesky.external import (
    ExternalDataError,
    ExternalFrames,
    ExternalNotReady,
    ExternalStore,
)
from atomscale_bluesky.routing import (
    CounterKey,
    FrameKey,
    Route,
    RoutingOptions,
    RunHints,
    SizeKey,
    pick_counter,
    pick_size,
    route_descriptor,
)
from atomscale_bluesky.seqnums import SeqNums, Verdict
from atomscale_bluesky.sequence import CounterFeed, FrameSequence
from atomscale_bluesky.summary import (
    CallbackCounters,
    ChannelSummary,
    LockedCounters,
    ProgressDisplay,
    RheedSummary,
    RunSummary,
    TimeseriesSummary,
)

__all__ = ["AtomscaleCallback", "AtomscaleCallbackError"]

logger = logging.getLogger("atomscale_bluesky.callback")

_MiB = 1024 * 1024
_HELD_MAX_BYTES = 64 * _MiB  # flat frames held per camera until their height and width are known


class AtomscaleCallbackError(RuntimeError):
    """Raised in strict mode on the document after a failure, so the RunEngine aborts the run."""


# ---------------------------------------------------------------------------------------------
# the bounded work queue


class _WorkQueue:
    """FIFO between delivering threads and the worker; data items are bounded by their bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()

    def put_data(self, item: Any, nbytes: int, timeout: float) -> bool:
        """Queue ``item`` if its bytes fit within ``timeout`` seconds; False means dropped."""
        with self._cond:
            if self._bytes and self._bytes + nbytes > self.max_bytes:
                deadline = time.monotonic() + timeout
                while self._bytes and self._bytes + nbytes > self.max_bytes:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()
            return True

    def put_control(self, item: Any) -> None:
        with self._cond:
            self._items.append((item, 0))
            self._cond.notify_all()

    def get(self, timeout: float) -> Any | None:
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, nbytes = self._items.popleft()
            self._bytes -= nbytes
            self._cond.notify_all()
            return item

    def wait_empty(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def depth(self) -> tuple[int, int]:
        with self._cond:
            return len(self._items), self._bytes


# ---------------------------------------------------------------------------------------------
# per-run state


@dataclass
class _RunMeta:
    """What the start document (and the constructor's overrides) say about the streams."""

    name: str
    sample: str | None
    project_id: str | None
    tags: list[str] | None
    fps: float | None
    rotations_per_min: float | None
    bit_depth: int | None


@dataclass
class _Segment:
    """One RHEED stream: a camera's frames of one shape."""

    chunker: CameraChunker
    summary: RheedSummary
    stream: Any = None
    failed: bool = False


@dataclass
class _Camera:
    key: str
    sequence: FrameSequence
    fkey: FrameKey | None = None
    counter_key: str | None = None  # the monitor stream's counter its frames are matched to
    segments: list[_Segment] = field(default_factory=list)
    frame_shape: tuple[int, int] | None = None
    dtype: str | None = None
    external: collections.deque[_ExternalRef] = field(default_factory=collections.deque)
    last_external_try: float = 0.0
    held: collections.deque[_Held] = field(default_factory=collections.deque)
    held_bytes: int = 0
    size_keys: tuple[str, str] | None = None  # (width, height) readings matched to this camera

    @property
    def current(self) -> _Segment:
        return self.segments[-1]


@dataclass
class _Held:
    """A flat frame waiting for its camera's height and width (``ArraySize0/1`` readings)."""

    fkey: FrameKey
    raw: np.ndarray
    stamps: list[float]
    counters: list[int | None] | None
    continuous: bool


@dataclass
class _ExternalRef:
    """A pointer to frames in a file, waiting on the worker until it can be read."""

    fkey: FrameKey
    continuous: bool
    datum_id: str | None = None
    stream_datum: Mapping[str, Any] | None = None
    timestamp: float | None = None
    counter: int | None = None
    first_try: float | None = None


@dataclass
class _Run:
    """One run: the delivering side's routes and counts, and the worker's streams."""

    uid: str
    start: Mapping[str, Any]
    meta: _RunMeta
    summary: RunSummary
    hints: RunHints = field(default_factory=RunHints)
    # delivering side (under the callback lock)
    routes: dict[str, Route] = field(default_factory=dict)
    seen_seq: dict[str, SeqNums] = field(default_factory=dict)
    closed: bool = False
    stop: Mapping[str, Any] | None = None  # the stop document, while the stop grace runs
    # worker side
    cameras: dict[str, _Camera] = field(default_factory=dict)
    batcher: PointBatcher | None = None
    timeseries: Any = None
    timeseries_failed: bool = False
    store: ExternalStore = field(default_factory=ExternalStore)
    rotation: float | None = None
    seq_times: dict[str, dict[int, float]] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)
    counter_keys: dict[str, CounterKey] = field(default_factory=dict)
    counter_feeds: dict[str, CounterFeed] = field(default_factory=dict)
    size_keys: dict[str, SizeKey] = field(default_factory=dict)  # width/height readings, any stream
    size_values: dict[str, int] = field(default_factory=dict)  # their latest values


@dataclass
class _EventsItem:
    run: _Run
    route: Route
    data: Mapping[str, Any]
    timestamps: Mapping[str, Any]
    seq_nums: list[int]
    times: list[float]
    page: bool
    skip_keys: frozenset[str]


@dataclass
class _DocItem:
    run: _Run
    name: str
    doc: Mapping[str, Any]
    route: Route | None = None


@dataclass
class _StopItem:
    run: _Run
    stop: Mapping[str, Any] | None


_CLOSE = object()


# ---------------------------------------------------------------------------------------------
# the callback


class AtomscaleCallback:
    """Bluesky document callback streaming RHEED video and sensor channels to Atomscale.

    Every option after ``client`` is keyword-only; the constructor overrides win over what the
    start document, descriptors and readings say.

    Parameters
    ----------
    client
        An :class:`atomscale_bluesky.client.AtomscaleClient` to stream through. When None the
        callback makes one from ``api_key`` and ``endpoint`` (or ``client_factory``) on its
        worker thread at first use, and closes it in :meth:`close`.
    api_key
        API key for the client the callback makes; None reads ``ATOMSCALE_API_KEY``, then
        ``AS_API_KEY``. Never logged. Ignored when ``client`` or ``client_factory`` is given.
    endpoint
        Atomscale API URL for the client the callback makes (a local server's ``.url`` for
        tests); None reads ``AS_API_ENDPOINT``, else ``https://api.atomscale.ai``.
    sample
        Physical sample (name or UUID) of every run; overrides the start document's ``sample``
        or ``physical_sample``.
    project_id
        Project of every run; overrides the start document's ``project_id``.
    tags
        Tags of every stream; override the start document's ``tags``.
    include
        Glob pattern(s) of data keys to route (frames and channels); None routes all.
    exclude
        Glob pattern(s) of data keys to leave out.
    rename
        Data key -> channel name.
    chunk_seconds
        Seconds of frames per RHEED chunk (never below the protocol's 2 s).
    fps
        Camera frame rate; overrides the camera's AcquirePeriod, the start document's ``fps``
        and the rate measured from frame timestamps.
    rotations_per_min
        Substrate rotation speed in rpm; overrides the rotation reading and the start document.
    rotation_key
        Data key whose latest reading is the substrate rotation in rpm (0 = parked).
    strict
        Raise :class:`AtomscaleCallbackError` on the next document after any failure, so the
        RunEngine aborts the run (for users who prefer no run to a partial upload).
    stream_name
        Base name of every stream (default: the start's ``name``/``stream_name``, else
        "<plan_name> scan <scan_id>").
    bit_depth
        Declared bit depth of integer frames when the descriptor and metadata give none
        (e.g. 12 for a 12-bit camera delivering uint16).
    max_frame_bytes
        Frames (one event's array) larger than this are rejected and counted.
    queue_max_bytes
        Bound of the work queue, in bytes of frame data.
    queue_timeout_s
        Longest a delivering thread waits for room in the queue before the event's data is
        dropped and counted.
    external_timeout_s
        How long, at the end of a run, the worker keeps retrying files not readable yet.
    finalize_timeout_s
        Drain timeout handed to each stream's ``finalize``.
    stop_grace_s
        How long after a stop document the run still takes events: bluesky emits monitor events
        from ophyd's monitor thread, so one taken just before the stop can arrive just after it.
    points_per_chunk
        Time-series batching: push when this many points are waiting.
    point_flush_s
        Time-series batching: push when the oldest waiting point is this many seconds old.
    instrument_id
        Optional growth-instrument id for the time-series stream.
    progress
        None (default), "log" or "ipython": show a live progress line.
    progress_interval_s
        Seconds between progress lines.
    client_factory
        Callable returning a client, used instead of ``api_key``/``endpoint`` when ``client``
        is None (for instance to choose the client's spool directory); called once, on the
        worker thread; the callback closes what it returns.
    frame_shapes
        Data key or glob pattern -> ``(height, width)`` of flat (1-D) frames, such as
        ophyd-async images over Channel Access. Without it the height and width come from the
        descriptor, the camera's configuration, or its ``ArraySize0_RBV``/``ArraySize1_RBV``
        readings in any stream of the run (flat frames wait, bounded, until those arrive).
    """

    def __init__(
        self,
        client: Any = None,
        *,
        api_key: str | None = None,
        endpoint: str | None = None,
        sample: str | None = None,
        project_id: str | None = None,
        tags: Iterable[str] | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        rename: Mapping[str, str] | None = None,
        chunk_seconds: float = 2.0,
        fps: float | None = None,
        rotations_per_min: float | None = None,
        rotation_key: str | None = None,
        strict: bool = False,
        stream_name: str | None = None,
        bit_depth: int | None = None,
        max_frame_bytes: int = 64 * _MiB,
        queue_max_bytes: int = 256 * _MiB,
        queue_timeout_s: float = 0.1,
        external_timeout_s: float = 10.0,
        finalize_timeout_s: float = 600.0,
        stop_grace_s: float = 0.5,
        points_per_chunk: int = 100,
        point_flush_s: float = 1.0,
        instrument_id: int | None = None,
        progress: str | None = None,
        progress_interval_s: float = 5.0,
        client_factory: Callable[[], Any] | None = None,
        frame_shapes: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        if chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be positive")
        if fps is not None and fps <= 0:
            raise ValueError("fps must be positive")
        self._client = client
        self._owns_client = client is None
        self._client_factory = client_factory or (lambda: _make_client(api_key, endpoint))
        self._endpoint = endpoint
        self.options = RoutingOptions.build(include, exclude, rename, rotation_key, frame_shapes)
        self._overrides: dict[str, Any] = {
            "sample": sample,
            "project_id": project_id,
            "tags": None if tags is None else list(tags),
            "stream_name": stream_name,
            "fps": fps,
            "rotations_per_min": rotations_per_min,
            "bit_depth": bit_depth,
        }
        self.chunk_seconds = chunk_seconds
        self.strict = strict
        self.max_frame_bytes = max_frame_bytes
        self.queue_timeout_s = queue_timeout_s
        self.external_timeout_s = external_timeout_s
        self.finalize_timeout_s = finalize_timeout_s
        if stop_grace_s < 0:
            raise ValueError("stop_grace_s must not be negative")
        self.stop_grace_s = stop_grace_s
        self.points_per_chunk = points_per_chunk
        self.point_flush_s = point_flush_s
        self.instrument_id = instrument_id
        self.progress_interval_s = progress_interval_s
        self._progress = ProgressDisplay(progress)

        self.summaries: list[RunSummary] = []
        self._counters = LockedCounters()
        self._lock = threading.RLock()
        self._runs: dict[str, _Run] = {}
        self._desc_run: dict[str, _Run] = {}
        self._resource_run: dict[str, _Run] = {}
        self._failure: str | None = None
        self._orphans_warned: set[str] = set()
        self._closed = False
        self._queue = _WorkQueue(queue_max_bytes)
        self._finalizers: list[threading.Thread] = []
        self._worker = threading.Thread(target=self._work, name="atomscale-callback", daemon=True)
        self._worker.start()

    # -- public ---------------------------------------------------------------------------------
    @property
    def counters(self) -> CallbackCounters:
        """A snapshot of the live counters (totals over all runs of this callback)."""
        depth, nbytes = self._queue.depth()
        self._counters.set(queue_items=depth, queue_bytes=nbytes)
        return self._counters.snapshot()

    @property
    def client(self) -> Any:
        return self._client

    def __call__(self, name: str, doc: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        if self._closed:
            return name, doc
        if self.strict and self._failure is not None and name not in ("start", "stop"):
            failure = self._failure
            raise AtomscaleCallbackError(f"Atomscale upload failed (strict mode): {failure}")
        try:
            self._counters.add(documents=1)
            self._dispatch(name, doc)
        except Exception as exc:  # noqa: BLE001 - a callback bug must not end the run
            self._error(None, f"{name} document", exc)
        return name, doc

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until queued work is processed and finished runs are finalized."""
        self._end_stopped_runs()
        deadline = time.monotonic() + timeout
        marker = threading.Event()
        self._queue.put_control(marker)
        if not marker.wait(max(0.0, deadline - time.monotonic())):
            return False
        for thread in list(self._finalizers):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Finalize every open run (as ended without a stop), stop the worker, close our client."""
        if self._closed:
            return
        with self._lock:
            for run in list(self._runs.values()):
                self._end_run(run, run.stop)
            self._closed = True
        self._queue.put_control(_CLOSE)
        wait = (
            self.finalize_timeout_s + self.external_timeout_s + 30 if timeout is None else timeout
        )
        self._worker.join(wait)
        for thread in list(self._finalizers):
            thread.join(wait)
        if self._owns_client and self._client is not None:
            try:
                self._client.close()
            except Exception as exc:  # noqa: BLE001
                logger.warning("Atomscale: closing the client failed: %s", exc)

    def __enter__(self) -> AtomscaleCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AtomscaleCallback(runs={len(self._runs)}, summaries={len(self.summaries)})"

    # -- delivering side -------------------------------------------------------------------------
    def _dispatch(self, name: str, doc: Mapping[str, Any]) -> None:
        if name == "start":
            self._on_start(doc)
        elif name == "descriptor":
            self._on_descriptor(doc)
        elif name == "event":
            self._on_events(doc, page=False)
        elif name == "event_page":
            self._on_events(doc, page=True)
        elif name == "bulk_events":
            for events in doc.values():
                for event in events:
                    self._on_events(event, page=False)
        elif name in ("resource", "stream_resource"):
            self._on_resource(name, doc)
        elif name in ("datum", "datum_page", "stream_datum"):
            self._on_datum(name, doc)
        elif name == "stop":
            self._on_stop(doc)
        # bulk_datum (no datum_kwargs) and unknown names are not data

    def _on_start(self, doc: Mapping[str, Any]) -> None:
        uid = doc.get("uid")
        with self._lock:
            if not isinstance(uid, str) or not uid.strip():
                # checked before anything changes: a malformed start must not end the running run
                self._error(
                    self._latest_run(),
                    "start document",
                    f"no valid uid ({uid!r}); ignored, the running run goes on",
                )
                return
            running = self._runs.get(uid)
            if running is not None:
                running.summary.duplicate_starts += 1
                self._counters.add(duplicate_starts=1)
                self._warn(
                    running,
                    "dupstart",
                    "start document repeated for the running run; ignored (counted)",
                )
                return
            self._failure = None
            for run in list(self._runs.values()):
                if run.stop is None:
                    self._warn(
                        run, "nostop", "run ended without a stop document; finalizing it now"
                    )
                self._end_run(run, run.stop)
            meta = self._meta(doc)
            summary = RunSummary(
                run_uid=uid,
                name=meta.name,
                plan_name=doc.get("plan_name"),
                scan_id=doc.get("scan_id"),
                endpoint=self._endpoint,
            )
            run = _Run(uid=uid, start=doc, meta=meta, summary=summary)
            run.batcher = PointBatcher(
                points_per_chunk=self.points_per_chunk, max_age_s=self.point_flush_s
            )
            self._runs[run.uid] = run
        self._counters.add(runs=1)

    def _on_descriptor(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", ""))
            if run is None:
                self._orphan("descriptor", doc.get("uid", "?"))
                return
            route = route_descriptor(doc, self.options, run.hints)
            run.routes[doc["uid"]] = route
            run.seen_seq[doc["uid"]] = SeqNums()
            self._desc_run[doc["uid"]] = run
            for key, reason in route.skipped.items():
                if key not in run.summary.skipped_keys:
                    run.summary.skipped_keys[key] = reason
                    logger.info(
                        "Atomscale: run %s: not uploading %r (%s)", run.uid[:8], key, reason
                    )
        self._queue.put_control(_DocItem(run, "descriptor", doc, route))

    def _on_events(self, doc: Mapping[str, Any], *, page: bool) -> None:
        desc_uid = doc.get("descriptor", "")
        with self._lock:
            run = self._desc_run.get(desc_uid)
            if run is None or run.closed:
                self._orphan("event_page" if page else "event", desc_uid)
                return
            route = run.routes[desc_uid]
            seqs = list(doc.get("seq_num", [])) if page else [doc.get("seq_num", 0)]
            fresh = self._fresh_seqs(run, desc_uid, seqs)
        if not fresh:
            return
        data = doc.get("data", {})
        timestamps = doc.get("timestamps", {})
        times = list(doc.get("time", [])) if page else [doc.get("time", math.nan)]
        if len(fresh) < len(seqs):  # drop the duplicated rows of a page
            data = {k: [v[i] for i in fresh] for k, v in data.items()}
            timestamps = {k: [v[i] for i in fresh] for k, v in timestamps.items()}
            times = [times[i] for i in fresh] if len(times) == len(seqs) else times
            seqs = [seqs[i] for i in fresh]
        nbytes, skip = self._frame_bytes(run, route, data, page)
        self._counters.add(events=len(seqs))
        run.summary.events += len(seqs)
        item = _EventsItem(run, route, data, timestamps, seqs, times, page, skip)
        if not self._queue.put_data(item, nbytes, self.queue_timeout_s):
            with self._lock:
                run.summary.dropped_overflow += len(seqs)
            self._counters.add(dropped_overflow=len(seqs))
            self._warn(
                run,
                "overflow",
                f"work queue full ({self._queue.max_bytes / _MiB:.0f} MiB); dropping events "
                f"(seq {seqs[0]}...) of stream {route.stream_name!r}; further drops are counted",
            )
        else:
            self._counters.add(frames_queued=len(seqs) * (len(route.frames) - len(skip)))

    def _fresh_seqs(self, run: _Run, desc_uid: str, seqs: list[int]) -> list[int]:
        """Indices of rows whose seq_num was not seen before; duplicates are counted and dropped."""
        seen = run.seen_seq[desc_uid]
        fresh: list[int] = []
        for i, seq in enumerate(seqs):
            verdict = seen.see(seq)
            if verdict is Verdict.DUPLICATE:
                run.summary.duplicate_events += 1
                self._counters.add(duplicate_events=1)
                self._warn(run, f"dup:{desc_uid}", f"duplicate event seq_num {seq} dropped")
                continue
            if verdict is Verdict.LATE:
                run.summary.out_of_order_events += 1
            fresh.append(i)
        return fresh

    def _frame_bytes(
        self, run: _Run, route: Route, data: Mapping[str, Any], page: bool
    ) -> tuple[int, frozenset[str]]:
        total = 0
        skip: set[str] = set()
        for key in route.frames:
            value = data.get(key)
            values = value if page and isinstance(value, list) else [value]
            for v in values:
                nbytes = int(getattr(v, "nbytes", 0) or 0)
                if nbytes > self.max_frame_bytes:
                    skip.add(key)
                total += nbytes
        if skip:
            n = len(data.get(next(iter(skip)), [])) if page else 1
            with self._lock:
                run.summary.rejected_frames += n * len(skip)
            self._counters.add(rejected_frames=n * len(skip))
            self._warn(
                run,
                f"huge:{sorted(skip)}",
                f"frames of {sorted(skip)} exceed max_frame_bytes={self.max_frame_bytes}; "
                "rejected (counted)",
            )
            total = 0
        return total, frozenset(skip)

    def _on_resource(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", "")) or self._latest_run()
            if run is None:
                self._orphan(name, doc.get("uid", "?"))
                return
            self._resource_run[doc["uid"]] = run
        self._queue.put_control(_DocItem(run, name, doc))

    def _on_datum(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            if name == "stream_datum":
                run = self._desc_run.get(doc.get("descriptor", "")) or self._resource_run.get(
                    doc.get("stream_resource", "")
                )
            else:
                run = self._resource_run.get(doc.get("resource", ""))
            if run is None:
                self._orphan(name, doc.get("resource", doc.get("stream_resource", "?")))
                return
        self._queue.put_control(_DocItem(run, name, doc))

    def _on_stop(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", ""))
            if run is None or run.stop is not None:
                self._orphan("stop", doc.get("run_start", "?"))
                return
            if self.stop_grace_s == 0:
                self._end_run(run, doc)
                return
            run.stop = doc  # late monitor events of this run are still taken for stop_grace_s
        timer = threading.Timer(self.stop_grace_s, self._end_stopped_runs, args=(run.uid,))
        timer.daemon = True
        timer.start()

    def _end_stopped_runs(self, uid: str | None = None) -> None:
        """End the run ``uid`` (or every run) whose stop document arrived and whose grace is over."""
        with self._lock:
            for run in list(self._runs.values()):
                if run.stop is not None and uid in (None, run.uid):
                    self._end_run(run, run.stop)

    def _end_run(self, run: _Run, stop: Mapping[str, Any] | None) -> None:
        """Called under the lock: no more data for this run; the worker finishes it."""
        run.closed = True
        self._runs.pop(run.uid, None)
        run.summary.exit_status = (stop or {}).get("exit_status") or (
            "no stop document" if stop is None else None
        )
        self._queue.put_control(_StopItem(run, stop))

    def _latest_run(self) -> _Run | None:
        return next(reversed(self._runs.values()), None) if self._runs else None

    def _orphan(self, name: str, ref: str) -> None:
        self._counters.add(orphan_events=1)
        latest = self._latest_run()
        if latest is not None:
            latest.summary.orphan_events += 1
        if ref not in self._orphans_warned:
            self._orphans_warned.add(ref)
            logger.warning(
                "Atomscale: %s refers to unknown or finished %s; dropped (counted)", name, ref
            )

    def _meta(self, start: Mapping[str, Any]) -> _RunMeta:
        o = self._overrides
        base = o["stream_name"] or start.get("name") or start.get("stream_name")
        if not base:
            plan = start.get("plan_name") or "run"
            scan = start.get("scan_id")
            base = f"{plan} scan {scan}" if scan is not None else f"{plan} {start['uid'][:8]}"
        return _RunMeta(
            name=str(base),
            sample=o["sample"]
            or _sample(start.get("sample"))
            or _sample(start.get("physical_sample")),
            project_id=o["project_id"] or _text(start.get("project_id")),
            tags=o["tags"] if o["tags"] is not None else _tags(start.get("tags")),
            fps=o["fps"] or _positive(start.get("fps")),
            rotations_per_min=(
                o["rotations_per_min"]
                if o["rotations_per_min"] is not None
                else _nonneg(start.get("rotations_per_min", start.get("rpm")))
            ),
            bit_depth=o["bit_depth"] or _int_or_none(start.get("bit_depth")),
        )

    # -- failures and logs -----------------------------------------------------------------------
    def _error(self, run: _Run | None, context: str, exc: BaseException | str) -> None:
        """Log with context, count, remember for strict mode; never raise."""
        uid = run.uid[:8] if run else "-"
        message = f"run {uid}: {context}: {exc}"
        if isinstance(exc, BaseException):
            logger.error("Atomscale: %s", message, exc_info=exc)
        else:
            logger.error("Atomscale: %s", message)
        self._counters.add(errors=1)
        if run is not None:
            run.summary.errors += 1
            if len(run.summary.error_messages) < 20:
                run.summary.error_messages.append(f"{context}: {exc}")
        if self.strict and self._failure is None:
            self._failure = message

    def _warn(self, run: _Run, tag: str, message: str) -> None:
        """Warn once per run and tag; later occurrences are only counted."""
        if tag in run.warned:
            return
        run.warned.add(tag)
        logger.warning("Atomscale: run %s: %s", run.uid[:8], message)

    # -- worker ----------------------------------------------------------------------------------
    def _work(self) -> None:
        last_progress = time.monotonic()
        active: dict[str, _Run] = {}
        while True:
            item = self._queue.get(timeout=0.25)
            if item is _CLOSE:
                break
            if isinstance(item, threading.Event):
                item.set()
                continue
            if item is not None:
                try:
                    self._handle(item, active)
                except Exception as exc:  # noqa: BLE001
                    run = getattr(item, "run", None)
                    self._error(run, f"processing {type(item).__name__}", exc)
            for run in list(active.values()):
                self._periodic(run)
            if self._progress.mode and time.monotonic() - last_progress > self.progress_interval_s:
                last_progress = time.monotonic()
                self._progress.show(self.counters)

    def _handle(self, item: Any, active: dict[str, _Run]) -> None:
        if isinstance(item, _EventsItem):
            active[item.run.uid] = item.run
            self._work_events(item)
        elif isinstance(item, _DocItem):
            active[item.run.uid] = item.run
            self._work_doc(item)
        elif isinstance(item, _StopItem):
            active.pop(item.run.uid, None)
            self._finish_run(item.run, item.stop)

    def _periodic(self, run: _Run) -> None:
        try:
            if run.batcher is not None and run.batcher.due():
                self._push_points(run)
            now = time.monotonic()
            for camera in run.cameras.values():
                if camera.external and now - camera.last_external_try > 0.5:
                    self._drain_external(run, camera, final=False)
        except Exception as exc:  # noqa: BLE001
            self._error(run, "periodic flush", exc)

    def _ensure_client(self) -> Any:
        if self._client is None:
            self._client = self._client_factory()
            if self._endpoint is None:
                self._endpoint = getattr(self._client, "endpoint", None)
        return self._client

    def _work_doc(self, item: _DocItem) -> None:
        run, doc = item.run, item.doc
        if item.route is not None and item.route.sizes:
            run.size_keys.update(item.route.sizes)
        try:
            if item.name == "resource":
                run.store.add_resource(doc)
            elif item.name == "stream_resource":
                run.store.add_stream_resource(doc)
            elif item.name == "datum":
                run.store.add_datum(doc)
            elif item.name == "datum_page":
                for i, datum_id in enumerate(doc["datum_id"]):
                    kwargs = {k: v[i] for k, v in (doc.get("datum_kwargs") or {}).items()}
                    run.store.add_datum(
                        {"datum_id": datum_id, "resource": doc["resource"], "datum_kwargs": kwargs}
                    )
            elif item.name == "stream_datum":
                self._work_stream_datum(run, doc)
            elif item.name == "descriptor" and item.route is not None and item.route.counters:
                if item.route.continuous:
                    run.counter_keys.update(item.route.counters)
                    for camera in run.cameras.values():
                        self._link_counter(run, camera)
            elif (
                item.name == "descriptor"
                and item.route is not None
                and any(fk.external == "STREAM" for fk in item.route.frames.values())
            ):
                run.seq_times.setdefault(item.route.descriptor_uid, {})
        except ExternalDataError as exc:
            self._error(run, f"{item.name} {doc.get('uid', '')}", exc)

    def _work_stream_datum(self, run: _Run, doc: Mapping[str, Any]) -> None:
        route = run.routes.get(doc.get("descriptor", ""))
        resource = doc.get("stream_resource", "")
        key = self._stream_key(run, resource)
        if route is None or key is None or key not in route.frames:
            return  # not a frame key (a scalar written to file, or excluded)
        fkey = route.frames[key]
        camera = self._camera(run, key)
        continuous = route.stream_name.endswith("_monitor")
        camera.external.append(_ExternalRef(fkey, continuous, stream_datum=doc))
        self._drain_external(run, camera, final=False)

    def _stream_key(self, run: _Run, resource_uid: str) -> str | None:
        return run.store.stream_key(resource_uid)

    def _work_events(self, item: _EventsItem) -> None:
        run, route = item.run, item.route
        n = len(item.seq_nums)
        for key, size_keys in route.size_readings.items():
            self._learn_size(run, key, size_keys, item)
        if route.sizes:
            self._learn_size_readings(run, route, item)
        for obj, key in route.period_readings.items():
            period = _last_value(item.data.get(key), item.page)
            if _positive(period):
                run.hints.fps[obj] = 1.0 / float(period)
        if route.descriptor_uid in run.seq_times:
            times = run.seq_times[route.descriptor_uid]
            for i, seq in enumerate(item.seq_nums):
                times[seq] = _row_time(item, i)
        self._work_points(run, route, item, n)
        if route.counters and route.continuous:
            self._work_counters(run, route, item)
        continuous = route.continuous
        for key, fkey in route.frames.items():
            if key in item.skip_keys or key not in item.data:
                continue
            try:
                self._work_frames(run, fkey, item, continuous)
            except Exception as exc:  # noqa: BLE001
                self._error(run, f"{route.stream_name} event seq {item.seq_nums[0]} key {key}", exc)

    def _work_counters(self, run: _Run, route: Route, item: _EventsItem) -> None:
        """Keep a monitor stream's frame-counter readings by timestamp for its camera's frames."""
        for key in route.counters:
            if key not in item.data:
                continue
            values = item.data[key] if item.page else [item.data[key]]
            stamps = item.timestamps.get(key)
            stamps = stamps if item.page else [stamps]
            feed = run.counter_feeds.get(key)
            if feed is None:
                feed = run.counter_feeds[key] = CounterFeed()
            for i, value in enumerate(values):
                ts = _float_or_nan(stamps[i] if stamps is not None and i < len(stamps) else None)
                number = _int_or_none(value)
                if number is not None and math.isfinite(ts):
                    feed.add(ts, number)
        for camera in run.cameras.values():
            if camera.counter_key in route.counters and camera.segments:
                camera.sequence.resolve(camera.current.chunker.fps)

    def _link_counter(self, run: _Run, camera: _Camera) -> None:
        """Match a monitored camera's frames to the counter stream of the same camera, if any."""
        fkey = camera.fkey
        if camera.counter_key is not None or fkey is None or fkey.counter_key is not None:
            return
        counter = pick_counter(fkey, run.counter_keys.values())
        if counter is None:
            return
        camera.counter_key = counter.key
        feed = run.counter_feeds.get(counter.key)
        if feed is None:
            feed = run.counter_feeds[counter.key] = CounterFeed()
        camera.sequence.feed = feed
        logger.debug(
            "Atomscale: run %s: frames of %s are counted by %s",
            run.uid[:8],
            camera.key,
            counter.key,
        )

    def _learn_size(self, run: _Run, obj: str, keys: tuple[str, str], item: _EventsItem) -> None:
        width = _int_or_none(_last_value(item.data.get(keys[0]), item.page))
        height = _int_or_none(_last_value(item.data.get(keys[1]), item.page))
        if width and height and width > 0 and height > 0:
            run.hints.sizes[obj] = (height, width)

    def _learn_size_readings(self, run: _Run, route: Route, item: _EventsItem) -> None:
        """Note the latest width/height readings; release flat frames that waited for them."""
        for key in route.sizes:
            value = _int_or_none(_last_value(item.data.get(key), item.page))
            if value is not None and value > 0:
                run.size_values[key] = value
        for camera in run.cameras.values():
            if camera.held and self._flat_shape(run, camera, camera.held[0].fkey) is not None:
                self._release_held(run, camera)

    def _flat_shape(self, run: _Run, camera: _Camera, fkey: FrameKey) -> tuple[int, int] | None:
        """(H, W) of a flat frame: the descriptor's, the run's hints, else the camera's readings."""
        shape = fkey.frame_shape or run.hints.size_for(fkey.object_name, fkey.key)
        if shape is not None:
            return shape
        if camera.size_keys is None:
            picked = pick_size(fkey, run.size_keys.values())
            if picked is None:
                return None
            camera.size_keys = (picked[0].key, picked[1].key)
            logger.info(
                "Atomscale: run %s: flat frames of %s are shaped by %s x %s",
                run.uid[:8],
                camera.key,
                picked[1].key,
                picked[0].key,
            )
        width = run.size_values.get(camera.size_keys[0])
        height = run.size_values.get(camera.size_keys[1])
        return (height, width) if width and height else None

    def _hold(self, run: _Run, camera: _Camera, held: _Held) -> None:
        """Keep a flat frame until its size is known; beyond the bound the oldest is rejected."""
        camera.held.append(held)
        camera.held_bytes += held.raw.nbytes
        if f"hold:{camera.key}" not in run.warned:
            run.warned.add(f"hold:{camera.key}")
            logger.info(
                "Atomscale: run %s: %s: flat frames held until the camera's height and width "
                "are known",
                run.uid[:8],
                camera.key,
            )
        while camera.held_bytes > _HELD_MAX_BYTES and len(camera.held) > 1:
            oldest = camera.held.popleft()
            camera.held_bytes -= oldest.raw.nbytes
            self._reject(
                run,
                camera,
                1,
                f"flat frame whose height and width are unknown (more than "
                f"{_HELD_MAX_BYTES // _MiB} MiB waiting)",
            )

    def _release_held(self, run: _Run, camera: _Camera) -> None:
        """Feed the held flat frames, in order, now that their size may be known."""
        held = list(camera.held)
        camera.held.clear()
        camera.held_bytes = 0
        for h in held:
            self._add_frames(run, camera, h.fkey, h.raw, h.stamps, h.counters, h.continuous)

    def _reject_held(self, run: _Run, camera: _Camera) -> None:
        if camera.held:
            n = len(camera.held)
            camera.held.clear()
            camera.held_bytes = 0
            self._reject(run, camera, n, "flat frame whose height and width are unknown")

    def _work_points(self, run: _Run, route: Route, item: _EventsItem, n: int) -> None:
        batcher = run.batcher
        assert batcher is not None
        for key, channel in route.channels.items():
            if key not in item.data:
                continue
            values = item.data[key] if item.page else [item.data[key]]
            stamps = item.timestamps.get(key)
            stamps = stamps if item.page else [stamps]
            for i in range(min(n, len(values))):
                value = _scalar(values[i], channel.enum_strs)
                ts = _float_or_nan(stamps[i] if stamps is not None and i < len(stamps) else None)
                if key == self.options.rotation_key and math.isfinite(value):
                    run.rotation = abs(value)
                if not batcher.add(channel.name, ts, value, channel.units):
                    self._counters.add(skipped_points=1)
                    self._warn(
                        run,
                        f"nonfinite:{key}",
                        f"non-finite value or timestamp for {key!r} skipped (counted)",
                    )
                else:
                    self._counters.add(points_queued=1)
        if batcher.due():
            self._push_points(run)

    def _work_frames(self, run: _Run, fkey: FrameKey, item: _EventsItem, continuous: bool) -> None:
        key = fkey.key
        values = item.data[key] if item.page else [item.data[key]]
        stamps = item.timestamps.get(key)
        stamps = stamps if item.page else [stamps]
        counters = None
        if fkey.counter_key and fkey.counter_key in item.data:
            raw = item.data[fkey.counter_key]
            counters = [_int_or_none(c) for c in (raw if item.page else [raw])]
        camera = self._camera(run, key)
        if camera.fkey is None:
            camera.fkey = fkey
            if continuous:
                self._link_counter(run, camera)
        for i, value in enumerate(values):
            ts = _float_or_nan(stamps[i] if stamps is not None and i < len(stamps) else None)
            counter = counters[i] if counters is not None and i < len(counters) else None
            if fkey.external == "FILESTORE":
                camera.external.append(
                    _ExternalRef(
                        fkey, continuous, datum_id=str(value), timestamp=ts, counter=counter
                    )
                )
                continue
            self._add_frames(run, camera, fkey, value, [ts], [counter], continuous)
        if camera.external:
            self._drain_external(run, camera, final=False)

    def _camera(self, run: _Run, key: str) -> _Camera:
        camera = run.cameras.get(key)
        if camera is None:
            sequence = FrameSequence(run_start=_positive(run.start.get("time")))
            camera = run.cameras[key] = _Camera(key, sequence)
        return camera

    def _add_frames(
        self,
        run: _Run,
        camera: _Camera,
        fkey: FrameKey,
        value: Any,
        stamps: list[float],
        counters: list[int | None] | None,
        continuous: bool,
    ) -> None:
        """Normalise one event's array and feed the camera's chunker; push full chunks."""
        raw = np.asarray(value)
        if raw.ndim == 1 and raw.size == 0:
            # an empty waveform: the camera published no image yet (NORD 0), so nothing is lost
            run.summary.empty_frames += 1
            self._counters.add(empty_frames=1)
            if f"empty:{camera.key}" not in run.warned:
                run.warned.add(f"empty:{camera.key}")
                logger.info(
                    "Atomscale: run %s: %s: empty image reading skipped", run.uid[:8], camera.key
                )
            return
        shape = fkey.frame_shape or run.hints.size_for(fkey.object_name, fkey.key)
        if raw.ndim == 1 and raw.dtype.kind in "uif":
            shape = self._flat_shape(run, camera, fkey)
            if shape is None:
                self._hold(run, camera, _Held(fkey, raw, stamps, counters, continuous))
                return
        if camera.held and self._flat_shape(run, camera, camera.held[0].fkey) is not None:
            self._release_held(run, camera)  # frames that waited come first
        declared = fkey.dtype_numpy
        dtype = raw.dtype.str
        if camera.dtype is not None and dtype != camera.dtype:
            self._summary_segment(run, camera, fkey).summary.dtype_changes += 1
            self._warn(
                run, f"dtype:{camera.key}:{dtype}", f"{camera.key}: dtype changed to {dtype}"
            )
        camera.dtype = dtype
        bit_depth = fkey.bit_depth or run.meta.bit_depth
        if declared and np.dtype(declared) != raw.dtype:
            bit_depth = None  # the declared depth describes another dtype
        if bit_depth and (raw.dtype.kind not in "ui" or bit_depth > raw.dtype.itemsize * 8):
            bit_depth = None  # a 12-bit declaration says nothing about uint8 or float frames
        try:
            stack = normalise_frames(
                raw, frame_shape=shape if raw.ndim == 1 else None, bit_depth=bit_depth
            )
        except (ValueError, TypeError) as exc:
            self._reject(run, camera, 1, f"cannot normalise frame {raw.shape} {raw.dtype}: {exc}")
            return
        frame_shape = (int(stack.shape[1]), int(stack.shape[2]))
        if camera.frame_shape is not None and frame_shape != camera.frame_shape:
            self._new_segment(run, camera, fkey, frame_shape)
        camera.frame_shape = frame_shape
        segment = self._summary_segment(run, camera, fkey)
        chunks = segment.chunker.add(stack, stamps, counters, continuous=continuous)
        self._push_chunks(run, camera, segment, chunks)

    def _reject(self, run: _Run, camera: _Camera, n: int, why: str) -> None:
        if camera.segments:
            camera.current.summary.rejected += n
        run.summary.rejected_frames += n
        self._counters.add(rejected_frames=n)
        self._warn(
            run, f"reject:{camera.key}:{why[:40]}", f"{camera.key}: {why}; rejected (counted)"
        )

    def _summary_segment(self, run: _Run, camera: _Camera, fkey: FrameKey) -> _Segment:
        if not camera.segments:
            camera.segments.append(self._make_segment(run, camera, fkey, 1))
        return camera.current

    def _make_segment(self, run: _Run, camera: _Camera, fkey: FrameKey, part: int) -> _Segment:
        fps, source = self._fps(run, fkey)
        name = f"{run.meta.name} ({camera.key})" + (f" part {part}" if part > 1 else "")
        chunker = CameraChunker(
            fps=fps,
            chunk_seconds=self.chunk_seconds,
            fps_source=source,
            run_start=camera.sequence.run_start,
            sequence=camera.sequence,
        )
        return _Segment(chunker, RheedSummary(camera=camera.key, name=name))

    def _fps(self, run: _Run, fkey: FrameKey) -> tuple[float | None, str]:
        if self._overrides["fps"]:
            return float(self._overrides["fps"]), "constructor"
        configured = fkey.fps or run.hints.fps_for(fkey.object_name, fkey.key)
        if configured:
            return configured, "AcquirePeriod"
        if run.meta.fps:
            return run.meta.fps, "metadata"
        return None, "measured"

    def _new_segment(
        self, run: _Run, camera: _Camera, fkey: FrameKey, frame_shape: tuple[int, int]
    ) -> None:
        old = camera.current
        self._push_chunks(run, camera, old, old.chunker.finish())
        run.summary.shape_changes += 1
        logger.warning(
            "Atomscale: run %s: %s frame shape changed %s -> %s; starting a new RHEED stream",
            run.uid[:8],
            camera.key,
            camera.frame_shape,
            frame_shape,
        )
        camera.segments.append(self._make_segment(run, camera, fkey, len(camera.segments) + 1))

    def _push_chunks(
        self, run: _Run, camera: _Camera, segment: _Segment, chunks: list[Chunk]
    ) -> None:
        if (
            not chunks
            and segment.stream is None
            and (segment.chunker.fps is None or segment.chunker.pending == 0)
        ):
            return
        if segment.stream is None and not segment.failed and segment.chunker.fps is not None:
            self._open_rheed(run, camera, segment)
        for chunk in chunks:
            n = len(chunk.frames)
            summary = segment.summary
            if summary.first_ts is None:
                summary.first_ts = chunk.first_ts
            summary.last_ts = chunk.last_ts
            if segment.stream is None:
                summary.not_sent += n
                continue
            try:
                segment.stream.push(chunk.frames, chunk.capture_start_ms)
            except Exception as exc:  # noqa: BLE001
                summary.not_sent += n
                self._error(run, f"push of {n} frames of {camera.key}", exc)
                continue
            summary.frames += n
            summary.chunks += 1
            self._counters.add(frames_pushed=n, chunks_pushed=1)

    def _open_rheed(self, run: _Run, camera: _Camera, segment: _Segment) -> None:
        chunker = segment.chunker
        assert chunker.fps is not None and chunker.chunk_size is not None
        rpm = self._rpm(run)
        summary = segment.summary
        summary.fps, summary.fps_source = chunker.fps, chunker.fps_source
        summary.chunk_size, summary.rotations_per_min = chunker.chunk_size, rpm
        summary.frame_shape = camera.frame_shape
        try:
            segment.stream = self._ensure_client().open_rheed_stream(
                fps=chunker.fps,
                rotations_per_min=rpm,
                chunk_size=chunker.chunk_size,
                stream_name=summary.name,
                physical_sample=run.meta.sample,
                project_id=run.meta.project_id,
                tags=run.meta.tags,
            )
        except Exception as exc:  # noqa: BLE001
            segment.failed = True
            summary.error = f"stream did not open: {exc}"
            self._error(run, f"opening the RHEED stream of {camera.key}", exc)
            return
        summary.data_id = segment.stream.data_id
        self._counters.add(streams_opened=1)
        logger.info(
            "Atomscale: run %s: RHEED stream %s opened for %s (%s, %.3g fps from %s, %.3g rpm, "
            "%d frames/chunk)",
            run.uid[:8],
            summary.data_id,
            camera.key,
            camera.frame_shape,
            chunker.fps,
            chunker.fps_source,
            rpm,
            chunker.chunk_size,
        )

    def _rpm(self, run: _Run) -> float:
        if self._overrides["rotations_per_min"] is not None:
            return float(self._overrides["rotations_per_min"])
        if run.rotation is not None:
            return run.rotation
        if run.meta.rotations_per_min is not None:
            return run.meta.rotations_per_min
        return 0.0

    # -- external frames (worker) ----------------------------------------------------------------
    def _drain_external(self, run: _Run, camera: _Camera, *, final: bool) -> None:
        """Read waiting external frames in order; stop at the first one not ready yet."""
        camera.last_external_try = time.monotonic()
        while camera.external:
            ref = camera.external[0]
            try:
                got = self._read_external(run, ref, final)
            except ExternalNotReady as exc:
                if not final:
                    return
                camera.external.popleft()
                self._external_failed(run, camera, ref, exc)
                continue
            except ExternalDataError as exc:
                camera.external.popleft()
                self._external_failed(run, camera, ref, exc)
                continue
            camera.external.popleft()
            frames, stamps, counters = got
            self._add_frames(run, camera, ref.fkey, frames, stamps, counters, ref.continuous)

    def _read_external(
        self, run: _Run, ref: _ExternalRef, final: bool
    ) -> tuple[np.ndarray, list[float], list[int | None] | None]:
        if ref.datum_id is not None:
            got: ExternalFrames = run.store.read_datum(ref.datum_id)
            stamps = got.timestamps or [ref.timestamp if ref.timestamp is not None else math.nan]
            counters: list[int | None] | None = (
                list(got.unique_ids) if got.unique_ids else [ref.counter]
            )
            return got.frames, stamps, counters
        assert ref.stream_datum is not None
        got = run.store.read_stream_datum(ref.stream_datum)
        stamps = got.timestamps or self._seq_stamps(run, ref.stream_datum, len(got.frames), final)
        counters = list(got.unique_ids) if got.unique_ids else None
        return got.frames, stamps, counters

    def _seq_stamps(
        self, run: _Run, doc: Mapping[str, Any], n_frames: int, final: bool
    ) -> list[float]:
        """Frame times of a stream datum from its events (they follow the stream datum)."""
        seqs = doc.get("seq_nums") or {}
        start, stop = int(seqs.get("start", 0)), int(seqs.get("stop", 0))
        times = run.seq_times.get(doc.get("descriptor", ""), {})
        if stop <= start:
            return [math.nan] * n_frames
        per = max(1, math.ceil(n_frames / (stop - start)))
        if not final and any(s not in times for s in range(start, stop)):
            raise ExternalNotReady("waiting for the events of this stream datum")
        return [times.get(start + j // per, math.nan) for j in range(n_frames)]

    def _external_failed(
        self, run: _Run, camera: _Camera, ref: _ExternalRef, exc: BaseException
    ) -> None:
        segment = self._summary_segment(run, camera, ref.fkey)
        segment.summary.external_failed += 1
        self._counters.add(external_failed=1)
        what = ref.datum_id or (ref.stream_datum or {}).get("uid", "?")
        self._error(run, f"external frames of {camera.key} ({what})", exc)

    # -- points (worker) -------------------------------------------------------------------------
    def _push_points(self, run: _Run) -> None:
        assert run.batcher is not None
        payload = run.batcher.take()
        if not payload:
            return
        n = sum(len(v[0]) for v in payload.values())
        ts_summary = self._ts_summary(run)
        if run.timeseries is None and not run.timeseries_failed:
            try:
                run.timeseries = self._ensure_client().open_timeseries_stream(
                    stream_name=ts_summary.name,
                    instrument_id=self.instrument_id,
                    physical_sample=run.meta.sample,
                    project_id=run.meta.project_id,
                    tags=run.meta.tags,
                    points_per_chunk=self.points_per_chunk,
                )
            except Exception as exc:  # noqa: BLE001
                run.timeseries_failed = True
                ts_summary.error = f"stream did not open: {exc}"
                self._error(run, "opening the time-series stream", exc)
            else:
                ts_summary.data_id = run.timeseries.data_id
                self._counters.add(streams_opened=1)
                logger.info(
                    "Atomscale: run %s: time-series stream %s opened (channels %s)",
                    run.uid[:8],
                    ts_summary.data_id,
                    sorted(payload),
                )
        if run.timeseries is None:
            ts_summary.not_sent += n
            return
        try:
            run.timeseries.push_multi(payload)
        except Exception as exc:  # noqa: BLE001
            ts_summary.not_sent += n
            self._error(run, f"push of {n} points", exc)
            return
        ts_summary.batches += 1
        self._counters.add(points_pushed=n)

    def _ts_summary(self, run: _Run) -> TimeseriesSummary:
        if run.summary.timeseries is None:
            run.summary.timeseries = TimeseriesSummary(name=f"{run.meta.name} (sensors)")
        return run.summary.timeseries

    # -- end of run (worker, then a finalizer thread) --------------------------------------------
    def _finish_run(self, run: _Run, stop: Mapping[str, Any] | None) -> None:
        deadline = time.monotonic() + self.external_timeout_s
        for camera in run.cameras.values():
            while camera.external and time.monotonic() < deadline:
                self._drain_external(run, camera, final=False)
                if camera.external:
                    time.sleep(0.05)
            self._drain_external(run, camera, final=True)
        for camera in run.cameras.values():
            self._reject_held(run, camera)
            for segment in camera.segments:
                try:
                    self._push_chunks(run, camera, segment, segment.chunker.finish())
                except Exception as exc:  # noqa: BLE001
                    self._error(run, f"flushing {camera.key}", exc)
            fps = camera.current.chunker.fps if camera.segments else None
            camera.sequence.resolve(fps, final=True)
        try:
            self._push_points(run)
        except Exception as exc:  # noqa: BLE001
            self._error(run, "flushing points", exc)
        run.store.close()
        thread = threading.Thread(
            target=self._finalize,
            args=(run,),
            name=f"atomscale-finalize-{run.uid[:8]}",
            daemon=True,
        )
        self._finalizers = [t for t in self._finalizers if t.is_alive()] + [thread]
        thread.start()

    def _finalize(self, run: _Run) -> None:
        summary = run.summary
        for camera in run.cameras.values():
            for segment in camera.segments:
                self._fill_rheed_summary(segment)
                if segment.stream is not None:
                    report = self._finalize_stream(run, segment.stream, f"RHEED {camera.key}")
                    segment.summary.report = report
                    if report is not None:
                        segment.summary.uploaded = report.get("uploaded")
                        lost = report.get("lost") or []
                        segment.summary.lost_chunks = len(lost)
                summary.rheed.append(segment.summary)
        if run.summary.timeseries is not None and run.batcher is not None:
            ts = run.summary.timeseries
            for channel_name, stats in run.batcher.channels.items():
                ts.channels[channel_name] = ChannelSummary(
                    name=channel_name,
                    key=_channel_key(run, channel_name),
                    units=stats.units,
                    points=stats.points,
                    non_finite=stats.non_finite,
                )
            ts.points = sum(c.points for c in ts.channels.values()) - ts.not_sent
            ts.non_finite = sum(c.non_finite for c in ts.channels.values())
            if run.timeseries is not None:
                ts.report = self._finalize_stream(run, run.timeseries, "time series")
        summary.endpoint = self._endpoint
        self.summaries.append(summary)
        text = summary.text()
        if summary.errors or summary.lost:
            logger.warning("%s", text)
        else:
            logger.info("%s", text)

    def _fill_rheed_summary(self, segment: _Segment) -> None:
        stats = segment.chunker.stats
        s = segment.summary
        s.duplicates, s.late, s.missing = stats.duplicates, stats.late, stats.missing
        s.gap_events, s.counter_resets = stats.gap_events, stats.counter_resets
        s.stale = stats.stale
        if s.fps is None and segment.chunker.fps is not None:
            s.fps, s.fps_source = segment.chunker.fps, segment.chunker.fps_source

    def _finalize_stream(self, run: _Run, stream: Any, what: str) -> dict[str, Any] | None:
        try:
            report = stream.finalize(drain_timeout_s=self.finalize_timeout_s)
        except Exception as exc:  # noqa: BLE001
            self._error(run, f"finalizing {what} {getattr(stream, 'data_id', '')}", exc)
            return None
        self._counters.add(streams_closed=1)
        as_dict = _report_dict(report)
        lost = as_dict.get("lost") or []
        logger.info(
            "Atomscale: run %s: %s stream %s closed (%s uploaded, %d lost)",
            run.uid[:8],
            what,
            getattr(stream, "data_id", "?"),
            as_dict.get("uploaded", "?"),
            len(lost),
        )
        if lost:
            self._error(
                run, f"{what} stream {getattr(stream, 'data_id', '')} lost chunks", str(lost)
            )
        return as_dict


# ---------------------------------------------------------------------------------------------
# small helpers


def _make_client(api_key: str | None, endpoint: str | None) -> Any:
    from atomscale_bluesky.client import AtomscaleClient

    return AtomscaleClient(api_key=api_key, endpoint=endpoint)


def _report_dict(report: Any) -> dict[str, Any]:
    if report is None:
        return {}
    if is_dataclass(report) and not isinstance(report, type):
        return asdict(report)
    if isinstance(report, Mapping):
        return dict(report)
    return {"report": repr(report)}


def _channel_key(run: _Run, channel_name: str) -> str:
    for route in run.routes.values():
        for key, channel in route.channels.items():
            if channel.name == channel_name:
                return key
    return channel_name


def _sample(value: Any) -> str | None:
    if isinstance(value, Mapping):
        for field_name in ("uuid", "id", "name"):
            text = _text(value.get(field_name))
            if text:
                return text
        return None
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _tags(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()] or None
    return [str(t) for t in value if str(t).strip()] or None


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _nonneg(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return abs(number) if math.isfinite(number) else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _last_value(value: Any, page: bool) -> Any:
    if page and isinstance(value, list):
        return value[-1] if value else None
    return value


def _row_time(item: _EventsItem, i: int) -> float:
    """Best hardware time of one event row: any timestamp it carries, else the event time."""
    for stamps in item.timestamps.values():
        value = stamps[i] if item.page else stamps
        number = _float_or_nan(value)
        if math.isfinite(number):
            return number
    return _float_or_nan(item.times[i] if i < len(item.times) else None)


def _scalar(value: Any, enum_strs: tuple[str, ...] | None) -> float:
    """A channel value as float: bools 0/1, enum strings by their index, NaN when not numeric."""
    if isinstance(value, (bytes, str)):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        if enum_strs and text in enum_strs:
            return float(enum_strs.index(text))
        try:
            return float(text)
        except ValueError:
            return math.nan
    if hasattr(value, "value") and not isinstance(value, (int, float, np.generic)):
        value = value.value  # enum members
        if isinstance(value, str):
            return _scalar(value, enum_strs)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
