"""``AtomscaleCallback``: stream every Bluesky run's RHEED frames and scalar readings to Atomscale.

Subscribe it to a RunEngine (``RE.subscribe(AtomscaleCallback(...))``), put it in a RunRouter or
run it behind bluesky's 0MQ RemoteDispatcher. It is a pipeline of stages, each owning its state:

* the :class:`~atomscale_bluesky.callback.intake.Intake` runs on the thread that delivers a
  document (the RunEngine's, or ophyd's monitor dispatcher thread for monitor events): it finds
  the run, drops repeated events, normalises the document variants and queues the work;
* the :class:`~atomscale_bluesky.callback.worker.Worker` thread hands each item to its run's
  :class:`~atomscale_bluesky.callback.run_uploader.RunUploader` (cameras, points, external
  files): normalisation, file reads, stream opening, zstd encoding and spooling happen there;
* a finalizer thread per run drains and closes its streams and publishes the run's summary.

Queue policy: the queue is bounded in bytes of frame data (``queue_max_bytes``). When it is full,
the delivering thread waits at most ``queue_timeout_s`` for room; after that the event's data is
dropped, counted (``counters.dropped_overflow`` and the run summary) and logged. Control documents
(start, descriptor, resource, stop ...) are never dropped. Every exception is caught, logged with
run uid, document and key, and counted; the run goes on. With ``strict=True`` the next document
delivered after a failure raises ``AtomscaleCallbackError``, so the RunEngine aborts the run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from atomscale_bluesky.callback.counters import CallbackCounters, LockedCounters
from atomscale_bluesky.callback.finalizer import Finalizers
from atomscale_bluesky.callback.intake import Intake
from atomscale_bluesky.callback.messages import FlushMarker, StopWorker, WorkItem
from atomscale_bluesky.callback.options import CallbackOptions, MiB
from atomscale_bluesky.callback.routing import RoutingOptions
from atomscale_bluesky.callback.run_metadata import RunOverrides
from atomscale_bluesky.callback.run_report import FailureLatch
from atomscale_bluesky.callback.stream_opener import StreamOpener
from atomscale_bluesky.callback.summary import RunSummary
from atomscale_bluesky.callback.work_queue import WorkQueue
from atomscale_bluesky.callback.worker import Worker
from atomscale_bluesky.shards import ZSTD_LEVEL

if TYPE_CHECKING:
    from atomscale_bluesky.client.secret import ApiKey

__all__ = ["AtomscaleCallback", "AtomscaleCallbackError"]

logger = logging.getLogger("atomscale_bluesky.callback")


class AtomscaleCallbackError(RuntimeError):
    """Raised in strict mode on the document after a failure, so the RunEngine aborts the run."""


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
        API key (str or ``ApiKey``) for the client the callback makes; None reads
        ``ATOMSCALE_API_KEY``, ``AS_API_KEY``, then ``ATOMSCALE_API_KEY_FILE``. Held as an
        ``ApiKey``, never logged. Ignored when ``client`` or ``client_factory`` is given.
    endpoint
        Atomscale API URL for the client the callback makes (a local server's ``.url`` for
        tests); None reads ``AS_API_ENDPOINT``, else ``https://api.atomscale.ai``. Plain
        ``http://`` to another machine raises ValueError here unless
        ``ATOMSCALE_ALLOW_INSECURE_HTTP=1``.
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
    compression_level
        zstd level of the RHEED frames: 3 (the protocol's) by default; 1 or a negative level
        spends less CPU per frame for larger uploads (see the performance page).
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
        api_key: str | ApiKey | None = None,
        endpoint: str | None = None,
        sample: str | None = None,
        project_id: str | None = None,
        tags: Iterable[str] | None = None,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        rename: Mapping[str, str] | None = None,
        chunk_seconds: float = 2.0,
        compression_level: int = ZSTD_LEVEL,
        fps: float | None = None,
        rotations_per_min: float | None = None,
        rotation_key: str | None = None,
        strict: bool = False,
        stream_name: str | None = None,
        bit_depth: int | None = None,
        max_frame_bytes: int = 64 * MiB,
        queue_max_bytes: int = 256 * MiB,
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
        self.options = CallbackOptions(
            overrides=RunOverrides.build(
                sample=sample,
                project_id=project_id,
                tags=tags,
                stream_name=stream_name,
                fps=fps,
                rotations_per_min=rotations_per_min,
                bit_depth=bit_depth,
            ),
            routing=RoutingOptions.build(include, exclude, rename, rotation_key, frame_shapes),
            chunk_seconds=chunk_seconds,
            compression_level=compression_level,
            strict=strict,
            max_frame_bytes=max_frame_bytes,
            queue_max_bytes=queue_max_bytes,
            queue_timeout_s=queue_timeout_s,
            external_timeout_s=external_timeout_s,
            finalize_timeout_s=finalize_timeout_s,
            stop_grace_s=stop_grace_s,
            points_per_chunk=points_per_chunk,
            point_flush_s=point_flush_s,
            instrument_id=instrument_id,
            progress=progress,
            progress_interval_s=progress_interval_s,
        )
        self.summaries: list[RunSummary] = []
        self._counters = LockedCounters()
        self._failure = FailureLatch()
        self._queue: WorkQueue[WorkItem] = WorkQueue(queue_max_bytes)
        self._opener = StreamOpener(
            client,
            client_factory or _default_client_factory(client, api_key, endpoint),
            self._counters,
            endpoint,
        )
        self._intake = Intake(self.options, self._queue, self._counters, self._failure)
        self._finalizers = Finalizers(
            self._counters, self.options.finalize_timeout_s, self.summaries.append
        )
        self._worker = Worker(
            self.options,
            self._queue,
            self._counters,
            self._failure,
            self._opener,
            self._finalizers,
            lambda: self.counters,
        )
        self._closed = False
        self._worker.start()

    @property
    def counters(self) -> CallbackCounters:
        """A snapshot of the live counters (totals over all runs of this callback)."""
        depth, nbytes = self._queue.depth()
        self._counters.set(queue_items=depth, queue_bytes=nbytes)
        return self._counters.snapshot()

    @property
    def client(self) -> Any:
        """The client streams go through (None until the first stream opens, if the callback
        makes it)."""
        return self._opener.client

    def __call__(self, name: str, doc: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
        if self._closed:
            return name, doc
        failure = self._failure.message
        if self.options.strict and failure is not None and name not in ("start", "stop"):
            raise AtomscaleCallbackError(f"Atomscale upload failed (strict mode): {failure}")
        try:
            self._counters.add(documents=1)
            self._intake.deliver(name, doc)
        except Exception as exc:  # noqa: BLE001 - a callback bug must not end the run
            self._intake.error(f"{name} document", exc)
        return name, doc

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until queued work is processed and finished runs are finalized."""
        self._intake.end_stopped_runs()
        deadline = time.monotonic() + timeout
        marker = FlushMarker(threading.Event())
        self._queue.put_control(marker)
        if not marker.done.wait(max(0.0, deadline - time.monotonic())):
            return False
        return self._finalizers.join(deadline)

    def close(self, timeout: float | None = None) -> None:
        """Finalize every open run (as ended without a stop), stop the worker, close our client."""
        if self._closed:
            return
        self._intake.end_all_runs()
        self._closed = True
        self._queue.put_control(StopWorker())
        wait = self.options.close_timeout_s if timeout is None else timeout
        self._worker.join(wait)
        self._finalizers.join(time.monotonic() + wait)
        try:
            self._opener.close()
        except Exception as exc:  # noqa: BLE001
            logger.warning("Atomscale: closing the client failed: %s", exc)

    def __enter__(self) -> AtomscaleCallback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AtomscaleCallback(summaries={len(self.summaries)})"


def _default_client_factory(
    client: Any, api_key: str | ApiKey | None, endpoint: str | None
) -> Callable[[], Any]:
    """Makes the callback's own client; holds the key as an ``ApiKey``, never as text, and
    refuses a plain-http endpoint to another machine now rather than on the worker thread."""
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.client.config import resolve_endpoint
    from atomscale_bluesky.client.secret import ApiKey as Secret

    secret = Secret(api_key) if isinstance(api_key, str) else api_key
    if client is None:
        resolve_endpoint(endpoint)
    return lambda: AtomscaleClient(api_key=secret, endpoint=endpoint)
