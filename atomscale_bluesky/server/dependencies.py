"""What every route depends on: the app's shared state and the API key check.

The app builds one ``ServerContext``; routes reach it through ``context(request)`` and guard
themselves with ``require_api_key``, so routers need only this module, never the app.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from atomscale_bluesky.server.config import ServerSettings
from atomscale_bluesky.server.faults import FaultSwitch
from atomscale_bluesky.server.presign import PresignRegistry
from atomscale_bluesky.server.server_clock import ServerClock
from atomscale_bluesky.server.storage import Storage

__all__ = ["ARRIVED_KEY", "ServerContext", "context", "require_api_key"]

ARRIVED_KEY = "atomscale.arrived_ms"
"""Key in the ASGI scope's ``state`` of the request's arrival time (Unix ms), for the clock."""


@dataclass
class ServerContext:
    """Shared state of the app, reachable from routes as ``request.app.state.ctx``."""

    settings: ServerSettings
    storage: Storage
    clock: ServerClock
    presigns: PresignRegistry
    faults: FaultSwitch
    internal_errors: int = 0
    analysis: Any = None  # the AnalysisWorker, None when analysis is off


def context(request: Request) -> ServerContext:
    """The app's shared state."""
    ctx: ServerContext = request.app.state.ctx
    return ctx


_api_key_header = APIKeyHeader(name="X-API-KEY", auto_error=False, description="Atomscale API key")


def require_api_key(request: Request, key: str | None = Security(_api_key_header)) -> None:
    """401 unless the request carries one of the server's keys (header name case-insensitive)."""
    if not key:
        raise HTTPException(401, "missing X-API-KEY header")
    keys = context(request).settings.api_keys
    if not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        raise HTTPException(401, "invalid API key")
