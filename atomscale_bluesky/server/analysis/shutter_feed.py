"""The shutter history of one RHEED stream, read incrementally from its related time series.

Each refresh asks storage which tool-state streams are related and how many chunks each has
stored; only a stream that changed is read, and only its points stored since the last read (by
rowid). A stream whose points were replaced (a re-uploaded chunk), or a change in which streams
are related, rebuilds the history from all points once.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from atomscale_bluesky.server.analysis.monolayers import ShutterHistory

__all__ = ["ShutterFeed"]


class ShutterFeed:
    """Follows the shutter channels (names matching ``pattern``, any case) of a stream's related
    tool-state streams; ``refresh`` brings ``history`` up to date."""

    def __init__(self, storage: Any, data_id: str, pattern: str) -> None:
        self._storage = storage
        self._data_id = data_id
        self._pattern = pattern.lower()
        self._keys: dict[tuple[str, str], str | None] = {}
        self._related: list[str] = []
        self._versions: dict[str, tuple[int, int]] = {}
        self._cursors: dict[str, int] = {}
        self.history = ShutterHistory()

    def refresh(self) -> ShutterHistory:
        related = self._storage.related_timeseries(self._data_id)
        versions = self._storage.points_version(related) if related else {}
        replaced = any(
            ts_id in self._versions and self._versions[ts_id][1] != version[1]
            for ts_id, version in versions.items()
        )
        if related != self._related or replaced:
            self._related, self._versions, self._cursors = related, {}, {}
            self.history = ShutterHistory()
        points: list[tuple[float, str, float | None]] = []
        for ts_id in related:
            version = versions.get(ts_id)
            if version is not None and version != self._versions.get(ts_id):
                self._versions[ts_id] = version
                points.extend(self._read(ts_id))
        self.history.extend(points)
        return self.history

    def _read(self, ts_id: str) -> list[tuple[float, str, float | None]]:
        """The shutter points of ``ts_id`` stored since the last read."""
        rows = self._storage.points_after(ts_id, self._cursors.get(ts_id, 0))
        if rows:
            self._cursors[ts_id] = max(self._cursors.get(ts_id, 0), max(r[0] for r in rows))
        keys = [self._key(ts_id, name) for _, name, _, _ in rows]
        return [(row[2], key, row[3]) for row, key in zip(rows, keys, strict=True) if key]

    def _key(self, ts_id: str, name: str) -> str | None:
        """The history's name of a shutter channel (one string for all its points), else None."""
        if (ts_id, name) not in self._keys:
            shutter = fnmatch.fnmatch(name.lower(), self._pattern)
            self._keys[ts_id, name] = f"{ts_id}/{name}" if shutter else None
        return self._keys[ts_id, name]
