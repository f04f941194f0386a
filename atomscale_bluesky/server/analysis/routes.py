"""``GET /rheed/timeseries/{data_id}/``: the live analysis results, in the shape the SDK parses.

Query parameters as the official SDK sends them: ``last_n``, ``elapsed_seconds``,
``property_names`` (repeated), ``include_low_level_features`` (``True``/``False``). A 404 means
"no data yet" to the SDK; its ``detail`` says why (unknown stream, nothing analysed yet, or
analysis switched off on this server).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from atomscale_bluesky.server.dependencies import context, require_api_key
from atomscale_bluesky.settings import TRUE_WORDS

IdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
DISABLED = "live analysis is switched off on this server (started with --no-analysis)"

router = APIRouter(dependencies=[Depends(require_api_key)], tags=["analysis"])


def _flag(text: str | None) -> bool:
    """The SDK's ``True``/``False`` query values (read with the settings' yes words)."""
    return (text or "").strip().lower() in TRUE_WORDS


@router.get("/rheed/timeseries/{data_id}/", response_model=None)
async def rheed_timeseries(
    request: Request,
    data_id: IdPath,
    last_n: Annotated[int | None, Query(ge=0)] = None,
    elapsed_seconds: Annotated[float | None, Query(ge=0)] = None,
    property_names: Annotated[list[str] | None, Query()] = None,
    include_low_level_features: Annotated[str | None, Query(max_length=10)] = None,
) -> dict[str, Any] | JSONResponse:
    """Per-frame specular intensity, oscillation period, growth rate and monolayers."""
    worker = context(request).analysis
    if worker is None:
        return JSONResponse({"detail": DISABLED}, status_code=404)
    results = worker.results(data_id)
    if results is None or not len(results):
        return JSONResponse({"detail": "no data yet"}, status_code=404)
    return results.response(
        last_n=last_n,
        elapsed_seconds=elapsed_seconds,
        property_names=property_names,
        low_level=_flag(include_low_level_features),
    )
