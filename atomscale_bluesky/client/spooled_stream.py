"""What RHEED and time-series streams share: a spool key, a remote id once known, finalize."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from .report import StreamReport
from .stream_services import StreamServices

_Stream = TypeVar("_Stream", bound="SpooledStream")


class SpooledStream:
    """Base of :class:`RheedStream` and :class:`TimeseriesStream`: one stream of one client."""

    def __init__(self, services: StreamServices, local_id: str) -> None:
        self._services = services
        self.local_id = local_id
        """The stream's key in the spool: always set, names its folder."""
        self._lock = threading.Lock()
        self._finalizing = False
        self.report: StreamReport | None = None

    @property
    def data_id(self) -> str | None:
        """The remote id; None while the server has not created the stream (pushes spool)."""
        return self._services.data_id(self.local_id)

    @property
    def name_for_logs(self) -> str:
        return self.data_id or self.local_id

    def wait_opened(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for the server to create the stream; True once it has."""
        return self._services.wait_opened(self.local_id, timeout)

    def mark_finalizing(self) -> None:
        """Refuse further pushes: the stream is being finalized."""
        self._finalizing = True

    def finalize(self, drain_timeout_s: float = 600.0) -> StreamReport:
        """Wait for the chunks to be acknowledged, end the stream on the server, report.

        If chunks are still pending after ``drain_timeout_s`` nothing is deleted: the report
        says ``pending`` and the client ends the stream after the last one.
        """
        self.mark_finalizing()
        if self.report is not None and self.report.finalized:
            return self.report
        self.report = self._services.finalize(self.local_id, drain_timeout_s)
        return self.report

    def _counts(self) -> dict[str, Any]:
        """The spool's counters (reference keys), or the final report's once the stream is closed."""
        counts = self._services.counts(self.local_id)
        if not counts and self.report is not None:
            counts = self.report.as_dict()
        return counts

    def __enter__(self: _Stream) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.report is None:
            self.finalize()
