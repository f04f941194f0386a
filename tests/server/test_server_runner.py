"""Starting and stopping the server: the serve CLI, port 0, keys, concurrency, light imports."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_kit import Proto, make_shard, random_frames

from atomscale_bluesky.allocator import USER_SETTINGS, on_glibc
from atomscale_bluesky.server.runner import (
    LocalServer,
    add_serve_arguments,
    faults_from_args,
    running_server,
    running_server_process,
)


def test_light_import_does_not_pull_the_asgi_stack() -> None:
    code = (
        "import sys, atomscale_bluesky.server as s, atomscale_bluesky.server.read_client, "
        "atomscale_bluesky.server.runner\n"
        "assert s.LocalServerClient is not None\n"
        "heavy = [m for m in ('fastapi', 'starlette', 'uvicorn', 'zarr') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_running_server_binds_loopback_free_port_and_stops(tmp_path: Path) -> None:
    with running_server(tmp_path / "d") as server:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith("/")
        port = int(server.url.rsplit(":", 1)[1])
        assert port > 0
        assert (tmp_path / "d" / "atomscale.sqlite").exists()
        assert server.reader.health()["status"] == "ok"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/gateway/time", timeout=2)


def test_data_survives_a_restart(tmp_path: Path) -> None:
    frames = random_frames(4, 6, 6)
    with running_server(tmp_path / "d", api_key="k1") as server:
        proto = Proto.open(server.url, "k1")
        data_id = proto.create_rheed()
        proto.upload(data_id, 0, frames, chunk_size=4)
    with running_server(tmp_path / "d", api_key="k2") as server:
        np.testing.assert_array_equal(server.reader.frames(data_id), frames)
        assert server.reader.rheed_stream(data_id)["status"] == "active"


def test_serve_cli_prints_real_port_and_applies_fault_flags(tmp_path: Path) -> None:
    with running_server_process(
        tmp_path / "d", extra_args=["--error-rate", "1", "--error-statuses", "429"]
    ) as server:
        assert server.pid is not None and server.url.startswith("http://127.0.0.1:")
        r = httpx.get(server.url + "/tags/", headers={"x-api-key": server.api_key})
        assert r.status_code == 429
        assert server.reader.faults()["error_statuses"] == [429]
        server.faults.clear()
        assert httpx.get(server.url + "/tags/", headers={"x-api-key": server.api_key}).json() == []


def test_serve_generates_a_private_key_file_when_none_given(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ATOMSCALE_LOCAL_API_KEYS"}
    data_dir = tmp_path / "d"
    proc = subprocess.Popen(
        [sys.executable, "-m", "atomscale_bluesky.server", "--port", "0", "--data-dir",
         str(data_dir), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        note = proc.stdout.readline()
        key_file = data_dir / "local-api-key"
        assert str(key_file) in note
        key = key_file.read_text().strip()
        assert key not in note
        assert key_file.stat().st_mode & 0o077 == 0
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(url + "/tags/", headers={"x-api-key": key})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.status_code == 200
    finally:
        proc.terminate()
        proc.wait(15)


def test_add_serve_arguments_parses_everything() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(
        ["--port", "0", "--api-key", "a", "--api-key", "b", "--latency", "0.5", "--drop-rate",
         "0.1", "--outage-s", "3", "--fault-seed", "4", "--error-statuses", "500,503"]
    )  # fmt: skip
    assert args.port == 0 and args.api_keys == ["a", "b"] and args.host == "127.0.0.1"
    faults = faults_from_args(args)
    assert (faults.latency_s, faults.drop_rate, faults.outage_s, faults.seed) == (0.5, 0.1, 3.0, 4)
    assert faults.error_statuses == (500, 503)


def test_server_process_runs_at_the_lower_priority_asked(tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    with running_server_process(data_dir=tmp_path, nice=5) as server:
        assert os.getpriority(os.PRIO_PROCESS, server.pid) == min(19, ours + 5)
        assert server.reader.health()
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    assert parser.parse_args([]).nice == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["--nice", "20"])  # beyond the kernel's range: refused


def _thread_cores(pid: int) -> dict[int, frozenset[int]]:
    return {
        int(tid): frozenset(os.sched_getaffinity(int(tid)))
        for tid in os.listdir(f"/proc/{pid}/task")
    }


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two cores",
)
def test_server_process_leaves_one_core_when_asked(tmp_path: Path) -> None:
    cores = frozenset(os.sched_getaffinity(0))
    with running_server_process(data_dir=tmp_path / "a", extra_args=("--leave-core",)) as server:
        assert server.reader.health()  # its threads are running
        threads = _thread_cores(server.pid)
        assert len(threads) > 1 and set(threads.values()) == {cores - {min(cores)}}, threads
    with running_server_process(data_dir=tmp_path / "b") as server:
        assert set(_thread_cores(server.pid).values()) == {cores}


def test_eight_concurrent_puts_and_a_responsive_loop(local_server: LocalServer) -> None:
    """8 uploads at once (large shards decode in threads) while the clock endpoint still answers."""
    proto = Proto.open(local_server.url, local_server.api_key)
    data_id = proto.create_rheed(fps=30.0)
    chunks = [random_frames(60, 240, 320, seed=k) for k in range(8)]
    urls = []
    for k, frames in enumerate(chunks):
        meta = proto.presign_metadata(data_id, frames.shape, 60, 1_700_000_000_000 + 2000 * k)
        urls.append(proto.presign(k, meta).json()["url"])
    bodies = [make_shard(f) for f in chunks]
    statuses: list[int] = []

    def put(k: int) -> None:
        with httpx.Client(timeout=120) as http:
            statuses.append(http.put(urls[k], content=bodies[k]).status_code)

    threads = [threading.Thread(target=put, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    clock_ok = 0
    while any(t.is_alive() for t in threads):
        clock_ok += httpx.get(local_server.url + "/gateway/time", timeout=30).status_code == 200
    for t in threads:
        t.join()
    assert statuses == [200] * 8
    assert clock_ok >= 1
    np.testing.assert_array_equal(local_server.reader.frames(data_id), np.concatenate(chunks))
    counters = local_server.reader.rheed_stream(data_id)["counters"]
    assert counters["chunks_received"] == 8 and counters["frames_stored"] == 480


def _minor_faults(pid: int) -> int:
    """Minor page faults of a process so far, all its threads (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[7])


@pytest.mark.skipif(not on_glibc(), reason="glibc's malloc on Linux only")
def test_server_process_takes_upload_bodies_from_its_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each upload body (12 MB here) is copied several times by the HTTP stack; buffers mapped
    afresh would cost a page fault per 4 KB per copy. After a first upload, the server's later
    uploads fault in far fewer pages than one copy of their body has."""
    for variable in (*USER_SETTINGS, "GLIBC_TUNABLES", "ATOMSCALE_TUNE_MALLOC"):
        monkeypatch.delenv(variable, raising=False)  # the server tunes its allocator itself
    frames = random_frames(40, 480, 640)  # noise: the shard is as large as the frames
    body = make_shard(frames)
    pages = len(body) // 4096
    with running_server_process(data_dir=tmp_path / "d", extra_args=("--no-analysis",)) as server:
        assert server.pid is not None
        proto = Proto.open(server.url, server.api_key)
        data_id = proto.create_rheed(fps=30.0)
        faults = []
        for k in range(4):
            meta = proto.presign_metadata(data_id, frames.shape, 40, 1_700_000_000_000 + 2000 * k)
            url = proto.presign(k, meta).json()["url"]
            before = _minor_faults(server.pid)
            assert proto.put(url, body).status_code == 200
            faults.append(_minor_faults(server.pid) - before)
        assert max(faults[1:]) < pages / 4, (pages, faults)
        np.testing.assert_array_equal(server.reader.frames(data_id)[-40:], frames)
