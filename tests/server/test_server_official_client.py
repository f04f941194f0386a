"""The official ``atomscale`` streamers, unmodified, against the local server (child process).

The Rust streamers hold the GIL while they wait on HTTP, so the server runs in its own process.
Every pixel and every point is read back and compared with what was sent.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from atomscale_bluesky.server.runner import LocalServer

streaming = pytest.importorskip("atomscale.streaming")


def test_rheed_stream_with_sample_project_tags_exact_times(
    local_server_process: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clock sync off: capture times arrive exactly as given; push() with a partial last chunk."""
    monkeypatch.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    server = local_server_process
    streamer = streaming.RHEEDStreamer(
        server.api_key, endpoint=server.url, spool_dir=tmp_path / "spool"
    )
    project = "0f0e0d0c-0b0a-4900-8800-112233445566"
    data_id = streamer.initialize(
        fps=10.0, rotations_per_min=0.0, chunk_size=20, stream_name="parked probe",
        physical_sample="  Sample-A ", project_id=project, tags=["mbe", "MBE", " run-1 ", ""],
        azimuth="[1-10]",
    )  # fmt: skip
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, size=(53, 24, 32), dtype=np.uint8)
    frames[7] = 0  # one all-zero frame inside a chunk (an all-0xFF index entry)
    starts = [1_700_000_000_000 + 2000 * k for k in range(3)]
    for k, lo in enumerate(range(0, 53, 20)):
        streamer.push(data_id, k, frames[lo : lo + 20], capture_start_ms_utc=starts[k])
    report = streamer.finalize(data_id)
    assert report["chunks_uploaded"] == 3 and report["chunks_not_uploaded"] == 0

    np.testing.assert_array_equal(server.reader.frames(data_id), frames)
    array = zarr.open_array(server.data_dir / "rheed" / data_id / "frames.zarr", mode="r")
    np.testing.assert_array_equal(array[:], frames)

    info = server.reader.rheed_stream(data_id)
    assert info["status"] == "finalized" and info["n_frames"] == 53
    assert info["name"] == "parked probe" and info["azimuth_label"] == "[1-10]"
    assert info["sample"]["name"] == "Sample-A" and info["project_id"] == project
    assert sorted(t["name"] for t in info["tags"]) == ["mbe", "run-1"]
    assert [c["dims"] for c in info["chunks"]] == [[20, 24, 32], [20, 24, 32], [13, 24, 32]]
    assert [c["start_unix_ms_utc"] for c in info["chunks"]] == starts
    assert [c["end_unix_ms_utc"] - c["start_unix_ms_utc"] for c in info["chunks"]] == [
        2000,
        2000,
        1300,
    ]
    assert all(c["clock_offset_ms"] is None for c in info["chunks"])
    assert server.reader.projects()[0]["active_sample"] == info["sample"]["id"]

    # a second stream reuses the sample and tags by name (any case), without duplicates
    again = streamer.initialize(fps=10.0, rotations_per_min=12.5, chunk_size=20,
                                physical_sample="sample-a", tags=["Run-1"])  # fmt: skip
    info2 = server.reader.rheed_stream(again)
    assert info2["sample"]["id"] == info["sample"]["id"]
    assert len(server.reader.samples()) == 1 and len(server.reader.tags()) == 2
    assert info2["rotational_period"] == pytest.approx(10.0 * 60 / 12.5)


def test_rheed_run_with_clock_sync(
    local_server_process: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clock sync on (offset ~0 on loopback): start = capture time + the chunk's clock_offset_ms."""
    monkeypatch.delenv("ATOMSCALE_SKIP_CLOCK_SYNC", raising=False)
    server = local_server_process
    streamer = streaming.RHEEDStreamer(
        server.api_key, endpoint=server.url, spool_dir=tmp_path / "spool"
    )
    data_id = streamer.initialize(fps=5.0, rotations_per_min=0.0, chunk_size=10, stream_name="run")
    rng = np.random.default_rng(2)
    frames = rng.integers(1, 256, size=(34, 16, 16), dtype=np.uint8)
    capture = [1_750_000_000_000 + 2000 * k for k in range(4)]

    def chunks():  # type: ignore[no-untyped-def]
        for k, lo in enumerate(range(0, 34, 10)):
            yield frames[lo : lo + 10], capture[k]

    streamer.run(data_id, chunks())
    streamer.finalize(data_id)
    np.testing.assert_array_equal(server.reader.frames(data_id), frames)
    times = server.reader.chunk_times(data_id)
    assert [c["n_frames"] for c in times] == [10, 10, 10, 4]
    for c, t in zip(times, capture, strict=True):
        # same host: the true offset is 0, and an NTP-style estimate is off by at most half the
        # round trip (the uncertainty it reports), which a loaded machine stretches
        assert c["clock_offset_ms"] is not None and c["clock_uncertainty_ms"] is not None
        assert abs(c["clock_offset_ms"]) <= max(5.0, float(c["clock_uncertainty_ms"]) + 1.0)
        assert c["start_unix_ms_utc"] - c["clock_offset_ms"] == t
        assert c["end_unix_ms_utc"] - c["start_unix_ms_utc"] == int(c["n_frames"] / 5.0 * 1000)


def _wait_for_points(server: LocalServer, data_id: str, expected: int) -> dict:
    deadline = time.monotonic() + 20
    while True:
        summary = server.reader.timeseries(data_id)
        if sum(c["count"] for c in summary["channels"].values()) >= expected:
            return summary
        assert time.monotonic() < deadline, summary
        time.sleep(0.05)


@pytest.mark.parametrize("clock_sync", [False, True], ids=["exact", "clock-sync"])
def test_timeseries_streamer_every_point(
    local_server_process: LocalServer, monkeypatch: pytest.MonkeyPatch, clock_sync: bool
) -> None:
    if clock_sync:
        monkeypatch.delenv("ATOMSCALE_SKIP_CLOCK_SYNC", raising=False)
    else:
        monkeypatch.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    server = local_server_process
    streamer = streaming.TimeseriesStreamer(server.api_key, endpoint=server.url, points_per_chunk=4)
    data_id = streamer.initialize(stream_name="growth sensors", physical_sample="Sample-B",
                                  project_id="proj-9", tags=["sensors"])  # fmt: skip
    t0 = 1_760_000_000.0
    sent: dict[str, tuple[list[float], list[float], str | None]] = {
        "substrate_temperature": ([], [], "C"), "pressure": ([], [], "mbar"), "shutter": ([], [], None)
    }  # fmt: skip
    for chunk in range(3):
        ts = [t0 + chunk * 4 + i * 1.0 for i in range(4)]
        temps = [600.0 + chunk * 4 + i + 0.125 for i in range(4)]
        press = [1e-9 * (1 + chunk + i) for i in range(4)]
        shut = [float((chunk + i) % 2) for i in range(4)]
        streamer.push(data_id, chunk, "substrate_temperature", ts, temps, "C")
        streamer.push_multi(data_id, chunk, {
            "pressure": {"timestamps": ts, "values": press, "units": "mbar"},
            "shutter": {"timestamps": ts, "values": shut}})  # fmt: skip
        for name, values in (
            ("substrate_temperature", temps),
            ("pressure", press),
            ("shutter", shut),
        ):
            sent[name][0].extend(ts)
            sent[name][1].extend(values)
    summary = _wait_for_points(server, data_id, 36)
    streamer.finalize(data_id)
    assert server.reader.timeseries(data_id)["status"] == "finalized"
    assert summary["sample"]["name"] == "Sample-B" and summary["project_id"] == "proj-9"
    assert [t["name"] for t in summary["tags"]] == ["sensors"]
    for name, (ts, values, units) in sent.items():
        got_t, got_v, got_units = server.reader.points(data_id, name)
        assert got_units == units
        np.testing.assert_array_equal(got_v, values)
        if clock_sync:  # every timestamp is shifted by the same small offset
            shift = got_t - np.asarray(ts)
            assert np.all(np.abs(shift) < 0.005)
        else:
            np.testing.assert_array_equal(got_t, ts)


def test_rheed_uploads_survive_injected_errors_and_drops(
    local_server_process: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The official client retries refused and dropped PUTs; every frame still lands once."""
    monkeypatch.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    server = local_server_process
    streamer = streaming.RHEEDStreamer(
        server.api_key, endpoint=server.url, spool_dir=tmp_path / "spool"
    )
    data_id = streamer.initialize(fps=10.0, rotations_per_min=0.0, chunk_size=20)
    server.faults.set(error_rate=0.3, error_statuses=[500, 503, 429], drop_rate=0.1, seed=3,
                      paths=["/upload/"])  # fmt: skip
    frames = np.random.default_rng(4).integers(1, 256, size=(90, 16, 20), dtype=np.uint8)
    for k, lo in enumerate(range(0, 90, 20)):
        streamer.push(data_id, k, frames[lo : lo + 20], capture_start_ms_utc=1_700_000_000_000 + k)
    report = streamer.finalize(data_id, drain_timeout_s=120)
    assert report["chunks_uploaded"] == 5 and report["chunks_not_uploaded"] == 0
    injected = server.faults.as_dict()["injected"]
    server.faults.clear()
    np.testing.assert_array_equal(server.reader.frames(data_id), frames)
    assert server.reader.rheed_stream(data_id)["counters"]["chunks_received"] == 5
    assert server.reader.health()["internal_errors"] == 0
    assert sum(injected.values()) >= 2, injected  # deterministic: the seeded draws come in order
