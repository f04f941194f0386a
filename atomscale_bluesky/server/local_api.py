"""The ``/local/`` read and control API (same ``X-API-KEY``; never fault-injected).

| method, path | answer |
|---|---|
| GET /local/health | ``{"status": "ok", "internal_errors": int, "presigns_live": int, "analysis":
  {"chunks_analysed", "cpu_s", "errors"} or null when analysis is off}`` |
| GET /local/streams | list of stream summaries (RHEED and tool-state) with ``counters`` |
| GET /local/rheed/{id} | RHEED summary (``n_frames``, ``missing_chunks``, ...) + ``chunks`` (idx,
  n_frames, offset, dims, start/end ms, clock, received_at) |
| GET /local/rheed/{id}/chunks | the ``chunks`` list alone |
| GET /local/rheed/{id}/frames?start=&stop=&format=raw|npy | frames [start, stop) as bytes |
| GET /local/timeseries/{id} | tool-state summary with ``channels`` {name: {units, count, ...}} |
| GET /local/timeseries/{id}/points?channel= | ``{channel, units, timestamps, values, chunk_indices}`` |
| GET /local/samples, /local/tags, /local/projects | what the protocol endpoints stored |
| GET, PUT, DELETE /local/faults | fault switches: read, change some (JSON body), clear all |

Frames come as ``application/octet-stream`` C-order uint8 with headers ``X-Shape: N,H,W`` and
``X-Dtype: uint8`` (``format=raw``, default) or as a ``.npy`` file (``format=npy``). A time-series
value that is not finite is sent as ``null``.

Frames are dense: chunk k's frames are [offset, offset + n_frames) of the stream, right after
chunk k-1's (a chunk not received yet counts as chunk_size frames and reads as zeros; its index is
listed in ``missing_chunks``).
"""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import Response

from atomscale_bluesky.server.dependencies import context, require_api_key

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$")]

router = APIRouter(prefix="/local", dependencies=[Depends(require_api_key)], tags=["local"])


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    ctx = context(request)
    worker = ctx.analysis
    return {
        "status": "ok",
        "internal_errors": ctx.internal_errors,
        "presigns_live": len(ctx.presigns),
        "analysis": None
        if worker is None
        else {
            "chunks_analysed": worker.chunks_analysed,
            "cpu_s": worker.cpu_s,
            "errors": worker.errors,
        },
    }


@router.get("/streams")
async def streams(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.list_streams)


@router.get("/rheed/{data_id}")
async def rheed_stream(request: Request, data_id: IdPath) -> dict[str, Any]:
    storage = context(request).storage

    def build() -> dict[str, Any]:
        storage.stream_row(data_id, "rheed")
        return {**storage.stream_summary(data_id), "chunks": storage.chunk_times(data_id)}

    return await to_thread.run_sync(build)


@router.get("/rheed/{data_id}/chunks")
async def rheed_chunks(request: Request, data_id: IdPath) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.chunk_times, data_id)


@router.get("/rheed/{data_id}/frames", response_class=Response)
async def rheed_frames(
    request: Request,
    data_id: IdPath,
    start: Annotated[int | None, Query()] = None,
    stop: Annotated[int | None, Query()] = None,
    format: Annotated[Literal["raw", "npy"], Query()] = "raw",
) -> Response:
    frames = await to_thread.run_sync(context(request).storage.read_frames, data_id, start, stop)
    shape = ",".join(str(s) for s in frames.shape)
    headers = {"x-shape": shape, "x-dtype": "uint8"}
    if format == "npy":
        buf = io.BytesIO()
        np.save(buf, frames, allow_pickle=False)
        return Response(buf.getvalue(), media_type="application/x-npy", headers=headers)
    return Response(frames.tobytes(), media_type="application/octet-stream", headers=headers)


@router.get("/timeseries/{data_id}")
async def timeseries(request: Request, data_id: IdPath) -> dict[str, Any]:
    storage = context(request).storage

    def build() -> dict[str, Any]:
        storage.stream_row(data_id, "timeseries")
        return storage.stream_summary(data_id)

    return await to_thread.run_sync(build)


@router.get("/timeseries/{data_id}/points")
async def points(
    request: Request, data_id: IdPath, channel: Annotated[str, Query(min_length=1)]
) -> dict[str, Any]:
    return await to_thread.run_sync(context(request).storage.points, data_id, channel)


@router.get("/samples")
async def samples(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.list_samples)


@router.get("/tags")
async def tags(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.list_tags)


@router.get("/projects")
async def projects(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.projects)


@router.get("/faults")
async def get_faults(request: Request) -> dict[str, Any]:
    return context(request).faults.as_dict()


@router.put("/faults")
async def put_faults(
    request: Request, switches: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    """Change the named switches (others keep their values); see faults.Faults for names."""
    switch = context(request).faults
    try:
        switch.set(**switches)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return switch.as_dict()


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, Any]:
    switch = context(request).faults
    switch.clear()
    return switch.as_dict()


@router.get("/clock")
async def get_clock(request: Request) -> dict[str, float]:
    """The server's clock: Unix time now and how far it was advanced."""
    clock = context(request).clock
    return {"now": clock.now(), "offset_s": clock.offset_s}


@router.post("/clock/advance")
async def advance_clock(
    request: Request, seconds: Annotated[float, Body(embed=True, ge=0)]
) -> dict[str, float]:
    """Move the server's clock forward (to show hours of silence on a stream in a test)."""
    clock = context(request).clock
    clock.advance(seconds)
    return {"now": clock.now(), "offset_s": clock.offset_s}
