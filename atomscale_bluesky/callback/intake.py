"""The intake: runs on the threads that deliver documents (the RunEngine's, ophyd's monitor threads).

It finds each document's run, drops repeated events, normalises the document variants (event and
event_page into rows, datum_page into datums, bulk_events into events), routes descriptors, and
puts the work on the queue. Nothing else: no I/O, no encoding. Its state (open runs, descriptor
and resource indexes, seen ``seq_num``s, the stop grace) is its own, under its own lock.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.duplicate_events import SeqNums, Verdict
from atomscale_bluesky.callback.messages import (
    DescriptorArrived,
    EventRows,
    ExternalDocument,
    RunEnded,
    RunOpened,
    WorkItem,
)
from atomscale_bluesky.callback.options import CallbackOptions, MiB
from atomscale_bluesky.callback.routing import Route, RunHints, route_descriptor
from atomscale_bluesky.callback.run_metadata import RunMetadata
from atomscale_bluesky.callback.run_report import FailureLatch, RunReport, report_outside_runs
from atomscale_bluesky.callback.run_selection import run_choice
from atomscale_bluesky.callback.work_queue import WorkQueue

__all__ = ["Intake"]

logger = logging.getLogger(__name__)

_EXTERNAL_RESOURCES = ("resource", "stream_resource")
_EXTERNAL_DATUMS = ("datum", "stream_datum")
_LEFT_OUT_MEMORY = 10_000  # uids of left-out runs remembered (late monitor events are theirs)


@dataclass
class _OpenRun:
    """One run as the intake sees it."""

    meta: RunMetadata
    report: RunReport
    hints: RunHints = field(default_factory=RunHints)
    routes: dict[str, Route] = field(default_factory=dict)  # descriptor uid -> route
    seen: dict[str, SeqNums] = field(default_factory=dict)  # descriptor uid -> seq_nums seen
    stop: Mapping[str, Any] | None = None  # the stop document, while the stop grace runs
    closed: bool = False

    @property
    def uid(self) -> str:
        return self.meta.uid


class Intake:
    """Sorts delivered documents into work items for the worker."""

    def __init__(
        self,
        options: CallbackOptions,
        queue: WorkQueue[WorkItem],
        counters: LockedCounters,
        failure: FailureLatch,
    ) -> None:
        self._options = options
        self._queue = queue
        self._counters = counters
        self._failure = failure
        self._lock = threading.RLock()
        self._runs: dict[str, _OpenRun] = {}
        self._by_descriptor: dict[str, _OpenRun] = {}
        self._by_resource: dict[str, _OpenRun] = {}
        self._orphans_warned: set[str] = set()
        # runs left out (start key or run_filter): their documents are dropped without a word
        self._left_out: set[str] = set()  # run, descriptor and resource uids
        self._left_out_latest: str | None = None

    # -- entry point ------------------------------------------------------------------------------
    def deliver(self, name: str, doc: Mapping[str, Any]) -> None:
        """Take one document; unknown names (``bulk_datum`` ...) carry no data for us."""
        if self._left_out and name != "start" and self._is_left_out(name, doc):
            return
        if name == "start":
            self._on_start(doc)
        elif name == "descriptor":
            self._on_descriptor(doc)
        elif name == "event":
            self._on_rows(doc, _event_as_page(doc))
        elif name == "event_page":
            self._on_rows(doc, doc)
        elif name == "bulk_events":
            for events in doc.values():
                for event in events:
                    self._on_rows(event, _event_as_page(event))
        elif name in _EXTERNAL_RESOURCES:
            self._on_resource(name, doc)
        elif name == "datum_page":
            for datum in _datums_of_page(doc):
                self._on_datum("datum", datum)
        elif name in _EXTERNAL_DATUMS:
            self._on_datum(name, doc)
        elif name == "stop":
            self._on_stop(doc)

    def error(self, context: str, exc: BaseException | str) -> None:
        """A failure outside any known run's data (a malformed document)."""
        with self._lock:
            latest = self._latest_run()
        if latest is not None:
            latest.report.error(context, exc)
            return
        report_outside_runs(
            context, exc, self._counters, self._failure, strict=self._options.strict
        )

    # -- runs ---------------------------------------------------------------------------------------
    def _on_start(self, doc: Mapping[str, Any]) -> None:
        uid = doc.get("uid")
        # the user's filter runs outside the lock: a slow one must not hold up monitor threads
        upload, why = run_choice(doc, self._options.run_filter)
        with self._lock:
            if not isinstance(uid, str) or not uid.strip():
                # checked before anything changes: a malformed start must not end the running run
                self.error("start document", f"no valid uid ({uid!r}); ignored, the run goes on")
                return
            running = self._runs.get(uid)
            if running is not None:
                running.report.add(duplicate_starts=1)
                running.report.warn_once(
                    "dupstart", "start document repeated for the running run; ignored (counted)"
                )
                return
            self._failure.reset()
            for run in list(self._runs.values()):
                if run.stop is None:
                    run.report.warn_once(
                        "nostop", "run ended without a stop document; finalizing it now"
                    )
                self._end_run(run)
            self._left_out_latest = None
            if len(self._left_out) > _LEFT_OUT_MEMORY:
                self._left_out.clear()
            if not upload:
                self._left_out.add(uid)
                self._left_out_latest = uid
                logger.info("Atomscale: run %s not uploaded (%s)", uid[:8], why)
                self._counters.add(runs_left_out=1)
                return
            meta = self._options.run_metadata(doc)
            report = RunReport(uid, self._counters, self._failure, strict=self._options.strict)
            self._runs[uid] = _OpenRun(meta, report)
            self._queue.put_control(RunOpened(meta, report))
        self._counters.add(runs=1)

    def _on_stop(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", ""))
            if run is None or run.stop is not None:
                self._orphan("stop", doc.get("run_start", "?"))
                return
            run.stop = doc
            if self._options.stop_grace_s == 0:
                self._end_run(run)
                return
        # bluesky emits monitor events from ophyd's monitor thread: one taken just before the stop
        # can arrive just after it, so the run still takes events for stop_grace_s
        timer = threading.Timer(self._options.stop_grace_s, self.end_stopped_runs, args=(run.uid,))
        timer.daemon = True
        timer.start()

    def end_stopped_runs(self, uid: str | None = None) -> None:
        """End the run ``uid`` (or every run) whose stop document arrived."""
        with self._lock:
            for run in list(self._runs.values()):
                if run.stop is not None and uid in (None, run.uid):
                    self._end_run(run)

    def end_all_runs(self) -> None:
        """End every open run, as ended without a stop unless its stop already arrived."""
        with self._lock:
            for run in list(self._runs.values()):
                self._end_run(run)

    def _end_run(self, run: _OpenRun) -> None:
        """Called under the lock: no more data for this run; the worker finishes it."""
        run.closed = True
        self._runs.pop(run.uid, None)
        stop = run.stop
        status = (stop or {}).get("exit_status") or ("no stop document" if stop is None else None)
        run.report.set_exit_status(status)
        self._queue.put_control(RunEnded(run.uid, stop))

    def _latest_run(self) -> _OpenRun | None:
        return next(reversed(self._runs.values()), None) if self._runs else None

    def _orphan(self, name: str, ref: str) -> None:
        latest = self._latest_run()
        if latest is not None:
            latest.report.add(orphan_events=1)
        else:
            self._counters.add(orphan_events=1)
        if ref not in self._orphans_warned:
            self._orphans_warned.add(ref)
            logger.warning(
                "Atomscale: %s refers to unknown or finished %s; dropped (counted)", name, ref
            )

    def run_left_out(self, run_uid: str) -> bool:
        """Was this run left out (the ``atomscale`` start key or the run filter)?"""
        with self._lock:
            return run_uid in self._left_out

    def _is_left_out(self, name: str, doc: Mapping[str, Any]) -> bool:
        """True for a document of a run left out (remembering its descriptors and resources)."""
        if not isinstance(doc, Mapping):
            return False
        with self._lock:
            if name == "descriptor" or name in _EXTERNAL_RESOURCES:
                run = doc.get("run_start")
                if run in self._left_out or (
                    run is None and name != "descriptor" and self._left_out_latest
                ):
                    self._left_out.add(doc.get("uid", ""))
                    return True
                return False
            if name == "stop":
                if doc.get("run_start") != self._left_out_latest:
                    return doc.get("run_start") in self._left_out
                self._left_out_latest = None
                return True
            fields = ("descriptor", "resource", "stream_resource")
            refs = list(doc) if name == "bulk_events" else [doc.get(f) for f in fields]
            return any(ref in self._left_out for ref in refs if ref)

    # -- descriptors and events ---------------------------------------------------------------------
    def _on_descriptor(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", ""))
            if run is None:
                self._orphan("descriptor", doc.get("uid", "?"))
                return
            route = route_descriptor(doc, self._options.routing, run.hints)
            run.hints.absorb(route)
            run.routes[route.descriptor_uid] = route
            run.seen[route.descriptor_uid] = SeqNums()
            self._by_descriptor[route.descriptor_uid] = run
            self._queue.put_control(DescriptorArrived(run.uid, route))
        for key, reason in route.skipped.items():
            run.report.skip_key(key, reason)

    def _on_rows(self, doc: Mapping[str, Any], page: Mapping[str, Any]) -> None:
        """An event (as a one-row page) or an event page: keep new rows, queue them."""
        desc_uid = doc.get("descriptor", "")
        with self._lock:
            run = self._by_descriptor.get(desc_uid)
            if run is None or run.closed:
                self._orphan("event", desc_uid)
                return
            route = run.routes[desc_uid]
            seqs = list(page.get("seq_num", []))
            fresh = self._fresh_rows(run, desc_uid, seqs)
        if not fresh:
            return
        rows = _select_rows(run.uid, route, page, seqs, fresh)
        nbytes, skip = self._frame_bytes(run, route, rows)
        rows = EventRows(
            rows.run_uid, route, rows.data, rows.timestamps, rows.seq_nums, rows.times, skip
        )
        queued = self._enqueue_rows(run, rows, nbytes)
        if queued is None:
            return
        run.report.add(events=len(rows))
        if route.not_cameras:
            skipped = sum(len(rows.data.get(key, ())) for key in route.not_cameras)
            run.report.add(skipped_arrays=skipped)
        if queued:
            self._counters.add(frames_queued=len(rows) * (len(route.frames) - len(skip)))
            return
        run.report.add(dropped_overflow=len(rows))
        run.report.warn_once(
            "overflow",
            f"work queue full ({self._queue.max_bytes / MiB:.0f} MiB); dropping events "
            f"(seq {rows.seq_nums[0]}...) of stream {route.stream_name!r}; further drops are "
            "counted",
        )

    def _enqueue_rows(self, run: _OpenRun, rows: EventRows, nbytes: int) -> bool | None:
        """Queue rows, waiting (bounded, outside the lock) for room: True queued, False dropped,
        None when the run ended meanwhile (the rows count as orphans)."""
        deadline = time.monotonic() + self._options.queue_timeout_s
        while True:
            with self._lock:
                if run.closed:  # ended by another thread since these rows were taken
                    self._orphan("event", rows.route.descriptor_uid)
                    return None
                if self._queue.try_put_data(rows, nbytes):
                    return True
            if not self._queue.wait_for_room(nbytes, deadline):
                return False

    def _fresh_rows(self, run: _OpenRun, desc_uid: str, seqs: list[int]) -> list[int]:
        """Indices of rows whose seq_num was not seen before; duplicates are counted and dropped."""
        seen = run.seen[desc_uid]
        fresh: list[int] = []
        for i, seq in enumerate(seqs):
            verdict = seen.see(seq)
            if verdict is Verdict.DUPLICATE:
                run.report.add(duplicate_events=1)
                run.report.warn_once(f"dup:{desc_uid}", f"duplicate event seq_num {seq} dropped")
                continue
            if verdict is Verdict.LATE:
                run.report.add(out_of_order_events=1)
            fresh.append(i)
        return fresh

    def _frame_bytes(
        self, run: _OpenRun, route: Route, rows: EventRows
    ) -> tuple[int, frozenset[str]]:
        """Bytes of frame data to queue; frame keys over ``max_frame_bytes`` are rejected."""
        limit = self._options.max_frame_bytes
        total = 0
        skip: set[str] = set()
        for key in route.frames:
            for value in rows.data.get(key, ()):
                nbytes = int(getattr(value, "nbytes", 0) or 0)
                if nbytes > limit:
                    skip.add(key)
                total += nbytes
        if not skip:
            return total, frozenset()
        rejected = sum(len(rows.data.get(key, ())) for key in skip)
        run.report.add(rejected_frames=rejected)
        run.report.warn_once(
            f"huge:{sorted(skip)}",
            f"frames of {sorted(skip)} exceed max_frame_bytes={limit}; rejected (counted)",
        )
        return 0, frozenset(skip)

    # -- external data ------------------------------------------------------------------------------
    def _on_resource(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            run = self._runs.get(doc.get("run_start", "")) or self._latest_run()
            if run is None:
                self._orphan(name, doc.get("uid", "?"))
                return
            self._by_resource[doc["uid"]] = run
            self._queue.put_control(ExternalDocument(run.uid, name, doc))

    def _on_datum(self, name: str, doc: Mapping[str, Any]) -> None:
        with self._lock:
            if name == "stream_datum":
                run = self._by_descriptor.get(doc.get("descriptor", "")) or self._by_resource.get(
                    doc.get("stream_resource", "")
                )
            else:
                run = self._by_resource.get(doc.get("resource", ""))
            if run is None:
                self._orphan(name, doc.get("resource", doc.get("stream_resource", "?")))
                return
            self._queue.put_control(ExternalDocument(run.uid, name, doc))


def _event_as_page(event: Mapping[str, Any]) -> dict[str, Any]:
    """One event as a one-row page (columns of lists)."""
    return {
        "seq_num": [event.get("seq_num", 0)],
        "time": [event.get("time", math.nan)],
        "data": {k: [v] for k, v in (event.get("data") or {}).items()},
        "timestamps": {k: [v] for k, v in (event.get("timestamps") or {}).items()},
    }


def _select_rows(
    run_uid: str, route: Route, page: Mapping[str, Any], seqs: list[int], fresh: list[int]
) -> EventRows:
    """The rows ``fresh`` of a page (all of them, without copying, when none was dropped)."""
    data: Mapping[str, list[Any]] = page.get("data") or {}
    timestamps: Mapping[str, list[Any]] = page.get("timestamps") or {}
    times = list(page.get("time", []))
    if len(fresh) < len(seqs):
        data = {k: [v[i] for i in fresh] for k, v in data.items()}
        timestamps = {k: [v[i] for i in fresh] for k, v in timestamps.items()}
        times = [times[i] for i in fresh] if len(times) == len(seqs) else times
        seqs = [seqs[i] for i in fresh]
    return EventRows(run_uid, route, data, timestamps, seqs, times, frozenset())


def _datums_of_page(page: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A datum_page as its datums."""
    kwargs = page.get("datum_kwargs") or {}
    return [
        {
            "datum_id": datum_id,
            "resource": page["resource"],
            "datum_kwargs": {k: v[i] for k, v in kwargs.items()},
        }
        for i, datum_id in enumerate(page["datum_id"])
    ]
