"""Property: whatever the delivery (event or event_page, 1 to 5 frames per event, jittered event
times, an IOC clock offset from the RunEngine host, this computer's clock behind the server's, a
step or monitor stream), the stored frames are the camera's in order, every stored chunk starts at
its first frame's hardware time (to the ms, never shifted by this computer's clock offset) and the
stream's fps is within 2% of the true cadence. Each example is a real upload to the local server.

An event's time stamps its newest frame. The earlier frames of a multi-frame event ran between
the previous event's stamp and its own, evenly spaced: those are the hardware times the documents
determine. Before the first stamp (the first event's earlier frames) only the cadence is known,
so they are one stream period apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import event_model
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import AtomscaleClient, Backoff
from atomscale_bluesky.server.runner import running_server

from .docs import RunDocs

H, W = 16, 20
HOST_BEHIND_S = 7.0  # this computer's clock behind the server's, measured by the client
OFFSET_TOLERANCE_MS = 500  # the measured offset errs by up to half a round trip (slow when loaded)


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    """The local server, its clock HOST_BEHIND_S ahead of this computer's."""
    with running_server() as srv:
        srv.reader.advance_clock(HOST_BEHIND_S)
        yield srv


@pytest.fixture
def client(server, tmp_path) -> Iterator[AtomscaleClient]:
    """A client correcting this computer's times by its measured offset against the server."""
    with AtomscaleClient(
        api_key=server.api_key,
        endpoint=server.url,
        spool_dir=tmp_path / "spool",
        clock_sync=True,
        upload_workers=4,
        backoff=Backoff(first=0.05, max=0.2),
    ) as c:
        c.open_timeseries_stream(stream_name="clock probe")  # waits for the first exchange
        status = c.clock_status()
        assert status is not None
        assert status["offset_ms"] == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
        yield c


@dataclass
class Delivery:
    fps: float
    per_event: list[int]  # frames in each event
    jitter: list[float]  # per event: its stamp's offset from the cadence, in periods
    ioc_offset_s: float
    form: str
    stream: str


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    fps = draw(st.floats(4.0, 120.0))
    events = draw(st.integers(3, 40))
    if draw(st.booleans()):  # several frames, one time (its newest frame's) per event
        per_event = draw(st.lists(st.integers(1, 5), min_size=events, max_size=events))
    else:
        per_event = [1] * events
    return Delivery(
        fps=fps,
        per_event=per_event,
        jitter=draw(st.lists(st.floats(-0.1, 0.1), min_size=events, max_size=events)),
        ioc_offset_s=draw(st.floats(-10.0, 10.0)),
        form=draw(st.sampled_from(["event", "event_page"])),
        stream=draw(st.sampled_from(["primary", "cam_image_monitor"])),
    )


def event_stamps(delivery: Delivery, t0: float) -> list[float]:
    """Each event's hardware time: its newest frame's place in the cadence, jittered."""
    last = np.cumsum(delivery.per_event) - 1
    return [t0 + (i + j) / delivery.fps for i, j in zip(last, delivery.jitter, strict=True)]


def frame_times(per_event: list[int], stamps: list[float], stream_fps: float) -> list[float]:
    """Every frame's time: evenly spaced since the previous stamp, one period apart before the
    first (the same arithmetic as the callback's, so both round alike)."""
    times: list[float] = []
    previous = None
    for n, last in zip(per_event, stamps, strict=True):
        step = 1.0 / stream_fps if previous is None else (last - previous) / n
        times += [last - (n - 1 - j) * step for j in range(n)]
        previous = last
    return times


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_stored_times_are_hardware_times_and_fps_the_true_cadence(server, client, delivery):
    n = sum(delivery.per_event)
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 256, size=(n, H, W)).astype(np.uint8)
    rd = RunDocs.start()
    t0 = rd.run.start_doc["time"] + delivery.ioc_offset_s + 0.25
    stamps = event_stamps(delivery, t0)
    key = {"source": "PV:CAM:image1:ArrayData", "dtype": "array", "dtype_numpy": "|u1"}
    key["shape"] = [max(delivery.per_event), H, W]
    key["object_name"] = "cam"
    desc = rd.run.compose_descriptor(
        name=delivery.stream,
        data_keys={"cam_image": key},
        configuration={},
        object_keys={"cam": ["cam_image"]},
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    events, first = [], 0
    for seq, (per, stamp) in enumerate(zip(delivery.per_event, stamps, strict=True), start=1):
        events.append(
            desc.compose_event(
                data={"cam_image": frames[first : first + per]},
                timestamps={"cam_image": stamp},
                seq_num=seq,
            )
        )
        first += per
    if delivery.form == "event":
        rd.docs.extend(("event", e) for e in events)
    else:
        rd.docs.append(("event_page", event_model.pack_event_page(*events)))
    rd.stop()
    callback = AtomscaleCallback(client)
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    (rheed,) = summary.rheed
    assert rheed.stale == 0 and rheed.duplicates == 0 and rheed.frames == n
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    times = frame_times(delivery.per_event, stamps, rheed.fps)
    if n >= 3:
        true_fps = (n - 1) / (times[-1] - (stamps[0] - (delivery.per_event[0] - 1) / delivery.fps))
        assert abs(rheed.fps - true_fps) <= 0.02 * true_fps
    chunks = sorted(server.reader.chunk_times(rheed.data_id), key=lambda c: c["idx"])
    offset = 0
    for chunk in chunks:
        assert chunk["clock_offset_ms"] is None  # hardware times: never corrected
        assert chunk["start_unix_ms_utc"] == int(round(times[offset] * 1000))
        offset += chunk["n_frames"]
    assert offset == n
    assert rheed.clock_corrected_chunks == 0


@pytest.mark.parametrize("form", ["event", "event_page"])
def test_multi_frame_events_with_a_missed_frame_are_timed_by_the_counter(server, client, form):
    """A free-running camera at 20 fps, 4 frames per event, its counter in each event (the
    newest frame's); one frame never reached the IOC's plugin between two events. The counter
    says 5 frames ran between those two stamps, so the delivered 4 are its last 4."""
    fps, per, events = 20.0, 4, 12
    lost_after = 6  # the frame after event 6's is missing
    n = per * events
    counters = np.delete(np.arange(1, n + 2), per * lost_after)  # the delivered frames' counters
    rd = RunDocs.start()
    t0 = rd.run.start_doc["time"] + 0.25
    times = t0 + (counters - 1) / fps  # each frame at its counter's place in the cadence
    frames = np.random.default_rng(3).integers(0, 256, size=(n, H, W)).astype(np.uint8)
    image = {"source": "PV:CAM:image1:ArrayData", "dtype": "array", "dtype_numpy": "|u1"}
    image.update(shape=[per, H, W], object_name="cam")
    counter = {"source": "PV:CAM:cam1:ArrayCounter_RBV", "dtype": "integer", "shape": []}
    counter["object_name"] = "cam"
    desc = rd.run.compose_descriptor(
        name="primary",
        data_keys={"cam_image": image, "cam_array_counter": counter},
        configuration={},
        object_keys={"cam": ["cam_image", "cam_array_counter"]},
    )
    rd.docs.append(("descriptor", desc.descriptor_doc))
    docs = []
    for k in range(events):
        last = (k + 1) * per - 1
        stamp = float(times[last])
        docs.append(
            desc.compose_event(
                data={
                    "cam_image": frames[k * per : last + 1],
                    "cam_array_counter": int(counters[last]),
                },
                timestamps={"cam_image": stamp, "cam_array_counter": stamp},
                seq_num=k + 1,
            )
        )
    if form == "event":
        rd.docs.extend(("event", e) for e in docs)
    else:
        rd.docs.append(("event_page", event_model.pack_event_page(*docs)))
    rd.stop()
    callback = AtomscaleCallback(client, chunk_seconds=1.0)
    rd.feed(callback)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.stale == 0
    assert rheed.missing == 1, summary.text()
    assert abs(rheed.fps - fps) <= 0.02 * fps
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), frames)
    offset = 0
    for chunk in sorted(server.reader.chunk_times(rheed.data_id), key=lambda c: c["idx"]):
        assert chunk["start_unix_ms_utc"] == int(round(float(times[offset]) * 1000)), offset
        offset += chunk["n_frames"]
    assert offset == n
