"""The process running the callback is SIGKILLed mid-run (RunEngine -> 0MQ -> consumer).

A restarted ``consume`` on the same spool uploads every spooled chunk and finalizes the stream;
the loss is at most the frames that had not reached the spool; ``replay`` from the run catalog
(written by the RunEngine process, which never stopped) recovers every frame.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from plugins.ioc_fixtures import wait_for

from .conftest import PRESIGN, Figures

pytest.importorskip("zmq")
pytest.importorskip("tiled.server")
pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
NUM, FPS = 300, 30.0  # 10 s of 64x48 frames, chunks of 60


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "atomscale_bluesky.apps.cli", *args]


def _stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def _spooled_chunks(spool: Path) -> dict[str, set[int]]:
    """Chunk indices waiting in the spool, per stream folder."""
    found: dict[str, set[int]] = {}
    for sidecar in spool.glob("*/*-c*.json"):
        match = re.search(r"-c(\d+)\.json$", sidecar.name)
        if match:
            found.setdefault(sidecar.parent.name, set()).add(int(match.group(1)))
    return found


def test_killed_consumer_resumes_from_the_spool_and_replay_recovers_the_rest(
    local_server: Any, tmp_path: Path
) -> None:
    from atomscale_bluesky.apps.catalog import running_catalog

    in_port, out_port = _free_port(), _free_port()
    spool = tmp_path / "spool"
    env = {**os.environ, "ATOMSCALE_API_KEY": local_server.api_key,
           "ATOMSCALE_SKIP_CLOCK_SYNC": "1"}  # fmt: skip
    consume = _cli("-v", "consume", "--zmq", f"127.0.0.1:{out_port}", "--endpoint",
                   local_server.url, "--spool-dir", str(spool))  # fmt: skip
    local_server.faults.set(outage=True, paths=[PRESIGN])  # no upload yet: chunks wait on disk
    logs = [tmp_path / "consumer1.log", tmp_path / "consumer2.log"]
    with running_catalog(tmp_path / "catalog") as catalog:
        proxy = subprocess.Popen(
            _cli("zmq-proxy", "--in-address", f"127.0.0.1:{in_port}",
                 "--out-address", f"127.0.0.1:{out_port}"),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        with open(logs[0], "wb") as out:
            first = subprocess.Popen(consume, env=env, stdout=out, stderr=subprocess.STDOUT)
        publisher = None
        try:
            assert wait_for(lambda: "consuming documents" in logs[0].read_text(), 60)
            time.sleep(1.0)
            truth = tmp_path / "truth.npz"
            publisher = subprocess.Popen(
                [sys.executable, str(HERE / "crash_publisher.py"), f"tcp://127.0.0.1:{in_port}",
                 catalog.uri, catalog.api_key, str(truth), str(NUM), str(FPS)],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            # kill the consumer once two chunks sit in its spool, mid-run
            assert wait_for(lambda: sum(map(len, _spooled_chunks(spool).values())) >= 2, 60)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
            at_kill = _spooled_chunks(spool)
            ((data_id, spooled_at_kill),) = at_kill.items()
            uploaded_at_kill = {c["idx"] for c in local_server.reader.chunk_times(data_id)}
            out_text, err_text = publisher.communicate(timeout=120)
            assert publisher.returncode == 0, err_text
            uid = out_text.split("uid ", 1)[1].strip()
            local_server.faults.clear()
            with open(logs[1], "wb") as out:
                second = subprocess.Popen(consume, env=env, stdout=out, stderr=subprocess.STDOUT)
            try:
                for line in ("recovered stream", "consuming documents"):
                    assert wait_for(lambda t=line: t in logs[1].read_text(), 90), (  # type: ignore[misc]
                        logs[1].read_text()
                    )
            finally:
                assert _stop(second) == 0, logs[1].read_text()
        finally:
            for process in (first, publisher):
                if process is not None and process.poll() is None:
                    process.kill()
            _stop(proxy, signal.SIGKILL)

        expected, stamps = np.load(truth)["frames"], np.load(truth)["stamps"]
        reader = local_server.reader
        info = reader.rheed_stream(data_id)
        chunk_size = info["chunk_size"]
        chunks = {c["idx"]: c for c in reader.chunk_times(data_id)}
        stored = reader.frames(data_id)
        # every chunk that was spooled or uploaded before the kill is on the server, intact
        assert spooled_at_kill | uploaded_at_kill <= set(chunks)
        for chunk in chunks.values():  # chunks from 0 on: a chunk's offset is its first frame's
            lo, n = chunk["offset"], chunk["n_frames"]
            np.testing.assert_array_equal(stored[lo : lo + n], expected[lo : lo + n])
        assert info["status"] == "finalized"
        assert not (spool / data_id).exists()
        recovered_frames = sum(c["n_frames"] for c in chunks.values())
        figures = Figures("sigkill-consumer", sent=NUM, delivered=NUM, stored=recovered_frames)
        figures.extra.update(
            spooled_at_kill=sorted(spooled_at_kill), uploaded_at_kill=sorted(uploaded_at_kill),
            chunk_size=chunk_size, resumed_chunks=len(spooled_at_kill),
        )  # fmt: skip
        figures.report()
        # the loss is only frames that never reached the spool: whole chunks after the kill
        assert set(chunks) == set(range(len(chunks)))
        for chunk in chunks.values():
            end = chunk["offset"] + chunk["n_frames"]
            if chunk["n_frames"] < chunk_size and end < len(stamps):  # cut only at a pause of the
                # publisher (a busy host): the next frame came more than a few periods later
                assert stamps[end] - stamps[end - 1] > 3 / FPS, (chunk, stamps[end - 2 : end + 2])
        assert "recovered stream" in logs[1].read_text()

        # replay from the catalog recovers every frame, with the original timestamps
        replay = subprocess.run(
            _cli("replay", "--catalog", catalog.uri, "--catalog-api-key", catalog.api_key,
                 "--endpoint", local_server.url, "--spool-dir", str(tmp_path / "spool-replay"),
                 uid),
            env=env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    streams = [s for s in reader.streams() if s["kind"] == "rheed" and s["data_id"] != data_id]
    assert len(streams) == 1
    replayed = reader.frames(streams[0]["data_id"])
    np.testing.assert_array_equal(replayed, expected)
    print(f"FIGURES sigkill-replay: sent {NUM}, replayed and stored {len(replayed)}, lost 0")
    assert local_server.api_key not in replay.stdout + replay.stderr
