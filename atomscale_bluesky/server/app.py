"""The ASGI application of the local server: settings, middleware, auth and error mapping.

``create_app(settings, faults=None)`` returns a FastAPI app (so ``/openapi.json`` describes every
endpoint) with the protocol routes (protocol_api) and the ``/local/`` read and control routes
(local_api). Middleware, outermost first:

1. path normalisation: a leading ``//`` (the Rust client's ``{endpoint}/path`` with an endpoint
   ending in ``/``) becomes ``/``; the arrival time is noted for ``/gateway/time``;
2. body limits: 413 for bodies over ``max_upload_bytes`` (presigned PUT) or ``max_json_bytes``;
3. fault injection (faults.FaultMiddleware), protocol endpoints only.

Client mistakes are answered 4xx with ``{"detail": ...}``; anything else is a bug: it is logged,
counted in ``/local/health`` ``internal_errors`` and answered 500.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atomscale_bluesky.server.faults import FaultMiddleware, FaultSwitch
from atomscale_bluesky.server.presign import PresignRegistry
from atomscale_bluesky.server.storage import Storage, StorageError

log = logging.getLogger("atomscale_bluesky.server")

MiB = 1024 * 1024
ARRIVED_KEY = "atomscale.arrived_ms"
API_KEYS_ENV = "ATOMSCALE_LOCAL_API_KEYS"


@dataclass
class ServerSettings:
    """Everything configurable about one server instance (the keys are never shown in reprs)."""

    data_dir: Path
    api_keys: Sequence[str] = field(repr=False)
    presign_ttl_s: float = 900.0
    max_upload_bytes: int = 512 * MiB
    max_json_bytes: int = 16 * MiB
    max_frame_bytes: int = 2048 * MiB

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        self.api_keys = tuple(k for k in self.api_keys if k)
        if not self.api_keys:
            raise ValueError("the local server needs at least one API key")


def keys_from_env() -> list[str]:
    """API keys from ``ATOMSCALE_LOCAL_API_KEYS`` (comma-separated)."""
    return [k.strip() for k in os.environ.get(API_KEYS_ENV, "").split(",") if k.strip()]


@dataclass
class ServerContext:
    """Shared state of the app, reachable from routes as ``request.app.state.ctx``."""

    settings: ServerSettings
    storage: Storage
    presigns: PresignRegistry
    faults: FaultSwitch
    internal_errors: int = 0


def context(request: Request) -> ServerContext:
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


class PathNormalizer:
    """Collapse a leading run of slashes to one, and stamp the arrival time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[ARRIVED_KEY] = time.time() * 1000.0
            path: str = scope["path"]
            if path.startswith("//"):
                scope["path"] = "/" + path.lstrip("/")
                raw = scope.get("raw_path")
                if raw:
                    scope["raw_path"] = b"/" + raw.lstrip(b"/")
        await self.app(scope, receive, send)


class BodyLimit:
    """413 for bodies over the limit, by Content-Length up front or by counting the stream."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_json_bytes: int) -> None:
        self.app = app
        self.max_upload = max_upload_bytes
        self.max_json = max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload if scope["path"].startswith("/upload/") else self.max_json
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            response = JSONResponse(
                {"detail": f"request body too large or bad Content-Length (limit {limit} bytes)"},
                status_code=413,
                headers={"connection": "close"},
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise HTTPException(413, f"request body too large (limit {limit} bytes)")
            return message

        await self.app(scope, counting_receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StorageError)
    async def storage_error(request: Request, exc: StorageError) -> JSONResponse:
        if exc.data_id is not None:
            context(request).storage.count_rejected(exc.data_id)
        return JSONResponse({"detail": exc.message}, status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        context(request).internal_errors += 1
        log.error(
            "internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__,
            exc_info=exc,
        )  # fmt: skip
        return JSONResponse({"detail": "internal server error"}, status_code=500)


def create_app(settings: ServerSettings, faults: FaultSwitch | None = None) -> FastAPI:
    """Build the app around a data directory (created if needed)."""
    from atomscale_bluesky.server import local_api, protocol_api

    app = FastAPI(
        title="Atomscale local server",
        summary="Atomscale streaming protocol on one machine, storing to Zarr + SQLite.",
        version="0.1.0",
    )
    app.state.ctx = ServerContext(
        settings=settings,
        storage=Storage(settings.data_dir),
        presigns=PresignRegistry(settings.presign_ttl_s),
        faults=faults or FaultSwitch(),
    )
    _install_error_handlers(app)
    app.include_router(protocol_api.router)
    app.include_router(local_api.router)
    # add_middleware wraps: the last added is outermost
    app.add_middleware(FaultMiddleware, switch=app.state.ctx.faults)
    app.add_middleware(
        BodyLimit,
        max_upload_bytes=settings.max_upload_bytes,
        max_json_bytes=settings.max_json_bytes,
    )
    app.add_middleware(PathNormalizer)
    return app


def json_error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)
