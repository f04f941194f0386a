"""Python client of the local server's ``/local/`` read and control API (httpx + numpy only).

Used by tests, the demo and the docs to read back what the server stored and to switch faults.
Endpoints and JSON shapes are listed in ``atomscale_bluesky.server.local_api``.
"""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np


class LocalServerError(RuntimeError):
    """The read API answered with an error status."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"local server answered HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


class LocalServerClient:
    """Read streams, frames and points from a local server; switch its faults."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers={"X-API-KEY": api_key}, timeout=timeout
        )

    def __repr__(self) -> str:
        return f"LocalServerClient({self.base_url!r}, api_key=***)"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LocalServerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise LocalServerError(response.status_code, detail)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def health(self) -> dict[str, Any]:
        return self._json("GET", "/local/health")

    def streams(self) -> list[dict[str, Any]]:
        """Every RHEED and tool-state stream with its counters."""
        return self._json("GET", "/local/streams")

    def rheed_stream(self, data_id: str) -> dict[str, Any]:
        """Name, fps, rotations_per_min, sample, project_id, tags, status, n_frames,
        missing_chunks, chunks, ..."""
        return self._json("GET", f"/local/rheed/{data_id}")

    def chunk_times(self, data_id: str) -> list[dict[str, Any]]:
        """Per chunk: idx, n_frames, offset (first frame in ``frames()``), dims,
        start/end_unix_ms_utc, clock_offset/uncertainty_ms, uploads, received_at."""
        return self._json("GET", f"/local/rheed/{data_id}/chunks")

    def frames(self, data_id: str, start: int | None = None, stop: int | None = None) -> np.ndarray:
        """Frames [start, stop) of a stream as an (N, H, W) uint8 array, dense in chunk order.

        Frames of a chunk not received yet (see ``missing_chunks`` in ``rheed_stream``) are zeros.
        """
        params = {k: v for k, v in (("start", start), ("stop", stop)) if v is not None}
        response = self._request("GET", f"/local/rheed/{data_id}/frames", params=params)
        shape = tuple(int(s) for s in response.headers["x-shape"].split(","))
        return np.frombuffer(response.content, dtype=np.uint8).reshape(shape).copy()

    def timeseries(self, data_id: str) -> dict[str, Any]:
        """Summary of a tool-state stream; ``channels`` maps name -> {units, count, first, last}."""
        return self._json("GET", f"/local/timeseries/{data_id}")

    def points(self, data_id: str, channel: str) -> tuple[np.ndarray, np.ndarray, str | None]:
        """(timestamps in Unix s, values, units) of one channel, in chunk order."""
        doc = self._json("GET", f"/local/timeseries/{data_id}/points", params={"channel": channel})
        values = np.array([np.nan if v is None else v for v in doc["values"]], dtype=float)
        return np.asarray(doc["timestamps"], dtype=float), values, doc["units"]

    def samples(self) -> list[dict[str, Any]]:
        return self._json("GET", "/local/samples")

    def tags(self) -> list[dict[str, Any]]:
        return self._json("GET", "/local/tags")

    def projects(self) -> list[dict[str, Any]]:
        return self._json("GET", "/local/projects")

    def faults(self) -> dict[str, Any]:
        """Current fault switches, seconds left in an outage window, and injected counts."""
        return self._json("GET", "/local/faults")

    def set_faults(self, **switches: Any) -> dict[str, Any]:
        """Change fault switches (names as in faults.Faults); others keep their values."""
        return self._json("PUT", "/local/faults", json=switches)

    def clear_faults(self) -> dict[str, Any]:
        return self._json("DELETE", "/local/faults")

    def advance_clock(self, seconds: float) -> dict[str, float]:
        """Move the server's clock forward (streams silent past its idle limit get closed)."""
        return self._json("POST", "/local/clock/advance", json={"seconds": seconds})
