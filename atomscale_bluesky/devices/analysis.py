"""``AtomscaleAnalysis``: an ophyd device whose signals are a stream's live analysis results.

Signals: ``specular_intensity``, ``oscillation_period`` (s), ``growth_rate`` (monolayers/s),
``monolayers`` (since the shutter opened) and ``result_time`` (Unix s of the analysed frame), each
stamped with the analysed frame's time; ``data_id`` (configuration) names the stream. The results
are those of the RHEED stream the ``AtomscaleCallback`` opened for the current run (or of a given
``data_id``), from the cloud or a local server alike. A poller thread keeps them fresh while the
device is staged or after the first ``trigger``; ``trigger`` completes after one more poll, so
``trigger_and_read`` records the latest results in the run's documents, and ``bps.monitor`` of a
signal records each new result. ``latest`` holds the whole last result, unknown fields included.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, Signal
from ophyd.status import DeviceStatus

from atomscale_bluesky.devices.analysis_poller import ResultsPoller
from atomscale_bluesky.devices.analysis_results import (
    RESULT_FIELDS,
    AnalysisResult,
    ResultsFetch,
    StreamLocator,
)

__all__ = ["AtomscaleAnalysis", "RESULT_FIELDS"]

NAN = math.nan


class AtomscaleAnalysis(Device):
    """Live Atomscale RHEED analysis results as readable signals (see the module docstring)."""

    specular_intensity = Cpt(Signal, value=NAN, kind="hinted")
    oscillation_period = Cpt(Signal, value=NAN, kind="hinted")
    growth_rate = Cpt(Signal, value=NAN, kind="hinted")
    monolayers = Cpt(Signal, value=NAN, kind="hinted")
    result_time = Cpt(Signal, value=NAN, kind="normal")
    frame_number = Cpt(Signal, value=-1, kind="normal")
    data_id = Cpt(Signal, value="", kind="config")

    def __init__(
        self,
        callback: Any = None,
        *,
        data_id: str | None = None,
        endpoint: str | None = None,
        api_key: Any = None,
        interval: float = 0.25,
        name: str = "analysis",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.locator = StreamLocator(callback, data_id=data_id, endpoint=endpoint, api_key=api_key)
        self._lock = threading.Lock()
        self._latest: AnalysisResult | None = None
        self._message = "no poll yet"
        self._poller = ResultsPoller(self.locator, self._absorb, interval=interval)

    # -- what the poller found --------------------------------------------------------------------

    @property
    def latest(self) -> AnalysisResult | None:
        """The latest result of the current stream (None before the first)."""
        with self._lock:
            return self._latest

    @property
    def message(self) -> str:
        """Why there is no fresh result (empty when the last poll found one)."""
        with self._lock:
            return self._message

    def _absorb(self, data_id: str | None, fetch: ResultsFetch) -> None:
        with self._lock:
            self._message = fetch.message
            changed = (data_id or "") != self.data_id.get()
            if changed:
                self._latest = None
            if fetch.result is not None:
                self._latest = fetch.result
            latest = self._latest
        if changed:
            self.data_id.put(data_id or "")
            for name in RESULT_FIELDS:
                getattr(self, name).put(NAN)
            self.result_time.put(NAN)
            self.frame_number.put(-1)
        if fetch.result is not None and latest is fetch.result:
            stamp = fetch.result.time
            for name in RESULT_FIELDS:
                getattr(self, name).put(getattr(fetch.result, name), timestamp=stamp)
            self.result_time.put(stamp, timestamp=stamp)
            self.frame_number.put(fetch.result.frame_number, timestamp=stamp)

    # -- bluesky protocol -------------------------------------------------------------------------

    def trigger(self) -> DeviceStatus:
        """Done after one more poll of the results (a failed poll leaves the values as they were)."""
        status = DeviceStatus(self)
        self._poller.poke(lambda: status.set_finished())
        return status

    def stage(self) -> list[Any]:
        self._poller.start()
        return super().stage()

    def unstage(self) -> list[Any]:
        self._poller.stop()
        return super().unstage()

    def start_polling(self) -> None:
        self._poller.start()

    def stop_polling(self) -> None:
        self._poller.stop()

    def destroy(self) -> None:
        self._poller.stop()
        super().destroy()
