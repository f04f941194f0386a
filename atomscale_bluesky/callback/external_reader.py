"""Frames stored in files (resource/datum, stream_resource/stream_datum), read on the worker.

References to external frames wait here, per camera and in order, until their file can be read
(a file being written may not hold them yet): a file that exists waits until the end of the run
and ``external_timeout_s`` after it, a missing file ``external_timeout_s`` from the first try; then the
frames go to the camera's uploader with their hardware times: the file's per-frame times, else
their own key's timestamp in the event (or the camera's frame counter's, published with the
frame), one reading per event. A fly scan's stream datums (no events) without times in the file
stream live, timed on this host at the camera's cadence (counted as a fallback). A resource whose
frames cannot be read (no handler, a file that never appeared) is reported once, with its file;
each of its references is counted as failed.
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
from atomscale_bluesky.callback.handlers import HandlerRegistry
from atomscale_bluesky.callback.messages import EventRows, ExternalDocument
from atomscale_bluesky.callback.routing import FrameKey, Route
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.values import as_float

__all__ = ["ExternalReader", "ExternalRef"]

# frames, times, counters, and whether the times are a host's clock (not the IOC's)
_Reading = tuple[np.ndarray, list[float], list[int | None] | None, bool]

RETRY_INTERVAL_S = 0.5  # how often the worker retries files that were not readable yet
# a stream datum whose descriptor has had no event for this long is a fly scan's: no events come
FLY_GRACE_S = 2.0


class _AwaitingEvents(ExternalNotReady):
    """A step scan's stream datum waits for its events (their times); not a file problem."""


@dataclass
class ExternalRef:
    """A pointer to frames in a file, waiting until it can be read."""

    fkey: FrameKey
    continuous: bool
    datum_id: str | None = None
    stream_datum: Mapping[str, Any] | None = None
    timestamp: float | None = None
    counter: int | None = None
    since: float | None = None  # when a read first found the file not ready (monotonic)

    @property
    def resource(self) -> str:
        return str((self.stream_datum or {}).get("stream_resource", ""))


class ExternalReader:
    """One run's external documents and the frame references waiting on its files."""

    def __init__(
        self,
        report: RunReport,
        registry: HandlerRegistry | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self._report = report
        self.store = ExternalStore(registry)
        self._timeout_s = timeout_s
        self._given_up: dict[str, str] = {}  # resource uid -> why its frames are lost
        self._events_seen: set[str] = set()  # descriptors that had events (a step scan)
        self._fly: set[str] = set()  # descriptors whose stream datums come without events
        self._fly_next: dict[str, float] = {}  # camera key -> the time of its next fly frame
        self._waiting: dict[str, collections.deque[ExternalRef]] = {}  # camera key -> refs
        self._last_try: dict[str, float] = {}
        # (descriptor, frame key) -> seq_num -> the frame's hardware time in that event
        self._seq_times: dict[tuple[str, str], dict[int, float]] = {}
        self._host_seqs: set[tuple[str, str, int]] = set()  # events with no hardware time
        self.host_timed: dict[str, int] = {}  # camera key -> frames timed by the RunEngine host

    # -- documents --------------------------------------------------------------------------------
    def add_document(self, item: ExternalDocument) -> str | None:
        """Register a resource or datum; a stream datum returns the frame key it feeds."""
        doc = item.doc
        try:
            problem = None
            if item.name == "resource":
                problem = self.store.add_resource(doc)
            elif item.name == "stream_resource":
                problem = self.store.add_stream_resource(doc)
            if problem:
                self._give_up(str(doc.get("uid", "")), problem)
            elif item.name == "datum":
                self.store.add_datum(doc)
            elif item.name == "stream_datum":
                return self.store.stream_key(doc.get("stream_resource", ""))
        except ExternalDataError as exc:
            self._report.error(f"{item.name} {doc.get('uid', '')}", exc)
        return None

    def watch_descriptor(self, route: Route) -> None:
        """Keep frame times of a stream whose frames come by stream datum (they carry no times)."""
        for key, fk in route.frames.items():
            if fk.external == "STREAM":
                self._seq_times.setdefault((route.descriptor_uid, key), {})

    def note_rows(self, rows: EventRows) -> None:
        """Record each watched frame key's hardware time in each event, by seq_num."""
        self._events_seen.add(rows.route.descriptor_uid)
        for key, fk in rows.route.frames.items():
            times = self._seq_times.get((rows.route.descriptor_uid, key))
            if times is None:
                continue
            for i, seq in enumerate(rows.seq_nums):
                ts = _own_time(rows, i, (key, fk.counter_key, *fk.device_keys))
                if math.isnan(ts):
                    ts = as_float(rows.times[i] if i < len(rows.times) else None)
                    self._host_seqs.add((rows.route.descriptor_uid, key, seq))
                times[seq] = ts

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
                readings = self._read(ref, final)
            except _AwaitingEvents as exc:
                if not final:
                    return
                waiting.popleft()
                self._failed(camera, ref, exc)
                continue
            except ExternalNotReady as exc:
                if not final and not self._expired(ref, exc):
                    return
                waiting.popleft()
                waited = time.monotonic() - (ref.since or time.monotonic())
                self._give_up(
                    self._resource_of(ref),
                    f"{exc} (gave up after {waited:.1f} s; external_timeout_s={self._timeout_s:g})",
                )
                self._failed(camera, ref, exc)
                continue
            except ExternalDataError as exc:
                waiting.popleft()
                self._failed(camera, ref, exc)
                continue
            waiting.popleft()
            for frames, stamps, counters, host_timed in readings:
                camera.add_frames(
                    ref.fkey, frames, stamps, counters, ref.continuous, host_timed=host_timed
                )

    def _expired(self, ref: ExternalRef, exc: ExternalNotReady) -> bool:
        """Give up on a reference during the run? Its file has been missing for longer than
        the timeout, or its resource was given up before; a file that exists but is not
        readable yet (held by its writer, too short) waits for the end of the run."""
        now = time.monotonic()
        ref.since = now if ref.since is None else ref.since
        if self._resource_of(ref) in self._given_up:
            return True
        return exc.missing and now - ref.since > self._timeout_s

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

    def _resource_of(self, ref: ExternalRef) -> str:
        if ref.datum_id is not None:
            return self.store.resource_of(ref.datum_id) or ""
        return ref.resource

    def _give_up(self, resource_uid: str, why: str) -> None:
        """A resource's frames are lost: reported once (log and summary), later ones counted."""
        if resource_uid in self._given_up:
            return
        self._given_up[resource_uid] = why
        self._report.error(f"external frames of {self.store.describe(resource_uid)}", why)

    def _read(self, ref: ExternalRef, final: bool) -> list[_Reading]:
        """The referenced frames as readings: per-frame times, or one time per event."""
        if ref.datum_id is not None:
            got = self.store.read_datum(ref.datum_id)
            stamps = got.timestamps or [ref.timestamp if ref.timestamp is not None else math.nan]
            counters: list[int | None] | None = (
                list(got.unique_ids) if got.unique_ids else [ref.counter]
            )
            return [(got.frames, stamps, counters, False)]
        doc = ref.stream_datum
        assert doc is not None
        got = self.store.read_stream_datum(doc, ref.fkey.frames_per_event or 1)
        ids: list[int | None] | None = list(got.unique_ids) if got.unique_ids else None
        if got.timestamps:
            return [(got.frames, got.timestamps, ids, False)]
        if self._is_fly(ref):
            return [(got.frames, self._fly_times(ref.fkey, len(got.frames)), ids, True)]
        return self._per_event(ref, got.frames, ids, final)

    def _is_fly(self, ref: ExternalRef) -> bool:
        """A stream datum of a descriptor that had no event while one waited past the grace:
        a fly scan's collect, whose frames must not wait for the end of the run."""
        descriptor = str((ref.stream_datum or {}).get("descriptor", ""))
        if descriptor in self._fly:
            return True
        if descriptor in self._events_seen:
            return False
        now = time.monotonic()
        ref.since = now if ref.since is None else ref.since
        if now - ref.since < FLY_GRACE_S:
            return False
        self._fly.add(descriptor)
        self._report.info_once(
            f"fly:{descriptor}",
            f"{ref.fkey.key}: stream datums without events or frame times in the file (a fly "
            "scan): timed on this host at the camera's cadence",
        )
        return True

    def _fly_times(self, fkey: FrameKey, n: int) -> list[float]:
        """Fly frames are contiguous: at the declared cadence from the last one, the first
        anchored on this host's clock (the newest frame is now); counted as host-timed."""
        self.host_timed[fkey.key] = self.host_timed.get(fkey.key, 0) + n
        if not fkey.fps:
            return [time.time()]  # the newest frame's time: the camera measures the cadence
        step = 1.0 / fkey.fps
        first = self._fly_next.get(fkey.key, time.time() - (n - 1) * step)
        self._fly_next[fkey.key] = first + n * step
        return [first + i * step for i in range(n)]

    def _per_event(
        self, ref: ExternalRef, frames: np.ndarray, ids: list[int | None] | None, final: bool
    ) -> list[_Reading]:
        """A stream datum without per-frame times: one reading per event, at its frame time."""
        doc = ref.stream_datum or {}
        seqs = doc.get("seq_nums") or {}
        start, stop = int(seqs.get("start", 0)), int(seqs.get("stop", 0))
        descriptor, key = str(doc.get("descriptor", "")), ref.fkey.key
        times = self._seq_times.get((descriptor, key), {})
        if stop <= start:
            return [(frames, [math.nan], ids, False)]
        if not final and any(s not in times for s in range(start, stop)):
            raise _AwaitingEvents("waiting for the events of this stream datum")
        per = max(1, len(frames) // (stop - start))
        readings: list[_Reading] = []
        for j, seq in enumerate(range(start, stop)):
            rows = slice(j * per, (j + 1) * per if seq < stop - 1 else len(frames))
            part = None if ids is None else ids[rows]
            host = (descriptor, key, seq) in self._host_seqs
            if host:
                self.host_timed[key] = self.host_timed.get(key, 0) + len(frames[rows])
            readings.append((frames[rows], [times.get(seq, math.nan)], part, host))
        return readings

    def _failed(self, camera: CameraUploader, ref: ExternalRef, exc: BaseException) -> None:
        """Its frames count as failed; reported unless its resource was reported already."""
        camera.note_external_failed(ref.fkey, _frames_of(ref))
        if self._resource_of(ref) in self._given_up:
            return
        what = ref.datum_id or (ref.stream_datum or {}).get("uid", "?")
        self._report.error(f"external frames of {camera.key} ({what})", str(exc))


def _frames_of(ref: ExternalRef) -> int:
    """How many frames a reference stands for (what is lost when it cannot be read)."""
    per = ref.fkey.frames_per_event or 1
    if ref.stream_datum is None:
        return per
    indices = ref.stream_datum.get("indices") or {}
    try:
        return max(1, (int(indices["stop"]) - int(indices["start"])) * per)
    except (KeyError, TypeError, ValueError):
        return per


def _own_time(rows: EventRows, i: int, keys: tuple[str | None, ...]) -> float:
    """A frame's hardware time in one event row: the first of ``keys`` (its own key, its
    camera's frame counter, its device's other readings) with a timestamp; NaN when none has."""
    for name in keys:
        stamps = rows.timestamps.get(name) if name else None
        number = as_float(stamps[i] if stamps is not None and i < len(stamps) else None)
        if math.isfinite(number):
            return number
    return math.nan
