"""Faults end to end: simulated IOC -> ophyd -> RunEngine -> AtomscaleCallback -> local server.

Each scenario runs ``monitor_growth`` against the session's simulated camera and sensors, injects
a fault into the local server (or the spool), and prints its figures: frames the IOC counted,
frames the RunEngine delivered, frames the server stored, and the loss, which must be zero (or,
for the full spool, exactly the chunks the spool dropped, with the documented reason).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from typing import Any

import pytest
from plugins.ioc_fixtures import ca_write, wait_for

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client.spool.held_payloads import HOLD_MAX_BYTES
from atomscale_bluesky.shards import encode_shard

from .conftest import (
    PRESIGN,
    SMALL,
    EventFrames,
    RssSampler,
    set_size,
    stored_chunk_hashes,
    stored_hashes,
)
from .scenario import assert_points_complete, expected_frames, run_scenario, stored_rheed

pytestmark = pytest.mark.slow


def test_server_down_30s_mid_run_at_120fps_loses_nothing_and_does_not_slow_the_run(
    local_server: Any, make_client: Any, RE: Any, small_camera: Any, sensors: Any
) -> None:
    duration, fps, outage_s = 42.0, 120.0, 30.0
    client = make_client(local_server)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    outage: dict[str, float] = {}

    def start_outage() -> None:  # once both streams are open, 6 s into the run
        t0 = time.monotonic()
        wait_for(lambda: callback.counters.streams_opened >= 2, 20, 0.05)
        time.sleep(max(0.0, 6.0 - (time.monotonic() - t0)))
        local_server.faults.set(outage_s=outage_s, outage_mode="drop")
        outage["at"] = time.monotonic()
        outage["wall"] = time.time()  # on the clock of the IOC's (same host) frame stamps

    threading.Thread(target=start_outage, daemon=True).start()
    figures, summary, wall, events = run_scenario(
        RE, small_camera, sensors, callback, duration=duration, fps=fps, scenario="outage-30s"
    )
    stored, rheed = stored_rheed(local_server, summary)
    figures.stored = len(stored)
    injected = local_server.reader.faults()["injected"]
    figures.extra.update(
        plan_wall_s=round(wall, 1), outage_s=outage_s, refused_requests=sum(injected.values()),
        points=assert_points_complete(local_server, summary),
    )  # fmt: skip
    figures.report()
    assert "at" in outage and injected.get("outage_drop", 0) > 0  # the outage did happen
    assert stored == expected_frames(events, figures)  # every delivered frame, in order
    assert figures.lost == 0 and summary.lost == 0 and summary.errors == 0, summary.text()
    assert rheed.report["uploaded"] == rheed.chunks and not rheed.report["lost"]
    # frames streamed before the server went down and while it was down (hardware stamps)
    stamps = [ts for ts, _ in events.rows]
    assert any(ts < outage["wall"] for ts in stamps)
    assert any(outage["wall"] < ts < outage["wall"] + outage_s for ts in stamps)
    # not slowed: the plan took its requested duration plus set-up, not the outage's 30 s
    assert wall < duration + 0.5 * outage_s, wall


def test_20_percent_failed_requests_for_a_whole_run_lose_nothing(
    local_server: Any, make_client: Any, RE: Any, small_camera: Any, sensors: Any
) -> None:
    # ~10% dropped connections + ~10% answered 500/503/429: every protocol endpoint, all run long
    local_server.faults.set(
        drop_rate=0.1, error_rate=0.112, error_statuses=[500, 503, 429], seed=11
    )
    client = make_client(local_server)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    figures, summary, _, events = run_scenario(
        RE, small_camera, sensors, callback, duration=12.0, fps=60.0, scenario="20pct-failures"
    )
    injected = local_server.reader.faults()["injected"]
    local_server.faults.clear()
    stored, rheed = stored_rheed(local_server, summary)
    figures.stored = len(stored)
    figures.extra.update(injected=injected, points=assert_points_complete(local_server, summary))
    figures.report()
    assert sum(v for k, v in injected.items() if k.startswith("drop")) > 0
    assert sum(v for k, v in injected.items() if k.startswith("error")) > 0
    assert stored == expected_frames(events, figures)
    assert figures.lost == 0 and summary.lost == 0 and summary.errors == 0, summary.text()


def test_2s_latency_per_request_loses_nothing_and_memory_stays_bounded(
    make_client: Any, RE: Any, camera: Any, sensors: Any, tmp_path: Any
) -> None:
    """320x240 at 60 fps; the server (a child process, so RSS is the callback's and client's
    alone) adds 2 s to every request; 2 upload workers take 4 s per chunk, so a backlog builds
    up and must wait on disk in the spool; in memory only the payloads the spool holds for their
    upload, within its budget (``status()["held_bytes"]``)."""
    from atomscale_bluesky.server.runner import running_server_process

    queue_bound = 128 * 1024 * 1024
    set_size(camera.prefix, 240, 320, fps=60.0)
    try:
        with running_server_process(data_dir=tmp_path / "server") as server:
            server.faults.set(latency_s=2.0)
            client = make_client(server, upload_workers=2)
            callback = AtomscaleCallback(
                client, rotation_key="growth_rotation_rpm", queue_max_bytes=queue_bound
            )
            spool_peak = {"bytes": 0, "held_bytes": 0}
            opened = {"at": math.inf}
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.25):
                    status = client.status()
                    for key in spool_peak:
                        spool_peak[key] = max(spool_peak[key], status[key])
                    if callback.counters.streams_opened >= 2 and opened["at"] == math.inf:
                        opened["at"] = time.monotonic()

            threading.Thread(target=watch, daemon=True).start()
            rss = RssSampler()
            t_start = time.monotonic()
            figures, summary, wall, events = run_scenario(
                RE, camera, sensors, callback, duration=24.0, fps=60.0, scenario="2s-latency"
            )
            run_end = t_start + wall
            rss.stop()
            done.set()
            server.faults.clear()
            (rheed,) = [r for r in summary.rheed if r.frame_shape == (240, 320)]
            stored = stored_hashes(server.reader, rheed.data_id)
            points = assert_points_complete(server, summary)
    finally:
        ca_write(camera.prefix + "cam1:SizeX", 640)
        ca_write(camera.prefix + "cam1:SizeY", 480)
    figures.stored = len(stored)
    raw_mb = figures.delivered * 240 * 320 / 1e6
    # once the streams are open and the worker caught up (5 s), memory must stay flat while the
    # upload backlog grows on disk
    steady_from = opened["at"] + 5.0
    figures.extra.update(
        rss_peak_growth_mb=round(rss.peak_growth / 1e6, 1),
        rss_growth_steady_mb=round(rss.growth_between(steady_from, run_end) / 1e6, 1),
        raw_frames_mb=round(raw_mb, 1), spool_peak_mb=round(spool_peak["bytes"] / 1e6, 2),
        held_peak_mb=round(spool_peak["held_bytes"] / 1e6, 2),
        streams_open_after_s=round(opened["at"] - t_start, 1), points=points,
    )  # fmt: skip
    figures.report()
    assert stored == expected_frames(events, figures)
    assert figures.lost == 0 and summary.lost == 0 and summary.errors == 0, summary.text()
    assert spool_peak["bytes"] > 0  # the backlog sat on disk
    assert steady_from < run_end - 4.0, "the streams opened too late to judge the steady state"
    # bounded: by the callback's queue while the streams open (set-up requests take 2 s each),
    # and afterwards flat but for the payloads the spool holds (within HOLD_MAX_BYTES)
    held = spool_peak["held_bytes"]
    assert held <= HOLD_MAX_BYTES
    assert rss.peak_growth < queue_bound + held + 64e6, rss.samples
    assert rss.growth_between(steady_from, run_end) < 32e6 + held, rss.samples


def test_full_spool_drops_chunks_with_the_documented_reason_and_nothing_else_breaks(
    local_server: Any,
    make_client: Any,
    RE: Any,
    run_until: Any,
    small_camera: Any,
    sensors: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="atomscale_bluesky")
    fps = 30.0
    frame = small_camera.image.get()
    chunk_bytes = len(encode_shard(frame[None].repeat(int(2 * fps), axis=0)))
    max_bytes = int(2.5 * chunk_bytes)  # room for two RHEED chunks (and the sensor batches)
    client = make_client(local_server, spool_max_bytes=max_bytes)
    local_server.faults.set(outage=True, paths=[PRESIGN])  # RHEED chunks stay in the spool
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    released = threading.Event()
    at_release: list[int] = []

    def release_when_full() -> None:  # let uploads through once the spool has dropped chunks
        wait_for(lambda: client.status()["chunks_dropped"] >= 2, 120)
        local_server.faults.clear()
        at_release.append(len(events_seen.rows))
        released.set()

    def enough(_: Any) -> bool:  # two more chunks of frames after the release
        return released.is_set() and len(events_seen.rows) >= at_release[0] + int(4 * fps)

    events_seen = EventFrames()  # the same frames as run_scenario records: counted for the release
    RE.subscribe(events_seen)
    threading.Thread(target=release_when_full, daemon=True).start()
    with pytest.warns(RuntimeWarning, match="were not uploaded"):
        figures, summary, _, events = run_scenario(
            RE, small_camera, sensors, callback, duration=240.0, fps=fps, scenario="spool-full",
            until=enough, run_until=run_until,
        )  # fmt: skip
    assert released.is_set()
    (rheed,) = [r for r in summary.rheed if r.frame_shape == SMALL]
    chunks = stored_chunk_hashes(local_server.reader, rheed.data_id)
    figures.stored = sum(len(c) for c in chunks)
    report = rheed.report
    reasons = [reason for _, reason in report["lost"]]
    figures.extra.update(
        spool_max_bytes=max_bytes, chunks_dropped=report["dropped"],
        chunks_uploaded=report["uploaded"], points=assert_points_complete(local_server, summary),
    )  # fmt: skip
    figures.report()
    assert report["dropped"] >= 2 and report["uploaded"] >= 1
    assert report["dropped"] == len(reasons) == rheed.lost_chunks
    for reason in reasons:
        assert re.fullmatch(
            rf"dropped: spool is full \(\d+ of {max_bytes} bytes waiting to upload\)", reason
        ), reason
    # the summary and the log say so
    assert f"{report['dropped']} lost chunks" in summary.text()
    assert any("spool is full" in m for m in summary.error_messages)
    assert re.search(r"dropped chunk \d+ of stream .*: spool is full", caplog.text)
    # nothing else broke: every uploaded chunk holds exactly a run of delivered frames, in order
    dropped = {idx for idx, _ in report["lost"]}
    stored_idx = {c["idx"] for c in local_server.reader.chunk_times(rheed.data_id)}
    assert not stored_idx & dropped
    assert stored_idx | dropped == set(range(len(stored_idx) + len(dropped)))
    delivered = expected_frames(events, figures)
    last = -1
    for hashes in chunks:
        at = delivered.index(hashes[0])
        assert delivered[at : at + len(hashes)] == hashes and at > last
        last = at
    chunk_size = local_server.reader.rheed_stream(rheed.data_id)["chunk_size"]
    assert 0 < figures.lost <= len(dropped) * chunk_size  # only the dropped chunks' frames
    assert summary.exit_status == "success"
