"""The ASGI application of the local server: routers, middleware and error mapping.

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

import logging
import time

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from atomscale_bluesky.server import local_api, protocol_api
from atomscale_bluesky.server.analysis import routes as analysis_routes
from atomscale_bluesky.server.analysis import start_worker
from atomscale_bluesky.server.config import ServerSettings
from atomscale_bluesky.server.dependencies import ARRIVED_KEY, ServerContext, context
from atomscale_bluesky.server.faults import FaultMiddleware, FaultSwitch
from atomscale_bluesky.server.presign import PresignRegistry
from atomscale_bluesky.server.server_clock import ServerClock
from atomscale_bluesky.server.storage import Storage, StorageError

__all__ = ["close_app", "create_app"]

log = logging.getLogger(__name__)


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
    app = FastAPI(
        title="Atomscale local server",
        summary="Atomscale streaming protocol on one machine, storing to Zarr + SQLite.",
        version="0.1.0",
    )
    clock = ServerClock()
    app.state.ctx = ServerContext(
        settings=settings,
        storage=Storage(settings.data_dir, now=clock.now, stream_idle_s=settings.stream_idle_s),
        clock=clock,
        presigns=PresignRegistry(settings.presign_ttl_s),
        faults=faults or FaultSwitch(),
    )
    ctx = app.state.ctx
    if settings.analysis:
        ctx.analysis = start_worker(ctx.storage, settings.analysis_shutter_pattern)
    _install_error_handlers(app)
    app.include_router(protocol_api.router)
    app.include_router(analysis_routes.router)
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


def close_app(app: FastAPI) -> None:
    """Stop the analysis worker and close the storage (after the server stopped serving)."""
    ctx: ServerContext = app.state.ctx
    if ctx.analysis is not None:
        ctx.analysis.stop()
    ctx.storage.close()
