"""``atomscale-bluesky check``, run as a real process against the simulated camera IOC."""

from __future__ import annotations

import os
import subprocess
import sys

from plugins.ioc_fixtures import reset_camera


def _check(handle, *args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ,
        EPICS_CA_SERVER_PORT=handle.env["EPICS_CAS_SERVER_PORT"],
        EPICS_CA_ADDR_LIST="127.0.0.1",
        EPICS_CA_AUTO_ADDR_LIST="NO",
    )
    return subprocess.run(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_check_reads_a_frame_and_says_what_streams(camera_ioc, sensors_ioc):
    reset_camera(camera_ioc.prefix)
    result = _check(
        camera_ioc,
        camera_ioc.prefix,
        "--acquire",
        "--sensor",
        f"{sensors_ioc.prefix}rotation:RPM",
        "--timeout",
        "20",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "frames of 480 x 640 pixels, dtype uint8" in out
    assert "bit depth 8 (configuration camera_pixel_format=Mono8)" in out, out  # as the callback
    assert "declared by AcquirePeriod_RBV" in out and "30" in out
    assert "frame counter: camera_array_counter" in out
    assert "camera_image: RHEED frames" in out
    assert "GROWTH_rotation_RPM: time-series channel 'GROWTH_rotation_RPM'" in out
    assert out.rstrip().endswith("OK: this camera streams as RHEED video")


def test_check_of_a_prefix_nobody_serves_fails_clearly(camera_ioc):
    result = _check(camera_ioc, "NO:SUCH:CAMERA:", "--timeout", "1")
    assert result.returncode == 1
    assert "no answer from NO:SUCH:CAMERA:image1:ArrayData" in result.stderr
    assert "is the IOC running" in result.stderr


def test_check_of_a_camera_that_never_took_a_frame_says_so(ioc_factory):
    handle = ioc_factory("rheed_camera", "IDLE:")
    result = _check(handle, "IDLE:", "--timeout", "20")
    assert result.returncode == 1, result.stdout
    assert "no image in IDLE:" in result.stderr and "--acquire" in result.stderr
