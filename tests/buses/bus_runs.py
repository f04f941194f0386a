"""What the bus tests share: the consume command as a child process, a growth run through a
publisher with checkpoints, and what the local server stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from bluesky import plan_stubs as bps
from bluesky import preprocessors as bpp
from plugins.bus_fixtures import wait_for_text

WAIT_S = 120.0
FPS = 40.0


@dataclass
class Consumer:
    """One ``atomscale-bluesky consume`` process and its log."""

    process: subprocess.Popen
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, text: str, timeout: float = WAIT_S) -> None:
        assert wait_for_text(self.log, text, timeout), self.text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(5)


STARTED: list[Consumer] = []
"""Consumers a test started; the ``stop_consumers`` fixture kills those still running."""


def start_consumer(bus_args: list[str], local_server: Any, spool: Path, log: Path) -> Consumer:
    env = {
        **os.environ,
        "ATOMSCALE_API_KEY": local_server.api_key,
        "ATOMSCALE_SKIP_CLOCK_SYNC": "1",
    }
    command = [
        sys.executable, "-m", "atomscale_bluesky.apps.cli", "-v", "consume", *bus_args,
        "--endpoint", local_server.url, "--spool-dir", str(spool),
    ]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - the child keeps writing after this returns
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    out.close()
    consumer = Consumer(process, log)
    STARTED.append(consumer)
    return consumer


@dataclass(eq=False)
class Truth:
    """What the RunEngine produced: frames with their IOC stamps, temperature points."""

    run_start: list[float] = field(default_factory=list)
    images: list[tuple[float, np.ndarray]] = field(default_factory=list)
    temperatures: list[tuple[float, float]] = field(default_factory=list)
    counter: int = 0  # the camera's ArrayCounter_RBV in the latest event

    def __call__(self, name: str, doc: dict) -> None:
        if name == "start":
            self.run_start.append(doc["time"])
        if name == "event":
            if "rheed-image" in doc["data"]:
                image = np.asarray(doc["data"]["rheed-image"])
                if image.size:
                    self.images.append((doc["timestamps"]["rheed-image"], image))
            if "rheed-array_counter" in doc["data"]:
                self.counter = int(doc["data"]["rheed-array_counter"])
            if "growth-substrate_temperature" in doc["data"]:
                self.temperatures.append(
                    (
                        doc["timestamps"]["growth-substrate_temperature"],
                        doc["data"]["growth-substrate_temperature"],
                    )
                )

    def frames(self) -> np.ndarray:
        """Frames taken during the run (a monitor's first value may be older), as (N, H, W)."""
        kept = [image for stamp, image in self.images if stamp >= self.run_start[0]]
        return np.stack([image.reshape(480, 640) for image in kept])


def wait_until(condition: Callable[[], bool], timeout: float = WAIT_S) -> Iterator[Any]:
    """Plan stub: let the RunEngine run until ``condition()`` holds (a bounded wait)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met while the run went on")
        yield from bps.sleep(0.05)


Action = Callable[[], Iterator[Any]]
Checkpoint = tuple[int, Action | None]


def growth_run(
    RE: Any,
    camera_ioc: Any,
    sensors_ioc: Any,
    publisher: Any,
    checkpoints: list[Checkpoint],
    *,
    sensors: bool = True,
    pause_camera: bool = False,
) -> Truth:
    """A monitored acquisition at 40 fps published to a bus; at each checkpoint (a frame count)
    its action runs inside the plan. With ``pause_camera`` the camera stops before each action
    and every frame it took is published first (a publisher must not meet a broker that is
    away), and starts again after it."""
    from ophyd_async.core import init_devices

    from atomscale_bluesky.devices.async_devices import (
        GrowthSensorsAsync,
        ImageMode,
        RheedCameraAsync,
    )

    with init_devices():
        rheed = RheedCameraAsync(camera_ioc.prefix)
        growth = GrowthSensorsAsync(sensors_ioc.prefix)
    truth = Truth()

    def body() -> Iterator[Any]:
        yield from bps.mv(
            rheed.image_mode, ImageMode.CONTINUOUS, rheed.acquire_period_setpoint, 1 / FPS
        )
        yield from bps.mv(rheed.acquire, "Acquire")
        for count, action in checkpoints:
            yield from wait_until(lambda count=count: len(truth.images) >= count)
            if action is None:
                continue
            if pause_camera:
                yield from bps.mv(rheed.acquire, "Done")
                taken = yield from bps.rd(rheed.array_counter)
                yield from wait_until(lambda taken=taken: truth.counter >= taken)
            yield from action()
            if pause_camera:
                yield from bps.mv(rheed.acquire, "Acquire")
        yield from bps.mv(rheed.acquire, "Done")
        yield from bps.sleep(0.3)

    monitored = rheed.monitored + (growth.monitored if sensors else [])
    RE.subscribe(publisher)
    RE.subscribe(truth)
    md = {"fps": FPS, "name": "bus growth", "sample": "bus wafer"}
    RE(bpp.monitor_during_wrapper(bpp.run_wrapper(body(), md=md), monitored))
    return truth


def rheed_streams(local_server: Any) -> list[dict[str, Any]]:
    return [s for s in local_server.reader.streams() if s["kind"] == "rheed"]


def stored_chunks(local_server: Any) -> int:
    return sum(
        len(local_server.reader.chunk_times(s["data_id"])) for s in rheed_streams(local_server)
    )


def assert_every_frame_stored(local_server: Any, truth: Truth) -> tuple[np.ndarray, int]:
    """Some stream holds every frame of the run in order; returns it and the duplicate count
    (frames stored beyond one copy of each)."""
    expected = truth.frames()
    stored = [local_server.reader.frames(s["data_id"]) for s in rheed_streams(local_server)]
    complete = [frames for frames in stored if frames.shape == expected.shape]
    assert complete, [frames.shape for frames in stored]
    np.testing.assert_array_equal(complete[-1], expected)
    return complete[-1], sum(len(frames) for frames in stored) - len(expected)


def assert_every_point_stored(local_server: Any, truth: Truth) -> None:
    want = [t for t, _ in truth.temperatures]
    found = []
    for stream in local_server.reader.streams():
        if stream["kind"] == "rheed":
            continue
        stamps, values, _ = local_server.reader.points(
            stream["data_id"], "growth-substrate_temperature"
        )
        found.append((stamps, values))
    assert any(
        len(stamps) == len(want) and np.allclose(stamps, want, rtol=0, atol=1e-6)
        for stamps, _ in found
    ), (len(want), [len(s) for s, _ in found])


def assert_stored_exactly_once(local_server: Any, truth: Truth) -> None:
    """Every frame and temperature point of the run is on the server once: one RHEED stream
    holds the run's frames in order and no stream holds any more; the points likewise. (A
    consumer killed between the server creating a stream and the ledger recording it leaves that
    stream empty.)"""
    from atomscale_bluesky.server.read_client import LocalServerError

    expected = truth.frames()
    stored = [local_server.reader.frames(s["data_id"]) for s in rheed_streams(local_server)]
    holding = [frames for frames in stored if len(frames)]
    assert [len(frames) for frames in holding] == [len(expected)], [len(f) for f in stored]
    np.testing.assert_array_equal(holding[0], expected)
    want = [t for t, _ in truth.temperatures]
    found = []
    for stream in local_server.reader.streams():
        if stream["kind"] == "rheed":
            continue
        try:
            stamps = local_server.reader.points(stream["data_id"], "growth-substrate_temperature")[
                0
            ]
        except LocalServerError as exc:  # 404: a stream that received no point
            if exc.status_code != 404:
                raise
            continue
        found.append(stamps)
    assert [len(stamps) for stamps in found] == [len(want)], (len(want), [len(s) for s in found])
    np.testing.assert_allclose(found[0], want, rtol=0, atol=1e-6)


def wait_for_finalized(local_server: Any, count: int, timeout: float = WAIT_S) -> bool:
    """Whether the server holds ``count`` finalized RHEED streams within ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        finalized = [
            s
            for s in rheed_streams(local_server)
            if local_server.reader.rheed_stream(s["data_id"]).get("status") == "finalized"
        ]
        if len(finalized) >= count:
            return True
        time.sleep(0.1)
    return False


STORAGES = ("inline", "ad_hdf5", "stream")


def large_and_file_runs(tmp_path: Path) -> tuple[list[Any], list[Any]]:
    """Three composed runs of 9 frames in event pages of 3: 1024x1024 inline (3 MiB pages),
    640x480 in areaDetector HDF5 files (resource/datum) and in ophyd-async files
    (stream_resource/stream_datum). Returns the runs and their cameras."""
    from callback.docs import T0, RunDocs, camera_stream, make_camera

    runs, cameras = [], []
    for i, storage in enumerate(STORAGES):
        h, w = (1024, 1024) if storage == "inline" else (480, 640)
        camera = make_camera("cam_image", 9, h=h, w=w, fps=10.0, seed=i, t0=T0 + 100 * i)
        run = RunDocs.start(name=f"bus {storage}", sample="bus wafer", fps=10.0)
        files = tmp_path / storage  # the detector's files, read by the consumer
        files.mkdir()
        camera_stream(run, [camera], tmp_path=files, storage=storage, form="page", page_size=3)
        run.stop()
        runs.append(run)
        cameras.append(camera)
    return runs, cameras


def assert_runs_stored(local_server: Any, cameras: list[Any]) -> None:
    stored = {
        s["name"]: local_server.reader.frames(s["data_id"]) for s in rheed_streams(local_server)
    }
    for storage, camera in zip(STORAGES, cameras, strict=True):
        np.testing.assert_array_equal(stored[f"bus {storage} (cam_image)"], camera.frames)
