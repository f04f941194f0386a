"""A local run catalog: a Tiled server on 127.0.0.1 that stores every run and gives its documents back.

Runs are written with bluesky's ``TiledWriter`` (behind a ``BufferingWrapper`` so the RunEngine never
waits on storage) and read back as documents through the ``application/json-seq`` exporter of
``bluesky-tiled-plugins``, which is what ``atomscale-bluesky replay`` consumes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

_EXPORTER_LOCK = threading.Lock()
_exporter_registered = False


def _register_document_exporter() -> None:
    """Let Tiled servers in this process export a BlueskyRun as a document sequence."""
    global _exporter_registered
    with _EXPORTER_LOCK:
        if _exporter_registered:
            return
        from bluesky_tiled_plugins.exporters import json_seq_exporter
        from tiled.media_type_registration import default_serialization_registry

        default_serialization_registry.register(
            "BlueskyRun", "application/json-seq", json_seq_exporter
        )
        _exporter_registered = True


@dataclass
class LocalCatalog:
    """A running local catalog: ``uri`` for clients, ``client`` (tiled) and ``directory`` on disk."""

    directory: Path
    uri: str
    api_key: str = field(repr=False)
    client: Any = field(repr=False)
    _server: Any = field(repr=False)

    def writer(self) -> Any:
        """A RunEngine subscriber storing every run here without blocking the RunEngine."""
        from bluesky.callbacks.buffer import BufferingWrapper
        from bluesky_tiled_plugins import TiledWriter

        return BufferingWrapper(TiledWriter(self.client))

    def close(self) -> None:
        """Stop the server; the data stays in ``directory``."""
        self._server.close()


def start_catalog(directory: str | Path, *, api_key: str | None = None) -> LocalCatalog:
    """Start a Tiled server on 127.0.0.1 (free port) storing runs under ``directory``."""
    _register_document_exporter()
    from tiled.client import from_uri
    from tiled.server import SimpleTiledServer

    path = Path(directory).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    server = SimpleTiledServer(directory=path, api_key=api_key)
    client = from_uri(server.uri)
    base_uri = server.uri.split("?", 1)[0]
    logger.info("local run catalog at %s storing under %s", base_uri, path)
    return LocalCatalog(
        directory=path, uri=base_uri, api_key=server.api_key, client=client, _server=server
    )


@contextlib.contextmanager
def running_catalog(directory: str | Path, *, api_key: str | None = None) -> Iterator[LocalCatalog]:
    """Context manager form of :func:`start_catalog`."""
    catalog = start_catalog(directory, api_key=api_key)
    try:
        yield catalog
    finally:
        catalog.close()
