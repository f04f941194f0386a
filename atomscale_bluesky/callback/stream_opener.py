"""Opens the remote streams of the worker's runs; makes the client on first use (on the worker)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.run_metadata import RunMetadata
from atomscale_bluesky.shards import ZSTD_LEVEL

__all__ = ["RunStreams", "StreamOpener"]

logger = logging.getLogger(__name__)

RHEED_STREAMS_KEPT = 64  # recent RHEED streams whose ids ``rheed_data_ids`` can still give
UNRECORDED_KEPT = 256  # streams still waiting for their remote id to be recorded in RunStreams
#: After an open the server did not answer within ``open_wait_s``, later opens do not wait for
#: this long while that stream is still not created.
UNANSWERED_S = 60.0


class RunStreams(Protocol):
    """Where a consumer keeps the remote streams of each run, so a run handled again (a bus
    redelivering it after a crash) goes to the streams opened the first time."""

    def data_id_for(self, run_uid: str, key: str) -> str | None: ...

    def opened(self, run_uid: str, key: str, data_id: str) -> None: ...


class StreamOpener:
    """The one door from the callback to the client: RHEED and time-series streams."""

    def __init__(
        self,
        client: Any,
        client_factory: Callable[[], Any],
        counters: LockedCounters,
        endpoint: str | None,
        run_streams: RunStreams | None = None,
        open_wait_s: float | None = None,
    ) -> None:
        self.client = client
        self.open_wait_s = open_wait_s
        # a stream the server had not created when its open returned, and when that was
        self._unanswered: tuple[Any, float] | None = None
        self.run_streams = run_streams
        # (run uid, key, stream) opened before the server created them: recorded once it has
        self._unrecorded: deque[tuple[str, str, Any]] = deque(maxlen=UNRECORDED_KEPT)
        self._opens: dict[tuple[str, str], int] = {}
        self.owns_client = client is None
        self._factory = client_factory
        self._counters = counters
        # where the streams go, as the summary shows it: the client's own endpoint once known
        self.endpoint = getattr(client, "endpoint", None) or endpoint
        # (run uid, stream) of the recent streams, read by other threads; bounded, so a session
        # of many runs does not keep every finished stream (and what it holds) alive
        self._rheed: deque[tuple[str, Any]] = deque(maxlen=RHEED_STREAMS_KEPT)
        self._rheed_lock = threading.Lock()

    def _ensure_client(self) -> Any:
        if self.client is None:
            self.client = self._factory()
            self.endpoint = getattr(self.client, "endpoint", None) or self.endpoint
        return self.client

    def _open_wait(self) -> dict[str, float]:
        """``open_wait_s`` for this package's client (another client, the reference, opens as it
        does); none for ``UNANSWERED_S`` after an open that returned its stream not created
        (the server did not answer in time, or could not be reached), while that stream is still
        not created: an outage costs the worker one wait a minute, not one per stream."""
        from atomscale_bluesky.client import AtomscaleClient

        wait = self.open_wait_s
        if wait is None or not isinstance(self.client, AtomscaleClient):
            return {}
        if self._unanswered is not None:
            stream, since = self._unanswered
            if stream.data_id is None and time.monotonic() - since < UNANSWERED_S:
                return {"open_wait_s": 0.0}
            self._unanswered = None
        return {"open_wait_s": wait}

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
        key, earlier = self._earlier_stream(meta.uid, "rheed", name)
        if earlier is not None:
            stream = self._ensure_client().attach_rheed_stream(
                earlier,
                fps=fps,
                rotations_per_min=rotations_per_min,
                chunk_size=chunk_size,
                stream_name=name,
                **level,
            )
        else:
            stream = self._ensure_client().open_rheed_stream(
                fps=fps,
                rotations_per_min=rotations_per_min,
                chunk_size=chunk_size,
                stream_name=name,
                physical_sample=meta.sample,
                project_id=meta.project_id,
                tags=meta.tags,
                **level,
                **self._open_wait(),
            )
            self._note_opened(meta.uid, key, stream)
        self._counters.add(streams_opened=1)
        with self._rheed_lock:
            self._rheed.append((meta.uid, stream))
        return stream

    def rheed_data_ids(self, run_uid: str) -> list[str]:
        """Remote ids of the RHEED streams opened for a run, oldest first (thread-safe; a stream
        the server has not created yet has none)."""
        with self._rheed_lock:
            streams = [stream for uid, stream in self._rheed if uid == run_uid]
        return [d for d in (getattr(s, "data_id", None) for s in streams) if d]

    def open_timeseries(
        self, meta: RunMetadata, *, name: str, instrument_id: int | None, points_per_chunk: int
    ) -> Any:
        """The run's time-series stream; raises when it cannot be opened."""
        key, earlier = self._earlier_stream(meta.uid, "timeseries", name)
        if earlier is not None:
            stream = self._ensure_client().attach_timeseries_stream(
                earlier, stream_name=name, points_per_chunk=points_per_chunk
            )
        else:
            stream = self._ensure_client().open_timeseries_stream(
                stream_name=name,
                instrument_id=instrument_id,
                physical_sample=meta.sample,
                project_id=meta.project_id,
                tags=meta.tags,
                points_per_chunk=points_per_chunk,
                **self._open_wait(),
            )
            self._note_opened(meta.uid, key, stream)
        self._counters.add(streams_opened=1)
        return stream

    def _earlier_stream(self, run_uid: str, kind: str, name: str | None) -> tuple[str, str | None]:
        """The key of this stream within its run (kind, name, how many such opened before) and
        the data_id an earlier consumer opened under it, if the run was handled before."""
        base = f"{kind}:{name}"
        n = self._opens.get((run_uid, base), 0)
        self._opens[(run_uid, base)] = n + 1
        while len(self._opens) > RHEED_STREAMS_KEPT * 4:
            self._opens.pop(next(iter(self._opens)))
        key = f"{base}#{n}"
        if self.run_streams is None:
            return key, None
        return key, self.run_streams.data_id_for(run_uid, key)

    def _note_opened(self, run_uid: str, key: str, stream: Any) -> None:
        """A stream an open returned: recorded in ``run_streams`` now, or once the server has
        created it; one the server did not create in time spares the next opens their wait."""
        data_id = getattr(stream, "data_id", None)
        if not data_id and self._unanswered is None:
            self._unanswered = (stream, time.monotonic())
        if self.run_streams is None:
            return
        if data_id:
            self.run_streams.opened(run_uid, key, data_id)
        else:  # spooled under a local id: recorded once the stream keeper has created it
            self._unrecorded.append((run_uid, key, stream))

    def record_created(self) -> None:
        """Record the streams the server has created since their open returned, so a run handled
        again goes to them and not to new ones. Called by the worker between work items, and by
        ``close`` once the worker has ended; never raises."""
        if not self._unrecorded or self.run_streams is None:
            return
        waiting = []
        for run_uid, key, stream in self._unrecorded:
            try:
                data_id = stream.data_id
                if data_id:
                    self.run_streams.opened(run_uid, key, data_id)
                else:
                    waiting.append((run_uid, key, stream))
            except Exception as exc:  # noqa: BLE001 - unrecorded: a redelivery opens a duplicate
                logger.warning("stream %s of run %s not recorded: %s", key, run_uid, exc)
        self._unrecorded = deque(waiting, maxlen=UNRECORDED_KEPT)

    def close(self) -> None:
        """Close the client if the callback made it."""
        if self.owns_client and self.client is not None:
            self.client.close()
