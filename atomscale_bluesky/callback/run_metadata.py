"""What a run's start document says about its streams: names, sample, project and tags.

Three layers, first present wins: the constructor's overrides (:class:`RunOverrides`), the run's
own metadata (read through :class:`MetadataKeys`: which start-document keys give the sample, the
project and the tags), then the deployment's defaults (:class:`RunDefaults`, from the
environment). A run that names its sample is linked to it even when ``ATOMSCALE_SAMPLE`` is set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.callback.values import as_int, non_negative, positive
from atomscale_bluesky.settings import DEFAULT_PROJECT_KEYS, DEFAULT_SAMPLE_KEYS, DEFAULT_TAG_KEYS

__all__ = ["MetadataKeys", "RunDefaults", "RunMetadata", "RunOverrides"]

#: Fields of a ``sample`` mapping naming it, in order: an Atomscale UUID, the name people know,
#: then a facility's own id (used as a name, since Atomscale does not know it).
SAMPLE_FIELDS = ("uuid", "name", "sample_name", "id", "sample_id")
#: Fields of a ``proposal`` mapping (or any mapping used as a tag) giving its id.
ID_FIELDS = ("proposal_id", "id", "uid", "name")


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
class RunDefaults:
    """Deployment values (``ATOMSCALE_SAMPLE``, ``_PROJECT_ID``, ``_TAGS``) for runs that name none."""

    sample: str | None = None
    project_id: str | None = None
    tags: tuple[str, ...] | None = None


@dataclass(frozen=True)
class MetadataKeys:
    """Which start-document keys give the sample, the project and the tags.

    For the sample and the project the first key present wins; a dotted key (``"sample.name"``)
    looks inside a mapping. Each of ``tag_keys`` present adds a ``"key:value"`` tag (a
    ``proposal`` mapping gives its ``proposal_id``), next to the run's own ``tags``.
    """

    sample_keys: tuple[str, ...] = DEFAULT_SAMPLE_KEYS
    project_keys: tuple[str, ...] = DEFAULT_PROJECT_KEYS
    tag_keys: tuple[str, ...] = DEFAULT_TAG_KEYS

    @classmethod
    def build(
        cls,
        sample_keys: Iterable[str] | str | None = None,
        project_keys: Iterable[str] | str | None = None,
        tag_keys: Iterable[str] | str | None = None,
    ) -> MetadataKeys:
        """Keys given as a string (one key) or an iterable; None keeps the default."""

        def keys(value: Iterable[str] | str | None, default: tuple[str, ...]) -> tuple[str, ...]:
            if value is None:
                return default
            return (value,) if isinstance(value, str) else tuple(value)

        return cls(
            keys(sample_keys, DEFAULT_SAMPLE_KEYS),
            keys(project_keys, DEFAULT_PROJECT_KEYS),
            keys(tag_keys, DEFAULT_TAG_KEYS),
        )


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
    def from_start(
        cls,
        start: Mapping[str, Any],
        overrides: RunOverrides,
        defaults: RunDefaults | None = None,
        keys: MetadataKeys | None = None,
    ) -> RunMetadata:
        uid = str(start["uid"])
        defaults = defaults or RunDefaults()
        keys = keys or MetadataKeys()
        return cls(
            uid=uid,
            name=_stream_base_name(start, uid, overrides.stream_name),
            plan_name=start.get("plan_name"),
            scan_id=start.get("scan_id"),
            start_time=positive(start.get("time")),
            sample=overrides.sample or _first(start, keys.sample_keys, _sample) or defaults.sample,
            project_id=overrides.project_id
            or _first(start, keys.project_keys, _named)
            or defaults.project_id,
            tags=_run_tags(start, overrides, defaults, keys.tag_keys),
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


def _lookup(start: Mapping[str, Any], key: str) -> Any:
    """``start[key]``, or for ``"a.b"`` ``start["a"]["b"]``; None when absent."""
    if key in start:
        return start[key]
    value: Any = start
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _first(start: Mapping[str, Any], keys: Iterable[str], read: Any) -> str | None:
    """The first of ``keys`` whose value ``read`` turns into text."""
    for key in keys:
        text = read(_lookup(start, key))
        if text:
            return str(text)
    return None


def _sample(value: Any) -> str | None:
    """A sample given as text, or as a mapping with a uuid, name or id."""
    if isinstance(value, Mapping):
        return _first(value, SAMPLE_FIELDS, _text)
    return _text(value)


def _named(value: Any) -> str | None:
    """Text, or the id of a mapping (a ``proposal`` dict)."""
    if isinstance(value, Mapping):
        return _first(value, ID_FIELDS, _text)
    return _text(value)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (Mapping, list, tuple)):
        return None
    text = str(value).strip()
    return text or None


def _tags(value: Any) -> list[str] | None:
    """Tags as a list or a comma-separated string."""
    if value is None:
        return None
    if isinstance(value, str):
        return [t.strip() for t in value.split(",") if t.strip()] or None
    return [str(t).strip() for t in value if str(t).strip()] or None


def _run_tags(
    start: Mapping[str, Any],
    overrides: RunOverrides,
    defaults: RunDefaults,
    tag_keys: Iterable[str],
) -> list[str] | None:
    """The constructor's tags, else the run's ``tags``, else the defaults; then one
    ``"key:value"`` tag per configured key the run has (``proposal:312345``, ``cycle:2024-2``)."""
    if overrides.tags is not None:
        tags = list(overrides.tags)
    else:
        tags = _tags(start.get("tags")) or list(defaults.tags or ())
    for key in tag_keys:
        value = _named(_lookup(start, key))
        if value:
            tags.append(f"{key}:{value}")
    unique = list(dict.fromkeys(tags))
    return unique or None
