"""The key in transit: never over plain HTTP to another machine, never to another origin.

Every server here listens on 127.0.0.1. A non-loopback name is made to reach one of them by
resolving it to 127.0.0.1 inside this process (``socket.getaddrinfo`` patched), so a request the
client should not send would land on a recorder and be seen.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from atomscale_bluesky.apps.settings import make_callback
from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import ApiKey, AtomscaleClient, ConfigError, InsecureEndpointError
from atomscale_bluesky.client.config import check_endpoint, is_loopback_host
from atomscale_bluesky.client.key_guard import KeyOriginGuard, origin

KEY = "TRANSIT-KEY-9d1e0c"
FAR_NAME = "atomscale.far.example"  # resolved to 127.0.0.1 only by the patched getaddrinfo

Answer = Callable[[str, str], tuple[int, dict[str, str], Any]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that records every request and answers with ``answer``."""

    answer: Answer
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def keyed(self) -> list[Seen]:
        return [s for s in self.seen if "x-api-key" in s.headers]


def _ok(method: str, path: str) -> tuple[int, dict[str, str], Any]:
    return 200, {}, [] if method == "GET" else {"id": "x", "data_id": "d", "url": "http://x"}


@contextlib.contextmanager
def recorder(answer: Answer = _ok) -> Iterator[Recorder]:
    rec = Recorder(answer)

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            rec.seen.append(Seen(self.command, self.path, headers))
            status, extra, body = rec.answer(self.command, self.path)
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **extra}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _any  # noqa: N815

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def far_name_is_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FAR_NAME`` and 10.255.255.1 resolve to 127.0.0.1 in this process."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host in (FAR_NAME, "10.255.255.1"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(autouse=True)
def no_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ATOMSCALE_ALLOW_INSECURE_HTTP", "AS_API_ENDPOINT", "ATOMSCALE_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


# ---- which hosts count as this machine ---------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9", "http://127.3.4.5", "http://localhost:80", "http://LOCALHOST./x",
     "http://[::1]:8000", "http://[::ffff:127.0.0.1]:9", "http://user:pw@127.0.0.1:9",
     "https://api.atomscale.ai", "https://10.0.0.5:443", "HTTPS://Example.COM"],
)  # fmt: skip
def test_loopback_http_and_any_https_are_allowed(url: str) -> None:
    check_endpoint(url)


@pytest.mark.parametrize(
    "url",
    ["http://api.atomscale.ai", "http://10.0.0.5:9", "http://192.168.1.20", "http://0.0.0.0:9",
     "http://[::2]:9", "http://[fe80::1]:9", "http://127.0.0.1.nip.io", "http://localhost.evil.example",
     "http://127.0.0.1@evil.example", "http://evil.example#@127.0.0.1", "http://2130706433",
     "HTTP://Example.com", f"http://{FAR_NAME}:9"],
)  # fmt: skip
def test_plain_http_to_another_host_is_refused_naming_the_settings(url: str) -> None:
    with pytest.raises(InsecureEndpointError) as info:
        check_endpoint(url)
    text = str(info.value)
    assert "AS_API_ENDPOINT" in text and "ATOMSCALE_ALLOW_INSECURE_HTTP=1" in text
    assert "https://" in text
    check_endpoint(url, allow_insecure_http=True)  # the opt-in lets it through


@pytest.mark.parametrize("url", ["http://[::1", "http://", "nonsense", "ftp://127.0.0.1",
                                 "http://127.0.0.1:abc", "https://h:99999"])  # fmt: skip
def test_an_unusable_endpoint_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="endpoint must be an http"):
        check_endpoint(url)


def test_the_refusal_does_not_echo_credentials_in_the_url() -> None:
    with pytest.raises(InsecureEndpointError) as info:
        check_endpoint("http://user:pa55word@proxy.example:8080/api")
    assert "pa55word" not in str(info.value) and "proxy.example:8080/api" in str(info.value)


def test_loopback_names() -> None:
    assert is_loopback_host("localhost") and is_loopback_host("127.255.0.1")
    assert is_loopback_host("[::1]") and not is_loopback_host("localhost.localdomain")
    assert not is_loopback_host("") and not is_loopback_host("::")


# ---- no request leaves: client, callback, settings, commands -----------------------------------


def test_the_client_sends_nothing_to_a_plain_http_host_that_is_not_loopback(
    far_name_is_here: None, tmp_path: Path
) -> None:
    with recorder() as rec:
        for host in (FAR_NAME, "10.255.255.1"):
            endpoint = f"http://{host}:{rec.port}"
            with pytest.raises(InsecureEndpointError):
                AtomscaleClient(KEY, endpoint, spool_dir=tmp_path / "s")  # clock sync on
            with pytest.raises(InsecureEndpointError):
                AtomscaleCallback(api_key=KEY, endpoint=endpoint)
            with pytest.raises(InsecureEndpointError):
                make_callback(endpoint=endpoint, spool_dir=str(tmp_path / "c"))
        assert rec.seen == []
        # the same names reach the recorder once allowed: the refusal is what kept it silent
        with AtomscaleClient(KEY, f"http://{FAR_NAME}:{rec.port}", spool_dir=tmp_path / "s",
                             clock_sync=False, allow_insecure_http=True) as client:  # fmt: skip
            client.open_rheed_stream(fps=5.0)
        assert rec.keyed() and rec.keyed()[0].headers["x-api-key"] == KEY


def test_the_environment_switch_opts_in_and_an_argument_overrides_it(
    far_name_is_here: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recorder() as rec:
        endpoint = f"http://{FAR_NAME}:{rec.port}"
        monkeypatch.setenv("ATOMSCALE_ALLOW_INSECURE_HTTP", "1")
        with pytest.raises(InsecureEndpointError):
            AtomscaleClient(KEY, endpoint, spool_dir=tmp_path / "a", allow_insecure_http=False)
        callback = AtomscaleCallback(api_key=KEY, endpoint=endpoint)
        callback.close()
        monkeypatch.setenv("AS_API_ENDPOINT", endpoint)
        with AtomscaleClient(KEY, spool_dir=tmp_path / "b", clock_sync=False) as client:
            client.open_rheed_stream(fps=5.0)
        assert rec.keyed()
        monkeypatch.setenv("ATOMSCALE_ALLOW_INSECURE_HTTP", "0")
        with pytest.raises(InsecureEndpointError):
            AtomscaleClient(KEY, spool_dir=tmp_path / "c")


@pytest.mark.parametrize("command", ["drain", "consume"])
def test_commands_refuse_with_one_line_naming_the_settings(command: str, tmp_path: Path) -> None:
    env = {**os.environ, "ATOMSCALE_API_KEY": KEY, "AS_API_ENDPOINT": "http://10.255.255.1:9"}
    env.pop("ATOMSCALE_ALLOW_INSECURE_HTTP", None)
    result = subprocess.run(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", command,
         "--spool-dir", str(tmp_path / "spool")],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"atomscale-bluesky {command}: refusing to send the Atomscale API key" in result.stderr
    assert "ATOMSCALE_ALLOW_INSECURE_HTTP=1" in result.stderr and KEY not in result.stderr


# ---- redirects and other origins ---------------------------------------------------------------


def _redirect_to(target: str) -> Answer:
    def answer(method: str, path: str) -> tuple[int, dict[str, str], Any]:
        return 307, {"Location": f"{target}{path}"}, {"detail": "moved"}

    return answer


def test_the_client_follows_no_redirect(tmp_path: Path) -> None:
    with recorder() as target, recorder() as _:
        with recorder(_redirect_to(f"http://localhost:{target.port}")) as origin_server:
            with AtomscaleClient(KEY, origin_server.url, spool_dir=tmp_path / "s",
                                 clock_sync=False) as client:  # fmt: skip
                with contextlib.suppress(Exception):
                    client._api.resolve_tags(["t"])
                with contextlib.suppress(Exception):
                    client._api.end_rheed_stream("d")
                with contextlib.suppress(Exception):
                    client._api.presign(0, {"data_id": "d"}, "frames.zarr/frames/c/0/0/0")
            assert origin_server.keyed()
        assert target.seen == []


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_redirect_to_another_origin_arrives_without_the_key(host: str, tmp_path: Path) -> None:
    """Even a session told to follow redirects drops the key on a hop to another host or port."""
    with recorder() as target:
        with recorder(_redirect_to(f"http://{host}:{target.port}")) as origin_server:
            with AtomscaleClient(KEY, origin_server.url, spool_dir=tmp_path / "s",
                                 clock_sync=False) as client:  # fmt: skip
                client._http.follow_redirects = True
                client._api.resolve_tags(["t"])  # GET then POST /tags/, both redirected
                client._api.timeseries_finalize("d")
            assert [s.method for s in origin_server.keyed()] == ["GET", "POST", "POST"]
        assert [s.method for s in target.seen] == ["GET", "POST", "POST"]
        assert target.keyed() == []


def test_the_presigned_put_carries_no_key_to_its_host(tmp_path: Path) -> None:
    with recorder() as bucket:
        upload = f"http://localhost:{bucket.port}/bucket/shard?sig=1"

        def presigner(method: str, path: str) -> tuple[int, dict[str, str], Any]:
            return 200, {}, {"url": upload}

        with recorder(presigner) as api_server:
            with AtomscaleClient(KEY, api_server.url, spool_dir=tmp_path / "s",
                                 clock_sync=False) as client:  # fmt: skip
                url = client._api.presign(0, {"data_id": "d"}, "frames.zarr/frames/c/0/0/0")
                client._api.put_shard(url, b"shard-bytes")
            assert len(api_server.keyed()) == 1
        assert [s.method for s in bucket.seen] == ["PUT"] and bucket.keyed() == []


def test_the_guard_compares_scheme_host_and_port() -> None:
    guard = KeyOriginGuard("https://api.atomscale.ai")
    for url, kept in [
        ("https://api.atomscale.ai/tags/", True),
        ("https://API.atomscale.ai:443/x", True),
        ("http://api.atomscale.ai/tags/", False),  # a downgrade is another origin
        ("https://api.atomscale.ai:8443/x", False),
        ("https://bucket.s3.example/x", False),
    ]:
        request = httpx.Request("GET", url, headers={"X-API-KEY": ApiKey(KEY).reveal()})
        guard(request)
        assert ("X-API-KEY" in request.headers) is kept, url
    assert origin(httpx.URL("http://h")) == ("http", "h", 80)


def test_plain_http_never_goes_through_a_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with recorder() as proxy, recorder() as api_server:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        with AtomscaleClient(KEY, api_server.url, spool_dir=tmp_path / "s",
                             clock_sync=False) as client:  # fmt: skip
            client._api.resolve_tags(["t"])
        assert api_server.keyed() and proxy.seen == []
