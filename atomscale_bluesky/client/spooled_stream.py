"""What RHEED and time-series streams share: a data id on the client's spool, finalize, counters."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypeVar

from .report import StreamReport

if TYPE_CHECKING:
    from .client import AtomscaleClient

_Stream = TypeVar("_Stream", bound="SpooledStream")


class SpooledStream:
    """Base of :class:`RheedStream` and :class:`TimeseriesStream`: one stream of one client."""

    def __init__(self, client: AtomscaleClient, data_id: str) -> None:
        self._client = client
        self.data_id = data_id
        self._lock = threading.Lock()
        self._finalizing = False
        self.report: StreamReport | None = None

    def finalize(self, drain_timeout_s: float = 600.0) -> StreamReport:
        """Wait for every spooled chunk to be acknowledged, close the stream on the server, report."""
        self._finalizing = True
        self.report = self._client.finalize(self.data_id, drain_timeout_s=drain_timeout_s)
        return self.report

    def _counts(self) -> dict[str, Any]:
        """The spool's counters (reference keys), or the final report's once the stream is closed."""
        stream = self._client._spool.stream(self.data_id)
        counts: dict[str, Any] = stream.counts() if stream is not None else {}
        if not counts and self.report is not None:
            counts = self.report.as_dict()
        return counts

    def __enter__(self: _Stream) -> _Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.report is None:
            self.finalize()
