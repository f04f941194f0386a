"""The callback's worker thread: takes work items in order and hands each to its run's uploader.

It owns every :class:`RunUploader` (built on ``RunOpened``, handed to a finalizer on ``RunEnded``),
the stream opener and the progress display; the delivering threads reach it only via the queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from atomscale_bluesky.callback.counters import CallbackCounters, LockedCounters
from atomscale_bluesky.callback.finalizer import Finalizers
from atomscale_bluesky.callback.messages import (
    DescriptorArrived,
    EventRows,
    ExternalDocument,
    FlushMarker,
    RunEnded,
    RunOpened,
    StopWorker,
    WorkItem,
)
from atomscale_bluesky.callback.options import CallbackOptions
from atomscale_bluesky.callback.progress import ProgressDisplay, ProgressLine
from atomscale_bluesky.callback.run_report import FailureLatch, report_outside_runs
from atomscale_bluesky.callback.run_uploader import RunUploader
from atomscale_bluesky.callback.stream_opener import StreamOpener
from atomscale_bluesky.callback.work_queue import WorkQueue
from atomscale_bluesky.thread_priority import lower_this_thread

__all__ = ["Worker"]

POLL_S = 0.25  # how often an idle worker wakes for periodic work (point batches, file retries)


class Worker:
    """One thread that turns work items into pushed chunks."""

    def __init__(
        self,
        options: CallbackOptions,
        queue: WorkQueue[WorkItem],
        counters: LockedCounters,
        failure: FailureLatch,
        opener: StreamOpener,
        finalizers: Finalizers,
        live_counters: Callable[[], CallbackCounters],
        progress: ProgressDisplay,
    ) -> None:
        self._options = options
        self._queue = queue
        self._counters = counters
        self._failure = failure
        self._opener = opener
        self._finalizers = finalizers
        self._live_counters = live_counters
        self._progress = progress
        self._runs: dict[str, RunUploader] = {}
        self._thread = threading.Thread(target=self._loop, name="atomscale-callback", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        """The thread has ended (what it owned may be used by another thread now)."""
        return not self._thread.is_alive()

    def _loop(self) -> None:
        lower_this_thread(self._options.thread_nice)  # the finalizers it starts inherit this
        last_progress = time.monotonic()
        while True:
            item = self._queue.get(timeout=POLL_S)
            if isinstance(item, StopWorker):
                break  # what is created after this, close() records
            if item is not None:
                self._handle_safely(item)
            for run in list(self._runs.values()):
                run.periodic()
            self._opener.record_created()
            interval = self._options.progress_interval_s
            if self._progress.mode and time.monotonic() - last_progress > interval:
                last_progress = time.monotonic()
                self._show_progress()

    def _show_progress(self) -> None:
        """Update the progress line while a run is open or finalizing; take it away after."""

        def active() -> bool:
            return bool(self._runs) or self._finalizers.busy()

        if not active():
            self._progress.idle()
            return
        client = self._opener.client
        try:
            status = client.status() if client is not None else None
        except Exception:  # noqa: BLE001 - a closed client has no status; progress is optional
            status = None
        self._progress.update(ProgressLine.read(self._live_counters(), status), active)

    def _handle_safely(self, item: WorkItem) -> None:
        try:
            self._handle(item)
        except Exception as exc:  # noqa: BLE001 - a bug here must not stop the worker
            run = self._runs.get(getattr(item, "run_uid", ""))
            context = f"processing {type(item).__name__}"
            if run is not None:
                run.ctx.report.error(context, exc)
            else:
                report_outside_runs(
                    context, exc, self._counters, self._failure, strict=self._options.strict
                )

    def _handle(self, item: WorkItem) -> None:
        if isinstance(item, FlushMarker):
            item.done.set()
        elif isinstance(item, RunOpened):
            self._runs[item.meta.uid] = RunUploader(
                item, self._options, self._counters, self._opener
            )
        elif isinstance(item, EventRows):
            self._runs[item.run_uid].on_rows(item)
        elif isinstance(item, DescriptorArrived):
            self._runs[item.run_uid].on_descriptor(item)
        elif isinstance(item, ExternalDocument):
            self._runs[item.run_uid].on_external(item)
        elif isinstance(item, RunEnded):
            run = self._runs.pop(item.run_uid)
            try:
                run.finish()
            finally:
                self._finalizers.start(run)
