"""Pixels through the real simulated camera IOC: a 16-bit camera whose images arrive over
Channel Access as int16 (bright pixels negative), read by stock ophyd signals in a real
RunEngine, uploaded to the local server and compared pixel for pixel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

H, W = 48, 64
CHILD = Path(__file__).with_name("pixels_ioc_child.py")


def test_sixteen_bit_ioc_images_read_as_unsigned_from_the_configured_data_type(
    ioc_factory, local_server, tmp_path
):
    handle = ioc_factory("rheed_camera", "PIX16:", width=W, height=H, bit_depth=16, fps=20)
    env = {**os.environ, **handle.env, "ATOMSCALE_API_KEY": local_server.api_key}
    result = subprocess.run(
        [
            sys.executable,
            str(CHILD),
            "--prefix",
            handle.prefix,
            "--endpoint",
            local_server.url,
            "--out",
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    received = np.load(tmp_path / "received.npz")
    assert summary["flushed"] and summary["errors"] == 0, summary["error_messages"]

    raw = received["frames"]
    assert raw.dtype == np.int16 and raw.shape[1] == H * W  # as Channel Access delivers them
    assert (raw < 0).any()  # bright pixels (>= 32768) arrive negative
    _, first = np.unique(received["times"], return_index=True)  # a frame read twice is one
    unique = raw[np.sort(first)]
    expected = (unique.view(np.uint16) >> 8).astype(np.uint8).reshape(-1, H, W)

    (rheed,) = summary["rheed"]
    stored = local_server.reader.frames(rheed["data_id"])
    np.testing.assert_array_equal(stored, expected)

    pixels = rheed["pixels"]
    assert pixels["source_dtype"] in ("<i2", ">i2") and pixels["read_as"].endswith("u2")
    assert pixels["read_as_source"] == "configuration cam_data_type=UInt16"
    assert not pixels["read_as_guessed"]
    assert pixels["reinterpreted_frames"] == int((unique < 0).any(axis=1).sum())
    # nothing declares the depth of a UInt16 camera: guessed from its first frames, and said so
    assert pixels["bit_depth"] == 16 and pixels["bit_depth_guessed"]
    assert "16-bit guessed from the first" in summary["text"]
    assert "nothing declares the pixel scale of uint16 frames; assuming 16-bit" in result.stderr
