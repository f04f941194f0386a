"""A local Atomscale-compatible server: the streaming protocol on one machine, stored to Zarr + SQLite.

Start it with ``atomscale-bluesky serve`` or, in Python, ``runner.running_server()``; read back with
``read_client.LocalServerClient``. Importing this package stays light (httpx + numpy): the ASGI
stack (fastapi, uvicorn) is imported only when a server is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atomscale_bluesky.server.read_client import LocalServerClient
    from atomscale_bluesky.server.runner import LocalServer, running_server, serve

__all__ = ["LocalServer", "LocalServerClient", "running_server", "serve"]

_HOMES = {
    "LocalServer": "atomscale_bluesky.server.runner",
    "running_server": "atomscale_bluesky.server.runner",
    "serve": "atomscale_bluesky.server.runner",
    "LocalServerClient": "atomscale_bluesky.server.read_client",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
