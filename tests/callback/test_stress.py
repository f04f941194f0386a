"""Stress: the RunEngine thread and four monitor threads feed one callback at once.

Three runs in a row through one ``AtomscaleCallback`` subscribed to a real RunEngine, writing to the
real local server. In each run the RunEngine emits 10,000 ``primary`` events (an 8x8 frame and a
scalar, by ``create``/``read``/``save``) while four threads deliver 10,000 events each to the same
callback, as ophyd's monitor threads do: their own ``<signal>_monitor`` descriptors (sent from the
RunEngine thread when the run starts, like bluesky's ``monitor``), events with seq_num 1..N, as
single events or event pages, two camera streams and two sensor streams.

Concurrency is enforced, not hoped for: the threads and the plan run in lockstep, none more than
``LEAD`` events ahead of the slowest, so every thread's deliveries interleave with the RunEngine's
for the whole run. Nothing depends on speed: the checks are exact counts in the summary, the
live counters and on the server, and every stored frame, frame time, point and point time.
"""

from __future__ import annotations

import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import event_model
import numpy as np
import pytest
from ophyd import Component as Cpt
from ophyd import Device, Signal

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.server.runner import running_server

pytestmark = pytest.mark.slow

N = 10_000  # events per delivering thread (the RunEngine's and each monitor thread's) per run
RUNS = 3
LEAD = 500  # how far (in events) any delivering party may run ahead of the slowest one
PERIOD = 1.0 / 256  # frame/reading period: binary fractions keep every timestamp exact
SHAPE = (8, 8)
DEADLINE_S = 600.0  # generous: a party waiting this long means something hung, not "slow"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real local server (this module's ``client`` writes to it), its data on tmpfs if any.

    90,000 stored frames are 90,000 Zarr chunk files: on a busy shared disk their file-system
    metadata, not the callback, would set the test's pace (measured: 32 s against 10 s on tmpfs
    for 40,000 events), and removing them took 45 s.
    """
    shm = Path("/dev/shm")
    usable = shm.is_dir() and os.access(shm, os.W_OK)
    parent = shm if usable else tmp_path_factory.mktemp("stress-server")
    with (
        tempfile.TemporaryDirectory(prefix="atomscale-stress-", dir=parent) as root,
        running_server(data_dir=root) as srv,
    ):
        yield srv


@dataclass(frozen=True)
class Stream:
    """One delivering party's stream: the RunEngine's primary stream (index 0) or a monitor."""

    index: int
    key: str  # the frame key, or the scalar key
    kind: str  # "frame" or "scalar"
    form: str  # "event" or "event_page"
    page: int = 1
    units: str = ""

    @property
    def name(self) -> str:
        return f"{self.key}_monitor"


PRIMARY_FRAME = Stream(0, "det_image", "frame", "event")
PRIMARY_SCALAR = Stream(0, "det_temp", "scalar", "event", units="degC")
MONITORS = (
    Stream(1, "cam_a_image", "frame", "event"),
    Stream(2, "cam_b_image", "frame", "event_page", page=7),  # last page partial: 10000 % 7 = 4
    Stream(3, "substrate_temperature", "scalar", "event_page", page=13, units="K"),
    Stream(4, "chamber_pressure", "scalar", "event", units="mbar"),
)
CAMERAS = (PRIMARY_FRAME, MONITORS[0], MONITORS[1])
CHANNELS = (PRIMARY_SCALAR, MONITORS[2], MONITORS[3])


def stamps(base: float, stream: Stream) -> np.ndarray:
    """Hardware times of a stream's N readings: distinct, increasing, exactly representable."""
    return base + np.arange(N) * PERIOD + stream.index / 4096


def frames(run: int, stream: Stream) -> np.ndarray:
    """N distinct 8x8 uint8 frames; pixels 0-3 spell out (index low, index high, stream, run)."""
    j = np.arange(N)
    out = (np.arange(SHAPE[0] * SHAPE[1])[None, :] * (stream.index + 1) + j[:, None] + run) % 256
    out = out.astype(np.uint8)
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = j & 0xFF, j >> 8, stream.index, run
    return out.reshape(N, *SHAPE)


def values(run: int, stream: Stream) -> np.ndarray:
    return run * 1e6 + stream.index * 1e5 + np.arange(N) + 0.25


class ImageSignal(Signal):
    """A soft image signal described like the project's camera signal: (H, W) uint8."""

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(dtype="array", shape=list(SHAPE), dtype_numpy="|u1")
        return desc


class TemperatureSignal(Signal):
    """A soft scalar signal that declares its units, as an EPICS readback does."""

    def describe(self) -> dict[str, Any]:
        desc = super().describe()
        desc[self.name].update(units=PRIMARY_SCALAR.units, precision=3)
        return desc


class Detector(Device):
    image = Cpt(ImageSignal, value=np.zeros(SHAPE, np.uint8), kind="hinted")
    temp = Cpt(TemperatureSignal, value=0.0, kind="normal")


class Lockstep:
    """Progress of the RunEngine and the monitor threads; each party waits for the others."""

    def __init__(self, n_threads: int) -> None:
        self._cond = threading.Condition()
        self.re_done = 0
        self.thread_done = [0] * n_threads
        self.failure: str | None = None

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.failure is not None or ready(), DEADLINE_S)
            if self.failure is not None:
                raise RuntimeError(f"another party failed: {self.failure}")
            if not ok:
                raise TimeoutError(f"waited {DEADLINE_S} s for {what}")

    def re_emitted(self, n: int) -> None:
        if n % 50 and n < N:
            self.re_done = n  # waiters only need to hear every 50th (LEAD is far larger)
            return
        with self._cond:
            self.re_done = n
            self._cond.notify_all()

    def delivered(self, thread: int, n: int) -> None:
        if n % 50 and n < N:
            self.thread_done[thread] = n
            return
        with self._cond:
            self.thread_done[thread] = n
            self._cond.notify_all()

    def wait_re(self, n: int) -> None:
        if self.re_done >= n and self.failure is None:
            return  # no lock on the fast path
        self._wait(f"the RunEngine's event {n}", lambda: self.re_done >= n)

    def wait_threads(self, n: int) -> None:
        self._wait(f"every thread's event {n}", lambda: min(self.thread_done) >= n)

    def fail(self, why: str) -> None:
        with self._cond:
            self.failure = self.failure or why
            self._cond.notify_all()


@dataclass
class RunFeed:
    """One run's monitor streams: descriptors composed on the RE's start, then delivery threads."""

    run: int
    start: dict[str, Any]
    callback: AtomscaleCallback
    base: float = 0.0
    sync: Lockstep = field(default_factory=lambda: Lockstep(len(MONITORS)))
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    first_seen_re: dict[str, int] = field(default_factory=dict)  # RE progress at first delivery

    def __post_init__(self) -> None:
        self.base = math.floor(self.start["time"]) + 1.0  # every hardware time is after the start

    def begin(self) -> None:
        """On the RunEngine thread: send the monitor descriptors, then start the threads."""
        streams: dict[str, Any] = {}
        counters: dict[str, int] = {}
        for stream in MONITORS:
            bundle = event_model.compose_descriptor(
                start=self.start,
                streams=streams,
                event_counters=counters,
                name=stream.name,
                data_keys={stream.key: data_key(stream)},
                object_keys={stream.key.rsplit("_", 1)[0]: [stream.key]},
            )
            self.callback("descriptor", bundle.descriptor_doc)
            thread = threading.Thread(
                target=self._deliver,
                args=(stream, bundle),
                name=f"stress-monitor-{stream.index}",
                daemon=True,
            )
            self.threads.append(thread)
        for thread in self.threads:
            thread.start()

    def _deliver(self, stream: Stream, bundle: Any) -> None:
        try:
            ts = stamps(self.base, stream)
            data = frames(self.run, stream) if stream.kind == "frame" else values(self.run, stream)
            for first in range(0, N, stream.page):
                rows = range(first, min(first + stream.page, N))
                self.sync.wait_re(rows[-1] + 1 - LEAD)
                # schema-validate the first and last documents of every stream (validating all
                # 40,000 would cost more than the rest of the test)
                validate = first == 0 or rows[-1] == N - 1
                if stream.form == "event":
                    (j,) = rows
                    value = data[j] if stream.kind == "frame" else float(data[j])
                    doc = bundle.compose_event(
                        data={stream.key: value},
                        timestamps={stream.key: float(ts[j])},
                        seq_num=j + 1,
                        validate=validate,
                    )
                else:
                    column = [data[j] if stream.kind == "frame" else float(data[j]) for j in rows]
                    doc = bundle.compose_event_page(
                        data={stream.key: column},
                        timestamps={stream.key: [float(ts[j]) for j in rows]},
                        seq_num=[j + 1 for j in rows],
                        validate=validate,
                    )
                self.first_seen_re.setdefault(stream.key, self.sync.re_done)
                self.callback(stream.form, doc)
                self.sync.delivered(stream.index - 1, rows[-1] + 1)
        except BaseException as exc:  # reported by the test, and unblocks the other parties
            self.errors.append(f"{stream.name}: {exc!r}")
            self.sync.fail(f"{stream.name}: {exc!r}")


def data_key(stream: Stream) -> dict[str, Any]:
    if stream.kind == "frame":
        return {
            "source": f"PV:{stream.key.upper()}:image1:ArrayData",
            "dtype": "array",
            "shape": list(SHAPE),
            "dtype_numpy": "|u1",
            "object_name": stream.key.rsplit("_", 1)[0],
        }
    return {
        "source": f"PV:GROWTH:{stream.key}",
        "dtype": "number",
        "shape": [],
        "units": stream.units,
        "precision": 3,
        "object_name": stream.key.rsplit("_", 1)[0],
    }


def primary_plan(det: Detector, feed_of: Callable[[], RunFeed], run: int) -> Any:
    """10,000 create/read/save events, in lockstep with the monitor threads, then join them."""

    @bpp.run_decorator(md={"plan_name": "stress", "sample": "stress-sample", "run_index": run})
    def inner() -> Any:
        feed = feed_of()
        ts = stamps(feed.base, PRIMARY_FRAME)
        images = frames(run, PRIMARY_FRAME)
        temps = values(run, PRIMARY_SCALAR)
        for i in range(N):
            if i % 100 == 0:
                feed.sync.wait_threads(i - LEAD)
            # what the hardware did since the last reading: a new frame and a new temperature
            det.image.put(images[i], timestamp=float(ts[i]))
            det.temp.put(float(temps[i]), timestamp=float(ts[i]))
            yield from bps.create("primary")
            yield from bps.read(det)
            yield from bps.save()
            feed.sync.re_emitted(i + 1)
        # the monitor threads end within LEAD events of here; the run ends once they have
        for _ in range(int(DEADLINE_S / 0.02)):
            if not any(t.is_alive() for t in feed.threads):
                break
            yield from bps.sleep(0.02)
        assert not any(t.is_alive() for t in feed.threads), "monitor threads did not finish"

    return (yield from inner())


def test_runengine_and_four_monitor_threads_feed_one_callback(server, client, RE):
    reader = server.reader
    callback = AtomscaleCallback(client)
    RE.subscribe(callback)  # first: the callback sees each start before the monitors begin
    det = Detector(name="det")
    feeds: list[RunFeed] = []

    def on_start(name: str, doc: dict[str, Any]) -> None:
        feed = RunFeed(len(feeds), doc, callback)
        feeds.append(feed)
        feed.begin()

    RE.subscribe(on_start, "start")
    for run in range(RUNS):
        t0 = time.monotonic()
        RE(primary_plan(det, lambda: feeds[-1], run))
        t1 = time.monotonic()
        feed = feeds[run]
        for thread in feed.threads:
            thread.join(DEADLINE_S)
        assert feed.errors == []
        # every monitor thread began while the RunEngine was far from done: real interleaving
        assert all(seen < N - LEAD for seen in feed.first_seen_re.values()), feed.first_seen_re
        assert callback.flush(DEADLINE_S)
        assert len(callback.summaries) == run + 1
        summary = callback.summaries[run]
        check_summary(summary, feed)
        check_counters(callback, runs=run + 1)
        t2 = time.monotonic()
        check_server(reader, summary, feed)
        t3 = time.monotonic()  # reported (pytest -s), never asserted
        print(f"run {run}: plan {t1 - t0:.1f} s, checks {t2 - t1:.1f} s, server {t3 - t2:.1f} s")
    callback.close()
    assert [s.run_uid for s in callback.summaries] == [f.start["uid"] for f in feeds]


def check_summary(summary: Any, feed: RunFeed) -> None:
    assert summary.run_uid == feed.start["uid"]
    assert summary.exit_status == "success"
    problems = {
        "duplicate_events": summary.duplicate_events,
        "duplicate_starts": summary.duplicate_starts,
        "out_of_order_events": summary.out_of_order_events,
        "orphan_events": summary.orphan_events,
        "dropped_overflow": summary.dropped_overflow,
        "rejected_frames": summary.rejected_frames,
        "empty_frames": summary.empty_frames,
        "shape_changes": summary.shape_changes,
        "errors": summary.errors,
        "lost": summary.lost,
        "missing": summary.missing,
    }
    assert problems == dict.fromkeys(problems, 0), summary.error_messages
    assert summary.events == 5 * N, f"{summary.events} events counted of {5 * N} delivered"
    assert summary.frames == 3 * N and summary.points == 3 * N
    by_camera = {r.camera: r for r in summary.rheed}
    assert sorted(by_camera) == sorted(c.key for c in CAMERAS)  # one segment per camera
    assert len(summary.rheed) == len(CAMERAS)
    for cam in CAMERAS:
        r = by_camera[cam.key]
        ts = stamps(feed.base, cam)
        counts = {
            "frames": r.frames,
            "duplicates": r.duplicates,
            "late": r.late,
            "missing": r.missing,
            "stale": r.stale,
            "rejected": r.rejected,
            "not_sent": r.not_sent,
            "external_failed": r.external_failed,
            "lost_chunks": r.lost_chunks,
            "uploaded_all": r.uploaded == r.chunks,
        }
        expected = dict.fromkeys(counts, 0) | {"frames": N, "uploaded_all": True}
        assert counts == expected, (cam.key, r.error)
        assert r.data_id and r.frame_shape == SHAPE and r.error is None
        assert (r.first_ts, r.last_ts) == (ts[0], ts[-1])
        assert r.fps == pytest.approx(1 / PERIOD)
    series = summary.timeseries
    assert series is not None and series.data_id and series.error is None
    assert series.not_sent == 0 and series.non_finite == 0
    assert sorted(series.channels) == sorted(c.key for c in CHANNELS)
    for chan in CHANNELS:
        channel = series.channels[chan.key]
        assert (channel.points, channel.non_finite) == (N, 0), chan.key
        assert channel.units == chan.units


def check_counters(callback: AtomscaleCallback, *, runs: int) -> None:
    c = callback.counters
    got = {
        "runs": c.runs,
        "events": c.events,
        "frames_queued": c.frames_queued,
        "frames_pushed": c.frames_pushed,
        "points_queued": c.points_queued,
        "points_pushed": c.points_pushed,
        "streams_opened": c.streams_opened,
        "streams_closed": c.streams_closed,
        "errors": c.errors,
        "dropped_overflow": c.dropped_overflow,
        "rejected_frames": c.rejected_frames,
        "skipped_points": c.skipped_points,
        "duplicate_events": c.duplicate_events,
        "orphan_events": c.orphan_events,
        "queue_items": c.queue_items,
    }
    per_run = {
        "runs": 1,
        "events": 5 * N,
        "frames_queued": 3 * N,
        "frames_pushed": 3 * N,
        "points_queued": 3 * N,
        "points_pushed": 3 * N,
        "streams_opened": 4,  # three cameras and the time series
        "streams_closed": 4,
    }
    assert got == {k: per_run.get(k, 0) * runs for k in got}


def check_server(reader: Any, summary: Any, feed: RunFeed) -> None:
    by_camera = {r.camera: r for r in summary.rheed}
    for cam in CAMERAS:
        data_id = by_camera[cam.key].data_id
        stream = reader.rheed_stream(data_id)
        assert stream["n_frames"] == N and not stream["missing_chunks"], (cam.key, stream)
        np.testing.assert_array_equal(reader.frames(data_id), frames(feed.run, cam))
        ts = stamps(feed.base, cam)
        chunks = reader.chunk_times(data_id)
        assert sum(c["n_frames"] for c in chunks) == N
        # each chunk's capture start is the hardware time of its first frame
        assert [c["start_unix_ms_utc"] for c in chunks] == [
            int(round(ts[c["offset"]] * 1000)) for c in chunks
        ]
    series = summary.timeseries
    stored = reader.timeseries(series.data_id)["channels"]
    assert {k: v["count"] for k, v in stored.items()} == {c.key: N for c in CHANNELS}
    for chan in CHANNELS:
        t, v, units = reader.points(series.data_id, chan.key)
        order = np.argsort(t, kind="stable")
        np.testing.assert_array_equal(t[order], stamps(feed.base, chan))
        np.testing.assert_array_equal(v[order], values(feed.run, chan))
        assert units == chan.units
