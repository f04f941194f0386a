"""Creating, linking and ending a remote stream from its creation request (a plain dict).

The creation request is what ``open_*_stream`` was asked for, after validation: it is kept in
the stream's spool marker so the stream can be created (or continued in a new part) by a
background thread or by a later process, with the same requests as at open.

``{"kind": "rheed", "settings": {...POST /rheed/stream/ body...}, "links": {...}}`` or
``{"kind": "timeseries", "stream_name", "instrument_id", "points_per_chunk", "project_id",
"links": {...}}``, where ``links`` is ``{"physical_sample", "project_id", "tags"}`` as given.
"""

from __future__ import annotations

from typing import Any

from .api import AtomscaleApi, StreamLinks

__all__ = ["StreamSetup", "end_path"]


def end_path(kind: str, data_id: str) -> str:
    """The request that ends a stream of ``kind``."""
    if kind == "rheed":
        return f"/rheed/stream/{data_id}/end"
    return f"/tool-state/stream/{data_id}/finalize"


def part_name(name: str | None, part: int) -> str | None:
    """The name of continuation part ``part`` (2, 3, …) of a stream named ``name``."""
    if part <= 1:
        return name
    return f"{name or 'stream'} part {part}"


class StreamSetup:
    """The set-up requests of one endpoint, driven by creation requests."""

    def __init__(self, api: AtomscaleApi) -> None:
        self.api = api

    def resolve(self, request: dict[str, Any]) -> StreamLinks:
        """Sample and tag ids for the request's links (looked up, created when missing)."""
        links = request.get("links") or {}
        return self.api.resolve_links(
            links.get("physical_sample"), links.get("project_id"), list(links.get("tags") or [])
        )

    def create(self, request: dict[str, Any], part: int = 1) -> str:
        """Create the stream (or its continuation ``part``) on the server; its data_id."""
        if request["kind"] == "rheed":
            settings = dict(request["settings"])
            settings["data_item_name"] = part_name(settings.get("data_item_name"), part)
            return self.api.create_rheed_stream(settings)
        return self.api.timeseries_initialize(
            part_name(request.get("stream_name"), part),
            request.get("instrument_id"),
            int(request["points_per_chunk"]),
            request.get("project_id"),
        )

    def link(self, data_id: str, links: StreamLinks) -> None:
        """Link the created stream to its sample, project and tags."""
        self.api.link_stream(data_id, links)

    def end(self, kind: str, data_id: str) -> None:
        """End the stream on the server (RHEED ``/end``, time series ``/finalize``)."""
        if kind == "rheed":
            self.api.end_rheed_stream(data_id)
        else:
            self.api.timeseries_finalize(data_id)
