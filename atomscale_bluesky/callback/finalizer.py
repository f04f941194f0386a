"""The end of a run: finalize its streams (drain the spool) on a thread of its own, then summarise.

The worker hands a finished :class:`RunUploader` over and never touches it again, so the
finalizer thread owns it; a slow drain of one run never holds up the next run's frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, is_dataclass
from typing import Any

from atomscale_bluesky.callback.camera_uploader import Segment
from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.delivery import delivery_from_report
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.run_uploader import RunUploader
from atomscale_bluesky.callback.summary import RheedSummary, RunSummary

__all__ = ["Finalizers"]

logger = logging.getLogger(__name__)


class Finalizers:
    """Starts one finalizer thread per finished run and waits for them."""

    def __init__(
        self,
        counters: LockedCounters,
        finalize_timeout_s: float,
        publish: Callable[[RunSummary], None],
    ) -> None:
        self._counters = counters
        self._timeout_s = finalize_timeout_s
        self._publish = publish
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._finalizing = 0  # runs whose streams are still being finalized

    def start(self, run: RunUploader) -> None:
        thread = threading.Thread(
            target=self._finalize,
            args=(run,),
            name=f"atomscale-finalize-{run.uid[:8]}",
            daemon=True,
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            self._finalizing += 1
        thread.start()

    def busy(self) -> bool:
        """True while a run's streams are being finalized (until its summary is ready)."""
        with self._lock:
            return self._finalizing > 0

    def join(self, deadline: float) -> bool:
        """Wait for every finalizer until ``deadline`` (``time.monotonic``); False if one runs on."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                return False
        return True

    def _finalize(self, run: RunUploader) -> None:
        try:
            summary = self._summarise(run)
        finally:
            with self._lock:
                self._finalizing -= 1
        self._publish(summary)

    def _summarise(self, run: RunUploader) -> RunSummary:
        """Finalize every stream of the run and build its summary (logged)."""
        ctx = run.ctx
        rheed = []
        for camera in run.cameras.values():
            for segment in camera.segments:
                rheed.append(self._finalize_segment(ctx.report, camera.key, segment))
        timeseries = run.points.summary
        if timeseries is not None and run.points.stream is not None:
            stream = run.points.stream
            result = self._finalize_stream(ctx.report, stream, "time series")
            timeseries.report = result
            if result is not None:
                timeseries.delivery = delivery_from_report(result, run.points.chunk_points)
                timeseries.data_id = result.get("data_id") or stream.data_id or timeseries.data_id
        counts, error_messages, skipped, exit_status = ctx.report.snapshot()
        summary = RunSummary(
            run_uid=ctx.meta.uid,
            name=ctx.meta.name,
            plan_name=ctx.meta.plan_name,
            scan_id=ctx.meta.scan_id,
            exit_status=exit_status,
            endpoint=ctx.opener.endpoint,
            rheed=rheed,
            timeseries=timeseries,
            skipped_keys=skipped,
            error_messages=error_messages,
            ioc_clock_skew_s=run.skew.skew_s(),
            ioc_clock_skew_readings=run.skew.readings,
            **asdict(counts),
        )
        text = summary.text()
        if summary.errors or summary.status != "complete":
            logger.warning("%s", text)
        else:
            logger.info("%s", text)
        return summary

    def _finalize_segment(self, report: RunReport, camera: str, segment: Segment) -> RheedSummary:
        summary = segment.summary
        chunker = segment.chunker
        stats = chunker.stats
        summary.duplicates, summary.late, summary.missing = (
            stats.duplicates,
            stats.late,
            stats.missing,
        )
        summary.gap_events, summary.counter_resets = stats.gap_events, stats.counter_resets
        summary.stale = stats.stale
        if summary.fps is None and chunker.fps is not None:
            summary.fps, summary.fps_source = chunker.fps, chunker.fps_source
        stream = segment.stream
        if stream is not None:
            result = self._finalize_stream(report, stream, f"RHEED {camera}")
            summary.report = result
            if result is not None:
                delivery = delivery_from_report(result, segment.chunk_frames)
                summary.delivery = delivery
                summary.uploaded = result.get("uploaded")
                summary.lost_chunks = delivery.lost_chunks
                summary.data_id = result.get("data_id") or stream.data_id or summary.data_id
        return summary

    def _finalize_stream(self, report: RunReport, stream: Any, what: str) -> dict[str, Any] | None:
        data_id = getattr(stream, "data_id", "?")
        try:
            result = _as_dict(stream.finalize(drain_timeout_s=self._timeout_s))
        except Exception as exc:  # noqa: BLE001
            report.error(f"finalizing {what} {data_id}", exc)
            return None
        self._counters.add(streams_closed=1)
        lost = result.get("lost") or []
        pending = int(result.get("pending") or 0)
        report.info(
            "%s stream %s %s (%s chunks uploaded, %d pending, %d lost)",
            what,
            data_id,
            "keeps uploading from the spool" if pending else "finalized",
            result.get("uploaded", "?"),
            pending,
            len(lost),
        )
        if lost:
            report.error(f"{what} stream {data_id} lost chunks", str(lost))
        return result


def _as_dict(report: Any) -> dict[str, Any]:
    """A stream's finalize report (a dataclass, a mapping, or anything else) as a dict."""
    if report is None:
        return {}
    if is_dataclass(report) and not isinstance(report, type):
        return asdict(report)
    if isinstance(report, Mapping):
        return dict(report)
    return {"report": repr(report)}
