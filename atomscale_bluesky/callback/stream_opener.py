"""Opens the remote streams of the worker's runs; makes the client on first use (on the worker)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.run_metadata import RunMetadata
from atomscale_bluesky.shards import ZSTD_LEVEL

__all__ = ["StreamOpener"]


class StreamOpener:
    """The one door from the callback to the client: RHEED and time-series streams."""

    def __init__(
        self,
        client: Any,
        client_factory: Callable[[], Any],
        counters: LockedCounters,
        endpoint: str | None,
    ) -> None:
        self.client = client
        self.owns_client = client is None
        self._factory = client_factory
        self._counters = counters
        self.endpoint = endpoint

    def _ensure_client(self) -> Any:
        if self.client is None:
            self.client = self._factory()
            if self.endpoint is None:
                self.endpoint = getattr(self.client, "endpoint", None)
        return self.client

    def open_rheed(
        self,
        meta: RunMetadata,
        *,
        name: str,
        fps: float,
        rotations_per_min: float,
        chunk_size: int,
        compression_level: int = ZSTD_LEVEL,
    ) -> Any:
        """A RHEED stream for one camera segment of the run; raises when it cannot be opened.

        The zstd level is passed only when it is not the protocol's, so any client with the
        reference's ``open_rheed_stream`` arguments serves the default.
        """
        level = {} if compression_level == ZSTD_LEVEL else {"compression_level": compression_level}
        stream = self._ensure_client().open_rheed_stream(
            fps=fps,
            rotations_per_min=rotations_per_min,
            chunk_size=chunk_size,
            stream_name=name,
            physical_sample=meta.sample,
            project_id=meta.project_id,
            tags=meta.tags,
            **level,
        )
        self._counters.add(streams_opened=1)
        return stream

    def open_timeseries(
        self, meta: RunMetadata, *, name: str, instrument_id: int | None, points_per_chunk: int
    ) -> Any:
        """The run's time-series stream; raises when it cannot be opened."""
        stream = self._ensure_client().open_timeseries_stream(
            stream_name=name,
            instrument_id=instrument_id,
            physical_sample=meta.sample,
            project_id=meta.project_id,
            tags=meta.tags,
            points_per_chunk=points_per_chunk,
        )
        self._counters.add(streams_opened=1)
        return stream

    def close(self) -> None:
        """Close the client if the callback made it."""
        if self.owns_client and self.client is not None:
            self.client.close()
