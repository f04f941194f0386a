"""The IPython profile: a beamline session started non-interactively against the simulated IOCs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from atomscale_bluesky.sim import epics_env
from atomscale_bluesky.sim.launch import running_ioc

pytest.importorskip("IPython")
pytest.importorskip("tiled.server")

PROFILE = Path(__file__).parents[2] / "profile_collection"
CAMERA, SENSORS = "PROF:RHEED:", "PROF:GROWTH:"

SESSION = """
import json
uid, = RE(count([rheed, growth], num=6), sample="profile wafer", project_id="proj-1")
atomscale.flush(60)
summary = atomscale.summaries[-1]
run = catalog[uid]
print("RESULT " + json.dumps({
    "uid": uid,
    "frames": summary.frames,
    "points": summary.points,
    "lost": summary.lost,
    "errors": summary.errors,
    "data_ids": summary.data_ids,
    "catalog_streams": list(run),
    "md_scan_id": RE.md["scan_id"],
}))
"""


def test_profile_session_streams_a_run_and_stores_it_in_the_catalog(
    tmp_path, local_server, monkeypatch
):
    profile = tmp_path / "profile"
    shutil.copytree(PROFILE, profile)
    # CA on ports of its own: an IOC on the session's port would hide this one (unicast searches)
    ca = epics_env.loopback_env().variables
    env = {
        **os.environ,
        **ca,
        "ATOMSCALE_API_KEY": local_server.api_key,
        "AS_API_ENDPOINT": local_server.url,
        "ATOMSCALE_BLUESKY_SPOOL_DIR": str(tmp_path / "spool"),
        "ATOMSCALE_CAMERA_PREFIX": CAMERA,
        "ATOMSCALE_SENSORS_PREFIX": SENSORS,
        "ATOMSCALE_CATALOG_DIR": str(tmp_path / "catalog"),
        "ATOMSCALE_MD_DIR": str(tmp_path / "md"),
        "MPLBACKEND": "Agg",
    }
    args = ["--width", "64", "--height", "48", "--fps", "20", "--sensors-prefix", SENSORS]
    monkeypatch.setenv(
        "EPICS_CA_SERVER_PORT", ca["EPICS_CA_SERVER_PORT"]
    )  # for the readiness check
    with running_ioc("growth_chamber", CAMERA, env=ca, args=args):
        result = subprocess.run(
            [sys.executable, "-m", "IPython", f"--profile-dir={profile}", "--no-banner",
             "--HistoryManager.enabled=False", "--colors=NoColor", "-c", SESSION],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output, output
    assert local_server.api_key not in output
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    outcome = json.loads(line.removeprefix("RESULT "))
    assert outcome["frames"] == 6 and outcome["lost"] == 0 and outcome["errors"] == 0
    assert outcome["points"] > 0
    assert "primary" in outcome["catalog_streams"]
    assert outcome["md_scan_id"] >= 1
    assert (tmp_path / "md").exists()  # RE.md persisted for the next session

    reader = local_server.reader
    rheed = [s for s in reader.streams() if s["kind"] == "rheed"]
    assert [s["data_id"] for s in rheed] == [
        d for d in outcome["data_ids"] if d == rheed[0]["data_id"]
    ]
    assert reader.frames(rheed[0]["data_id"]).shape == (6, 48, 64)
    assert [s["name"] for s in reader.samples()] == ["profile wafer"]
