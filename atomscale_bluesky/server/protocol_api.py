"""The Atomscale streaming protocol endpoints (protocol section 8), with their exact paths.

Every endpoint but ``GET /gateway/time`` and the presigned ``PUT /upload/{token}`` needs the API key.
Storage calls run in worker threads (``anyio.to_thread``) so decoding a shard never blocks the loop.

Choices where the protocol leaves room: chunks (RHEED or tool-state) that arrive after their
stream was finalized are stored and counted as ``late_chunks``; a repeated chunk overwrites the
earlier copy (counted as ``duplicates``); a presign whose dims exceed the stream's chunk_size, or
whose H, W or chunk_size differ from the stream's first stored chunk, is refused (400/409) so the
official client marks the chunk failed instead of retrying it forever. The PUT's ETag is the
body's CRC32C in hex: the official client only logs it (section 2.4), and an S3-style MD5 would
cost a tenth of the compression's CPU per frame.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import crc32c
from anyio import to_thread
from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse

from atomscale_bluesky.server.dependencies import ARRIVED_KEY, context, require_api_key
from atomscale_bluesky.server.models import (
    NameBody,
    RheedCreateBody,
    SampleLinkBody,
    TagAttachBody,
    ToolStateChunkBody,
    ToolStateInitBody,
    ToolStateMultiBody,
    TrackingBody,
)
from atomscale_bluesky.server.presign import PresignError, parse_grant
from atomscale_bluesky.server.storage import StorageError

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Auth = [Depends(require_api_key)]
DEAD_TOKEN = "presigned URL is unknown, already used or expired"

router = APIRouter()


# -- clock ----------------------------------------------------------------------------------------


@router.get("/gateway/time", tags=["clock"])
async def gateway_time(request: Request) -> JSONResponse:
    """NTP-style clock exchange (section 2.6): arrival and transmit times in Unix ms, on the
    server's clock (``/local/clock``: advancing it puts this computer's clock behind)."""
    ahead_ms = context(request).clock.offset_s * 1000.0
    arrived = request.scope.get("state", {}).get(ARRIVED_KEY, time.time() * 1000.0) + ahead_ms
    return JSONResponse(
        {"receivedAtUnixMs": arrived, "transmittedAtUnixMs": time.time() * 1000.0 + ahead_ms},
        headers={"cache-control": "no-store"},
    )


# -- samples, tags, links -------------------------------------------------------------------------


@router.get("/physical_samples/", dependencies=Auth, tags=["samples"])
async def list_samples(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.list_samples)


@router.post("/physical_samples/", dependencies=Auth, tags=["samples"], status_code=201)
async def create_sample(request: Request, body: NameBody) -> Any:
    """Create a sample; 409 ``{"detail": {"physical_sample_id": id}}`` if the name exists."""
    sample_id, created = await to_thread.run_sync(context(request).storage.create_sample, body.name)
    if not created:
        return JSONResponse(
            {
                "detail": {
                    "physical_sample_id": sample_id,
                    "message": "a physical sample with this name already exists",
                }
            },
            status_code=409,
        )
    return {"id": sample_id, "physical_sample_id": sample_id, "name": body.name.strip()}


@router.get("/tags/", dependencies=Auth, tags=["tags"])
async def list_tags(request: Request) -> list[dict[str, Any]]:
    return await to_thread.run_sync(context(request).storage.list_tags)


@router.post("/tags/", dependencies=Auth, tags=["tags"], status_code=201)
async def create_tag(request: Request, body: NameBody) -> Any:
    """Create a tag; 409 ``{"detail": {"id": existing}}`` if the name exists (any case)."""
    tag_id, created = await to_thread.run_sync(context(request).storage.create_tag, body.name)
    if not created:
        return JSONResponse(
            {"detail": {"id": tag_id, "message": "a tag with this name already exists"}},
            status_code=409,
        )
    return {"id": tag_id, "name": body.name.strip()}


@router.post("/tags/data-items/", dependencies=Auth, tags=["tags"])
async def attach_tags(request: Request, body: TagAttachBody) -> dict[str, Any]:
    await to_thread.run_sync(context(request).storage.attach_tags, body.data_ids, body.tag_ids)
    return {"data_ids": body.data_ids, "tag_ids": body.tag_ids}


@router.post("/data_entries/physical_sample", dependencies=Auth, tags=["samples"])
async def link_sample(request: Request, body: SampleLinkBody) -> dict[str, Any]:
    storage = context(request).storage
    await to_thread.run_sync(storage.link_sample, body.data_ids, body.physical_sample_id)
    return {"data_ids": body.data_ids, "physical_sample_id": body.physical_sample_id}


@router.post(
    "/projects/{project_id}/configuration/tracking_samples", dependencies=Auth, tags=["samples"]
)
async def track_sample(request: Request, project_id: IdPath, body: TrackingBody) -> dict[str, Any]:
    storage = context(request).storage
    await to_thread.run_sync(
        storage.track_sample, project_id, body.physical_sample_id, body.set_active
    )
    return {
        "project_id": project_id,
        "physical_sample_id": body.physical_sample_id,
        "set_active": body.set_active,
    }


# -- RHEED ----------------------------------------------------------------------------------------


@router.post("/rheed/stream/", dependencies=Auth, tags=["rheed"], status_code=201)
async def create_rheed_stream(request: Request, body: RheedCreateBody) -> str:
    """Create a RHEED stream; the answer is the data_id as a bare JSON string."""
    return await to_thread.run_sync(
        lambda: context(request).storage.create_rheed_stream(
            name=body.data_item_name,
            fps=body.fps_capture_rate,
            rotations_per_min=body.rotations_per_min,
            rotational_period=body.rotational_period,
            project_id=(body.project_id or "").strip() or None,
            azimuth_label=(body.azimuth_label or "").strip() or None,
        )
    )


@router.post("/rheed/stream/{data_id}/end", dependencies=Auth, tags=["rheed"])
async def end_rheed_stream(request: Request, data_id: IdPath) -> dict[str, Any]:
    """Finalize a RHEED stream (repeat calls are harmless); answers its summary as JSON."""
    summary = await to_thread.run_sync(context(request).storage.finalize_stream, data_id, "rheed")
    return {k: summary[k] for k in ("data_id", "status", "n_frames", "finalized_at")}


@router.post("/data_entries/raw_data/staged/upload_urls/", dependencies=Auth, tags=["rheed"])
async def presign(
    request: Request,
    original_filename: Annotated[str, Query(max_length=1000)],
    num_parts: Annotated[str, Query(max_length=20)],
    staging_type: Annotated[str, Query(max_length=50)],
    metadata: Annotated[dict[str, str | int | float | bool | None], Body()],
) -> dict[str, Any]:
    """Issue a single-use, expiring upload URL for one chunk (shard key in original_filename)."""
    ctx = context(request)
    if num_parts != "1" or staging_type != "stream":
        raise HTTPException(
            400,
            f"expected num_parts=1 and staging_type=stream, got {num_parts!r}, {staging_type!r}",
        )
    try:
        grant = parse_grant(original_filename, metadata, ctx.settings.max_frame_bytes)
    except PresignError as exc:
        raise HTTPException(400, str(exc)) from None
    await to_thread.run_sync(ctx.storage.check_grant, grant)
    token = ctx.presigns.issue(grant)
    url = str(request.base_url).rstrip("/") + f"/upload/{token}"
    return {"url": url, "key": original_filename, "expires_in_s": ctx.presigns.ttl_s}


@router.put("/upload/{token}", tags=["rheed"])
async def upload_shard(
    request: Request, token: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,100}$")]
) -> JSONResponse:
    """The presigned PUT (no API key): the raw shard bytes of the chunk the token was issued for."""
    ctx = context(request)
    if ctx.presigns.lookup(token) is None:  # refused before its body is read
        raise HTTPException(403, DEAD_TOKEN)
    body = await request.body()
    grant = ctx.presigns.claim(token)
    if grant is None:  # spent, expired, or claimed by a concurrent PUT meanwhile
        raise HTTPException(403, DEAD_TOKEN)
    try:
        if not body:
            await to_thread.run_sync(ctx.storage.count_rejected, grant.data_id)
            raise HTTPException(400, "empty body: expected the shard bytes")
        result = await to_thread.run_sync(ctx.storage.store_chunk, grant, body)
    except BaseException:
        ctx.presigns.release(token)
        raise
    ctx.presigns.spend(token)
    etag = f'"{crc32c.crc32c(body):08x}"'
    return JSONResponse(
        {
            "data_id": result.data_id,
            "chunk_idx": result.chunk_idx,
            "n_frames": result.n_frames,
            "duplicate": result.duplicate,
        },
        headers={"etag": etag},
    )


# -- tool-state (time series) ---------------------------------------------------------------------


@router.post("/tool-state/stream/initialize", dependencies=Auth, tags=["tool-state"])
async def init_tool_state(request: Request, body: ToolStateInitBody) -> dict[str, str]:
    data_id, processed = await to_thread.run_sync(
        lambda: context(request).storage.create_timeseries_stream(
            body.stream_name,
            body.synth_source_id,
            body.points_per_chunk,
            (body.project_id or "").strip() or None,
        )
    )
    return {"data_id": data_id, "processed_data_id": processed}


@router.post("/tool-state/stream/chunk", dependencies=Auth, tags=["tool-state"])
async def tool_state_chunk(request: Request, body: ToolStateChunkBody) -> dict[str, Any]:
    channels = {body.channel_name: (body.timestamps, body.values, body.units)}
    stored = await to_thread.run_sync(
        context(request).storage.store_points, body.data_id, body.chunk_index, channels
    )
    return {"data_id": body.data_id, "chunk_index": body.chunk_index, "points": stored}


@router.post("/tool-state/stream/chunk/multi", dependencies=Auth, tags=["tool-state"])
async def tool_state_multi(request: Request, body: ToolStateMultiBody) -> dict[str, Any]:
    channels = {n: (c.timestamps, c.values, c.units) for n, c in body.channels.items()}
    stored = await to_thread.run_sync(
        context(request).storage.store_points, body.data_id, body.chunk_index, channels
    )
    return {"data_id": body.data_id, "chunk_index": body.chunk_index, "points": stored}


@router.post("/tool-state/stream/{data_id}/finalize", dependencies=Auth, tags=["tool-state"])
async def finalize_tool_state(request: Request, data_id: IdPath) -> dict[str, Any]:
    summary = await to_thread.run_sync(
        context(request).storage.finalize_stream, data_id, "timeseries"
    )
    return {k: summary[k] for k in ("data_id", "status", "finalized_at")}


@router.get("/tool-state/{data_id}/timeseries/", dependencies=Auth, tags=["tool-state"])
async def tool_state_timeseries(request: Request, data_id: IdPath) -> dict[str, Any]:
    """The stored channels in the SDK's tool-state provider shape (section 7.3)."""
    storage = context(request).storage

    def build() -> dict[str, Any]:
        storage.stream_row(data_id, "timeseries")
        props: dict[str, Any] = {}
        for channel in storage.channels(data_id):
            pts = storage.points(data_id, channel)
            t0 = min(pts["timestamps"]) if pts["timestamps"] else 0.0
            props[channel] = {
                "unix_timestamp_ms": [t * 1000.0 for t in pts["timestamps"]],
                "relative_time_seconds": [t - t0 for t in pts["timestamps"]],
                "values": pts["values"],
                "units": pts["units"],
            }
        return {"properties": props}

    try:
        result = await to_thread.run_sync(build)
    except StorageError:
        raise HTTPException(404, "no data yet") from None
    if not result["properties"]:
        raise HTTPException(404, "no data yet")
    return result


# -- similarity polling (no similarity analysis: 404 means "no data yet" to the SDK) ----------
# (the RHEED results endpoint is served by server/analysis/routes.py)


@router.get("/similarity/rheed/{data_id}/trajectory/", dependencies=Auth, tags=["analysis"])
async def similarity_trajectory(data_id: IdPath) -> JSONResponse:
    return JSONResponse({"detail": "no data yet"}, status_code=404)
