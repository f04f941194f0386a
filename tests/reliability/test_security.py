"""Security: the API key never leaks; the local server lets no one in; TLS is verified.

A distinctive key is planted and every place it could surface is searched for it: logs at DEBUG
(caplog and the CLI's ``-vv`` stderr), exception texts, reprs of every public object, spool
files, documents, the server's data directory and the demo's output.
"""

from __future__ import annotations

import datetime
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from plugins.ioc_fixtures import wait_for

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import ApiKey, AtomscaleClient, AtomscaleClientError
from atomscale_bluesky.server.runner import running_server
from atomscale_bluesky.settings import load_settings
from atomscale_bluesky.shards import encode_shard, shard_key

from .conftest import PRESIGN, TEST_BACKOFF
from .docs_run import record_run

PLANTED = "PLANTED-" + uuid.uuid4().hex.upper()


def _grep_tree(root: Path, needle: str) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle`` (also its lower-case form)."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if needle.encode() in data or needle.lower().encode() in data:
                hits.append(path)
    return hits


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "atomscale_bluesky.apps.cli", *args]


@pytest.fixture
def planted_server(tmp_path: Path) -> Iterator[Any]:
    with running_server(data_dir=tmp_path / "server", api_key=PLANTED) as server:
        yield server


def test_planted_key_is_absent_from_logs_errors_reprs_spool_and_documents(
    planted_server: Any, tmp_path: Path, RE: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    spool = tmp_path / "spool"
    client = AtomscaleClient(
        PLANTED, planted_server.url, spool_dir=spool, spool_min_free_bytes=0, backoff=TEST_BACKOFF
    )
    texts: list[str] = []
    try:
        # uploads held back so the spool holds chunks while we read it
        planted_server.faults.set(outage=True, paths=[PRESIGN])
        callback = AtomscaleCallback(client, sample="leak test", tags=["security"])
        docs = record_run(RE, callback, num=45, sample="leak wafer")
        assert wait_for(lambda: client.status()["chunks_pending"] >= 1, 20)
        spool_hits = _grep_tree(spool, PLANTED)
        spooled_files = [p for p in spool.rglob("*") if p.is_file()]
        planted_server.faults.clear()
        assert callback.flush(120)
        (summary,) = callback.summaries
        assert summary.frames == 45 and summary.errors == 0, summary.text()
        ts = client.open_timeseries_stream(stream_name="leak")
        rheed = client.open_rheed_stream(fps=5.0)
        objects: list[Any] = [
            client, client.config, client._api, client.config.api_key, rheed, ts, callback,
            summary, planted_server, planted_server.reader, planted_server.faults,
            load_settings(), callback.counters, rheed.finalize(), ts.finalize(),
        ]  # fmt: skip
        texts += [repr(o) for o in objects] + [str(o) for o in objects]
        texts += [f"{client.config.api_key}", json.dumps(summary.as_dict(), default=str)]
        texts += [json.dumps(client.status(), default=str)]
        # a refused key and an unreachable endpoint do not raise (the stream waits in the
        # spool, the log says why): their reprs, status and spool files must not hold the key
        for other in (
            AtomscaleClient(PLANTED + "x", planted_server.url, spool_dir=tmp_path / "s2",
                            clock_sync=False),
            AtomscaleClient(PLANTED, "http://127.0.0.1:9", spool_dir=tmp_path / "s3",
                            clock_sync=False),
        ):  # fmt: skip
            with other:
                waiting = other.open_rheed_stream(fps=5.0)
                assert waiting.data_id is None
                texts += [repr(waiting), repr(other), json.dumps(other.status(), default=str)]
        assert _grep_tree(tmp_path / "s2", PLANTED) == _grep_tree(tmp_path / "s3", PLANTED) == []
        # exception texts: a closed stream, bad input
        for make_error in (
            lambda: rheed.push(np.zeros((4, 8, 8), np.uint8)),
            lambda: client.open_rheed_stream(fps=-1.0),
            lambda: planted_server.reader.rheed_stream("no-such-stream"),
        ):  # fmt: skip
            with pytest.raises(Exception) as info:
                make_error()
            texts += [
                str(info.value),
                repr(info.value),
                "".join(traceback.format_exception(info.value)),
            ]
        with pytest.raises(TypeError):
            __import__("pickle").dumps(client.config.api_key)
    finally:
        client.close()
    texts.append(json.dumps(docs, default=str))
    texts.append(caplog.text)
    assert "HTTP Request" in caplog.text  # DEBUG/INFO logs of the requests were captured
    loggers = {record.name.split(".")[0] for record in caplog.records}
    assert {"httpx", "httpcore", "atomscale_bluesky"} <= loggers, loggers
    assert any(r.levelno == logging.DEBUG and r.name.startswith("httpcore") for r in caplog.records)
    assert spooled_files, "the spool held no files while uploads were refused"
    assert spool_hits == []
    assert _grep_tree(planted_server.data_dir, PLANTED) == []
    for text in texts:
        assert PLANTED not in text and PLANTED.lower() not in text


def test_planted_key_is_absent_from_the_cli_debug_output(
    planted_server: Any, tmp_path: Path
) -> None:
    """``-vv consume`` resumes a spooled stream (uploads and finalizes with the key) at DEBUG."""
    spool = tmp_path / "spool"
    planted_server.faults.set(outage=True, paths=[PRESIGN])
    with AtomscaleClient(PLANTED, planted_server.url, spool_dir=spool, spool_min_free_bytes=0,
                         clock_sync=False) as first:  # fmt: skip
        stream = first.open_rheed_stream(fps=5.0)
        stream.push(np.full((10, 16, 16), 7, np.uint8))
    planted_server.faults.clear()
    env = {**os.environ, "ATOMSCALE_API_KEY": PLANTED, "ATOMSCALE_SKIP_CLOCK_SYNC": "1"}
    log = tmp_path / "consume.log"
    with open(log, "wb") as out:
        consumer = subprocess.Popen(
            _cli("-vv", "consume", "--zmq", "127.0.0.1:9", "--endpoint", planted_server.url,
                 "--spool-dir", str(spool)),
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for(lambda: "finalized stream" in log.read_text(errors="replace"), 60)
    finally:
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(30)
    text = log.read_text(errors="replace")
    assert "DEBUG" in text and stream.data_id in text
    assert planted_server.reader.rheed_stream(stream.data_id)["status"] == "finalized"
    assert PLANTED not in text and PLANTED.lower() not in text


@pytest.mark.slow
def test_demo_never_prints_the_planted_key(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "ATOMSCALE_API_KEY": PLANTED}
    result = subprocess.run(
        _cli("-vv", "demo", "--duration", "6", "--fps", "10", "--width", "64", "--height", "48",
             "--no-figure", "--local", "--output-dir", str(out)),
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-3000:]
    assert "Demo summary" in text
    assert PLANTED not in text and PLANTED.lower() not in text
    assert _grep_tree(out, PLANTED) == []


def test_the_callback_holds_the_key_as_an_api_key(planted_server: Any, tmp_path: Path) -> None:
    """The callback's own client factory keeps an ApiKey; no str of the key is reachable."""
    callback = AtomscaleCallback(api_key=PLANTED, endpoint=planted_server.url)
    try:
        factory = callback._opener._factory
        cells = [cell.cell_contents for cell in factory.__closure__ or ()]
        assert ApiKey(PLANTED) in cells
        assert not any(isinstance(c, str) and PLANTED in c for c in cells)
        seen: set[int] = set()
        pending: list[Any] = [callback]
        while pending and len(seen) < 20_000:  # what the callback references, transitively
            obj = pending.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            assert not (isinstance(obj, str) and PLANTED in obj)
            if not isinstance(obj, (str, bytes, int, float, type)):
                pending.extend(gc.get_referents(obj))
    finally:
        callback.close()


def test_a_streaming_session_leaves_only_owner_readable_files(
    planted_server: Any, tmp_path: Path
) -> None:
    """Every spool folder is 0700 and every spool file 0600, whatever the process umask."""
    spool = tmp_path / "spool"
    old_umask = os.umask(0o002)
    try:
        # both kinds of chunk stay spooled (no upload deletes a file while the modes are read)
        planted_server.faults.set(outage=True, paths=[PRESIGN, "/tool-state/stream/chunk"])
        with AtomscaleClient(PLANTED, planted_server.url, spool_dir=spool, clock_sync=False,
                             spool_min_free_bytes=0) as client:  # fmt: skip
            stream = client.open_rheed_stream(fps=5.0)
            stream.push(np.full((10, 16, 16), 3, np.uint8))
            points = client.open_timeseries_stream(stream_name="modes")
            points.push("T", [time.time()], [500.0])
            assert wait_for(lambda: client.status()["chunks_pending"] >= 2, 20)
            folders = [spool, *(p for p in spool.rglob("*") if p.is_dir())]
            files = [p for p in spool.rglob("*") if p.is_file()]
            assert files
            assert {p: stat.S_IMODE(p.stat().st_mode) for p in folders} == dict.fromkeys(
                folders, 0o700
            )
            assert {p: stat.S_IMODE(p.stat().st_mode) for p in files} == dict.fromkeys(files, 0o600)
    finally:
        os.umask(old_umask)
        planted_server.faults.clear()


@pytest.mark.parametrize(
    "bad",
    [PLANTED + "\nX", "\t" + PLANTED + " x", PLANTED + "é"],
    ids=["newline", "tab-space", "non-ascii"],  # the key is random: ids alike in every process
)
def test_a_key_no_header_can_carry_is_refused_without_echoing_it(bad: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        AtomscaleClient(bad, "http://127.0.0.1:9", spool_dir=tmp_path / "s", clock_sync=False)
    assert PLANTED not in str(info.value) and "API key" in str(info.value)


# ---- the local server: loopback, keys, sizes, path tricks, presigned URLs --------------------


def _listening_addresses(port: int) -> list[str]:
    """Local IPv4 addresses listening on ``port`` (from /proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        addr, port_hex = fields[1].split(":")
        if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
            found.append(str(ipaddress.IPv4Address(bytes.fromhex(addr)[::-1])))
    return found


def test_server_binds_loopback_by_default(tmp_path: Path) -> None:
    from atomscale_bluesky.server import runner

    with running_server(data_dir=tmp_path / "s") as server:
        port = int(server.url.rsplit(":", 1)[1])
        assert server.url.startswith("http://127.0.0.1:")
        assert _listening_addresses(port) == ["127.0.0.1"]
    parser = __import__("argparse").ArgumentParser()
    runner.add_serve_arguments(parser)
    assert parser.parse_args([]).host == "127.0.0.1"


def _stream_with_chunk(server: Any, tmp_path: Path) -> tuple[str, np.ndarray]:
    with AtomscaleClient(server.api_key, server.url, spool_dir=tmp_path / "good-spool",
                         clock_sync=False, spool_min_free_bytes=0) as client:  # fmt: skip
        stream = client.open_rheed_stream(fps=5.0, stream_name="good")
        frames = np.random.default_rng(1).integers(1, 255, (10, 16, 16), dtype=np.uint8)
        stream.push(frames)
        assert stream.finalize(drain_timeout_s=30).ok
    return stream.data_id, frames


@pytest.mark.parametrize(
    "key",
    [None, "", "wrong", PLANTED[:-1], PLANTED + "x", PLANTED.lower(), PLANTED.replace("-", "_"),
     PLANTED[::-1], PLANTED[:8], PLANTED + PLANTED],
    ids=["none", "empty", "wrong", "shorter", "longer", "lower", "underscore", "reversed",
         "prefix", "doubled"],  # the key is random: ids alike in every process (xdist)
)  # fmt: skip
def test_server_refuses_wrong_keys_and_stores_nothing(
    planted_server: Any, tmp_path: Path, key: str | None
) -> None:
    headers = {} if key is None else {"X-API-KEY": key}
    spec = httpx.get(f"{planted_server.url}/openapi.json").json()
    with httpx.Client(base_url=planted_server.url, headers=headers, timeout=10) as http:
        for path, methods in spec["paths"].items():
            if path in ("/gateway/time",) or path.startswith("/upload/"):
                continue  # the clock and the presigned PUT need no key, by protocol
            url = path.replace("{data_id}", "abc").replace("{project_id}", "p")
            for method in methods:
                response = http.request(method.upper(), url, json={"name": "intruder"})
                assert response.status_code == 401, (method, path, response.text)
    assert planted_server.reader.streams() == [] and planted_server.reader.samples() == []


def test_server_bounds_request_sizes(tmp_path: Path) -> None:
    with running_server(data_dir=tmp_path / "s", max_json_bytes=4096,
                        max_upload_bytes=65536) as server:  # fmt: skip
        good_id, frames = _stream_with_chunk(server, tmp_path)
        auth = {"X-API-KEY": server.api_key}
        big = json.dumps({"name": "x" * 10_000}).encode()

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            for _ in range(10):
                yield b" " * 1000

        with httpx.Client(base_url=server.url, timeout=10) as http:
            declared = http.post("/physical_samples/", content=big, headers=auth)
            streamed = http.post("/physical_samples/", content=chunked(), headers=auth)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as raw:  # a lying length
            raw.sendall(
                b"POST /tags/ HTTP/1.1\r\nHost: x\r\nX-API-KEY: " + server.api_key.encode()
                + b"\r\nContent-Length: 99999999999\r\n\r\n{}"
            )  # fmt: skip
            lying = raw.recv(200).decode(errors="replace")
        assert declared.status_code == 413, declared.text
        assert streamed.status_code == 413, streamed.text
        assert lying.startswith(("HTTP/1.1 413", "HTTP/1.1 400")), lying
        assert server.reader.samples() == [] and server.reader.health()["internal_errors"] == 0
        np.testing.assert_array_equal(server.reader.frames(good_id), frames)


@pytest.mark.parametrize(
    "data_id",
    ["../../etc/passwd", "..", ".", "a/b", "a%2Fb", "%2e%2e", "..%2f..%2fx", "a\x00b", "é",
     "x" * 129, "a b", "a;rm -rf /", "$(id)", "C:\\\\x"],
)  # fmt: skip
def test_server_rejects_path_tricks_in_ids(local_server: Any, tmp_path: Path, data_id: str) -> None:
    good_id, frames = _stream_with_chunk(local_server, tmp_path)
    before = sorted(p.relative_to(local_server.data_dir) for p in local_server.data_dir.rglob("*"))
    auth = {"X-API-KEY": local_server.api_key}
    shard = encode_shard(frames)
    meta = {"data_id": data_id, "data_stream": "rheed", "dims": "10,16,16", "chunk_size": "10",
            "start_unix_ms_utc": "1", "end_unix_ms_utc": "2"}  # fmt: skip
    params = {"original_filename": shard_key(0), "num_parts": "1", "staging_type": "stream"}
    in_path = urllib.parse.quote(data_id, safe="/%;$()\\")  # raw where a URL allows it
    with httpx.Client(base_url=local_server.url, headers=auth, timeout=10) as http:
        answers = [
            http.post(PRESIGN, json=meta, params=params),
            http.post(f"/rheed/stream/{in_path}/end"),
            http.get(f"/local/rheed/{in_path}/frames"),
            http.post("/tool-state/stream/chunk", json={"data_id": data_id, "chunk_index": 0,
                      "channel_name": "t", "timestamps": [1.0], "values": [1.0]}),
        ]  # fmt: skip
        answers.append(http.put(f"/upload/{in_path}", content=shard))
    for response in answers:  # refused (4xx), or redirected to the slash-less path (307)
        assert 400 <= response.status_code < 500 or response.status_code == 307, (
            response.request.url,
            response.text,
        )
    after = sorted(p.relative_to(local_server.data_dir) for p in local_server.data_dir.rglob("*"))
    assert [p for p in after if p not in before and not str(p).endswith(("-wal", "-shm"))] == []
    np.testing.assert_array_equal(local_server.reader.frames(good_id), frames)
    assert local_server.reader.health()["internal_errors"] == 0


@pytest.mark.parametrize(
    "key",
    ["frames.zarr/frames/c/../../../x/0/0", "../frames.zarr/frames/c/0/0/0",
     "frames.zarr/frames/c/0/0/0/../../1", "/etc/passwd", "frames.zarr/frames/c/-1/0/0",
     "frames.zarr/frames/c/01/0/0", "frames.zarr/frames/c/0/0/0\x00", "frames.zarr\\frames\\c\\0\\0\\0",
     "frames.zarr/frames/c/99999999999/0/0", ""],
)  # fmt: skip
def test_server_rejects_path_tricks_in_shard_keys(
    local_server: Any, tmp_path: Path, key: str
) -> None:
    good_id, frames = _stream_with_chunk(local_server, tmp_path)
    meta = {"data_id": good_id, "data_stream": "rheed", "dims": "10,16,16", "chunk_size": "10",
            "start_unix_ms_utc": "1", "end_unix_ms_utc": "2"}  # fmt: skip
    params = {"original_filename": key, "num_parts": "1", "staging_type": "stream"}
    response = httpx.post(
        local_server.url + PRESIGN, json=meta, params=params,
        headers={"X-API-KEY": local_server.api_key},
    )  # fmt: skip
    assert response.status_code in (400, 422), response.text
    assert [c["idx"] for c in local_server.reader.chunk_times(good_id)] == [0]
    np.testing.assert_array_equal(local_server.reader.frames(good_id), frames)


def _presign(server: Any, data_id: str, idx: int, n: int = 10) -> str:
    meta = {"data_id": data_id, "data_stream": "rheed", "dims": f"{n},16,16", "chunk_size": "10",
            "start_unix_ms_utc": "1", "end_unix_ms_utc": "2"}  # fmt: skip
    params = {"original_filename": shard_key(idx), "num_parts": "1", "staging_type": "stream"}
    response = httpx.post(
        server.url + PRESIGN, json=meta, params=params, headers={"X-API-KEY": server.api_key}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["url"])


def test_presigned_urls_are_single_use_bound_to_one_chunk_and_expire(tmp_path: Path) -> None:
    with running_server(data_dir=tmp_path / "s", presign_ttl_s=1.5) as server:
        a_id, a_frames = _stream_with_chunk(server, tmp_path / "a")
        b_id, b_frames = _stream_with_chunk(server, tmp_path / "b")
        intruder = np.full((10, 16, 16), 99, np.uint8)
        url = _presign(server, a_id, 1)
        assert httpx.put(url, content=encode_shard(a_frames)).status_code == 200
        # spent: the same URL cannot store anything again, not even the same chunk
        assert httpx.put(url, content=encode_shard(intruder)).status_code == 403
        # bound: a URL for stream A chunk 2 cannot be steered at stream B or another chunk
        url2 = _presign(server, a_id, 2)
        token = url2.rsplit("/", 1)[1]
        for tricked in (
            f"{server.url}/upload/{token}/../{b_id}",
            f"{server.url}/upload/{token}?data_id={b_id}&chunk_idx=0",
            f"{server.url}/upload/{b_id}",
            f"{server.url}/upload/{token[:-1]}",
        ):
            response = httpx.put(tricked, content=encode_shard(intruder))
            stored_under_a = response.status_code == 200 and response.json()["data_id"] == a_id
            assert response.status_code in (403, 404, 405, 422) or stored_under_a, tricked
        # expired: an unused URL is refused after its lifetime
        url3 = _presign(server, b_id, 3)
        time.sleep(2.0)
        assert httpx.put(url3, content=encode_shard(intruder)).status_code == 403
        np.testing.assert_array_equal(server.reader.frames(b_id), b_frames)  # B untouched
        assert [c["idx"] for c in server.reader.chunk_times(b_id)] == [0]
        a_stored = server.reader.frames(a_id)
        np.testing.assert_array_equal(a_stored[:20], np.concatenate([a_frames, a_frames]))
        # the intruder's frames landed, if at all, only where the token allowed: A's chunk 2
        assert not (a_stored[:20] == 99).all(axis=(1, 2)).any()


def _racing_puts(url: str, bodies: list[bytes], warm_up: str) -> list[int]:
    """PUT each body to ``url`` from its own thread and connection, released together."""
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def put(body: bytes) -> None:
        with httpx.Client(timeout=30) as http:
            http.get(warm_up)  # connected before the race starts
            barrier.wait()
            statuses.append(http.put(url, content=body).status_code)

    threads = [threading.Thread(target=put, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sorted(statuses)


def test_one_presigned_url_stores_one_shard_under_concurrent_puts(
    local_server: Any, tmp_path: Path
) -> None:
    """Two PUTs racing with one token: one stores its shard, the other is refused (403)."""
    data_id, frames = _stream_with_chunk(local_server, tmp_path)
    rng = np.random.default_rng(7)
    warm_up = f"{local_server.url}/gateway/time"
    rounds = range(1, 13)
    for idx in rounds:
        url = _presign(local_server, data_id, idx)
        bodies = [encode_shard(rng.integers(1, 255, (10, 16, 16), dtype=np.uint8)) for _ in "ab"]
        assert _racing_puts(url, bodies, warm_up) == [200, 403], idx
    chunks = local_server.reader.chunk_times(data_id)
    assert [c["idx"] for c in chunks] == [0, *rounds]
    assert all(c["uploads"] == 1 for c in chunks), [c["uploads"] for c in chunks]
    counters = local_server.reader.rheed_stream(data_id)["counters"]
    assert counters["duplicates"] == 0 and counters["chunks_received"] == 1 + len(rounds)
    np.testing.assert_array_equal(local_server.reader.frames(data_id)[:10], frames)


def test_a_refused_put_leaves_its_token_usable(local_server: Any, tmp_path: Path) -> None:
    data_id, _ = _stream_with_chunk(local_server, tmp_path)
    url = _presign(local_server, data_id, 1)
    assert httpx.put(url, content=b"not a shard").status_code == 400
    good = encode_shard(np.full((10, 16, 16), 5, np.uint8))
    assert httpx.put(url, content=good).status_code == 200
    assert httpx.put(url, content=good).status_code == 403


# ---- TLS ----------------------------------------------------------------------------------------


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _TinyAtomscale(BaseHTTPRequestHandler):
    """Just enough of the protocol over HTTPS for a stream to open: create answers a data_id."""

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        now = time.time() * 1000
        self._send(200, {"receivedAtUnixMs": now, "transmittedAtUnixMs": now})

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._send(201, "tls-stream-1" if self.path == "/rheed/stream/" else {})

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[str]:
    cert, key = _self_signed(tmp_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _TinyAtomscale)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_tls_is_verified_by_default_and_relaxed_only_by_the_switch(
    https_server: str, tmp_path: Path
) -> None:
    with AtomscaleClient(PLANTED, https_server, spool_dir=tmp_path / "a") as strict:
        t0 = time.monotonic()
        with pytest.raises(
            (httpx.ConnectError, AtomscaleClientError), match="CERTIFICATE_VERIFY_FAILED"
        ) as info:
            strict.open_rheed_stream(fps=5.0)
        assert time.monotonic() - t0 < 5.0  # a bad certificate is final, not retried
        assert strict.clock_status() is None  # the clock refused the certificate too
        assert PLANTED not in str(info.value)
    with AtomscaleClient(PLANTED, https_server, spool_dir=tmp_path / "b", verify=False) as relaxed:
        stream = relaxed.open_rheed_stream(fps=5.0)
        assert stream.data_id == "tls-stream-1"
    assert (AtomscaleClient.__init__.__kwdefaults__ or {})["verify"] is True
    import atomscale_bluesky.client as client_package

    assert "verify=False" in (client_package.__doc__ or "")
