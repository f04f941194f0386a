"""Replay: runs stored in a local Tiled catalog are streamed later with their original timestamps."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, Signal

pytest.importorskip("tiled.server")

H, W = 24, 32


class StepImage(Signal):
    """A 2-D uint8 frame that changes on every trigger, with its own (hardware-like) timestamp."""

    def describe(self):
        desc = super().describe()
        desc[self.name].update(dtype="array", dtype_numpy="|u1", shape=[H, W])
        return desc


class StepCamera(Device):
    image = Cpt(StepImage, value=np.zeros((H, W), np.uint8), kind="hinted")
    temperature = Cpt(Signal, value=550.0, kind="normal")

    def trigger(self):
        n = getattr(self, "_n", 0)
        self._n = n + 1
        stamp = 1_750_000_000.0 + 0.5 * n  # far from "now": replay must keep these
        frame = np.random.default_rng(n).integers(1, 256, (H, W), dtype=np.uint8)
        self.image.put(frame, timestamp=stamp)
        self.temperature.put(550.0 + n, timestamp=stamp + 0.01)
        return super().trigger()


def record(RE: RunEngine) -> tuple[list[np.ndarray], list[float], list[float], list[float]]:
    """The truth: frames and readings as the RunEngine emitted them."""
    frames, frame_ts, temps, temp_ts = [], [], [], []

    def keep(name, doc):
        if name == "event":
            frames.append(np.asarray(doc["data"]["cam_image"]))
            frame_ts.append(doc["timestamps"]["cam_image"])
            temps.append(doc["data"]["cam_temperature"])
            temp_ts.append(doc["timestamps"]["cam_temperature"])

    RE.subscribe(keep)
    return frames, frame_ts, temps, temp_ts


def test_replay_streams_a_stored_run_with_its_hardware_timestamps(tmp_path, local_server):
    from atomscale_bluesky.apps.catalog import running_catalog

    with running_catalog(tmp_path / "catalog") as catalog:
        RE = RunEngine({})
        writer = catalog.writer()
        RE.subscribe(writer)
        frames, frame_ts, temps, temp_ts = record(RE)
        cam = StepCamera(name="cam")
        (uid,) = RE(count([cam], num=12), sample="replayed wafer", tags=["backfill"])
        writer.shutdown(wait=True)
        assert len(catalog.client[uid]["primary"]["cam_image"].read()) == 12

        result = subprocess.run(
            [sys.executable, "-m", "atomscale_bluesky.apps.cli", "replay", "--catalog", catalog.uri,
             "--catalog-api-key", catalog.api_key, "--endpoint", local_server.url, uid],
            env={**__import__("os").environ, "ATOMSCALE_API_KEY": local_server.api_key,
                 "ATOMSCALE_BLUESKY_SPOOL_DIR": str(tmp_path / "spool"),
                 "ATOMSCALE_SKIP_CLOCK_SYNC": "1"},  # exact comparison of stamps below
            capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"run {uid}: " in result.stdout and "ok" in result.stdout
    assert local_server.api_key not in result.stdout + result.stderr

    reader = local_server.reader
    streams = reader.streams()
    rheed = [s for s in streams if s["kind"] == "rheed"]
    series = [s for s in streams if s["kind"] != "rheed"]
    assert len(rheed) == 1 and len(series) == 1
    stored = reader.frames(rheed[0]["data_id"])
    np.testing.assert_array_equal(stored, np.stack(frames))
    chunks = sorted(reader.chunk_times(rheed[0]["data_id"]), key=lambda c: c["idx"])
    # the first frame's hardware time (clock correction is off in this test, see above)
    assert chunks[0]["start_unix_ms_utc"] == round(frame_ts[0] * 1000)
    assert chunks[0]["start_unix_ms_utc"] < (time.time() - 3600) * 1000  # not the replay's clock
    assert [s["name"] for s in reader.samples()] == ["replayed wafer"]

    ts, values, units = reader.points(series[0]["data_id"], "cam_temperature")
    np.testing.assert_allclose(values, temps)
    np.testing.assert_allclose(ts, temp_ts, rtol=0, atol=1e-6)


def test_replay_of_an_unknown_run_fails_clearly(tmp_path, local_server):
    from atomscale_bluesky.apps.catalog import running_catalog

    with running_catalog(tmp_path / "catalog") as catalog:
        result = subprocess.run(
            [sys.executable, "-m", "atomscale_bluesky.apps.cli", "replay", "--catalog", catalog.uri,
             "--catalog-api-key", catalog.api_key, "--endpoint", local_server.url, "no-such-run"],
            env={**__import__("os").environ, "ATOMSCALE_API_KEY": local_server.api_key,
                 "ATOMSCALE_BLUESKY_SPOOL_DIR": str(tmp_path / "spool")},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert "run no-such-run: 0 documents replayed: FAILED" in result.stdout
    assert local_server.reader.streams() == []
