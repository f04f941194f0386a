"""Property: whatever the delivery (event or event_page, 1 to 5 frames per event, a jittered cadence,
an IOC clock offset from the RunEngine host, a step or monitor stream), the stored frames are the
camera's in order, every stored chunk starts at its first frame's hardware time (to the ms) and the
stream's fps is within 2% of the true cadence. Each example is a real upload to the local server."""

from __future__ import annotations

from dataclasses import dataclass

import event_model
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import RunDocs

H, W = 16, 20


@dataclass
class Delivery:
    fps: float
    per_event: list[int]  # frames in each event
    jitter: list[float]  # per frame, in periods (single-frame events only)
    ioc_offset_s: float
    form: str
    stream: str


@st.composite
def deliveries(draw: st.DrawFn) -> Delivery:
    fps = draw(st.floats(4.0, 120.0))
    multi = draw(st.booleans())
    events = draw(st.integers(3, 40))
    if multi:  # one time per event (its newest frame's), frames at the camera's cadence
        per_event = draw(st.lists(st.integers(1, 5), min_size=events, max_size=events))
        jitter = [0.0] * sum(per_event)
    else:  # one frame and one time per event, the times jittered by up to 10% of a period
        per_event = [1] * events
        jitter = draw(st.lists(st.floats(-0.1, 0.1), min_size=events, max_size=events))
    return Delivery(
        fps=fps,
        per_event=per_event,
        jitter=jitter,
        ioc_offset_s=draw(st.floats(-10.0, 10.0)),
        form=draw(st.sampled_from(["event", "event_page"])),
        stream=draw(st.sampled_from(["primary", "cam_image_monitor"])),
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delivery=deliveries())
def test_stored_times_are_hardware_times_and_fps_the_true_cadence(server, client, delivery):
    n = sum(delivery.per_event)
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 256, size=(n, H, W)).astype(np.uint8)
    rd = RunDocs.start()
    t0 = rd.run.start_doc["time"] + delivery.ioc_offset_s + 0.25
    times = t0 + (np.arange(n) + np.asarray(delivery.jitter)) / delivery.fps
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
    for seq, per in enumerate(delivery.per_event, start=1):
        last = first + per - 1
        events.append(
            desc.compose_event(
                data={"cam_image": frames[first : last + 1]},
                timestamps={"cam_image": float(times[last])},
                seq_num=seq,
            )
        )
        first = last + 1
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
    true_fps = (n - 1) / (times[-1] - times[0]) if n > 1 else None
    if true_fps is not None and n >= 3:
        assert abs(rheed.fps - true_fps) <= 0.02 * true_fps
    chunks = sorted(server.reader.chunk_times(rheed.data_id), key=lambda c: c["idx"])
    offset = 0
    for chunk in chunks:
        assert chunk["start_unix_ms_utc"] == int(round(float(times[offset]) * 1000))
        offset += chunk["n_frames"]
    assert offset == n
