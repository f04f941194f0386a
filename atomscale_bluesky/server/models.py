"""Request bodies of the protocol endpoints (pydantic, strict types), so FastAPI validates them
and the OpenAPI description documents them. Wrong types get 422 with the failing field named."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class _Body(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")


class NameBody(_Body):
    """POST /physical_samples/ and POST /tags/."""

    name: Name


class SampleLinkBody(_Body):
    """POST /data_entries/physical_sample."""

    data_ids: Annotated[list[Id], Field(min_length=1, max_length=10_000)]
    physical_sample_id: Id


class TagAttachBody(_Body):
    """POST /tags/data-items/."""

    data_ids: Annotated[list[Id], Field(min_length=1, max_length=10_000)]
    tag_ids: Annotated[list[Id], Field(min_length=1, max_length=10_000)]


class TrackingBody(_Body):
    """POST /projects/{project_id}/configuration/tracking_samples."""

    physical_sample_id: Id
    set_active: bool = True


class RheedCreateBody(_Body):
    """POST /rheed/stream/ (``rotational_period`` is null for a stationary stream)."""

    data_item_name: Annotated[str, StringConstraints(max_length=1000)]
    rotational_period: Finite | None = None
    rotations_per_min: Annotated[float, Field(ge=0, allow_inf_nan=False)]
    fps_capture_rate: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    project_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    azimuth_label: Annotated[str, StringConstraints(max_length=200)] | None = None


class ToolStateInitBody(_Body):
    """POST /tool-state/stream/initialize."""

    stream_name: Annotated[str, StringConstraints(max_length=1000)] | None = None
    # an id the server stores as an SQLite INTEGER: signed 64-bit
    synth_source_id: Annotated[int, Field(ge=-(1 << 63), le=(1 << 63) - 1)] | None = None
    points_per_chunk: Annotated[int, Field(ge=1, le=10_000_000)] = 100
    project_id: Annotated[str, StringConstraints(max_length=200)] | None = None


class ChannelPoints(_Body):
    """One channel of a time-series chunk: parallel timestamps (Unix s) and values."""

    timestamps: list[Finite]
    values: list[float | None]
    units: Annotated[str, StringConstraints(max_length=200)] | None = None

    @model_validator(mode="after")
    def _same_length(self) -> ChannelPoints:
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"timestamps ({len(self.timestamps)}) and values ({len(self.values)}) "
                "must have the same length"
            )
        return self


class ToolStateChunkBody(ChannelPoints):
    """POST /tool-state/stream/chunk."""

    data_id: Id
    chunk_index: Annotated[int, Field(ge=0, le=2**40)]
    channel_name: Name


class ToolStateMultiBody(_Body):
    """POST /tool-state/stream/chunk/multi."""

    data_id: Id
    chunk_index: Annotated[int, Field(ge=0, le=2**40)]
    channels: dict[Name, ChannelPoints]
