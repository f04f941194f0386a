"""Clock correction applies to this computer's times only, and IOC-to-host skew is reported.

The local server's clock is advanced so this computer is measurably behind it (``/local/clock``,
which ``/gateway/time`` answers from); devices stamp their readings on an IOC clock offset from
this computer's. A real RunEngine runs each plan and the stored times are read back.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pytest
from bluesky.plans import count

from atomscale_bluesky.callback import AtomscaleCallback

from .clock_devices import IocClockCamera, ioc_clock_camera

HOST_BEHIND_S = 5.0  # the server's clock is this far ahead of this computer's
OFFSET_TOLERANCE_MS = 500  # the measured offset errs by up to half a round trip (slow when loaded)


@pytest.fixture
def behind_server(local_server: Any, make_client: Any) -> tuple[Any, Any]:
    """The local server with this computer HOST_BEHIND_S behind it, and a clock-synced client."""
    local_server.reader.advance_clock(HOST_BEHIND_S)
    client = make_client(local_server, clock_sync=True)
    client.open_timeseries_stream(stream_name="clock probe")  # waits for the first exchange
    status = client.clock_status()
    assert status is not None and status["offset_ms"] == pytest.approx(
        1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS
    )
    return local_server, client


def _run(RE: Any, client: Any, cam: IocClockCamera, n: int, **options: Any) -> Any:
    callback = AtomscaleCallback(client, **options)
    RE.subscribe(callback)
    RE(count([cam], num=n, delay=0.02))
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    return summary


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _chunks(server: Any, data_id: str) -> list[dict[str, Any]]:
    return sorted(server.reader.chunk_times(data_id), key=lambda c: c["idx"])


def _assert_starts(server: Any, rheed: Any, times: list[float], *, corrected: bool) -> None:
    """Each chunk starts at its first frame's time, plus the chunk's recorded offset if any."""
    first = 0
    for chunk in _chunks(server, rheed.data_id):
        offset = chunk["clock_offset_ms"]
        if corrected:
            assert offset == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
            assert chunk["start_unix_ms_utc"] == _ms(times[first]) + offset
        else:
            assert offset is None
            assert chunk["start_unix_ms_utc"] == _ms(times[first])
        first += chunk["n_frames"]
    assert first == len(times)


def test_ioc_times_are_stored_as_the_ioc_gave_them(behind_server, RE):
    server, client = behind_server
    cam = ioc_clock_camera(
        HOST_BEHIND_S
    )  # the IOC is right: on the server's time, ahead of this host
    n = 30
    summary = _run(RE, client, cam, n)
    (rheed,) = summary.rheed
    times = [ts for ts, _ in cam.image.produced]
    assert rheed.frames == n and rheed.stale == 0
    np.testing.assert_array_equal(
        server.reader.frames(rheed.data_id), np.stack([f for _, f in cam.image.produced])
    )
    _assert_starts(server, rheed, times, corrected=False)
    assert rheed.clock_corrected_chunks == 0 and rheed.clock_correction_ms is None
    stored_ts, values, _ = server.reader.points(summary.timeseries.data_id, "cam_temperature")
    expected = cam.temperature.produced
    np.testing.assert_array_equal(stored_ts, [ts for ts, _ in expected])
    np.testing.assert_array_equal(values, [v for _, v in expected])
    assert summary.timeseries.clock_corrected_batches == 0
    assert "corrected" not in summary.text()


def test_ioc_sharing_the_host_clock_is_corrected_and_the_summary_says_by_how_much(
    behind_server, RE, caplog
):
    server, client = behind_server
    cam = ioc_clock_camera(0.0)  # a soft IOC on this computer
    summary = _run(RE, client, cam, 30, ioc_clock="host")
    (rheed,) = summary.rheed
    _assert_starts(server, rheed, [ts for ts, _ in cam.image.produced], corrected=True)
    assert rheed.clock_corrected_chunks == rheed.chunks > 0
    assert rheed.clock_correction_ms == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
    ts = summary.timeseries
    assert ts.clock_corrected_batches == ts.batches > 0
    assert ts.clock_correction_ms == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
    stored_ts, _, _ = server.reader.points(ts.data_id, "cam_temperature")
    produced = np.array([t for t, _ in cam.temperature.produced])
    np.testing.assert_allclose(stored_ts - produced, HOST_BEHIND_S, atol=OFFSET_TOLERANCE_MS / 1000)
    text = summary.text()
    assert f"on the host clock corrected by {rheed.clock_correction_ms:+d} ms" in text
    assert f"host-clock times corrected by {ts.clock_correction_ms:+.0f} ms" in text
    # the IOC's clock is the RunEngine host's: no skew to report
    assert summary.ioc_clock_skew_s == pytest.approx(0.0, abs=0.5)
    assert summary.ioc_clock_skew_readings >= 2 * 29
    assert "IOC clock" not in text
    assert not [r for r in caplog.records if "IOC clock" in r.getMessage()]
    logged = [
        r.getMessage() for r in caplog.records if "computer's clock corrected by" in r.getMessage()
    ]
    assert len(logged) == 1 and f"{rheed.clock_correction_ms:+d} ms" in logged[0]


def test_ioc_behind_the_host_is_reported_and_nothing_is_dropped(
    local_server, make_client, RE, caplog
):
    client = make_client(local_server)
    cam = ioc_clock_camera(-3.0)
    n = 30
    summary = _run(RE, client, cam, n)
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.stale == 0 and rheed.late == 0 and rheed.duplicates == 0
    _assert_starts(local_server, rheed, [ts for ts, _ in cam.image.produced], corrected=False)
    assert summary.ioc_clock_skew_s == pytest.approx(3.0, abs=0.25)
    assert summary.ioc_clock_skew_readings >= 2 * (n - 1)
    warned = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "IOC clock 3.0 s behind" in r.getMessage()
    ]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
    assert "IOC clock 3.0 s behind the RunEngine host" in summary.text()
    assert summary.as_dict()["ioc_clock_skew_s"] == summary.ioc_clock_skew_s


def test_a_frame_without_hardware_time_gets_the_corrected_host_time(behind_server, RE):
    server, client = behind_server
    cam = ioc_clock_camera(0.0, stamped=False)
    n = 25
    before = time.time()
    summary = _run(RE, client, cam, n)
    after = time.time()
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.wall_clock_frames == n
    assert rheed.clock_corrected_chunks == rheed.chunks > 0
    for chunk in _chunks(server, rheed.data_id):
        offset = chunk["clock_offset_ms"]
        assert offset == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
        host_ms = chunk["start_unix_ms_utc"] - offset
        assert _ms(before) <= host_ms <= _ms(after)
    assert "frames without hardware time (host clock used)" in summary.text()


@pytest.mark.parametrize("ioc_clock", ["own", "host"])
def test_simulated_camera_ioc_times(behind_server, RE, camera, ioc_clock):
    """The caproto camera IOC runs on this computer, so its clock is this host's: stored as it
    is by default, corrected when declared to share the host's clock."""
    server, client = behind_server
    times: list[float] = []
    RE.subscribe(lambda name, doc: times.append(doc["timestamps"]["rheed_image"]), "event")
    n = 8
    callback = AtomscaleCallback(client, ioc_clock=ioc_clock)
    RE.subscribe(callback)
    RE(count([camera], num=n))
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.errors == 0 and summary.lost == 0, summary.text()
    (rheed,) = summary.rheed
    assert rheed.frames == n == len(times)
    _assert_starts(server, rheed, times, corrected=ioc_clock == "host")
    assert summary.ioc_clock_skew_readings > 0


def test_client_corrects_host_times_and_passes_hardware_times(behind_server):
    """The client's own rule, below the callback: a push says whose clock its times are on."""
    server, client = behind_server
    stream = client.open_rheed_stream(fps=10.0, chunk_size=20)
    frames = np.zeros((4, 8, 8), np.uint8)
    stream.push(frames, 1_700_000_000_000, time_source="hardware")
    assert stream.last_correction is None
    stream.push(frames, 1_700_000_010_000)  # host time, the reference client's default
    correction = stream.last_correction
    assert correction is not None
    with pytest.raises(ValueError, match="time_source"):
        stream.push(frames, 1_700_000_020_000, time_source="ioc")
    stream.finalize()
    first, second = sorted(server.reader.chunk_times(stream.data_id), key=lambda c: c["idx"])
    assert first["start_unix_ms_utc"] == 1_700_000_000_000 and first["clock_offset_ms"] is None
    assert second["clock_offset_ms"] == correction.offset_ms
    assert second["start_unix_ms_utc"] == 1_700_000_010_000 + correction.offset_ms
    points = client.open_timeseries_stream(stream_name="sources")
    points.push_multi({"hw": ([1_700_000_000.0], [1.0])}, time_source="hardware")
    assert points.last_offset_ms is None
    points.push_multi({"host": ([1_700_000_000.0], [2.0])})
    host_offset = points.last_offset_ms
    assert host_offset == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
    points.finalize()
    assert server.reader.points(points.data_id, "hw")[0].tolist() == [1_700_000_000.0]
    (stored,) = server.reader.points(points.data_id, "host")[0].tolist()
    assert stored == pytest.approx(1_700_000_000.0 + host_offset / 1000, abs=1e-6)


def test_fly_frames_timed_on_this_host_are_corrected(behind_server, tmp_path):
    """A fly scan whose file has no frame times is timed on this host: corrected like any host
    time (never passed through as if it were the IOC's)."""
    import h5py

    from .test_external_streams import H, W, feed_fly_scan

    server, client = behind_server
    n, fps = 50, 25.0
    frames = np.random.default_rng(5).integers(1, 256, (n, H, W)).astype(np.uint8)
    path = tmp_path / "fly.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/entry/data/data", data=frames)  # no NDAttributes: no frame times
    callback = AtomscaleCallback(client, stop_grace_s=0.0)
    before = time.time()
    rd = feed_fly_scan(callback, path, fps, n, per_datum=10)
    callback("stop", rd.run.compose_stop(exit_status="success"))
    assert callback.flush(60)
    callback.close()
    after = time.time()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    assert rheed.frames == n and rheed.wall_clock_frames == n and summary.lost == 0
    assert rheed.clock_corrected_chunks == rheed.chunks > 0
    for chunk in _chunks(server, rheed.data_id):
        offset = chunk["clock_offset_ms"]
        assert offset == pytest.approx(1000 * HOST_BEHIND_S, abs=OFFSET_TOLERANCE_MS)
        host_ms = chunk["start_unix_ms_utc"] - offset
        assert _ms(before - n / fps) <= host_ms <= _ms(after)
