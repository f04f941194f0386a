"""Run the local server: in a background thread for tests (``running_server``) or in the
foreground for ``atomscale-bluesky serve`` (``serve``, ``add_serve_arguments``, ``serve_from_args``).

The runner binds the listening socket itself (127.0.0.1 by default; port 0 picks a free port) so it
knows the real port before uvicorn starts. It uses uvicorn's httptools protocol (a C parser; the
pure-Python h11 one when httptools is not installed) with one addition: the connection's transport
is exposed to the app in ``scope["state"]``, which is what lets fault injection drop a connection
without sending any response.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atomscale_bluesky.core_share import process_leaves_one_core
from atomscale_bluesky.server.config import ServerSettings
from atomscale_bluesky.server.faults import TRANSPORT_STATE_KEY, Faults, FaultSwitch
from atomscale_bluesky.server.read_client import LocalServerClient
from atomscale_bluesky.settings import AtomscaleSettings, load_settings, with_env_file

DEFAULT_PORT = 8766
DATA_DIR_ENV = "ATOMSCALE_LOCAL_DATA_DIR"
DEFAULT_DATA_DIR = Path("atomscale-local-data")
KEY_FILE = "local-api-key"
MiB = 1024 * 1024

log = logging.getLogger(__name__)


@dataclass
class LocalServer:
    """A running local server: where it is, its key, its data, a read client and fault switch."""

    url: str
    api_key: str = field(repr=False)
    data_dir: Path
    reader: LocalServerClient
    faults: FaultSwitch | RemoteFaults = field(repr=False)
    pid: int | None = None

    def __repr__(self) -> str:
        return f"LocalServer(url={self.url!r}, data_dir={str(self.data_dir)!r}, api_key=***)"


class RemoteFaults:
    """The fault switch of a server in another process, driven through ``/local/faults``."""

    def __init__(self, reader: LocalServerClient) -> None:
        self._reader = reader

    def set(self, **switches: Any) -> dict[str, Any]:
        return self._reader.set_faults(**switches)

    def clear(self) -> None:
        self._reader.clear_faults()

    def as_dict(self) -> dict[str, Any]:
        return self._reader.faults()

    @property
    def current(self) -> Faults:
        names = {f.name for f in dataclasses.fields(Faults)}
        return Faults.from_mapping({k: v for k, v in self.as_dict().items() if k in names})


def _base_protocol() -> type[Any]:
    """uvicorn's httptools protocol (its HTTP parsing is C), else its h11 one."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        return H11Protocol
    return HttpToolsProtocol


def _protocol_class() -> type[asyncio.Protocol]:
    base = _base_protocol()

    class TransportExposingProtocol(base):  # type: ignore[misc,valid-type]
        """uvicorn's HTTP protocol handing each request its connection's transport (for drops)."""

        app_state: dict[str, Any]

        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(transport)
            self.app_state = {**self.app_state, TRANSPORT_STATE_KEY: transport}

    return TransportExposingProtocol


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _fault_switch(faults: Faults | Mapping[str, Any] | FaultSwitch | None) -> FaultSwitch:
    if isinstance(faults, FaultSwitch):
        return faults
    if isinstance(faults, Faults):
        return FaultSwitch(faults)
    return FaultSwitch(Faults.from_mapping(faults or {}))


def _uvicorn_server(app: Any, log_level: str) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app,
        http=_protocol_class(),
        lifespan="off",
        log_level=log_level,
        access_log=False,
        # longer than the 5 s after which httpx closes an idle connection, so the client always
        # closes one first: a request sent as the server closed it would fail unanswered
        timeout_keep_alive=30,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


@contextmanager
def running_server(
    data_dir: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    port: int = 0,
    faults: Faults | Mapping[str, Any] | FaultSwitch | None = None,
    *,
    host: str = "127.0.0.1",
    presign_ttl_s: float = 900.0,
    max_upload_bytes: int = 512 * MiB,
    max_json_bytes: int = 16 * MiB,
    log_level: str = "warning",
    startup_timeout_s: float = 30.0,
    analysis: bool = True,
) -> Iterator[LocalServer]:
    """Start the server in a background thread; yield a LocalServer; stop it on exit.

    ``data_dir=None`` uses a temporary directory that is removed on exit; ``api_key=None``
    generates one. ``faults`` sets the initial fault switches (see faults.Faults);
    ``analysis=False`` switches the live RHEED analysis off.
    """
    from atomscale_bluesky.server.app import close_app, create_app

    tmp = tempfile.TemporaryDirectory(prefix="atomscale-local-") if data_dir is None else None
    root = Path(tmp.name if tmp is not None else data_dir)  # type: ignore[arg-type]
    key = api_key or secrets.token_urlsafe(24)
    switch = _fault_switch(faults)
    settings = ServerSettings(
        data_dir=root,
        api_keys=[key],
        presign_ttl_s=presign_ttl_s,
        max_upload_bytes=max_upload_bytes,
        max_json_bytes=max_json_bytes,
        analysis=analysis,
    )
    app = create_app(settings, switch)
    sock = _bind(host, port)
    server = _uvicorn_server(app, log_level)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="atomscale-local-server", daemon=True
    )
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the local server failed to start (see the log above)")
            thread.join(0.01)
            startup_timeout_s -= 0.01
            if startup_timeout_s < 0:
                raise RuntimeError("the local server did not start in time")
        url = _url(host, sock.getsockname()[1])
        reader = LocalServerClient(url, key)
        try:
            yield LocalServer(url=url, api_key=key, data_dir=root, reader=reader, faults=switch)
        finally:
            reader.close()
    finally:
        server.should_exit = True
        thread.join(15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5)
        sock.close()
        close_app(app)
        if tmp is not None:
            tmp.cleanup()


@contextmanager
def running_server_process(
    data_dir: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    port: int = 0,
    faults: Faults | Mapping[str, Any] | None = None,
    *,
    host: str = "127.0.0.1",
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 60.0,
    nice: int = 0,
) -> Iterator[LocalServer]:
    """Like ``running_server`` but in a child process (``python -m atomscale_bluesky.server``).

    Needed when the client holds the GIL while it waits for HTTP (the official Rust-based SDK
    does), which would starve a server thread in the same process. ``.faults`` drives the child's
    switch over HTTP; ``.pid`` is the child's process id. ``nice`` lowers the child's CPU
    priority (``--nice``), so a RunEngine sharing the computer comes first.
    """
    tmp = tempfile.TemporaryDirectory(prefix="atomscale-local-") if data_dir is None else None
    root = Path(tmp.name if tmp is not None else data_dir)  # type: ignore[arg-type]
    key = api_key or secrets.token_urlsafe(24)
    env = {**os.environ, "ATOMSCALE_LOCAL_API_KEYS": key, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "atomscale_bluesky.server", "--host", host, "--port", str(port)]
    args += ["--data-dir", str(root), "--log-level", "warning", "--nice", str(nice), *extra_args]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    reader: LocalServerClient | None = None
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("Atomscale local server on "):
            raise RuntimeError(f"the local server process did not start: {line!r}")
        url = line.split(" on ", 1)[1].strip()
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
        reader = LocalServerClient(url, key)
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                reader.health()
                break
            except Exception:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local server process did not answer") from None
                time.sleep(0.05)
        if faults:
            reader.set_faults(
                **(dataclasses.asdict(faults) if isinstance(faults, Faults) else faults)
            )
        yield LocalServer(
            url=url, api_key=key, data_dir=root, reader=reader, faults=RemoteFaults(reader),
            pid=proc.pid,
        )  # fmt: skip
    finally:
        if reader is not None:
            reader.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if tmp is not None:
            tmp.cleanup()


def _keys_or_generated(
    api_keys: Sequence[str] | None, data_dir: Path, settings: AtomscaleSettings
) -> tuple[list[str], str]:
    """Keys from the argument, else the settings, else a generated key saved 0600 to a file."""
    keys = [k for k in (api_keys or []) if k] or list(settings.local_api_keys)
    if keys:
        return keys, f"API key(s): {len(keys)} configured"
    path = data_dir / KEY_FILE
    if path.exists():
        keys = [path.read_text().strip()]
    else:
        keys = [secrets.token_urlsafe(24)]
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(keys[0] + "\n")
    return keys, f"API key: none given, using the one in {path}"


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    data_dir: str | os.PathLike[str] | None = None,
    api_keys: Sequence[str] | None = None,
    faults: Faults | Mapping[str, Any] | FaultSwitch | None = None,
    *,
    presign_ttl_s: float = 900.0,
    max_upload_bytes: int = 512 * MiB,
    max_json_bytes: int = 16 * MiB,
    log_level: str = "info",
    analysis: bool = True,
    settings: AtomscaleSettings | None = None,
) -> None:
    """Run the server in the foreground until interrupted (Ctrl-C); arguments left None come from
    ``settings`` (default: the environment), then the defaults."""
    from atomscale_bluesky.server.app import close_app, create_app

    environment = load_settings() if settings is None else settings
    root = Path(data_dir or environment.local_data_dir or DEFAULT_DATA_DIR)
    keys, key_note = _keys_or_generated(api_keys, root, environment)
    server_settings = ServerSettings(
        data_dir=root,
        api_keys=keys,
        presign_ttl_s=presign_ttl_s,
        max_upload_bytes=max_upload_bytes,
        max_json_bytes=max_json_bytes,
        analysis=analysis,
    )
    app = create_app(server_settings, _fault_switch(faults))
    sock = _bind(host, port)
    print(f"Atomscale local server on {_url(host, sock.getsockname()[1])}", flush=True)
    print(f"data in {root.resolve()}; {key_note}", flush=True)
    try:
        _uvicorn_server(app, log_level).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled; the shutdown was clean
        pass
    finally:
        sock.close()
        close_app(app)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``atomscale-bluesky serve``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (0 = any free; default {DEFAULT_PORT})",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"where to store streams (default ${DATA_DIR_ENV} or ./{DEFAULT_DATA_DIR})",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=None,
        help="accepted API key (repeatable; default $ATOMSCALE_LOCAL_API_KEYS, comma-separated, "
        "else a generated key saved in <data-dir>/local-api-key)",
    )
    parser.add_argument("--presign-ttl", type=float, default=900.0, help="upload URL lifetime, s")
    parser.add_argument("--max-upload-mb", type=float, default=512.0, help="largest shard PUT, MiB")
    parser.add_argument("--max-json-mb", type=float, default=16.0, help="largest JSON body, MiB")
    parser.add_argument("--log-level", default="info", help="uvicorn log level")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        choices=range(20),
        metavar="N",
        help="lower the server's CPU priority by N (0-19), so a RunEngine on the same computer "
        "comes first when the cores are busy (default 0)",
    )
    parser.add_argument(
        "--leave-core",
        action="store_true",
        help="keep the server's threads off one core (Linux, two or more cores), so a RunEngine "
        "on the same computer always finds a core free",
    )
    parser.add_argument(
        "--env-file",
        help="a .env file of ATOMSCALE_ settings, under the environment "
        "(default $ATOMSCALE_ENV_FILE, else ./.env when present)",
    )
    parser.add_argument(
        "--no-analysis",
        dest="analysis",
        action="store_false",
        help="switch the live RHEED analysis off (the results endpoint answers 404)",
    )
    faults = parser.add_argument_group("fault injection (protocol endpoints only)")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    faults.add_argument("--error-rate", type=float, default=0.0, help="fraction answered 5xx/429")
    faults.add_argument(
        "--error-statuses", default="500,503,429", help="comma list of statuses for --error-rate"
    )
    faults.add_argument("--drop-rate", type=float, default=0.0, help="fraction of dropped requests")
    faults.add_argument("--outage-s", type=float, default=0.0, help="outage window from start, s")
    faults.add_argument("--fault-seed", type=int, default=None, help="seed of the fault RNG")


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(
        latency_s=args.latency,
        error_rate=args.error_rate,
        error_statuses=tuple(int(s) for s in str(args.error_statuses).split(",") if s.strip()),
        drop_rate=args.drop_rate,
        outage_s=args.outage_s,
        seed=args.fault_seed,
    )


def serve_from_args(args: argparse.Namespace) -> int:
    """Run ``serve`` with parsed ``add_serve_arguments`` options; returns an exit code."""
    try:
        faults = faults_from_args(args)
    except ValueError as exc:
        print(f"atomscale-bluesky serve: {exc}")
        return 2
    if getattr(args, "nice", 0):
        os.nice(args.nice)
    if getattr(args, "leave_core", False):
        process_leaves_one_core()  # before the server starts: its threads all inherit it
    serve(
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        api_keys=args.api_keys,
        faults=faults,
        presign_ttl_s=args.presign_ttl,
        max_upload_bytes=int(args.max_upload_mb * MiB),
        max_json_bytes=int(args.max_json_mb * MiB),
        log_level=args.log_level,
        analysis=getattr(args, "analysis", True),
        settings=load_settings(with_env_file(getattr(args, "env_file", None))),
    )
    return 0
