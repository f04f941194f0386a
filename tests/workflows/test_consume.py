"""Out of process: RunEngine -> 0MQ proxy -> consumer -> local server, each its own process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zmq")

HERE = Path(__file__).parent


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "atomscale_bluesky.apps.cli", *args]


def wait_for_line(path: Path, text: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def test_every_frame_reaches_the_server_through_proxy_and_consumer(tmp_path, local_server):
    in_port, out_port = free_tcp_port(), free_tcp_port()
    env = {
        **os.environ,
        "ATOMSCALE_API_KEY": local_server.api_key,
        "ATOMSCALE_SKIP_CLOCK_SYNC": "1",
    }
    consumer_log = tmp_path / "consumer.log"
    proxy = subprocess.Popen(
        cli("zmq-proxy", "--in-address", f"127.0.0.1:{in_port}", "--out-address", f"127.0.0.1:{out_port}"),
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    with open(consumer_log, "wb") as log:
        consumer = subprocess.Popen(
            cli("-v", "consume", "--zmq", f"127.0.0.1:{out_port}", "--endpoint", local_server.url,
                "--spool-dir", str(tmp_path / "spool"), "--tag", "zmq"),
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for_line(consumer_log, "consuming documents from", 60), consumer_log.read_text()
        time.sleep(1.0)
        truth = tmp_path / "truth.npz"
        publisher = subprocess.run(
            [sys.executable, str(HERE / "publisher_process.py"), f"tcp://127.0.0.1:{in_port}", str(truth), "90"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert publisher.returncode == 0, publisher.stderr
        assert wait_for_line(consumer_log, "Atomscale run", 60), consumer_log.read_text()
    finally:
        consumer_rc = stop(consumer)
        stop(proxy, signal.SIGKILL)
    log_text = consumer_log.read_text()
    assert consumer_rc == 0, log_text
    assert local_server.api_key not in log_text

    expected = np.load(truth)
    rheed = [s for s in local_server.reader.streams() if s["kind"] == "rheed"]
    assert len(rheed) == 1, log_text
    stored = local_server.reader.frames(rheed[0]["data_id"])
    np.testing.assert_array_equal(stored, expected["frames"])
    chunks = sorted(local_server.reader.chunk_times(rheed[0]["data_id"]), key=lambda c: c["idx"])
    assert chunks[0]["start_unix_ms_utc"] == round(expected["stamps"][0] * 1000)
    assert [t["name"] for t in local_server.reader.tags()] == ["zmq"]
