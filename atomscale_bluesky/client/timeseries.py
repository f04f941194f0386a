"""One tool-state time-series stream: channels of (timestamp, value) points (protocol §6).

Unlike the reference's fire-and-forget posts, every chunk is spooled (keyed by data_id, its
channels and chunk index) and retried until acknowledged, and ``finalize`` waits for them.
Chunk indices count per channel from 0; ``push_multi`` uses one index for all its channels (the
highest next index among them). A push longer than ``points_per_chunk`` is split into several
chunks of at most that many points; the index of the last is returned. Timestamps are float Unix
seconds: on this computer's clock by default, and the current clock offset is added to each before
spooling; ``time_source="hardware"`` declares them the hardware's own (an IOC's EPICS
timestamps), which pass through unchanged.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import StreamClosedError
from .spooled_stream import SpooledStream
from .stamps import check_time_source
from .stream_services import StreamServices

__all__ = ["TimeseriesStream", "validate_channel"]

log = logging.getLogger(__name__)

Points = tuple[list[float], list[float], "str | None"]


def _as_floats(channel: str, what: str, data: Any) -> list[float]:
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"channel '{channel}': '{what}' must be a list of floats") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"channel '{channel}': '{what}' must be 1-D; got shape {arr.shape}")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(np.flatnonzero(~finite)[0])
        raise ValueError(
            f"channel '{channel}': {what}[{bad}] is {float(arr[bad])}; NaN and infinity are not allowed"
        )
    return arr.tolist()  # type: ignore[no-any-return]


def validate_channel(
    channel: Any, timestamps: Any, values: Any, units: Any
) -> tuple[str, list[float], list[float], str | None]:
    """Check one channel's points; errors name the channel and the offending index."""
    if not isinstance(channel, str) or not channel.strip():
        raise ValueError(f"channel name must be a non-empty string: {channel!r}")
    ts = _as_floats(channel, "timestamps", timestamps)
    vs = _as_floats(channel, "values", values)
    if len(ts) != len(vs):
        raise ValueError(
            f"channel '{channel}': timestamps and values must have the same length "
            f"({len(ts)} != {len(vs)})"
        )
    if units is not None and not isinstance(units, str):
        raise ValueError(f"channel '{channel}': 'units' must be a string")
    return channel, ts, vs, units


class TimeseriesStream(SpooledStream):
    """A stream opened by :meth:`AtomscaleClient.open_timeseries_stream`; thread-safe."""

    def __init__(self, services: StreamServices, local_id: str, *, points_per_chunk: int) -> None:
        super().__init__(services, local_id)
        self.points_per_chunk = points_per_chunk
        self._next: dict[str, int] = {}
        self._points = 0
        self.last_offset_ms: float | None = None
        """What was added to the latest push's timestamps, in ms (None: they passed through)."""

    def __repr__(self) -> str:
        return f"TimeseriesStream(data_id={self.data_id!r}, local_id={self.local_id!r})"

    def _check_open(self) -> None:
        if self._finalizing:
            raise StreamClosedError(
                f"stream {self.name_for_logs} was finalized; no more points can be pushed to it"
            )

    def _offset_s(self, time_source: str) -> float:
        """Seconds to add to a push's timestamps: the clock offset for host times, else 0."""
        clock = self._services.clock
        measured = clock is not None and clock.status() is not None
        if check_time_source(time_source) == "hardware" or clock is None or not measured:
            self.last_offset_ms = None
            return 0.0
        offset_ms = clock.offset_ms()
        self.last_offset_ms = offset_ms
        return offset_ms / 1000.0

    def _pieces(self, length: int) -> int:
        return max(1, math.ceil(length / self.points_per_chunk))

    def push(
        self,
        channel: str,
        timestamps: Any,
        values: Any,
        units: str | None = None,
        *,
        time_source: str = "host",
    ) -> int:
        """Spool one channel's points as one or more chunks; returns the last chunk index.

        ``time_source``: ``"host"`` (corrected by the clock offset) or ``"hardware"`` (as given).
        """
        self._check_open()
        name, ts, vs, units = validate_channel(channel, timestamps, values, units)
        offset = self._offset_s(time_source)
        ts = [t + offset for t in ts]
        pieces = self._pieces(len(ts))
        with self._lock:
            first = self._next.get(name, 0)
            self._next[name] = first + pieces
            self._points += len(ts)
        ppc = self.points_per_chunk
        for k in range(pieces):
            body: dict[str, Any] = {
                "data_id": self.data_id,
                "chunk_index": first + k,
                "channel_name": name,
                "timestamps": ts[k * ppc : (k + 1) * ppc],
                "values": vs[k * ppc : (k + 1) * ppc],
            }
            if units is not None:
                body["units"] = units
            self._spool(first + k, "/tool-state/stream/chunk", [name], body)
        return first + pieces - 1

    def push_multi(
        self, channels: Mapping[str, Sequence[Any]], *, time_source: str = "host"
    ) -> int:
        """Spool several channels sharing chunk indices; empty channels are left out.

        ``channels`` maps a name to ``(timestamps, values, units | None)``. Returns the last
        chunk index used, or -1 when every channel was empty (nothing is sent, as in the
        reference). ``time_source`` as in :meth:`push`.
        """
        self._check_open()
        if not isinstance(channels, Mapping):
            raise ValueError("channels must be a mapping of name -> (timestamps, values, units)")
        checked = []
        for name, spec in channels.items():
            if not isinstance(spec, Sequence) or len(spec) not in (2, 3):
                raise ValueError(
                    f"channel '{name}': expected (timestamps, values) or (timestamps, values, units)"
                )
            units = spec[2] if len(spec) == 3 else None
            checked.append(validate_channel(name, spec[0], spec[1], units))
        checked = sorted((c for c in checked if c[1]), key=lambda c: c[0])
        if not checked:
            return -1
        offset = self._offset_s(time_source)
        pieces = max(self._pieces(len(c[1])) for c in checked)
        with self._lock:
            first = max(self._next.get(c[0], 0) for c in checked)
            for c in checked:
                self._next[c[0]] = first + pieces
            self._points += sum(len(c[1]) for c in checked)
        ppc = self.points_per_chunk
        for k in range(pieces):
            payload: dict[str, Any] = {}
            for name, ts, vs, units in checked:
                part_ts = ts[k * ppc : (k + 1) * ppc]
                if not part_ts:
                    continue
                part: dict[str, Any] = {
                    "timestamps": [t + offset for t in part_ts] if offset else part_ts,
                    "values": vs[k * ppc : (k + 1) * ppc],
                }
                if units is not None:
                    part["units"] = units
                payload[name] = part
            body = {"data_id": self.data_id, "chunk_index": first + k, "channels": payload}
            self._spool(first + k, "/tool-state/stream/chunk/multi", sorted(payload), body)
        return first + pieces - 1

    def _spool(self, idx: int, path: str, names: list[str], body: dict[str, Any]) -> None:
        payload = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        meta = {"path": path, "channels": names, "chunk_index": idx}
        self._services.enqueue(self.local_id, idx, "timeseries", meta, payload)

    def status(self) -> dict[str, Any]:
        """Counters (reference keys) plus the number of points pushed."""
        return {
            **self._counts(),
            "data_id": self.data_id,
            "local_id": self.local_id,
            "points_pushed": self._points,
        }
