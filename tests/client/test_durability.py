"""Nothing is lost: outages, injected errors and drops, a killed client, a full spool."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ._spool_writer import chunk_frames
from .conftest import rheed_like, stored_chunks

PRESIGN = "/data_entries/raw_data/staged/upload_urls/"


def test_server_down_20s_in_a_120fps_stream_loses_nothing(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(fps=120.0)
    assert stream.chunk_size == 240
    pushed: dict[int, np.ndarray] = {}
    t0 = time.monotonic()
    for k in range(12):  # 24 s of video pushed in real time, one 2 s chunk at a time
        while time.monotonic() < t0 + 2.0 * k:
            time.sleep(0.01)
        if k == 1:  # the server goes down (until switched back on: about 20 s)
            server.reader.set_faults(outage=True, outage_mode="drop")
        frames = rheed_like(240, 16, 24, seed=k)
        pushed[stream.push(frames)] = frames
    # every chunk pushed while the server was down is still waiting (whatever the pace was)
    assert stream.status()["chunks_pending"] >= 11
    server.reader.set_faults(outage=False)
    report = stream.finalize(drain_timeout_s=120)
    assert report.ok and report.uploaded == 12, report
    assert server.reader.faults()["injected"]  # the outage did refuse requests
    stored = stored_chunks(server.reader, stream.data_id, 240)
    assert all(np.array_equal(stored[i], pushed[i]) for i in pushed)


def test_20pct_errors_and_dropped_connections_lose_nothing(server: Any, make_client: Any) -> None:
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0)
    ts = client.open_timeseries_stream(points_per_chunk=5)
    server.reader.set_faults(error_rate=0.2, drop_rate=0.2, error_statuses=[500, 503, 429], seed=7)
    pushed = {}
    for k in range(30):
        frames = rheed_like(20, 12, 16, seed=k)
        pushed[stream.push(frames)] = frames
    t0 = 1_700_000_000.0
    for k in range(10):
        ts.push("temp", t0 + np.arange(5) + 5 * k, np.arange(5) + 5.0 * k, "C")
    report = stream.finalize(drain_timeout_s=120)
    ts_report = ts.finalize(drain_timeout_s=120)
    server.reader.clear_faults()
    assert report.ok and report.uploaded == 30
    assert ts_report.ok and ts_report.uploaded == 10
    stored = stored_chunks(server.reader, stream.data_id, 20)
    assert all(np.array_equal(stored[i], pushed[i]) for i in pushed)
    times, values, _ = server.reader.points(ts.data_id, "temp")
    assert np.array_equal(values, np.arange(50.0)) and np.array_equal(times, t0 + np.arange(50))


def test_killed_client_resumes_from_the_spool(
    server: Any, make_client: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    server.reader.set_faults(latency_s=0.4, paths=[PRESIGN])  # uploads lag behind pushes
    env = {**os.environ, "ATOMSCALE_API_KEY": server.api_key}
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("_spool_writer.py")), server.url, str(spool)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stdout is not None
        data_id = child.stdout.readline().strip()
        pushed: list[int] = []
        while len(pushed) < 15:
            line = child.stdout.readline()
            assert line.startswith("pushed "), line
            pushed.append(int(line.split()[1]))
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    server.reader.clear_faults()
    # a power cut left one chunk's sidecar empty: that chunk is quarantined, the rest uploads
    sidecars = sorted(p for p in (spool / data_id).glob("*-c*.json"))
    assert len(sidecars) >= 2, "the writer's chunks were all uploaded before the kill"
    sidecars[-1].write_bytes(b"")
    damaged = int(sidecars[-1].name.split("-c")[1].split(".")[0])
    client = make_client(server, spool_dir=spool)
    assert client.resumed_streams() == [data_id]
    (moved, *_) = [q for q in client.status()["quarantined"] if "sidecar is empty" in q["reason"]]
    assert Path(moved["path"]).parent == spool / "quarantine" / data_id
    with pytest.warns(RuntimeWarning, match="damaged in the spool and quarantined"):
        report = client.finalize(data_id, drain_timeout_s=60)
    assert report.drained and report.finalized and report.pending == 0 and report.failed == 0
    assert report.spooled == report.uploaded + report.purged and report.purged == 1
    ((lost_idx, reason),) = report.lost
    assert lost_idx == damaged and reason.startswith("damaged in the spool and quarantined")
    stored = stored_chunks(server.reader, data_id, 20)
    for idx in pushed:
        if idx != damaged:
            assert np.array_equal(stored[idx], chunk_frames(idx)), idx
    assert server.reader.rheed_stream(data_id)["status"] == "finalized"
    assert not (spool / data_id).exists()


def test_full_spool_drops_with_the_documented_reason(server: Any, make_client: Any) -> None:
    frames = [rheed_like(20, 32, 32, seed=k) for k in range(5)]
    client = make_client(server, spool_max_bytes=40_000)
    stream = client.open_rheed_stream(fps=10.0)
    server.reader.set_faults(outage=True, paths=[PRESIGN])
    for f in frames:
        stream.push(f)
    status = stream.status()
    assert status["chunks_dropped"] >= 1 and status["chunks_spooled"] >= 1
    server.reader.clear_faults()
    with pytest.warns(RuntimeWarning, match="were not uploaded"):
        report = stream.finalize(drain_timeout_s=60)
    assert report.dropped == status["chunks_dropped"] and report.uploaded == report.spooled
    assert report.dropped + report.spooled == 5 and not report.ok
    for _idx, reason in report.lost:
        assert re.fullmatch(
            r"dropped: spool is full \(\d+ of 40000 bytes waiting to upload\)", reason
        ), reason
    stored = stored_chunks(server.reader, stream.data_id, 20)
    dropped = {idx for idx, _ in report.lost}
    assert set(stored) == set(range(5)) - dropped
    assert all(np.array_equal(stored[i], frames[i]) for i in stored)


def test_low_disk_drops_with_the_documented_reason(server: Any, make_client: Any) -> None:
    client = make_client(server, spool_min_free_bytes=10**18)
    stream = client.open_rheed_stream(fps=10.0)
    stream.push(rheed_like(20, 8, 8))
    with pytest.warns(RuntimeWarning):
        report = stream.finalize()
    assert report.dropped == 1
    assert re.fullmatch(
        r"dropped: disk has \d+ bytes free, and the spool leaves at least 1000000000000000000",
        report.lost[0][1],
    )
