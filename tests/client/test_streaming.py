"""Our client against the real local server: pixels, points, stamps, links, bad input."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.client import (
    AtomscaleClientError,
    StreamClosedError,
    UnknownStreamError,
)
from atomscale_bluesky.client.stamps import span_ms
from atomscale_bluesky.frames import FrameError

from .conftest import rheed_like, stored_chunks


def test_every_pixel_reads_back_equal(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0)
    assert stream.chunk_size == 20
    frames = rheed_like(45, 30, 40)
    frames[3] = 0  # an all-zero frame inside a chunk
    pushed = {
        stream.push(frames[0:20]): frames[0:20],
        stream.push(frames[20:40]): frames[20:40],
        stream.push(frames[40:45]): frames[40:45],  # partial last chunk
        stream.push(np.zeros((20, 30, 40), np.uint8)): np.zeros((20, 30, 40), np.uint8),
        stream.push(frames[7]): frames[7:8],  # (H, W)
    }
    assert sorted(pushed) == [0, 1, 2, 3, 4]
    report = stream.finalize()
    assert report.ok and report.uploaded == 5 and report.closed == "finalized" and report.drained
    stored = stored_chunks(server.reader, stream.data_id, 20)
    assert sorted(stored) == sorted(pushed)
    for idx, expected in pushed.items():
        assert np.array_equal(stored[idx], expected), idx
    info = server.reader.rheed_stream(stream.data_id)
    assert info["status"] == "finalized"
    assert re.fullmatch(r"RHEED Stream @ (1[0-2]|[1-9]):[0-5]\d(AM|PM)", info["name"])
    assert info["rotational_period"] is None


def test_chunk_stamps_follow_the_rule(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(fps=3.0, chunk_size=7)
    frames = rheed_like(7, 8, 8)
    stream.push(frames, 1_700_000_000_000)
    before = time.time_ns() // 1_000_000
    stream.push(frames)
    after = time.time_ns() // 1_000_000
    stream.push(frames[:5], capture_start_ms_utc=1_700_000_100_000)
    stream.finalize()
    times = {c["idx"]: c for c in server.reader.chunk_times(stream.data_id)}
    assert times[0]["start_unix_ms_utc"] == 1_700_000_000_000
    assert times[0]["end_unix_ms_utc"] == 1_700_000_000_000 + 2333
    assert before - 2333 <= times[1]["start_unix_ms_utc"] <= after - 2333
    assert times[1]["end_unix_ms_utc"] - times[1]["start_unix_ms_utc"] == 2333
    assert times[2]["end_unix_ms_utc"] == 1_700_000_100_000 + span_ms(5, 3.0)
    assert times[0]["clock_offset_ms"] is None  # correction off: no clock fields


def test_clock_correction_is_applied_and_recorded(server: Any, make_client: Any) -> None:
    client = make_client(server, clock_sync=True)
    stream = client.open_rheed_stream(fps=10.0)
    status = client.clock_status()
    assert status is not None and set(status) == {
        "offset_ms",
        "uncertainty_ms",
        "measured_at_unix_ms",
    }
    stream.push(rheed_like(20, 8, 8), 1_700_000_000_000)
    stream.finalize()
    (chunk,) = server.reader.chunk_times(stream.data_id)
    assert chunk["clock_offset_ms"] is not None
    assert chunk["start_unix_ms_utc"] == 1_700_000_000_000 + chunk["clock_offset_ms"]
    assert abs(chunk["clock_offset_ms"]) < 1000  # same host


def test_links_sample_project_tags(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(
        fps=5.0,
        physical_sample="  GaAs-42 ",
        project_id="proj-1",
        tags=["growth", "GROWTH", " anneal ", ""],
        azimuth=" [110] ",
        stream_name="my run",
    )
    info = server.reader.rheed_stream(stream.data_id)
    assert info["name"] == "my run"
    assert info["sample"]["name"] == "GaAs-42"
    assert info["project_id"] == "proj-1"
    assert sorted(t["name"] for t in info["tags"]) == ["anneal", "growth"]
    assert info["azimuth_label"] == "[110]"
    again = client.open_rheed_stream(fps=5.0, physical_sample="gaas-42", rotations_per_min=12.5)
    info2 = server.reader.rheed_stream(again.data_id)
    assert info2["sample"]["id"] == info["sample"]["id"]
    assert info2["rotational_period"] == 24.0


def test_open_validation_matches_reference(server: Any, make_client: Any) -> None:
    client = make_client(server)
    n_streams = len(server.reader.streams())
    with pytest.raises(
        ValueError, match=re.escape("chunk_size must be at least 2×fps (>= 21); got 20")
    ):
        client.open_rheed_stream(fps=10.5, chunk_size=20)
    with pytest.raises(ValueError, match="azimuth is for parked streams"):
        client.open_rheed_stream(fps=10.0, rotations_per_min=5.0, azimuth="[110]")
    missing = "12345678-1234-1234-1234-123456789abc"
    with pytest.raises(
        AtomscaleClientError, match=f"physical sample with id '{missing}' not found"
    ):
        client.open_rheed_stream(fps=10.0, physical_sample=missing)
    with pytest.raises(AtomscaleClientError, match=f"tag with id '{missing}' not found"):
        client.open_rheed_stream(fps=10.0, tags=[missing])
    assert len(server.reader.streams()) == n_streams  # nothing created


def test_bad_pushes_raise_and_lose_nothing(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0)
    good = rheed_like(20, 16, 16)
    assert stream.push(good) == 0
    with pytest.raises(FrameError, match=r"\(H,W\) or \(N,H,W\)"):
        stream.push(np.zeros(16, np.uint8))
    with pytest.raises(FrameError, match="are 16x16; got 8x8"):
        stream.push(np.ones((20, 8, 8), np.uint8))
    with pytest.raises(FrameError, match="non-finite"):
        stream.push(np.full((2, 16, 16), np.nan))
    with pytest.raises(FrameError, match="exceeds"):
        stream.push(np.ones((21, 16, 16), np.uint8))
    with pytest.raises(ValueError, match="capture_start_ms_utc must be an int"):
        stream.push(good, 1.5e12)
    assert stream.push(np.full((20, 16, 16), 4095, np.uint16), bit_depth=12) == 1
    report = stream.finalize()
    assert report.uploaded == 2 and report.ok
    stored = stored_chunks(server.reader, stream.data_id, 20)
    assert np.array_equal(stored[0], good) and (stored[1] == 255).all()
    with pytest.raises(StreamClosedError):
        stream.push(good)
    assert stream.finalize() == report  # idempotent
    with pytest.raises(UnknownStreamError, match="no stream initialized for data_id=nope"):
        client.finalize("nope")
    with pytest.raises(ValueError, match="drain_timeout_s must be non-negative"):
        client.finalize(stream.data_id, drain_timeout_s=-1)


def test_pushes_from_several_threads(server: Any, make_client: Any) -> None:
    client = make_client(server, upload_workers=3)
    stream = client.open_rheed_stream(fps=10.0)
    chunks = {i: rheed_like(20, 12, 12, seed=i) for i in range(12)}
    errors: list[BaseException] = []

    def worker(ids: list[int]) -> None:
        try:
            for i in ids:
                stream.push(chunks[i], chunk_idx=i)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(list(range(k, 12, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    status = stream.status()
    assert status["frames_pushed"] == 240 and status["chunks_spooled"] == 12
    report = stream.finalize()
    assert report.uploaded == 12 and report.ok
    stored = stored_chunks(server.reader, stream.data_id, 20)
    assert all(np.array_equal(stored[i], chunks[i]) for i in chunks)


def test_timeseries_points_read_back_equal(server: Any, make_client: Any) -> None:
    client = make_client(server)
    ts = client.open_timeseries_stream(stream_name="sensors", points_per_chunk=4)
    t0 = 1_700_000_000.0
    temps = np.linspace(500.0, 510.0, 10)
    assert ts.push("substrate_temperature", t0 + np.arange(10) * 0.5, temps, "C") == 2
    idx = ts.push_multi(
        {
            "pressure": (t0 + np.arange(3), [1e-7, 2e-7, 3.5e-7], "Torr"),
            "shutter": ([t0], [1.0], None),
            "empty": ([], [], None),
        }
    )
    assert idx == 0
    with pytest.raises(ValueError, match=r"channel 'x': values\[1\] is nan"):
        ts.push("x", [t0, t0 + 1], [1.0, float("nan")])
    with pytest.raises(ValueError, match=r"channel 'x': timestamps\[0\] is inf"):
        ts.push("x", [float("inf")], [1.0])
    with pytest.raises(ValueError, match="same length"):
        ts.push("x", [t0, t0 + 1], [1.0])
    report = ts.finalize()
    assert report.ok and report.uploaded == 4
    got_t, got_v, units = server.reader.points(ts.data_id, "substrate_temperature")
    assert units == "C"
    assert np.array_equal(got_t, t0 + np.arange(10) * 0.5) and np.array_equal(got_v, temps)
    got_t, got_v, units = server.reader.points(ts.data_id, "pressure")
    assert units == "Torr" and got_v.tolist() == [1e-7, 2e-7, 3.5e-7]
    with pytest.raises(StreamClosedError):
        ts.push("x", [t0], [1.0])


def test_a_live_stream_is_not_stolen_by_a_second_client(server: Any, make_client: Any) -> None:
    first = make_client(server)
    stream = first.open_rheed_stream(fps=10.0)
    server.reader.set_faults(outage=True, paths=["/data_entries/raw_data/staged/upload_urls/"])
    stream.push(rheed_like(20, 8, 8))
    second = make_client(server)
    assert second.resumed_streams() == []
    with pytest.raises(UnknownStreamError):
        second.finalize(stream.data_id, drain_timeout_s=0)
    server.reader.clear_faults()
    assert stream.finalize(drain_timeout_s=60).ok
