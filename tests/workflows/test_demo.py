"""``atomscale-bluesky demo`` end to end: IOC + local server + a growth recipe, then what was stored."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")

ARGS = ["--fps", "20", "--width", "160", "--height", "120", "--shutter-cycles", "2"]


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("ATOMSCALE_API_KEY", "AS_API_KEY", "AS_API_ENDPOINT"):
        env.pop(name, None)
    return env


def demo_iocs(demo_pid: int) -> set[int]:
    """PIDs of the IOC processes a demo started: its children serving the demo's PV prefix.

    Only this demo's children count: another suite's demo on the same machine is not ours."""
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = next(
            (line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), ""
        )
        if ppid == str(demo_pid) and "DEMO:RHEED:" in cmdline:
            found.add(int(proc.name))
    return found


def still_running(pids: set[int]) -> list[int]:
    """Those of ``pids`` still alive (a zombie waiting to be reaped has exited)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def run_demo(args: list[str], timeout: float) -> tuple[subprocess.CompletedProcess[str], set[int]]:
    """Run the demo to its end, noting the IOC processes it started on the way (its output goes
    to files, so a long output never blocks it while this polls)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "atomscale_bluesky.apps.cli", "demo", *args],
            env=demo_env(), stdout=out, stderr=err, text=True,
        )  # fmt: skip
        iocs: set[int] = set()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            iocs |= demo_iocs(process.pid)
            time.sleep(0.2)
        process.wait(timeout=max(1.0, deadline - time.monotonic()))
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(
            process.args, process.returncode, out.read(), err.read()
        )
    return result, iocs


def test_demo_streams_a_growth_run_and_reports_what_was_stored(tmp_path):
    out = tmp_path / "demo"
    result, iocs = run_demo(["--duration", "9", *ARGS, "--output-dir", str(out)], timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    assert "local Atomscale-compatible server on http://127.0.0.1:" in text
    assert "lost (frames/points/chunks not delivered): 0" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] > 100 and summary["points"] > 50
    stored_frames = [line for line in text.splitlines() if "frames stored" in line]
    assert stored_frames and f"{summary['frames']} frames stored" in stored_frames[0]
    figure = out / "demo-summary.png"
    assert figure.exists() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert iocs and still_running(iocs) == []
    # clean: no Channel Access noise at exit, progress from the callback's own display
    for noise in ("Virtual circuit disconnect", "CA.Client.Exception"):
        assert noise not in result.stdout + result.stderr, result.stderr[-3000:]
    assert "atomscale: " in result.stderr and "upload lag" in result.stderr
    # the camera's counters find missing frames; they are not growth channels
    channels = set(summary["timeseries"]["channels"])
    assert "growth_substrate_temperature" in channels and "growth_shutter_ga" in channels
    assert not {c for c in channels if "counter" in c or "unique_id" in c}, channels
    assert "rheed_array_counter" in summary["skipped_keys"]
    # physically sensible: the Ga shutter opens only once the substrate is at growth temperature
    from atomscale_bluesky.server.runner import running_server

    with running_server(data_dir=out / "server-data") as server:
        ts_id = summary["timeseries"]["data_id"]
        t_shutter, v_shutter, _ = server.reader.points(ts_id, "growth_shutter_ga")
        t_sub, v_sub, _ = server.reader.points(ts_id, "growth_substrate_temperature")
    opened = t_shutter[v_shutter >= 0.5]
    assert len(opened) >= 2
    before = v_sub[t_sub <= opened[0]]
    assert len(before) and abs(before[-1] - 580.0) <= 5.0, (before[-5:], opened[0])
    # the closed loop: the shutter closed by the live analysis near 10 monolayers of the truth
    assert "closed loop: target 10 monolayers, shutter closed by" in text, text[-3000:]
    error = re.search(r"simulated truth ([0-9.]+) monolayers: error ([+-][0-9.]+)", text)
    assert error is not None and abs(float(error.group(2))) <= 0.5, text[-3000:]


def test_demo_stops_everything_on_ctrl_c(tmp_path):
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", "demo", "--duration", "60", *ARGS, "--output-dir", str(out)],
        env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    for line in process.stdout:
        if "running growth_recipe" in line or time.monotonic() > deadline:
            break
    iocs = demo_iocs(process.pid)
    time.sleep(3)
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    assert "interrupted" in rest
    assert iocs and still_running(iocs) == []


def test_demo_rejects_bad_options():
    result = subprocess.run(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", "demo", "--fps", "0"],
        env=demo_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--fps must be between 1 and 240" in result.stderr
