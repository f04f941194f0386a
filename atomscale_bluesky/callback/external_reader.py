"""Frames stored in files (resource/datum, stream_resource/stream_datum), read on the worker.

References to external frames wait here, per camera and in order, until their file can be read
(a file being written may not hold them yet); then the frames go to the camera's uploader with
their hardware times: the file's per-frame EPICS times, else the event's timestamp.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomscale_bluesky.callback.camera_uploader import CameraUploader
from atomscale_bluesky.callback.external_files import (
    ExternalDataError,
    ExternalNotReady,
    ExternalStore,
)
from atomscale_bluesky.callback.messages import EventRows, ExternalDocument
from atomscale_bluesky.callback.routing import FrameKey, Route
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.values import as_float

__all__ = ["ExternalReader", "ExternalRef"]

RETRY_INTERVAL_S = 0.5  # how often the worker retries files that were not readable yet


@dataclass
class ExternalRef:
    """A pointer to frames in a file, waiting until it can be read."""

    fkey: FrameKey
    continuous: bool
    datum_id: str | None = None
    stream_datum: Mapping[str, Any] | None = None
    timestamp: float | None = None
    counter: int | None = None


class ExternalReader:
    """One run's external documents and the frame references waiting on its files."""

    def __init__(self, report: RunReport) -> None:
        self._report = report
        self.store = ExternalStore()
        self._waiting: dict[str, collections.deque[ExternalRef]] = {}  # camera key -> refs
        self._last_try: dict[str, float] = {}
        self._seq_times: dict[str, dict[int, float]] = {}  # descriptor -> seq_num -> event time

    # -- documents --------------------------------------------------------------------------------
    def add_document(self, item: ExternalDocument) -> str | None:
        """Register a resource or datum; a stream datum returns the frame key it feeds."""
        doc = item.doc
        try:
            if item.name == "resource":
                self.store.add_resource(doc)
            elif item.name == "stream_resource":
                self.store.add_stream_resource(doc)
            elif item.name == "datum":
                self.store.add_datum(doc)
            elif item.name == "stream_datum":
                return self.store.stream_key(doc.get("stream_resource", ""))
        except ExternalDataError as exc:
            self._report.error(f"{item.name} {doc.get('uid', '')}", exc)
        return None

    def watch_descriptor(self, route: Route) -> None:
        """Keep event times of a stream whose frames come by stream datum (they carry no times)."""
        if any(fk.external == "STREAM" for fk in route.frames.values()):
            self._seq_times.setdefault(route.descriptor_uid, {})

    def note_rows(self, rows: EventRows) -> None:
        """Record the event times of watched descriptors, by seq_num."""
        times = self._seq_times.get(rows.route.descriptor_uid)
        if times is None:
            return
        for i, seq in enumerate(rows.seq_nums):
            times[seq] = _row_time(rows, i)

    # -- references -------------------------------------------------------------------------------
    def wait_for_datum(
        self,
        camera: CameraUploader,
        fkey: FrameKey,
        datum_id: str,
        timestamp: float,
        counter: int | None,
        continuous: bool,
    ) -> None:
        ref = ExternalRef(fkey, continuous, datum_id=datum_id, timestamp=timestamp, counter=counter)
        self._queue(camera).append(ref)

    def wait_for_stream_datum(
        self, camera: CameraUploader, fkey: FrameKey, doc: Mapping[str, Any], continuous: bool
    ) -> None:
        self._queue(camera).append(ExternalRef(fkey, continuous, stream_datum=doc))

    def _queue(self, camera: CameraUploader) -> collections.deque[ExternalRef]:
        return self._waiting.setdefault(camera.key, collections.deque())

    def has_waiting(self, camera: CameraUploader) -> bool:
        return bool(self._waiting.get(camera.key))

    def due(self, camera: CameraUploader, now: float) -> bool:
        """Refs wait for this camera and the last try is older than the retry interval."""
        last = self._last_try.get(camera.key, 0.0)
        return self.has_waiting(camera) and now - last > RETRY_INTERVAL_S

    def drain(self, camera: CameraUploader, *, final: bool) -> None:
        """Read waiting frames in order; stop at the first one not ready (unless ``final``)."""
        self._last_try[camera.key] = time.monotonic()
        waiting = self._waiting.get(camera.key)
        while waiting:
            ref = waiting[0]
            try:
                frames, stamps, counters = self._read(ref, final)
            except ExternalNotReady as exc:
                if not final:
                    return
                waiting.popleft()
                self._failed(camera, ref, exc)
                continue
            except ExternalDataError as exc:
                waiting.popleft()
                self._failed(camera, ref, exc)
                continue
            waiting.popleft()
            camera.add_frames(ref.fkey, frames, stamps, counters, ref.continuous)

    def drain_all(self, cameras: list[CameraUploader], timeout_s: float) -> None:
        """At the end of the run: retry unreadable files for up to ``timeout_s``, then give up."""
        deadline = time.monotonic() + timeout_s
        for camera in cameras:
            while self.has_waiting(camera) and time.monotonic() < deadline:
                self.drain(camera, final=False)
                if self.has_waiting(camera):
                    time.sleep(0.05)
            self.drain(camera, final=True)

    def close(self) -> None:
        self.store.close()

    def _read(
        self, ref: ExternalRef, final: bool
    ) -> tuple[np.ndarray, list[float], list[int | None] | None]:
        if ref.datum_id is not None:
            got = self.store.read_datum(ref.datum_id)
            stamps = got.timestamps or [ref.timestamp if ref.timestamp is not None else math.nan]
            counters: list[int | None] | None = (
                list(got.unique_ids) if got.unique_ids else [ref.counter]
            )
            return got.frames, stamps, counters
        assert ref.stream_datum is not None
        got = self.store.read_stream_datum(ref.stream_datum)
        stamps = got.timestamps or self._seq_stamps(ref.stream_datum, len(got.frames), final)
        counters = list(got.unique_ids) if got.unique_ids else None
        return got.frames, stamps, counters

    def _seq_stamps(self, doc: Mapping[str, Any], n_frames: int, final: bool) -> list[float]:
        """Frame times of a stream datum from its events (they follow the stream datum)."""
        seqs = doc.get("seq_nums") or {}
        start, stop = int(seqs.get("start", 0)), int(seqs.get("stop", 0))
        times = self._seq_times.get(doc.get("descriptor", ""), {})
        if stop <= start:
            return [math.nan] * n_frames
        per = max(1, math.ceil(n_frames / (stop - start)))
        if not final and any(s not in times for s in range(start, stop)):
            raise ExternalNotReady("waiting for the events of this stream datum")
        return [times.get(start + j // per, math.nan) for j in range(n_frames)]

    def _failed(self, camera: CameraUploader, ref: ExternalRef, exc: BaseException) -> None:
        camera.note_external_failed(ref.fkey)
        what = ref.datum_id or (ref.stream_datum or {}).get("uid", "?")
        self._report.error(f"external frames of {camera.key} ({what})", exc)


def _row_time(rows: EventRows, i: int) -> float:
    """Best hardware time of one event row: any timestamp it carries, else the event time."""
    for stamps in rows.timestamps.values():
        number = as_float(stamps[i] if i < len(stamps) else None)
        if math.isfinite(number):
            return number
    return as_float(rows.times[i] if i < len(rows.times) else None)
