"""What a run's start document (and the constructor's overrides) say about its streams."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.callback.values import as_int, non_negative, positive

__all__ = ["RunMetadata", "RunOverrides"]


@dataclass(frozen=True)
class RunOverrides:
    """Constructor values that win over what each run's documents say."""

    sample: str | None = None
    project_id: str | None = None
    tags: tuple[str, ...] | None = None
    stream_name: str | None = None
    fps: float | None = None
    rotations_per_min: float | None = None
    bit_depth: int | None = None

    @classmethod
    def build(cls, *, tags: Iterable[str] | None = None, **values: Any) -> RunOverrides:
        return cls(tags=None if tags is None else tuple(tags), **values)


@dataclass(frozen=True)
class RunMetadata:
    """One run's stream names and sample/project links, decided once from its start document."""

    uid: str
    name: str
    plan_name: str | None
    scan_id: Any
    start_time: float | None
    sample: str | None
    project_id: str | None
    tags: list[str] | None
    fps: float | None
    rotations_per_min: float | None
    bit_depth: int | None

    @classmethod
    def from_start(cls, start: Mapping[str, Any], overrides: RunOverrides) -> RunMetadata:
        uid = str(start["uid"])
        return cls(
            uid=uid,
            name=_stream_base_name(start, uid, overrides.stream_name),
            plan_name=start.get("plan_name"),
            scan_id=start.get("scan_id"),
            start_time=positive(start.get("time")),
            sample=overrides.sample
            or _sample(start.get("sample"))
            or _sample(start.get("physical_sample")),
            project_id=overrides.project_id or _text(start.get("project_id")),
            tags=list(overrides.tags) if overrides.tags is not None else _tags(start.get("tags")),
            fps=overrides.fps or positive(start.get("fps")),
            rotations_per_min=(
                overrides.rotations_per_min
                if overrides.rotations_per_min is not None
                else non_negative(start.get("rotations_per_min", start.get("rpm")))
            ),
            bit_depth=overrides.bit_depth or as_int(start.get("bit_depth")),
        )


def _stream_base_name(start: Mapping[str, Any], uid: str, override: str | None) -> str:
    """The override, the start's ``name``/``stream_name``, else "<plan_name> scan <scan_id>"."""
    base = override or start.get("name") or start.get("stream_name")
    if base:
        return str(base)
    plan = start.get("plan_name") or "run"
    scan = start.get("scan_id")
    return f"{plan} scan {scan}" if scan is not None else f"{plan} {uid[:8]}"


def _sample(value: Any) -> str | None:
    """A sample given as text, or as a mapping with a uuid, id or name."""
    if isinstance(value, Mapping):
        for field_name in ("uuid", "id", "name"):
            text = _text(value.get(field_name))
            if text:
                return text
        return None
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _tags(value: Any) -> list[str] | None:
    """Tags as a list or a comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()] or None
    return [str(t) for t in value if str(t).strip()] or None
