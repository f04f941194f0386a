"""Which handler reads which resource: spec -> handler class, and where its files are here.

Lookup order for a resource's ``spec``: the user's ``handler_registry`` entries, the built-in
handlers, then handler packages installed with a ``databroker.handlers`` entry point (as
area-detector-handlers declares them). ``root_map`` maps a resource's root (the IOC host's
directory) to the directory where this machine sees the same files, as in event_model's Filler.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from atomscale_bluesky.callback.handlers.ad_hdf5 import AreaDetectorHDF5Handler, HDF5DatasetHandler
from atomscale_bluesky.callback.handlers.ad_tiff import AreaDetectorTiffHandler, TiffSeriesHandler
from atomscale_bluesky.callback.handlers.errors import ExternalDataError
from atomscale_bluesky.callback.handlers.npy_seq import NumpySeqHandler

__all__ = ["BUILTIN_HANDLERS", "ENTRY_POINT_GROUP", "STREAM_HANDLERS", "HandlerRegistry"]

logger = logging.getLogger(__name__)

HandlerClass = Callable[..., Any]
ENTRY_POINT_GROUP = "databroker.handlers"
BUILTIN_HANDLERS: dict[str, HandlerClass] = {
    **{spec: AreaDetectorHDF5Handler for spec in sorted(AreaDetectorHDF5Handler.specs)},
    "AD_TIFF": AreaDetectorTiffHandler,
    "NPY_SEQ": NumpySeqHandler,
}
# ophyd-async stream resources name a mimetype, not a spec; their handlers take ``parameters``
STREAM_HANDLERS: dict[str, HandlerClass] = {
    "application/x-hdf5": HDF5DatasetHandler,
    "application/x-hdf5-swmr": HDF5DatasetHandler,
    "multipart/related;type=image/tiff": TiffSeriesHandler,
}


class HandlerRegistry:
    """Builds the handler of a resource or stream resource, with its file path mapped here."""

    def __init__(
        self,
        handlers: Mapping[str, HandlerClass] | None = None,
        root_map: Mapping[str, str] | None = None,
        *,
        use_entry_points: bool = True,
    ) -> None:
        self._user = dict(handlers or {})
        self._root_map = {str(k): str(v) for k, v in (root_map or {}).items()}
        self._use_entry_points = use_entry_points
        self._installed: dict[str, HandlerClass | None] = {}

    def handler_class(self, spec: str) -> HandlerClass | None:
        """The class registered for ``spec`` (user's, built-in, installed), None when none is."""
        if spec in self._user:
            return self._user[spec]
        if spec in BUILTIN_HANDLERS:
            return BUILTIN_HANDLERS[spec]
        if spec in STREAM_HANDLERS:
            return STREAM_HANDLERS[spec]
        if self._use_entry_points:
            if spec not in self._installed:
                self._installed[spec] = _installed_handler(spec)
            return self._installed[spec]
        return None

    def local_path(self, root: str, resource_path: str) -> str:
        """Where this machine reads ``root``/``resource_path``: the root mapped by ``root_map``
        (an exact entry, as the Filler does, else the longest entry the path starts with)."""
        if root in self._root_map:
            return os.path.join(self._root_map[root], resource_path)
        return self._map_prefix(os.path.join(root, resource_path) if root else resource_path)

    def _map_prefix(self, path: str) -> str:
        best = ""
        for old in self._root_map:
            stem = old.rstrip("/")
            inside = path == stem or path.startswith(stem + "/")
            if stem and inside and len(old) > len(best):
                best = old
        if not best:
            return path
        rest = path[len(best.rstrip("/")) :].lstrip("/")
        return os.path.join(self._root_map[best], rest)

    def open_resource(self, doc: Mapping[str, Any]) -> Any:
        """``cls(path, **resource_kwargs)`` for a v1 resource document."""
        spec = str(doc.get("spec", ""))
        cls = self.handler_class(spec)
        if cls is None:
            raise ExternalDataError(
                f"no handler for resource spec {spec!r} (register one with handler_registry=)"
            )
        path = self.local_path(str(doc.get("root") or ""), str(doc.get("resource_path") or ""))
        return cls(path, **dict(doc.get("resource_kwargs") or {}))

    def open_stream_resource(self, doc: Mapping[str, Any]) -> Any:
        """``cls(path, **parameters)`` for an ophyd-async stream resource (by its mimetype)."""
        mimetype = str(doc.get("mimetype", ""))
        cls = self._user.get(mimetype) or STREAM_HANDLERS.get(mimetype)
        if cls is None:
            raise ExternalDataError(f"no handler for stream resource mimetype {mimetype!r}")
        path = self.local_path("", str(uri_path(str(doc.get("uri", "")))))
        return cls(path, **dict(doc.get("parameters") or {}))


def uri_path(uri: str) -> Path:
    """File path of a ``file://host/path`` URI (ophyd-async stream resources)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise ExternalDataError(f"unsupported URI scheme {parsed.scheme!r} in {uri!r}")
    return Path(unquote(parsed.path))


def _installed_handler(spec: str) -> HandlerClass | None:
    """The handler an installed package declares for ``spec`` (``databroker.handlers``)."""
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name != spec:
            continue
        try:
            handler: HandlerClass = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the callback
            logger.warning("Atomscale: handler %s from %s failed to load: %s", spec, entry, exc)
            return None
        return handler
    return None
