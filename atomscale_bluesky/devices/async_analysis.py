"""``AtomscaleAnalysisAsync``: the ophyd-async equivalent of :class:`AtomscaleAnalysis`.

Same signals, same stream choice (the callback's current run, or a given ``data_id``), same
result timestamps. Polling is an asyncio task on the device's event loop (httpx's async client),
started by ``stage`` and stopped by ``unstage``; ``trigger`` polls once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import httpx
from ophyd_async.core import (
    AsyncStatus,
    SignalR,
    SoftSignalBackend,
    StandardReadable,
    StandardReadableFormat,
)

from atomscale_bluesky.devices.analysis_results import (
    NO_STREAM,
    RESULT_FIELDS,
    AnalysisResult,
    ResultsFetch,
    StreamLocator,
    fetch_latest_async,
)

__all__ = ["AtomscaleAnalysisAsync"]


class _StampedBackend(SoftSignalBackend):
    """A soft signal whose readings carry the time they are about, not the time they were set."""

    def set_stamped(self, value: Any, timestamp: float) -> None:
        self.set_value(value)
        self.reading = {**self.reading, "timestamp": timestamp}  # type: ignore[typeddict-item]
        if self.callback:
            self.callback(self.reading)


def _signal(datatype: type, initial: Any) -> tuple[SignalR, _StampedBackend]:
    backend = _StampedBackend(datatype, initial)
    return SignalR(backend), backend


class AtomscaleAnalysisAsync(StandardReadable):
    """Live Atomscale RHEED analysis results as ophyd-async signals."""

    def __init__(
        self,
        callback: Any = None,
        *,
        data_id: str | None = None,
        endpoint: str | None = None,
        api_key: Any = None,
        interval: float = 0.25,
        name: str = "",
    ) -> None:
        self.locator = StreamLocator(callback, data_id=data_id, endpoint=endpoint, api_key=api_key)
        self.interval = interval
        self._backends: dict[str, _StampedBackend] = {}
        with self.add_children_as_readables(StandardReadableFormat.HINTED_SIGNAL):
            self.specular_intensity = self._make("specular_intensity", float, math.nan)
            self.oscillation_period = self._make("oscillation_period", float, math.nan)
            self.growth_rate = self._make("growth_rate", float, math.nan)
            self.monolayers = self._make("monolayers", float, math.nan)
        with self.add_children_as_readables():
            self.result_time = self._make("result_time", float, math.nan)
            self.frame_number = self._make("frame_number", int, -1)
        with self.add_children_as_readables(StandardReadableFormat.CONFIG_SIGNAL):
            self.data_id = self._make("data_id", str, "")
        self.latest: AnalysisResult | None = None
        self.message = "no poll yet"
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None
        super().__init__(name=name)

    def _make(self, key: str, datatype: type, initial: Any) -> SignalR:
        signal, backend = _signal(datatype, initial)
        self._backends[key] = backend
        return signal

    async def poll_once(self) -> ResultsFetch:
        """Fetch the latest result and update the signals."""
        data_id = self.locator.data_id()
        source = self.locator.source()
        if data_id is None or source is None:
            fetch = ResultsFetch(None, NO_STREAM)
        else:
            if self._http is None:
                self._http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
            fetch = await fetch_latest_async(self._http, source, data_id)
        self._absorb(data_id, fetch)
        return fetch

    def _absorb(self, data_id: str | None, fetch: ResultsFetch) -> None:
        self.message = fetch.message
        now = time.time()
        if (data_id or "") != self._backends["data_id"].reading["value"]:
            self.latest = None
            self._backends["data_id"].set_stamped(data_id or "", now)
            for key in (*RESULT_FIELDS, "result_time"):
                self._backends[key].set_stamped(math.nan, now)
            self._backends["frame_number"].set_stamped(-1, now)
        result = fetch.result
        if result is None:
            return
        self.latest = result
        for key in RESULT_FIELDS:
            self._backends[key].set_stamped(getattr(result, key), result.time)
        self._backends["result_time"].set_stamped(result.time, result.time)
        self._backends["frame_number"].set_stamped(result.frame_number, result.time)

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.poll_once()
            await asyncio.sleep(self.interval)

    @AsyncStatus.wrap
    async def trigger(self) -> None:
        await self.poll_once()

    @AsyncStatus.wrap
    async def stage(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    @AsyncStatus.wrap
    async def unstage(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
