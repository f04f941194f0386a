"""A local run catalog: a Tiled server process on 127.0.0.1 that stores every run and gives its documents back.

Runs are written with bluesky's ``TiledWriter`` (behind a ``BufferingWrapper`` so the RunEngine never
waits on storage) and read back as documents through the ``application/json-seq`` exporter of
``bluesky-tiled-plugins``, which is what ``atomscale-bluesky replay`` consumes. The server runs in
its own process so that a session (IPython, a script) exits cleanly while it is still up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

KEY_VARIABLE = "ATOMSCALE_CATALOG_API_KEY"
READY_PREFIX = "CATALOG_URL "


def register_document_exporter() -> None:
    """Let Tiled servers in this process export a BlueskyRun as a document sequence (json-seq)."""
    from bluesky_tiled_plugins.exporters import json_seq_exporter
    from tiled.media_type_registration import default_serialization_registry

    default_serialization_registry.register("BlueskyRun", "application/json-seq", json_seq_exporter)


@dataclass
class LocalCatalog:
    """A running local catalog: ``uri`` for clients, ``client`` (tiled) and ``directory`` on disk."""

    directory: Path
    uri: str
    api_key: str = field(repr=False)
    client: Any = field(repr=False)
    _process: subprocess.Popen[str] = field(repr=False)
    _writers: list[Any] = field(default_factory=list, repr=False)

    def writer(self) -> Any:
        """A RunEngine subscriber storing every run here without blocking the RunEngine."""
        from bluesky.callbacks.buffer import BufferingWrapper
        from bluesky_tiled_plugins import TiledWriter

        wrapper = BufferingWrapper(TiledWriter(self.client))
        self._writers.append(wrapper)
        return wrapper

    def close(self, timeout: float = 30.0) -> None:
        """Write what the writers still hold, then stop the server; the data stays in ``directory``."""
        for wrapper in self._writers:
            wrapper.shutdown(wait=True)
        self._writers.clear()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)


def _read_ready_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The URL the child prints once it serves, or a clear error with what it printed instead."""
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith(READY_PREFIX):
                found.set()
                return

    reader = threading.Thread(target=read, daemon=True, name="catalog-start")
    reader.start()
    if not found.wait(timeout):
        process.kill()
        raise RuntimeError(
            f"the local run catalog did not start in {timeout} s: {''.join(lines)[-2000:]}"
        )
    return lines[-1][len(READY_PREFIX) :].strip()


def start_catalog(directory: str | Path, *, timeout: float = 90.0) -> LocalCatalog:
    """Start a Tiled server process on 127.0.0.1 (free port) storing runs under ``directory``."""
    from tiled.client import from_uri

    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    api_key = secrets.token_hex(16)
    process = subprocess.Popen(
        [sys.executable, "-m", "atomscale_bluesky.apps.catalog", str(path)],
        env={**os.environ, KEY_VARIABLE: api_key},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = _read_ready_line(process, timeout)
    client = from_uri(url, api_key=api_key)
    logger.info("local run catalog at %s storing under %s", url, path)
    return LocalCatalog(path, url, api_key, client, process)


@contextlib.contextmanager
def running_catalog(directory: str | Path) -> Iterator[LocalCatalog]:
    """Context manager form of :func:`start_catalog`."""
    catalog = start_catalog(directory)
    try:
        yield catalog
    finally:
        catalog.close()


def serve_catalog(directory: Path, api_key: str) -> None:
    """Run the catalog server in this process until SIGTERM/SIGINT (the child side of start_catalog)."""
    from tiled.server import SimpleTiledServer

    register_document_exporter()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = SimpleTiledServer(directory=directory, api_key=api_key)
    try:
        print(READY_PREFIX + server.uri.split("?", 1)[0], flush=True)
        stop.wait()
    finally:
        server.close()


if __name__ == "__main__":
    serve_catalog(Path(sys.argv[1]), os.environ[KEY_VARIABLE])
