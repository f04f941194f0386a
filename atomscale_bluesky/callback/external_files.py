"""A run's external documents and the frames they point at, read through the handler registry.

Two document families point at files:

* v1 ``resource``/``datum`` (ophyd's FileStore plugins, ophyd.sim's registry-backed signals): the
  resource's ``spec`` picks the handler class, built as ``cls(path, **resource_kwargs)``; each
  datum's frames are ``handler(**datum_kwargs)``.
* ophyd-async ``stream_resource``/``stream_datum``: the mimetype picks the handler, built as
  ``cls(path, **parameters)``; a stream datum's frames are ``handler(start, stop)``, its
  ``indices`` times the rows each event holds.

Handlers are built on first read (a third-party handler may open its file in its constructor,
before the file exists). ``ExternalNotReady`` says "try again later", ``ExternalDataError`` says
"these frames are lost" (no handler, no document); the reader bounds the retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomscale_bluesky.callback.handlers import (
    EPICS_EPOCH_OFFSET,
    ExternalDataError,
    ExternalNotReady,
    HandlerRegistry,
)

__all__ = [
    "EPICS_EPOCH_OFFSET",
    "ExternalDataError",
    "ExternalFrames",
    "ExternalNotReady",
    "ExternalStore",
]

# what a handler raises while its file is being written (or not there yet): retried, bounded
_NOT_YET = (OSError, KeyError, IndexError, ValueError, EOFError, RuntimeError)


@dataclass
class ExternalFrames:
    """Frames read from a file, with per-frame hardware times and camera ids when the file has them."""

    frames: np.ndarray
    timestamps: list[float] | None = None
    unique_ids: list[int] | None = None


@dataclass
class _Resource:
    """A resource document and, once built, its handler."""

    doc: Mapping[str, Any]
    stream: bool
    handler: Any = None
    what: str = ""  # the file, for messages
    problem: str | None = None  # no handler: every frame of it is lost for this reason


class ExternalStore:
    """Keeps a run's resource/datum/stream_resource documents and reads the frames they point at."""

    def __init__(self, registry: HandlerRegistry | None = None) -> None:
        self.registry = registry or HandlerRegistry()
        self._resources: dict[str, _Resource] = {}
        self._datums: dict[str, tuple[str, dict[str, Any]]] = {}  # id -> (resource, kwargs)
        self._stream_keys: dict[str, str] = {}  # stream resource uid -> data key

    # -- documents ---------------------------------------------------------------------------------
    def add_resource(self, doc: Mapping[str, Any]) -> str | None:
        """Keep a resource; returns why its frames cannot be read (no handler), else None."""
        spec = str(doc.get("spec", ""))
        path = self.registry.local_path(
            str(doc.get("root") or ""), str(doc.get("resource_path") or "")
        )
        res = _Resource(doc, stream=False, what=f"{spec} {path}")
        if self.registry.handler_class(spec) is None:
            res.problem = (
                f"no handler for resource spec {spec!r} ({path}); register one with "
                "handler_registry={spec: HandlerClass}"
            )
        self._resources[doc["uid"]] = res
        return res.problem

    def add_datum(self, doc: Mapping[str, Any]) -> None:
        self._datums[doc["datum_id"]] = (doc["resource"], dict(doc.get("datum_kwargs") or {}))

    def add_stream_resource(self, doc: Mapping[str, Any]) -> str | None:
        """Keep a stream resource; returns why its frames cannot be read, else None."""
        self._stream_keys[doc["uid"]] = str(doc.get("data_key", ""))
        mimetype = str(doc.get("mimetype", ""))
        res = _Resource(doc, stream=True, what=f"{mimetype} {doc.get('uri', '')}")
        if self.registry.handler_class(mimetype) is None:
            res.problem = f"no handler for stream resource mimetype {mimetype!r} ({res.what})"
        self._resources[doc["uid"]] = res
        return res.problem

    def stream_key(self, stream_resource_uid: str) -> str | None:
        """The data key a stream resource holds frames for."""
        return self._stream_keys.get(stream_resource_uid)

    def resource_of(self, datum_id: str) -> str | None:
        """The resource uid of a v1 datum."""
        found = self._datums.get(datum_id)
        return found[0] if found else None

    def describe(self, resource_uid: str) -> str:
        """The spec and file of a resource, for messages."""
        res = self._resources.get(resource_uid)
        return res.what if res else f"resource {resource_uid!r}"

    # -- reads -------------------------------------------------------------------------------------
    def read_datum(self, datum_id: str) -> ExternalFrames:
        """Frames of one v1 datum: ``handler(**datum_kwargs)``."""
        if datum_id not in self._datums:
            raise ExternalDataError(f"datum {datum_id!r} was never announced by a datum document")
        resource_uid, kwargs = self._datums[datum_id]
        handler = self._handler(resource_uid)
        return _read(handler, kwargs)

    def read_stream_datum(self, doc: Mapping[str, Any], per_index: int = 1) -> ExternalFrames:
        """Frames of a stream datum: its indices count events, each ``per_index`` dataset rows
        (ophyd-async's collections per event)."""
        handler = self._handler(str(doc.get("stream_resource", "")))
        indices = doc.get("indices") or {}
        per = max(1, per_index)
        span = {"start": int(indices["start"]) * per, "stop": int(indices["stop"]) * per}
        return _read(handler, span)

    def close(self) -> None:
        for res in self._resources.values():
            close = getattr(res.handler, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    close()
        self._resources.clear()

    def _handler(self, resource_uid: str) -> Any:
        res = self._resources.get(resource_uid)
        if res is None:
            raise ExternalDataError(
                f"resource {resource_uid!r} was never announced by a resource document"
            )
        if res.problem:
            raise ExternalDataError(res.problem)
        if res.handler is None:
            try:
                if res.stream:
                    res.handler = self.registry.open_stream_resource(res.doc)
                else:
                    res.handler = self.registry.open_resource(res.doc)
            except ExternalDataError:
                raise
            except _NOT_YET as exc:
                raise ExternalNotReady(
                    f"{res.what} cannot be opened yet: {exc}",
                    missing=isinstance(exc, FileNotFoundError),
                ) from exc
            except Exception as exc:  # noqa: BLE001 - a third-party handler's own failure
                raise ExternalDataError(f"the handler of {res.what} failed: {exc!r}") from exc
        return res.handler


def _read(handler: Any, kwargs: Mapping[str, Any]) -> ExternalFrames:
    """``handler(**kwargs)`` with its per-frame times and ids when the handler offers them."""
    try:
        frames = np.asarray(handler(**kwargs))
    except ExternalDataError:
        raise
    except _NOT_YET as exc:
        missing = isinstance(exc, FileNotFoundError)
        raise ExternalNotReady(f"not readable yet: {exc}", missing=missing) from exc
    except Exception as exc:  # noqa: BLE001 - a third-party handler's own failure
        raise ExternalDataError(f"the handler failed: {exc!r}") from exc
    if frames.size == 0:
        raise ExternalNotReady("the file holds no frames for this datum yet")
    times = _optional(handler, "frame_times", kwargs)
    ids = _optional(handler, "frame_ids", kwargs)
    return ExternalFrames(frames=frames, timestamps=times, unique_ids=ids)


def _optional(handler: Any, name: str, kwargs: Mapping[str, Any]) -> Any:
    """An optional extra of our own handlers (frame times, camera ids); None when absent."""
    method = getattr(handler, name, None)
    if method is None:
        return None
    try:
        return method(**kwargs)
    except Exception:  # noqa: BLE001 - extras never cost the frames
        return None
