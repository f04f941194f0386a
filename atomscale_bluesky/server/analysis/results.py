"""The analysis results of one stream, kept as compact columns, served in the SDK's shape.

``GET /rheed/timeseries/{data_id}/`` answers ``{"series_by_angle": [{"angle", "view_id",
"series": [point, ...]}], "analysis": {...}}``: one block (a parked stream has one view), one
point per analysed frame with the SDK's keys ``time_seconds`` (since the stream's first frame),
``relative_time_seconds`` (since the shutter opened; null when unknown), ``unix_timestamp_ms``,
``frame_number``, ``specular_intensity`` (window mean, fraction of full scale) and
``oscillation_period`` (s), plus ``growth_rate`` (monolayers/s) and ``monolayers`` (since the
shutter opened), which the SDK keeps as extra columns. ``analysis`` (ignored by the SDK) says
what the server found: the spot, frames analysed, whether an oscillation is detected.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["FrameResults", "StreamResults", "PROPERTIES"]

PROPERTIES = ("specular_intensity", "oscillation_period", "growth_rate", "monolayers")
IDENTITY = ("time_seconds", "relative_time_seconds", "unix_timestamp_ms", "frame_number")


@dataclass(frozen=True)
class FrameResults:
    """The results of a batch of consecutive frames (NaN where a value is not known)."""

    frame_numbers: Sequence[int]
    unix_s: Sequence[float]
    specular_intensity: Sequence[float]
    oscillation_period: Sequence[float]
    growth_rate: Sequence[float]
    monolayers: Sequence[float]
    since_open_s: Sequence[float]


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


class StreamResults:
    """Columns of per-frame results of one stream, appended by the worker, read by requests."""

    def __init__(self, data_id: str, azimuth_label: str | None = None) -> None:
        self.data_id = data_id
        self.azimuth_label = azimuth_label
        self._lock = threading.Lock()
        self._frame = array("q")
        self._unix = array("d")
        self._columns = {name: array("d") for name in (*PROPERTIES, "since_open")}
        self.status: dict[str, Any] = {"frames_analysed": 0}

    def __len__(self) -> int:
        return len(self._frame)

    def append(self, batch: FrameResults) -> None:
        with self._lock:
            self._frame.extend(int(n) for n in batch.frame_numbers)
            self._unix.extend(float(t) for t in batch.unix_s)
            for name in PROPERTIES:
                self._columns[name].extend(float(v) for v in getattr(batch, name))
            self._columns["since_open"].extend(float(v) for v in batch.since_open_s)
            self.status["frames_analysed"] = len(self._frame)

    def update_status(self, **fields: Any) -> None:
        with self._lock:
            self.status.update(fields)

    def response(
        self,
        *,
        last_n: int | None = None,
        elapsed_seconds: float | None = None,
        property_names: Sequence[str] | None = None,
        low_level: bool = False,
    ) -> dict[str, Any]:
        """The SDK's response shape for the selected points (all, the last n, the last seconds)."""
        with self._lock:
            n = len(self._frame)
            lo = 0
            if n and elapsed_seconds is not None:
                lo = bisect.bisect_left(self._unix, self._unix[n - 1] - elapsed_seconds)
            if last_n is not None:
                lo = max(lo, n - max(0, last_n))
            t0 = self._unix[0] if n else 0.0
            names = [p for p in PROPERTIES if not property_names or p in property_names]
            series = []
            for i in range(lo, n):
                point: dict[str, Any] = {
                    "time_seconds": self._unix[i] - t0,
                    "relative_time_seconds": _num(self._columns["since_open"][i]),
                    "unix_timestamp_ms": self._unix[i] * 1000.0,
                    "frame_number": self._frame[i],
                }
                for name in names:
                    point[name] = _num(self._columns[name][i])
                if low_level:
                    point["low_level_features"] = {"spot": self.status.get("spot")}
                series.append(point)
            status = dict(self.status)
        block: dict[str, Any] = {"angle": 0.0, "view_id": 0, "series": series}
        if self.azimuth_label:
            block["azimuth_label"] = self.azimuth_label
        return {"series_by_angle": [block], "analysis": status}
