"""Nothing lost at the edges: streams opened while the server is down, finalize during an
outage then ``drain`` from a new process, a refused API key, a stale stream continued in a part."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np

from .conftest import rheed_like, stored_chunks

PRESIGN = "/data_entries/raw_data/staged/upload_urls/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _until(condition: Any, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def _invariant(report: Any) -> None:
    assert report.spooled == report.uploaded + report.pending + report.failed + report.purged


def test_streams_opened_while_the_server_is_down_lose_nothing(
    tmp_path: Path, make_client: Any
) -> None:
    from atomscale_bluesky.server.runner import running_server

    port, key = _free_port(), "edge-key"
    nobody = SimpleNamespace(url=f"http://127.0.0.1:{port}", api_key=key)
    client = make_client(nobody)
    rheed = client.open_rheed_stream(fps=10.0, stream_name="opened offline", tags=["edge"])
    ts = client.open_timeseries_stream(stream_name="sensors offline", points_per_chunk=5)
    assert rheed.data_id is None and ts.data_id is None
    assert rheed.local_id.startswith("local-") and not rheed.wait_opened(0.2)
    pushed = {
        rheed.push(rheed_like(20, 12, 16, seed=k)): rheed_like(20, 12, 16, seed=k) for k in range(4)
    }
    t0 = 1_700_000_000.0
    ts.push("temp", t0 + np.arange(12), np.arange(12.0), "C")
    status = client.status()
    assert status["chunks_pending"] == 4 + 3 and status["chunks_dropped"] == 0
    marker = json.loads((tmp_path / "spool" / rheed.local_id / "stream.json").read_bytes())
    assert (
        marker["data_id"] is None
        and marker["create"]["settings"]["data_item_name"] == "opened offline"
    )
    with running_server(data_dir=tmp_path / "srv", api_key=key, port=port) as server:
        assert rheed.wait_opened(60) and ts.wait_opened(60)
        report = rheed.finalize(drain_timeout_s=60)
        ts_report = ts.finalize(drain_timeout_s=60)
        assert report.ok and report.uploaded == 4 and report.finalized, report
        assert ts_report.ok and ts_report.uploaded == 3 and ts_report.finalized
        assert report.data_id == rheed.data_id and report.local_id == rheed.local_id
        stored = stored_chunks(server.reader, rheed.data_id, 20)
        assert sorted(stored) == sorted(pushed)
        assert all(np.array_equal(stored[i], pushed[i]) for i in pushed)
        info = server.reader.rheed_stream(rheed.data_id)
        assert info["name"] == "opened offline" and info["status"] == "finalized"
        assert [t["name"] for t in info["tags"]] == ["edge"]
        times, values, _ = server.reader.points(ts.data_id, "temp")
        assert np.array_equal(values, np.arange(12.0)) and np.array_equal(times, t0 + np.arange(12))
    assert not (tmp_path / "spool" / rheed.local_id).exists()


def test_finalize_during_an_outage_keeps_everything_and_drain_finishes_it(
    server: Any, make_client: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0)
    ts = client.open_timeseries_stream(points_per_chunk=4)
    server.reader.set_faults(
        outage=True, outage_mode="503", paths=[PRESIGN, "/tool-state/stream/chunk"]
    )
    frames = {
        stream.push(rheed_like(20, 8, 8, seed=k)): rheed_like(20, 8, 8, seed=k) for k in range(5)
    }
    ts.push("p", [1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    report = stream.finalize(drain_timeout_s=0.5)
    ts_report = ts.finalize(drain_timeout_s=0.5)
    assert report.pending == 5 and not report.finalized and report.not_uploaded == 0
    assert ts_report.pending == 1 and not ts_report.finalized
    _invariant(report)
    assert len(list((spool / stream.data_id).glob("*.zarr"))) == 5  # nothing deleted
    marker = json.loads((spool / stream.data_id / "stream.json").read_bytes())
    assert marker["finalize_requested"] and not marker["finalized"]
    client.close()  # the process "ends" with the outage still on
    server.reader.clear_faults()
    child = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("_drain_process.py")),
            server.url,
            str(spool),
        ],
        env={**os.environ, "ATOMSCALE_API_KEY": server.api_key},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert child.returncode == 0, child.stderr
    reports = {r["data_id"]: r for r in map(json.loads, child.stdout.splitlines()[:-1])}
    assert set(reports) == {stream.data_id, ts.data_id}
    for r in reports.values():
        assert r["finalized"] and r["chunks_pending"] == 0 and r["chunks_not_uploaded"] == 0, r
    stored = stored_chunks(server.reader, stream.data_id, 20)
    assert all(np.array_equal(stored[i], frames[i]) for i in frames)
    assert server.reader.rheed_stream(stream.data_id)["status"] == "finalized"
    assert server.reader.points(ts.data_id, "p")[1].tolist() == [4.0, 5.0, 6.0]
    assert not (spool / stream.data_id).exists() and not (spool / ts.data_id).exists()


def test_a_refused_key_pauses_uploads_and_they_resume_with_a_working_key(
    tmp_path: Path, make_client: Any, caplog: Any
) -> None:
    from atomscale_bluesky.server.runner import running_server

    port, data_dir, key = _free_port(), tmp_path / "srv", "the-right-key"
    with running_server(data_dir=data_dir, api_key=key, port=port) as server:
        client = make_client(server)
        stream = client.open_rheed_stream(fps=10.0)
        data_id = stream.data_id
    # the key is rotated on the server: the same port and data now answer 401 to our key
    with running_server(data_dir=data_dir, api_key="rotated-key", port=port):
        frames = {
            stream.push(rheed_like(20, 8, 8, seed=k)): rheed_like(20, 8, 8, seed=k)
            for k in range(3)
        }
        assert _until(lambda: client.status()["auth_paused"], 30)
        time.sleep(0.5)
        status = client.status()
        assert status["auth_pauses"] == 1 and status["chunks_pending"] == 3
        assert status["chunks_failed"] == 0 and status["chunks_purged"] == 0
        assert len(list((tmp_path / "spool" / data_id).glob("*.zarr"))) == 3
    errors = [
        r
        for r in caplog.records
        if r.levelname == "ERROR" and "ATOMSCALE_API_KEY" in r.getMessage()
    ]
    assert (
        len(errors) == 1
        and "rotated-key" not in errors[0].getMessage()
        and key not in errors[0].getMessage()
    )
    with running_server(data_dir=data_dir, api_key=key, port=port) as server:
        report = stream.finalize(drain_timeout_s=60)
        assert report.ok and report.uploaded == 3 and report.finalized, report
        assert report.auth_paused_s > 0
        assert not client.status()["auth_paused"]
        stored = stored_chunks(server.reader, data_id, 20)
        assert all(np.array_equal(stored[i], frames[i]) for i in frames)


class _StaleProxy:
    """Forwards to the local server, but refuses presigns for ``stale`` data_ids with the 409
    ``stream_error`` the server answers for a stream it closed for silence."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.stale: set[str] = set()
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.path.startswith(PRESIGN) and json.loads(body).get("data_id") in proxy.stale:
                    proxy.refused += 1
                    self._answer(409, b'{"detail": "stream closed as stream_error (idle)"}')
                    return
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length")
                }
                reply = httpx.request(
                    self.command, proxy.target + self.path, content=body, headers=headers
                )
                self._answer(reply.status_code, reply.content)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = _forward  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@contextmanager
def _stale_proxy(target: str) -> Iterator[_StaleProxy]:
    proxy = _StaleProxy(target)
    thread = threading.Thread(target=proxy.httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.httpd.shutdown()
        proxy.httpd.server_close()


def test_a_stale_stream_continues_in_a_new_part_with_every_chunk(
    server: Any, make_client: Any
) -> None:
    with _stale_proxy(server.url) as proxy:
        client = make_client(SimpleNamespace(url=proxy.url, api_key=server.api_key))
        stream = client.open_rheed_stream(fps=10.0, stream_name="anneal", physical_sample="S1")
        first = stream.data_id
        assert first is not None
        frames = {k: rheed_like(20, 8, 8, seed=k) for k in range(6)}
        for k in range(2):
            stream.push(frames[k])
        assert _until(lambda: client.status()["chunks_uploaded"] == 2)
        proxy.stale.add(first)  # the backend closes the stream for silence
        for k in range(2, 6):
            stream.push(frames[k])
        report = stream.finalize(drain_timeout_s=60)
    assert report.ok and report.uploaded == 6 and report.finalized, report
    assert proxy.refused >= 1 and report.data_id == first and len(report.parts) == 1
    part = report.parts[0]
    info = server.reader.rheed_stream(part)
    assert info["name"] == "anneal part 2" and info["sample"]["name"] == "S1"
    assert info["status"] == "finalized"
    old = stored_chunks(server.reader, first, 20)
    new = stored_chunks(server.reader, part, 20)
    assert sorted(old) == [0, 1] and sorted(new) == [2, 3, 4, 5]
    for k, chunk in {**old, **new}.items():
        assert np.array_equal(chunk, frames[k])
