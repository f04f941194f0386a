"""The camera IOC dies mid-run and comes back on the same prefix and port: the run records the gap
(the camera's frame counter restarts) and continues streaming the frames that follow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.sim import epics_env
from atomscale_bluesky.sim.launch import IocHandle, running_ioc

from .conftest import Figures, frame_hash

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
PREFIX = "DIE:RHEED:"
DOWN_S = 4.0
FRAMES = 60  # image events streamed before the IOC dies, and again after it returns


def _frames_reached(child: subprocess.Popen, n: int, timeout: float = 180.0) -> int:
    """Read the child's "frames N" lines until N >= n (a generous deadline, not a rate)."""
    assert child.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            raise AssertionError(f"the run process ended early: {child.stderr.read()}")
        if line.startswith("frames ") and int(line.split()[1]) >= n:
            return int(line.split()[1])
    raise AssertionError(f"fewer than {n} frames within {timeout} s")


@contextmanager
def _ioc(env: dict[str, str]) -> Iterator[IocHandle]:
    saved = os.environ.get("EPICS_CA_SERVER_PORT")
    os.environ["EPICS_CA_SERVER_PORT"] = env["EPICS_CA_SERVER_PORT"]  # caproto's readiness probe
    try:
        args = ["--fps", "30", "--width", "160", "--height", "120", "--continuous"]
        with running_ioc("rheed_camera", PREFIX, env=env, args=args) as handle:
            yield handle
    finally:
        if saved is not None:
            os.environ["EPICS_CA_SERVER_PORT"] = saved


def test_ioc_killed_and_restarted_mid_run_the_run_records_the_gap_and_continues(
    local_server: Any, tmp_path: Path
) -> None:
    port, _ = epics_env.free_port_pair()
    env = {**os.environ, "EPICS_CA_SERVER_PORT": str(port), "EPICS_CAS_SERVER_PORT": str(port),
           "ATOMSCALE_API_KEY": local_server.api_key}  # fmt: skip
    out = tmp_path / "run.json"
    with _ioc(env) as first:
        child = subprocess.Popen(
            [sys.executable, str(HERE / "ioc_run_process.py"), PREFIX, "300", local_server.url,
             str(tmp_path / "spool"), str(out)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        assert child.stdout.readline().strip() == "running", child.stderr.read()
        # driven by frame counts the child reports, not by seconds of streaming
        at_kill = _frames_reached(child, FRAMES)
        os.kill(first.pid, signal.SIGKILL)  # the IOC dies
        first.process.wait(10)
        killed_at = time.time()
        time.sleep(DOWN_S)  # the outage itself: its length is what the gap must show
    with _ioc(env):  # ... and comes back on the same prefix and port, acquiring
        restarted_at = time.time()
        try:
            # a reconnecting monitor may deliver the last frame again: ask for a few more
            _frames_reached(child, at_kill + FRAMES + 10)
            out.with_name(out.name + ".stop").touch()  # the child stops its run
            child.wait(120)
        finally:
            if child.poll() is None:
                child.kill()
    assert child.returncode == 0, child.stderr.read() if child.stderr else ""
    result = json.loads(out.read_text())
    summary = result["summary"]
    (rheed,) = [
        r for r in summary["rheed"] if r["frame_shape"] and tuple(r["frame_shape"]) == (120, 160)
    ]
    stamps = np.asarray(result["stamps"])
    after = int((stamps > restarted_at).sum())
    before = int((stamps < killed_at).sum())
    reader = local_server.reader
    chunks = reader.chunk_times(rheed["data_id"])
    stored = sum(c["n_frames"] for c in chunks)
    gap = float(np.diff(stamps).max())
    # a reconnecting monitor may hand the RunEngine the same frame (same hardware stamp) twice;
    # the callback drops the copy as a duplicate, so frames are counted by distinct stamp
    distinct = len(np.unique(stamps))
    figures = Figures("ioc-restart", sent=len(stamps), delivered=distinct, stored=stored)
    figures.extra.update(
        redelivered=len(stamps) - distinct,
        frames_before_kill=before, frames_after_restart=after, gap_s=round(gap, 1),
        counter_resets=rheed["counter_resets"], gap_events=rheed["gap_events"],
        missing=rheed["missing"],
    )  # fmt: skip
    figures.report()
    assert result["exit_status"] == "success"
    assert before >= FRAMES and after >= FRAMES  # it streamed before the death and after the return
    assert gap >= DOWN_S  # the hardware timestamps show the outage ...
    assert rheed["counter_resets"] + rheed["gap_events"] >= 1  # ... and the summary records it
    assert figures.lost == 0 and summary["errors"] == 0, result["text"]
    assert len(set(frame_hash(f) for f in reader.frames(rheed["data_id"])[:5])) > 1
