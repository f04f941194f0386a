"""What RHEED and time-series streams share: a data id on the client's spool, finalize, counters."""

from __future__ import annotations

import threading
from typing import Any, TypeVar

from .report import StreamReport
from .stream_services import StreamServices

_Stream = TypeVar("_Stream", bound="SpooledStream")


class SpooledStream:
    """Base of :class:`RheedStream` and :class:`TimeseriesStream`: one stream of one client."""

    def __init__(self, services: StreamServices, data_id: str) -> None:
        self._services = services
        self.data_id = data_id
        self._lock = threading.Lock()
        self._finalizing = False
        self.report: StreamReport | None = None

    def mark_finalizing(self) -> None:
        """Refuse further pushes: the stream is being finalized."""
        self._finalizing = True

    def finalize(self, drain_timeout_s: float = 600.0) -> StreamReport:
        """Wait for every spooled chunk to be acknowledged, close the stream on the server, report."""
        self.mark_finalizing()
        self.report = self._services.finalize(self.data_id, drain_timeout_s)
        return self.report

    def _counts(self) -> dict[str, Any]:
        """The spool's counters (reference keys), or the final report's once the stream is closed."""
        counts = self._services.counts(self.data_id)
        if not counts and self.report is not None:
            counts = self.report.as_dict()
        return counts

    def __enter__(self: _Stream) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.report is None:
            self.finalize()
