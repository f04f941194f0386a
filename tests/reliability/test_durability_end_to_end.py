"""Local-first durability end to end: simulated IOC -> RunEngine -> callback -> local server.

An outage delays data and never loses it: the server down when the run's streams open, an outage
that outlasts finalize's drain (finished by ``atomscale-bluesky drain`` in a new process), two
hours of silence on a live run, and an authentication outage. Each reads back, from the server,
every frame the RunEngine delivered and every point the callback batched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.preprocessors as bpp
import pytest
from callback.devices import MemoryCamera

from atomscale_bluesky.callback import AtomscaleCallback

from .conftest import frame_hash, stored_hashes
from .scenario import assert_points_complete, expected_frames, run_scenario, stored_rheed

pytestmark = pytest.mark.slow

HOUR = 3600.0


def test_server_down_when_the_run_starts_and_for_30s_after_at_120fps_loses_nothing(
    local_server: Any, make_client: Any, RE: Any, small_camera: Any, sensors: Any
) -> None:
    local_server.faults.set(outage_s=30.0, outage_mode="drop")
    client = make_client(local_server)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    figures, summary, _, events = run_scenario(
        RE, small_camera, sensors, callback, duration=8.0, fps=120.0, scenario="down-at-start"
    )
    assert local_server.reader.faults()["injected"].get("outage_drop", 0) > 0
    stored, rheed = stored_rheed(local_server, summary)
    figures.stored = len(stored)
    figures.extra.update(points=assert_points_complete(local_server, summary))
    figures.report()
    assert stored == expected_frames(events, figures)  # every delivered frame, in order
    assert figures.lost == 0 and summary.lost == 0 and summary.pending == 0, summary.text()
    assert summary.status == "complete" and summary.errors == 0, summary.text()
    assert rheed.delivery is not None and rheed.delivery.stored == len(stored)


def test_an_outage_past_the_drain_timeout_is_finished_by_drain_in_a_new_process(
    local_server: Any, make_client: Any, RE: Any, small_camera: Any, sensors: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    local_server.faults.set(outage=True, outage_mode="drop")
    client = make_client(local_server, spool_dir=spool)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm", finalize_timeout_s=1.0)
    figures, summary, _, events = run_scenario(
        RE, small_camera, sensors, callback, duration=4.0, fps=30.0, scenario="past-drain"
    )
    delivered = expected_frames(events, figures)
    points = sum(c.points for c in summary.timeseries.channels.values())
    assert summary.status == "pending" and summary.lost == 0, summary.text()
    assert summary.pending == len(delivered) + points, summary.text()
    assert "atomscale-bluesky drain" in summary.text()
    callback.close()
    client.close()
    assert any(spool.rglob("*.json")), "the chunks stay in the spool"

    env = {**os.environ, "ATOMSCALE_API_KEY": local_server.api_key,
           "ATOMSCALE_SKIP_CLOCK_SYNC": "1"}  # fmt: skip

    def drain(timeout_s: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "atomscale_bluesky.apps.cli", "drain", "--endpoint",
             local_server.url, "--spool-dir", str(spool), "--timeout", str(timeout_s)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    still_down = drain(2.0)  # the outage goes on: nothing is deleted, exit status 2
    assert still_down.returncode == 2, still_down.stdout + still_down.stderr
    assert "still pending" in still_down.stdout
    local_server.faults.clear()
    drained = drain(240.0)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    assert local_server.api_key not in drained.stdout + drained.stderr
    streams = local_server.reader.streams()
    (rheed,) = [s for s in streams if s["kind"] == "rheed"]
    (series,) = [s for s in streams if s["kind"] == "timeseries"]
    assert stored_hashes(local_server.reader, rheed["data_id"]) == delivered
    channels = local_server.reader.timeseries(series["data_id"])["channels"]
    for name, channel in summary.timeseries.channels.items():
        assert channels[name]["count"] == channel.points, name
    assert {rheed["status"], series["status"]} == {"finalized"}
    assert not any(spool.rglob("*-c*.json")), "nothing is left in the spool"


class _Phases:
    """A plan in two phases of frames with two hours of server silence between them."""

    def __init__(self, camera: Any, server: Any, n: int) -> None:
        self.camera, self.server, self.n = camera, server, n

    def __call__(self) -> Any:
        @bpp.run_decorator(md={"sample": "anneal"})
        def inner() -> Any:
            for _ in range(self.n):
                yield from bps.trigger_and_read([self.camera])
            # the first phase's frames are on the server before the silence starts (its
            # points may be uploaded before or after: they go to their own stream)
            while self._frames_stored() < self.n:
                yield from bps.sleep(0.05)
            self.server.reader.advance_clock(2.5 * HOUR)
            for _ in range(self.n):
                yield from bps.trigger_and_read([self.camera])

        return inner()

    def _frames_stored(self) -> int:
        streams = self.server.reader.streams()
        return sum(s["counters"]["frames_stored"] for s in streams if s["kind"] == "rheed")


def test_two_hours_of_silence_on_a_live_run_continue_in_a_new_part(
    local_server: Any, make_client: Any, RE: Any
) -> None:
    camera = MemoryCamera(name="cam")
    client = make_client(local_server)
    callback = AtomscaleCallback(client)
    RE.subscribe(callback)
    RE(_Phases(camera, local_server, n=120)())
    assert callback.flush(300)
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    assert rheed.delivery is not None and len(rheed.delivery.parts) == 1, summary.text()
    produced = [frame_hash(frame) for _, frame in camera.image.produced]
    stored = [h for data_id in [rheed.data_id, *rheed.delivery.parts]
              for h in stored_hashes(local_server.reader, data_id)]  # fmt: skip
    assert stored == produced  # every frame, in order, across the two parts
    assert local_server.reader.rheed_stream(rheed.data_id)["status"] == "stream_error"
    assert summary.status == "complete" and summary.lost == 0, summary.text()
    assert f"continued as {rheed.delivery.parts[0]}" in summary.text()
    assert summary.data_ids[:2] == [rheed.data_id, rheed.delivery.parts[0]]


def test_401_on_every_request_for_60s_then_a_working_key_stores_everything(
    local_server: Any, make_client: Any, RE: Any, small_camera: Any, sensors: Any
) -> None:
    local_server.faults.set(outage_s=60.0, outage_mode="401")
    client = make_client(local_server)
    callback = AtomscaleCallback(client, rotation_key="growth_rotation_rpm")
    figures, summary, _, events = run_scenario(
        RE, small_camera, sensors, callback, duration=5.0, fps=30.0, scenario="401-for-60s"
    )
    assert local_server.reader.faults()["injected"].get("outage_401", 0) > 0
    stored, _ = stored_rheed(local_server, summary)
    figures.stored = len(stored)
    figures.extra.update(points=assert_points_complete(local_server, summary),
                         auth_paused_s=round(summary.auth_paused_s, 1))  # fmt: skip
    figures.report()
    assert stored == expected_frames(events, figures)
    assert summary.status == "complete" and summary.lost == 0, summary.text()
    assert summary.auth_paused_s > 30.0, summary.text()  # the pause shows in the summary
    assert "paused" in summary.text() and "authentication" in summary.text()
    assert client.status()["auth_pauses"] >= 1 and not client.status()["auth_paused"]
