"""Atomscale analysis results: fetching ``GET rheed/timeseries/{data_id}/`` and parsing points.

Shared by the ophyd and ophyd-async ``AtomscaleAnalysis`` devices. The parser reads the keys
this package knows (the SDK's, plus ``growth_rate`` and ``monolayers``) and keeps every other
field of a point in ``extra``, so results the cloud returns in shapes the local server does not
produce are passed through, not dropped. A 404 is "no results yet" with the server's reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from atomscale_bluesky.client.config import check_endpoint

__all__ = [
    "NO_STREAM",
    "RESULT_FIELDS",
    "AnalysisResult",
    "ResultsFetch",
    "ResultsSource",
    "fetch_latest",
    "fetch_latest_async",
    "interpret",
    "latest_result",
    "parse_points",
]

KNOWN = (
    "unix_timestamp_ms",
    "frame_number",
    "specular_intensity",
    "oscillation_period",
    "growth_rate",
    "monolayers",
)
# the values both devices publish as hinted signals
RESULT_FIELDS = ("specular_intensity", "oscillation_period", "growth_rate", "monolayers")
NO_STREAM = "the run has no RHEED stream on the server yet"


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


@dataclass(frozen=True)
class AnalysisResult:
    """One analysed frame: its capture time (Unix s) and values (NaN when not given)."""

    time: float
    frame_number: int
    specular_intensity: float = math.nan
    oscillation_period: float = math.nan
    growth_rate: float = math.nan
    monolayers: float = math.nan
    angle: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # every other field, as received

    @property
    def rate(self) -> float:
        """Monolayers per second: the growth rate, else one per oscillation period."""
        if math.isfinite(self.growth_rate):
            return self.growth_rate
        if math.isfinite(self.oscillation_period) and self.oscillation_period > 0:
            return 1.0 / self.oscillation_period
        return math.nan


def parse_points(payload: Any) -> list[AnalysisResult]:
    """Every point of a ``{"series_by_angle": [{"angle", "series": [...]}, ...]}`` payload."""
    out: list[AnalysisResult] = []
    if not isinstance(payload, Mapping):
        return out
    for block in payload.get("series_by_angle") or []:
        if not isinstance(block, Mapping):
            continue
        angle = _number(block.get("angle"))
        block_extra = {k: v for k, v in block.items() if k not in ("series", "angle")}
        for point in block.get("series") or []:
            if not isinstance(point, Mapping):
                continue
            ms = _number(point.get("unix_timestamp_ms"))
            frame = _number(point.get("frame_number"))
            extra = {k: v for k, v in point.items() if k not in KNOWN}
            extra.update({f"block.{k}": v for k, v in block_extra.items()})
            growth_rate = _number(point.get("growth_rate"))
            out.append(
                AnalysisResult(
                    time=ms / 1000.0 if math.isfinite(ms) else math.nan,
                    frame_number=int(frame) if math.isfinite(frame) else -1,
                    specular_intensity=_number(point.get("specular_intensity")),
                    oscillation_period=_number(point.get("oscillation_period")),
                    growth_rate=growth_rate,
                    monolayers=_number(point.get("monolayers")),
                    angle=angle if math.isfinite(angle) else None,
                    extra=extra,
                )
            )
    return out


def latest_result(points: list[AnalysisResult]) -> AnalysisResult | None:
    """The most recent point (by time, then frame number)."""
    timed = [p for p in points if math.isfinite(p.time)]
    if not timed:
        return None
    return max(timed, key=lambda p: (p.time, p.frame_number))


@dataclass(frozen=True)
class ResultsFetch:
    """The outcome of one poll: the latest result (None when there is none) and why not."""

    result: AnalysisResult | None
    message: str = ""
    status_code: int | None = None


@dataclass(frozen=True)
class ResultsSource:
    """Where results are polled: the endpoint and key of the callback's client, or given."""

    endpoint: str
    api_key: Any = field(repr=False)  # str or ApiKey

    def headers(self) -> dict[str, str]:
        key = self.api_key.reveal() if hasattr(self.api_key, "reveal") else str(self.api_key)
        return {"X-API-KEY": key}

    def url(self, data_id: str) -> str:
        return f"{self.endpoint.rstrip('/')}/rheed/timeseries/{data_id}/"


def fetch_latest(
    http: httpx.Client, source: ResultsSource, data_id: str, last_n: int = 1
) -> ResultsFetch:
    """One poll of the results endpoint (synchronous; call it off the RunEngine thread)."""
    try:
        response = http.get(
            source.url(data_id), params={"last_n": last_n}, headers=source.headers()
        )
    except httpx.HTTPError as exc:
        return _request_failed(exc)
    return interpret(response, data_id)


async def fetch_latest_async(
    http: httpx.AsyncClient, source: ResultsSource, data_id: str, last_n: int = 1
) -> ResultsFetch:
    """One poll of the results endpoint on an event loop (the ophyd-async device's)."""
    try:
        response = await http.get(
            source.url(data_id), params={"last_n": last_n}, headers=source.headers()
        )
    except httpx.HTTPError as exc:
        return _request_failed(exc)
    return interpret(response, data_id)


def _request_failed(exc: httpx.HTTPError) -> ResultsFetch:
    """A request that got no answer (the message names the error; headers are never shown)."""
    return ResultsFetch(None, f"results request failed: {type(exc).__name__}: {exc}")


def interpret(response: httpx.Response, data_id: str) -> ResultsFetch:
    """Turn a results response into a fetch outcome (404 = none yet, with the server's reason)."""
    if response.status_code == 404:
        try:
            detail = response.json().get("detail")
        except (ValueError, AttributeError):
            detail = None
        return ResultsFetch(None, f"no results for stream {data_id} yet: {detail or 'none'}", 404)
    if response.status_code >= 400:
        return ResultsFetch(
            None, f"results request answered HTTP {response.status_code}", response.status_code
        )
    try:
        payload = response.json()
    except ValueError:
        return ResultsFetch(None, "results response is not JSON", response.status_code)
    latest = latest_result(parse_points(payload))
    message = "" if latest is not None else f"no results for stream {data_id} yet"
    return ResultsFetch(latest, message, response.status_code)


class StreamLocator:
    """Which stream's results to read and from where.

    With ``callback`` (an ``AtomscaleCallback``) the stream is the latest RHEED stream the
    callback opened for the latest run it saw start, and the endpoint and key are its client's;
    ``data_id``, ``endpoint`` and ``api_key`` fix them instead (e.g. a stream another program
    opened in the cloud). The client's key goes only to the client's own origin: an
    ``endpoint`` elsewhere needs its own ``api_key``. A plain ``http://`` endpoint on another
    host is refused as the client refuses it.
    """

    def __init__(
        self,
        callback: Any = None,
        *,
        data_id: str | None = None,
        endpoint: str | None = None,
        api_key: Any = None,
    ) -> None:
        if callback is None and data_id is None:
            raise ValueError("give the AtomscaleCallback whose stream to follow, or a data_id")
        if endpoint is not None:
            endpoint = endpoint.strip().rstrip("/")
            check_endpoint(endpoint)
        self.callback = callback
        self.fixed_data_id = data_id
        self.endpoint = endpoint
        self.api_key = api_key

    def __repr__(self) -> str:
        return f"StreamLocator(data_id={self.fixed_data_id!r}, endpoint={self.endpoint!r})"

    def data_id(self) -> str | None:
        if self.fixed_data_id is not None:
            return self.fixed_data_id
        ids = self.callback.rheed_data_ids()
        return ids[-1] if ids else None

    def source(self) -> ResultsSource | None:
        endpoint, key = self.endpoint, self.api_key
        client = getattr(self.callback, "client", None)
        config = getattr(client, "config", None)
        if config is not None:
            if key is None and (endpoint is None or _origin(endpoint) == _origin(config.endpoint)):
                key = config.api_key
            endpoint = endpoint or config.endpoint
        if endpoint is None or key is None:
            return None
        return ResultsSource(endpoint, key)


def _origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port of a URL: where a request goes (the key stays with its origin)."""
    parts = httpx.URL(url)
    return parts.scheme, parts.host, parts.port
