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
dropped, counted (``counters.dropped_overflow`` and the run summary) and logged, and later events
that find it full are dropped without waiting until it has drained to half (a stream faster than
the worker must not pace the RunEngine, whose backlog upstream is unbounded). Control documents
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
from atomscale_bluesky.callback.pixel_format import PixelOptions
from atomscale_bluesky.callback.progress import ProgressDisplay, resolve_progress
from atomscale_bluesky.callback.routing import RoutingOptions
from atomscale_bluesky.callback.run_metadata import MetadataKeys, RunDefaults, RunOverrides
from atomscale_bluesky.callback.run_report import FailureLatch
from atomscale_bluesky.callback.run_summaries import RunSummaries
from atomscale_bluesky.callback.session import interactive_session
from atomscale_bluesky.callback.stream_opener import RunStreams, StreamOpener
from atomscale_bluesky.callback.summary import RunSummary
from atomscale_bluesky.callback.work_queue import WorkQueue
from atomscale_bluesky.callback.worker import Worker
from atomscale_bluesky.settings import AtomscaleSettings, load_settings
from atomscale_bluesky.shards import ZSTD_LEVEL
from atomscale_bluesky.thread_priority import resolve_thread_nice

if TYPE_CHECKING:
    from atomscale_bluesky.client.secret import ApiKey

__all__ = ["AtomscaleCallback", "AtomscaleCallbackError"]

logger = logging.getLogger(__name__)


class AtomscaleCallbackError(RuntimeError):
    """Raised in strict mode on the document after a failure, so the RunEngine aborts the run."""


class AtomscaleCallback:
    """Bluesky document callback streaming RHEED video and sensor channels to Atomscale.

    Every option after ``client`` is keyword-only; the constructor overrides win over what the
    start document, descriptors and readings say. An option left None is read from ``settings``
    (default: the environment, ``ATOMSCALE_...`` variables, read once here; see
    :mod:`atomscale_bluesky.settings`), then its default.

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
        tests); None reads ``ATOMSCALE_ENDPOINT`` (or ``AS_API_ENDPOINT``), else
        ``https://api.atomscale.ai``. Plain ``http://`` to another machine raises ValueError here
        unless ``ATOMSCALE_ALLOW_INSECURE_HTTP=1``.
    sample
        Physical sample (name or UUID) of every run; overrides what the start document says
        (``sample_name``, ``sample``, ``physical_sample``). ``ATOMSCALE_SAMPLE`` is weaker: it
        applies only to runs that name no sample.
    project_id
        Project of every run; overrides the start document's ``project_id``
        (``ATOMSCALE_PROJECT_ID`` applies only to runs that name none).
    tags
        Tags of every stream; override the start document's ``tags`` (``ATOMSCALE_TAGS``
        applies only to runs that give none). Tags from ``metadata_keys.tag_keys`` are added.
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
        RunEngine aborts the run (for users who prefer no run to a partial upload); None reads
        ``ATOMSCALE_STRICT``, else False.
    stream_name
        Base name of every stream (default: the start's ``name``/``stream_name``, else
        "<plan_name> scan <scan_id>").
    bit_depth
        Declared bit depth of integer frames when the descriptor and metadata give none
        (e.g. 12 for a 12-bit camera delivering uint16). Without any declaration (``bit_depth``,
        a ``PixelFormat`` such as ``Mono12`` or a bit-depth reading in the camera's
        configuration) the depth is guessed from the run's first frames, with a warning.
    data_type
        The cameras' pixel type (an areaDetector ``DataType`` such as ``"UInt16"``, or a numpy
        type), or data key/glob -> type; wins over the camera's configuration and the data key.
        Integer frames delivered with the other sign (int16 over Channel Access) are read as it.
        None reads ``ATOMSCALE_DATA_TYPE``.
    pixel_range
        ``(low, high)``, or data key/glob -> ``(low, high)``: the values that become 0 and 255
        for the whole run (values outside clip, counted). Without it integer frames scale by
        their bit depth, and float frames by the range declared in the data key's display limits,
        else the usual range ([0, 1], [0, 255], ...) their first frames fit.
    max_frame_bytes
        Frames (one event's array) larger than this are rejected and counted.
    queue_max_bytes
        Bound of the work queue, in bytes of frame data.
    queue_timeout_s
        Longest a delivering thread waits for room in the queue before the event's data is
        dropped and counted.
    external_timeout_s
        How long the worker retries frames in a file not readable yet (missing, being
        written, shorter than the datum) before they count as lost, reported with the path.
    finalize_timeout_s
        Drain timeout handed to each stream's ``finalize``.
    open_wait_s
        Longest the worker waits for the server to create a stream (with this package's client).
        Past it the stream's data is spooled and the client creates it as soon as the server
        answers, so a server that accepts connections and never answers does not stall the
        worker while the work queue fills. For a minute after such an open, while its stream is
        still not created, further opens do not wait. None waits as long as the set-up
        requests and their retries take.
    stop_grace_s
        How long after a stop document the run still takes events: bluesky emits monitor events
        from ophyd's monitor thread, so one taken just before the stop can arrive just after it.
    points_per_chunk
        Time-series batching: push when a channel has this many points waiting (a full chunk).
    point_flush_s
        Time-series batching: push when the oldest waiting point is this many seconds old.
    instrument_id
        Optional growth-instrument id for the time-series stream.
    progress
        Live progress (frames and points spooled on disk, chunks uploaded and pending, upload lag):
        None (default) shows a tqdm line updated in place in an interactive session on a
        terminal (IPython, ``python -i``, Jupyter) and nothing otherwise; True forces the line,
        False turns it off, ``"lines"`` prints one line per interval (logs, pipes), ``"log"``
        logs it at INFO on ``atomscale_bluesky.callback.progress``.
    progress_interval_s
        Seconds between progress updates (default 0.5 for the line, 5 otherwise).
    print_summary
        Print each run's summary (and where to see its data) to stdout when its streams are
        finalized, as bluesky's BestEffortCallback prints its table. None (default): in an
        interactive session only. Either way the summary is in :attr:`summaries` and logged.
    client_factory
        Callable returning a client, used instead of ``api_key``/``endpoint`` when ``client``
        is None (for instance to choose the client's spool directory); called once, on the
        worker thread; the callback closes what it returns.
    frame_shapes
        Data key or glob pattern -> ``(height, width)`` of flat (1-D) frames, such as
        ophyd-async images over Channel Access. Without it the height and width come from the
        descriptor, the camera's configuration, or its ``ArraySize0_RBV``/``ArraySize1_RBV``
        readings in any stream of the run (flat frames wait, bounded, until those arrive).
    metadata_keys
        Which start-document keys give the sample, the project and the tags
        (:class:`~atomscale_bluesky.callback.run_metadata.MetadataKeys`); None reads
        ``ATOMSCALE_SAMPLE_KEYS``, ``ATOMSCALE_PROJECT_KEYS`` and ``ATOMSCALE_TAG_KEYS``.
    settings
        Where options left None come from
        (:class:`~atomscale_bluesky.settings.AtomscaleSettings`); None reads the environment.
    cameras
        The RHEED camera(s): data keys, device names or glob patterns (``"rheed"`` names the
        device and its ``rheed_image``). Only their arrays stream; other arrays are skipped
        with a reason (never counted lost). None reads ``ATOMSCALE_CAMERAS``; unset: every
        areaDetector-like image streams (frames written to files, an ``ArrayData`` PV, a
        camera-like name or configuration).
    run_filter
        Callable taking a run's start document, returning whether to upload the run (default:
        every run). A start-document key ``atomscale`` wins over it: ``RE(plan,
        atomscale=False)`` or ``atomscale={"upload": False}`` leaves a run out, ``True`` uploads.
    root_map
        Resource root (the directory the IOC wrote to) -> the directory this machine sees the
        same files under, as in event_model's Filler (``{"/epics/data": "/mnt/ioc/data"}``);
        None reads ``ATOMSCALE_ROOT_MAP``.
    handler_registry
        Resource spec (or stream-resource mimetype) -> handler class, used before the built-in
        handlers (AD_HDF5 and its SWMR variants, AD_TIFF, NPY_SEQ) and the installed ones
        (``databroker.handlers`` entry points). Classes follow the ecosystem's convention:
        ``cls(path, **resource_kwargs)``, called as ``handler(**datum_kwargs)``.
    ioc_clock
        Whose clock the readings' timestamps are on (None reads ``ATOMSCALE_IOC_CLOCK``, else
        ``"own"``). ``"own"``: the IOCs keep their own time, which is stored as it is; only
        times taken on this computer (frames without a hardware time) are corrected by this
        computer's measured offset against the endpoint. ``"host"``: the IOCs' clocks are
        this computer's (soft IOCs or ophyd.sim devices on this machine), so their times are
        corrected too; the summary says by how much. The IOC-to-RunEngine-host skew is
        measured per run either way and reported when it exceeds 1 s.
    run_streams
        Where the remote streams of each run are recorded (a bus consumer's run ledger): a run
        handled again after a crash writes to the streams recorded for it, rewriting its chunks
        in place, instead of opening new ones.
    thread_nice
        How many steps of nice (0 to 19) below the process the callback's worker, and the
        compression and upload threads of the client it makes, run (Linux). Lowered, the
        RunEngine's thread gets a core first when the cores are busy, and frames coming faster
        than they can be compressed are shed (counted) instead of slowing the run. None reads
        ``ATOMSCALE_THREAD_NICE``, else 0 (level). A client passed in keeps its own.
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
        strict: bool | None = None,
        stream_name: str | None = None,
        bit_depth: int | None = None,
        data_type: str | Mapping[str, str] | None = None,
        pixel_range: tuple[float, float] | Mapping[str, tuple[float, float]] | None = None,
        max_frame_bytes: int = 64 * MiB,
        queue_max_bytes: int = 256 * MiB,
        queue_timeout_s: float = 0.1,
        external_timeout_s: float = 10.0,
        finalize_timeout_s: float = 600.0,
        open_wait_s: float | None = 2.0,
        stop_grace_s: float = 0.5,
        points_per_chunk: int = 100,
        point_flush_s: float = 1.0,
        instrument_id: int | None = None,
        progress: bool | str | None = None,
        progress_interval_s: float | None = None,
        print_summary: bool | None = None,
        client_factory: Callable[[], Any] | None = None,
        frame_shapes: Mapping[str, tuple[int, int]] | None = None,
        metadata_keys: MetadataKeys | None = None,
        settings: AtomscaleSettings | None = None,
        cameras: Iterable[str] | str | None = None,
        run_filter: Callable[[Mapping[str, Any]], bool] | None = None,
        root_map: Mapping[str, str] | None = None,
        handler_registry: Mapping[str, Any] | None = None,
        ioc_clock: str | None = None,
        run_streams: RunStreams | None = None,
        thread_nice: int | None = None,
    ) -> None:
        env = load_settings() if settings is None else settings
        nice = resolve_thread_nice(thread_nice, env.thread_nice)
        env = env.replace(thread_nice=nice)  # the client made here runs its threads alike
        if endpoint is None and client is None and client_factory is None:
            endpoint = env.endpoint  # only the client made here goes there
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
            run_defaults=RunDefaults(env.sample, env.project_id, env.tags),
            metadata_keys=metadata_keys
            or MetadataKeys(env.sample_keys, env.project_keys, env.tag_keys),
            routing=RoutingOptions.build(
                env.include if include is None else include,
                env.exclude if exclude is None else exclude,
                env.rename if rename is None else rename,
                env.rotation_key if rotation_key is None else rotation_key,
                frame_shapes,
                env.cameras if cameras is None else cameras,
            ),
            pixels=PixelOptions.build(
                env.data_type if data_type is None else data_type, pixel_range
            ),
            chunk_seconds=chunk_seconds,
            compression_level=compression_level,
            strict=env.strict if strict is None else strict,
            max_frame_bytes=max_frame_bytes,
            queue_max_bytes=queue_max_bytes,
            queue_timeout_s=queue_timeout_s,
            external_timeout_s=external_timeout_s,
            finalize_timeout_s=finalize_timeout_s,
            open_wait_s=open_wait_s,
            stop_grace_s=stop_grace_s,
            points_per_chunk=points_per_chunk,
            point_flush_s=point_flush_s,
            instrument_id=instrument_id,
            progress=(mode := resolve_progress(env.progress if progress is None else progress)),
            progress_interval_s=progress_interval_s or (0.5 if mode == "bar" else 5.0),
            print_summary=_first_set(print_summary, env.print_summary, interactive_session),
            root_map=dict((env.root_map or {}) if root_map is None else root_map),
            handler_registry=dict(handler_registry or {}),
            run_filter=run_filter,
            ioc_clock=ioc_clock or env.ioc_clock or "own",
            thread_nice=nice,
        )
        self._summaries = RunSummaries()
        self._display = ProgressDisplay(self.options.progress)
        self._counters = LockedCounters()
        self._failure = FailureLatch()
        self._queue: WorkQueue[WorkItem] = WorkQueue(queue_max_bytes)
        self._opener = StreamOpener(
            client,
            client_factory or _default_client_factory(client, api_key, endpoint, env),
            self._counters,
            endpoint,
            run_streams,
            self.options.open_wait_s,
        )
        self._intake = Intake(self.options, self._queue, self._counters, self._failure)
        self._finalizers = Finalizers(
            self._counters, self.options.finalize_timeout_s, self._publish
        )
        self._worker = Worker(
            self.options,
            self._queue,
            self._counters,
            self._failure,
            self._opener,
            self._finalizers,
            lambda: self.counters,
            self._display,
        )
        self._closed = False
        self._worker.start()

    @property
    def summaries(self) -> list[RunSummary]:
        """One :class:`RunSummary` per finished run, appended when the run's streams are
        finalized (on a finalizer thread, after the run's ``RE(...)`` returned): use
        :meth:`wait` to get a run's summary once it is there."""
        return self._summaries.items

    def wait(self, run_uid: str | None = None, timeout: float | None = 120.0) -> RunSummary:
        """The summary of run ``run_uid`` (None: the latest run started), once its streams are
        finalized; raises TimeoutError after ``timeout`` s (None waits for ever)."""
        return self._summaries.wait(run_uid, timeout)

    def _publish(self, summary: RunSummary) -> None:
        """Called by a run's finalizer thread: print the summary when asked to, then keep it
        (so what a waiting ``wait()`` caller prints comes after it)."""
        if self.options.print_summary:
            self._display.write(summary.text())
        self._summaries.publish(summary)

    @property
    def progress(self) -> ProgressDisplay:
        """The live progress line (``progress.last_line`` is what it showed last)."""
        return self._display

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
            if name == "start" and isinstance(doc.get("uid"), str):
                self._summaries.started(doc["uid"])
            self._intake.deliver(name, doc)
            if name == "start" and self._intake.run_left_out(str(doc.get("uid"))):
                self._summaries.left_out(str(doc.get("uid")))
        except Exception as exc:  # noqa: BLE001 - a callback bug must not end the run
            self._intake.error(f"{name} document", exc)
        return name, doc

    def rheed_data_ids(self, run_uid: str | None = None) -> list[str]:
        """Remote ids of the RHEED streams opened for ``run_uid`` (default: the latest run
        started), oldest first; empty until the first chunk's stream exists on the server."""
        uid = run_uid or self._summaries.latest_start
        return [] if uid is None else self._opener.rheed_data_ids(uid)

    def flush(self, timeout: float = 60.0) -> bool:
        """Wait until queued work is processed and finished runs are finalized."""
        self._intake.end_stopped_runs()
        deadline = time.monotonic() + timeout
        marker = FlushMarker(threading.Event())
        self._queue.put_control(marker)
        if not marker.done.wait(max(0.0, deadline - time.monotonic())):
            return False
        return self._finalizers.join(deadline)

    def spooled(self, timeout: float = 600.0) -> bool:
        """Wait until the worker has processed every document delivered so far: each run whose
        stop was delivered then has all its frames and points in the spool (uploads may still
        be running). A bus consumer acknowledges messages on this."""
        self._intake.end_stopped_runs()
        marker = FlushMarker(threading.Event())
        self._queue.put_control(marker)
        return marker.done.wait(timeout)

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
        if self._worker.stopped:  # streams the server created while the finalizers drained
            self._opener.record_created()
        self._display.close()
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
    client: Any, api_key: str | ApiKey | None, endpoint: str | None, settings: AtomscaleSettings
) -> Callable[[], Any]:
    """Makes the callback's own client; holds the key as an ``ApiKey``, never as text, and
    refuses a plain-http endpoint to another machine now rather than on the worker thread."""
    from atomscale_bluesky.client import AtomscaleClient
    from atomscale_bluesky.client.config import resolve_endpoint
    from atomscale_bluesky.client.secret import ApiKey as Secret

    secret = Secret(api_key) if isinstance(api_key, str) else api_key
    if client is None:
        resolve_endpoint(endpoint, settings=settings)
    return lambda: AtomscaleClient(api_key=secret, endpoint=endpoint, settings=settings)


def _first_set(given: bool | None, from_env: bool | None, default: Callable[[], bool]) -> bool:
    """The constructor's value, else the environment's, else the default."""
    if given is not None:
        return given
    return default() if from_env is None else from_env
