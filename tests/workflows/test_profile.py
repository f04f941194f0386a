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
summary = atomscale.wait(uid, timeout=120)
run = catalog[uid]
print("RESULT " + json.dumps({
    "bec": type(bec).__name__,
    "nslsii": bool(globals().get("__nslsii_configure_base_has_been_run")),
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


@pytest.mark.parametrize("nslsii", [True, False], ids=["nslsii", "without-nslsii"])
def test_profile_session_streams_a_run_and_stores_it_in_the_catalog(
    tmp_path, local_server, monkeypatch, nslsii
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
        "ATOMSCALE_PROFILE_NSLSII": "1" if nslsii else "0",
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
    assert outcome["nslsii"] is nslsii and outcome["bec"] == "BestEffortCallback"
    assert "Transient Scan ID" in result.stdout  # BestEffortCallback's table ...
    assert f"Atomscale run {outcome['uid'][:8]}" in result.stdout  # ... and the run's end
    assert "see them on the local server: " + local_server.url in result.stdout
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


EXISTING_PROFILE = """
# an existing beamline profile: its own RunEngine, BestEffortCallback and stock ophyd devices
import os
from bluesky import RunEngine
from bluesky.callbacks.best_effort import BestEffortCallback
from bluesky.plans import count
from ophyd import Component as Cpt, Device, EpicsSignalRO

RE = RunEngine({})
bec = BestEffortCallback()
bec.disable_plots()
RE.subscribe(bec)


class Chamber(Device):
    temperature = Cpt(EpicsSignalRO, "substrate:Temp_RBV")
    pressure = Cpt(EpicsSignalRO, "chamber:Pressure_RBV")


chamber = Chamber(os.environ["BEAMLINE_SENSORS"], name="chamber")
chamber.wait_for_connection(timeout=10)
"""

DROP_IN_SESSION = """
import json
uid, = RE(count([chamber], num=3), sample="drop-in wafer")
summary = atomscale.wait(uid, timeout=120)
print("RESULT " + json.dumps({"points": summary.points, "errors": summary.errors,
      "plans": callable(monitor_growth), "data_ids": summary.data_ids}))
"""


def test_drop_in_file_adds_atomscale_to_an_existing_profile(tmp_path, local_server, monkeypatch):
    """Copy startup/99-atomscale.py into another profile: its runs stream, nothing else changes."""
    profile = tmp_path / "beamline_profile"
    (profile / "startup").mkdir(parents=True)
    (profile / "startup" / "00-beamline.py").write_text(EXISTING_PROFILE)
    shutil.copy(PROFILE / "startup" / "99-atomscale.py", profile / "startup")
    ca = epics_env.loopback_env().variables
    env = {
        **os.environ,
        **ca,
        "ATOMSCALE_API_KEY": local_server.api_key,
        "AS_API_ENDPOINT": local_server.url,
        "ATOMSCALE_BLUESKY_SPOOL_DIR": str(tmp_path / "spool"),
        "BEAMLINE_SENSORS": SENSORS,
        "OPHYD_CONTROL_LAYER": "pyepics",
        "MPLBACKEND": "Agg",
    }
    monkeypatch.setenv("EPICS_CA_SERVER_PORT", ca["EPICS_CA_SERVER_PORT"])
    with running_ioc("growth_sensors", SENSORS, env=ca):
        result = subprocess.run(
            [sys.executable, "-m", "IPython", f"--profile-dir={profile}", "--no-banner",
             "--HistoryManager.enabled=False", "--colors=NoColor", "-c", DROP_IN_SESSION],
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Traceback" not in output, output
    outcome = json.loads(
        next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))[7:]
    )
    assert outcome["errors"] == 0 and outcome["plans"] is True
    assert outcome["points"] == 6  # two channels, three readings
    assert "Transient Scan ID" in result.stdout and "Atomscale run " in result.stdout
    (ts_id,) = outcome["data_ids"]
    channels = local_server.reader.timeseries(ts_id)["channels"]
    assert {name: ch["count"] for name, ch in channels.items()} == {
        "chamber_temperature": 3,
        "chamber_pressure": 3,
    }
