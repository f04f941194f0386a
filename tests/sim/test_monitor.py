"""Monitoring every frame: counters continuous, image/counter timestamps equal (IOC capture time)."""

from __future__ import annotations

import statistics
import zlib
from collections import defaultdict

import numpy as np
import pytest
from plugins.ioc_fixtures import ca_value

from atomscale_bluesky.plans import monitor_growth


class Collector:
    """Keeps monitor events per stream, with frames reduced to a checksum to save memory."""

    def __init__(self) -> None:
        self.docs: dict[str, list] = defaultdict(list)
        self.streams: dict[str, str] = {}

    def __call__(self, name, doc):
        if name == "descriptor":
            self.streams[doc["uid"]] = doc["name"]
            self.docs["descriptor"].append(doc)
        elif name == "event":
            stream = self.streams[doc["descriptor"]]
            data = dict(doc["data"])
            if "rheed_image" in data:
                frame = data["rheed_image"]
                data["rheed_image"] = (frame.shape, frame.dtype, zlib.crc32(frame.tobytes()))
            self.docs[stream].append(
                {"data": data, "timestamps": doc["timestamps"], "time": doc["time"]}
            )
        else:
            self.docs[name].append(doc)


@pytest.mark.parametrize("fps", [30, 120])
def test_monitor_delivers_every_frame_with_capture_timestamps(
    run_until, camera, sensors, camera_ioc, fps
):
    collector = Collector()
    frames, pressures = 150, 20  # run until this many were monitored (the rate depends on load)
    assert run_until(
        monitor_growth(camera, sensors, 600.0, fps=fps, md={"sample": "S1"}),
        lambda: (
            len(collector.docs["rheed_array_counter_monitor"]) > frames
            and len(collector.docs["growth_pressure_monitor"]) >= pressures
        ),
        collector,
    )
    images = collector.docs["rheed_image_monitor"]
    counters = collector.docs["rheed_array_counter_monitor"]
    assert collector.docs["stop"][0]["exit_status"] == "success"
    assert collector.docs["start"][0]["sample"] == "S1"
    # first event of each monitor stream is the value at subscription time (before acquisition)
    images, counters = images[1:], counters[1:]
    n = [c["data"]["rheed_array_counter"] for c in counters]
    assert len(n) >= frames
    # frames came at the plan's rate (IOC stamps), and the camera's period is set back after
    stamps = [c["timestamps"]["rheed_array_counter"] for c in counters]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert statistics.median(gaps) == pytest.approx(1 / fps, rel=0.2)
    assert camera.acquire_period.get() == pytest.approx(1 / 30)  # the fixture's period
    assert n == list(range(n[0], n[0] + len(n))), "frame counter has gaps or repeats"
    # the image and counter monitors are added and removed one after the other, so a frame taken
    # in between reaches only one of the two streams: at most one at either end goes unmatched
    image_ts = [e["timestamps"]["rheed_image"] for e in images]
    counter_ts = [c["timestamps"]["rheed_array_counter"] for c in counters]
    shared = set(image_ts) & set(counter_ts)
    for stamps in (image_ts, counter_ts):
        inside = [i for i, ts in enumerate(stamps) if ts in shared]
        assert inside == list(range(inside[0], inside[-1] + 1)), "unmatched frames mid-run"
        assert inside[0] <= 1 and len(stamps) - 1 - inside[-1] <= 1, (len(stamps), inside[:3])
    images = [e for e in images if e["timestamps"]["rheed_image"] in shared]
    counters = [c for c in counters if c["timestamps"]["rheed_array_counter"] in shared]
    image_ts = [e["timestamps"]["rheed_image"] for e in images]
    counter_ts = [c["timestamps"]["rheed_array_counter"] for c in counters]
    assert image_ts == counter_ts  # each frame carries the capture stamp its counter carries
    assert all(np.diff(image_ts) > 0)
    assert len({e["data"]["rheed_image"][2] for e in images}) == len(images)  # distinct frames
    assert images[0]["data"]["rheed_image"][:2] == ((480, 640), np.dtype(np.uint8))
    # the IOC's own counter is at or past the monitored sequence's end: frames taken while the
    # run was being stopped (monitors removed before acquisition stops) are the run's no more
    assert ca_value(camera_ioc.pv("image1:ArrayCounter_RBV")) >= n[-1]
    assert len(images) >= frames - 2
    # sensor readbacks were monitored too, with units in their descriptors
    desc = {d["name"]: d for d in collector.docs["descriptor"]}
    assert (
        desc["growth_substrate_temperature_monitor"]["data_keys"]["growth_substrate_temperature"][
            "units"
        ]
        == "degC"
    )
    assert len(collector.docs["growth_pressure_monitor"]) >= pressures
    # no frame in a monitor descriptor's configuration
    assert desc["rheed_image_monitor"]["configuration"] == {} or all(
        "rheed_image" not in c.get("data", {})
        for c in desc["rheed_image_monitor"]["configuration"].values()
    )
