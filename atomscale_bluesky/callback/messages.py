"""What the intake hands the worker through the queue: one record per piece of work, in order.

Events arrive normalised: an ``event`` and an ``event_page`` both become :class:`EventRows` whose
columns are lists of rows, and a ``datum_page`` becomes one :class:`ExternalDocument` per datum.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.callback.routing import Route
from atomscale_bluesky.callback.run_metadata import RunMetadata
from atomscale_bluesky.callback.run_report import RunReport

__all__ = [
    "DescriptorArrived",
    "EventRows",
    "ExternalDocument",
    "FlushMarker",
    "RunEnded",
    "RunOpened",
    "StopWorker",
    "WorkItem",
]


@dataclass(frozen=True)
class RunOpened:
    """A start document: the worker builds the run's uploader."""

    meta: RunMetadata
    report: RunReport


@dataclass(frozen=True)
class DescriptorArrived:
    """A descriptor, routed by the intake: which keys are frames, channels, counters, sizes."""

    run_uid: str
    route: Route


@dataclass(frozen=True)
class EventRows:
    """New rows of one descriptor (duplicates removed), each column a list of rows."""

    run_uid: str
    route: Route
    data: Mapping[str, list[Any]]
    timestamps: Mapping[str, list[Any]]
    seq_nums: list[int]
    times: list[float]
    skip_keys: frozenset[str]  # frame keys rejected at intake (larger than max_frame_bytes)

    def __len__(self) -> int:
        return len(self.seq_nums)


@dataclass(frozen=True)
class ExternalDocument:
    """A resource, stream_resource, datum or stream_datum of the run."""

    run_uid: str
    name: str
    doc: Mapping[str, Any]


@dataclass(frozen=True)
class RunEnded:
    """No more data for the run: the worker flushes it and hands it to a finalizer."""

    run_uid: str
    stop: Mapping[str, Any] | None


@dataclass(frozen=True)
class FlushMarker:
    """Set by the worker once everything queued before it is processed."""

    done: threading.Event


@dataclass(frozen=True)
class StopWorker:
    """Ends the worker's loop (after everything queued before it)."""


WorkItem = (
    StopWorker
    | RunOpened
    | DescriptorArrived
    | EventRows
    | ExternalDocument
    | RunEnded
    | FlushMarker
)
