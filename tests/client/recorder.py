"""A tiny recording Atomscale endpoint (raw ASGI under uvicorn) for byte-level comparisons.

It answers just enough of the protocol for the official RHEEDStreamer and our client to stream
into it, records every request (method, path, query, headers, body) and stores each shard PUT
body by (data_id, shard key). Scripted statuses let a test refuse presigns or delay ``/end``.

It runs in a **subprocess**: the official client blocks on HTTP while holding the GIL during
``initialize``, so a server thread in the same interpreter would deadlock it. ``GET /_rec``
returns the recording (bodies base64) and ``POST /_rec`` scripts statuses.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs


@dataclass
class Recorder:
    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    shards: dict[tuple[str, str], bytes] = field(default_factory=dict)
    presign_meta: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    presign_statuses: list[int] = field(default_factory=list)  # consumed one per presign
    end_statuses: list[int] = field(default_factory=list)  # consumed one per /end
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self) -> list[str]:
        with self.lock:
            return [f"{r['method']} {r['path']}" for r in self.requests]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method, path = scope["method"], scope["path"]
        query = parse_qs(scope["query_string"].decode())
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self.lock:
            self.requests.append(
                {"method": method, "path": path, "query": query, "headers": headers, "body": body}
            )
        status, payload = self._answer(method, path, query, body)
        data = json.dumps(payload).encode() if payload is not None else b""
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": data})

    def _answer(
        self, method: str, path: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, Any]:
        if path == "/_rec" and method == "GET":
            with self.lock:
                return 200, {
                    "requests": [
                        {**r, "body": base64.b64encode(r["body"]).decode()} for r in self.requests
                    ],
                    "shards": [
                        [d, k, base64.b64encode(v).decode()] for (d, k), v in self.shards.items()
                    ],
                }
        if path == "/_rec" and method == "POST":
            script = json.loads(body)
            with self.lock:
                self.presign_statuses[:] = script.get("presign_statuses", [])
                self.end_statuses[:] = script.get("end_statuses", [])
            return 200, {}
        if path == "/gateway/time":
            now = time.time() * 1000.0
            return 200, {"receivedAtUnixMs": now, "transmittedAtUnixMs": now}
        if method == "POST" and path == "/rheed/stream/":
            return 200, str(uuid.uuid4())
        if method == "POST" and path.endswith("/end"):
            with self.lock:
                status = self.end_statuses.pop(0) if self.end_statuses else 200
            return status, ({} if status < 300 else {"detail": "busy"})
        if method == "POST" and path == "/data_entries/raw_data/staged/upload_urls/":
            with self.lock:
                status = self.presign_statuses.pop(0) if self.presign_statuses else 200
            if status >= 300:
                return status, {"detail": "scripted refusal"}
            meta = json.loads(body)
            key = query["original_filename"][0]
            token = uuid.uuid4().hex
            with self.lock:
                self.presign_meta[(meta["data_id"], key)] = meta
            return 200, {"url": f"{self.url}/put/{meta['data_id']}/{token}/{key}"}
        if method == "PUT" and path.startswith("/put/"):
            _, _, data_id, _token, key = path.split("/", 4)
            with self.lock:
                self.shards[(data_id, key)] = body
            return 200, None
        if method == "GET" and path in ("/physical_samples/", "/tags/"):
            return 200, []
        return 404, {"detail": "not found"}


@dataclass
class Recording:
    """What a recorder subprocess saw."""

    requests: list[dict[str, Any]]
    shards: dict[tuple[str, str], bytes]

    def paths(self) -> list[str]:
        return [f"{r['method']} {r['path']}" for r in self.requests if r["path"] != "/_rec"]


@dataclass
class RecorderProcess:
    url: str
    process: subprocess.Popen[str]

    def recording(self) -> Recording:
        import httpx

        doc = httpx.get(f"{self.url}/_rec", timeout=30).json()
        requests = [{**r, "body": base64.b64decode(r["body"])} for r in doc["requests"]]
        shards = {(d, k): base64.b64decode(b) for d, k, b in doc["shards"]}
        return Recording(requests, shards)

    def script(self, presign_statuses: list[int] = (), end_statuses: list[int] = ()) -> None:  # type: ignore[assignment]
        import httpx

        body = {"presign_statuses": list(presign_statuses), "end_statuses": list(end_statuses)}
        httpx.post(f"{self.url}/_rec", json=body, timeout=30).raise_for_status()


@contextmanager
def recording_server() -> Iterator[RecorderProcess]:
    """Start the recorder in a subprocess on a free loopback port; stop it by its PID."""
    process = subprocess.Popen(
        [sys.executable, __file__], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"recorder did not start: {line!r}")
        yield RecorderProcess(line, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def main() -> None:
    """Serve a Recorder on a free port; print its URL as the first line of stdout."""
    import uvicorn

    recorder = Recorder()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    recorder.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(recorder, log_level="warning", lifespan="off"))
    threading.Thread(
        target=lambda: (
            [time.sleep(0.01) for _ in iter(lambda: server.started, True)],
            print(recorder.url, flush=True),
        ),
        daemon=True,
    ).start()
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
