"""A run's scalar channels, on the worker: readings -> batches -> its time-series stream."""

from __future__ import annotations

from typing import Any

import numpy as np

from atomscale_bluesky.callback.messages import EventRows
from atomscale_bluesky.callback.point_batcher import PointBatch, PointBatcher
from atomscale_bluesky.callback.run_context import RunContext
from atomscale_bluesky.callback.summary import ChannelSummary, TimeseriesSummary
from atomscale_bluesky.callback.values import scalar_value

__all__ = ["PointsUploader"]


class PointsUploader:
    """Batches every channel of a run and pushes batches to one time-series stream."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._points_per_chunk = ctx.options.points_per_chunk
        self._batcher = PointBatcher(
            points_per_chunk=ctx.options.points_per_chunk, max_age_s=ctx.options.point_flush_s
        )
        self.stream: Any = None
        self.chunk_points: dict[int, int] = {}  # chunk index -> points
        self._failed = False
        self.summary: TimeseriesSummary | None = None

    def add_rows(self, rows: EventRows) -> None:
        """Batch the channel readings of new event rows, each with its own hardware time.

        Columns are queued as they came; they are converted, checked and counted when their
        batch is taken (:meth:`push`).
        """
        n_rows = len(rows)
        channels = rows.route.channels
        rotation = self._ctx.facts.rotation_key
        if rotation in channels and rotation in rows.data:
            enum_strs = channels[rotation].enum_strs
            for value in rows.data[rotation][:n_rows]:
                self._ctx.facts.note_rotation(rotation, scalar_value(value, enum_strs))
        self._batcher.add_page(channels, rows.data, rows.timestamps, n_rows)
        self.push_if_due()

    def push_if_due(self) -> None:
        if self._batcher.due():
            self.push()

    def push(self) -> None:
        """Push everything batched, opening the stream on first use."""
        batch = self._batcher.take()
        self._count(batch)
        payload, n = batch.channels, batch.points
        if not payload:
            return
        summary = self._summary()
        if self.stream is None and not self._failed:
            self._open(summary, sorted(payload))
        if self.stream is None:
            summary.not_sent += n
            return
        source = "host" if self._ctx.options.ioc_clock == "host" else "hardware"
        try:
            last = self.stream.push_multi(payload, time_source=source)
        except Exception as exc:  # noqa: BLE001
            summary.not_sent += n
            self._ctx.report.error(f"push of {n} points", exc)
            return
        self.chunk_points.update(_points_per_chunk(payload, int(last), self._points_per_chunk))
        summary.batches += 1
        offset = getattr(self.stream, "last_offset_ms", None)
        if offset is not None:
            summary.clock_corrected_batches += 1
            summary.clock_correction_ms = offset
            self._ctx.report.info_once(
                "corrected:points",
                f"sensor times (declared on this computer's clock) corrected by {offset:+.0f} ms",
            )
        self._ctx.counters.add(points_pushed=n)

    def _count(self, batch: PointBatch) -> None:
        """Count a taken batch's points, once per batch (not per reading: the counters' lock)."""
        skipped = sum(batch.non_finite.values())
        if batch.points or skipped:
            self._ctx.counters.add(points_queued=batch.points, skipped_points=skipped)
        for channel in batch.non_finite:
            key = self._batcher.channels[channel].key
            self._ctx.report.warn_once(
                f"nonfinite:{key}", f"non-finite value or timestamp for {key!r} skipped (counted)"
            )

    def _open(self, summary: TimeseriesSummary, channels: list[str]) -> None:
        options = self._ctx.options
        try:
            self.stream = self._ctx.opener.open_timeseries(
                self._ctx.meta,
                name=summary.name,
                instrument_id=options.instrument_id,
                points_per_chunk=options.points_per_chunk,
            )
        except Exception as exc:  # noqa: BLE001
            self._failed = True
            summary.error = f"stream did not open: {exc}"
            self._ctx.report.error("opening the time-series stream", exc)
            return
        summary.data_id = getattr(self.stream, "data_id", None)
        self._ctx.report.info(
            "time-series stream %s opened (channels %s)",
            summary.data_id or "(spooled; created when the server answers)",
            channels,
        )

    def _summary(self) -> TimeseriesSummary:
        if self.summary is None:
            self.summary = TimeseriesSummary(name=f"{self._ctx.meta.name} (sensors)")
        return self.summary

    def finish(self) -> None:
        """Push the last batch and fill the per-channel counts of the summary."""
        try:
            self.push()
        except Exception as exc:  # noqa: BLE001
            self._ctx.report.error("flushing points", exc)
        summary = self.summary
        if summary is None:
            return
        for name, stats in self._batcher.channels.items():
            summary.channels[name] = ChannelSummary(
                name=name,
                key=stats.key,
                units=stats.units,
                points=stats.points,
                non_finite=stats.non_finite,
            )
        summary.points = sum(c.points for c in summary.channels.values()) - summary.not_sent
        summary.non_finite = sum(c.non_finite for c in summary.channels.values())


def _points_per_chunk(
    payload: dict[str, tuple[np.ndarray, np.ndarray, str | None]], last: int, per_chunk: int
) -> dict[int, int]:
    """Points in each chunk index of one ``push_multi``: every channel is cut every
    ``per_chunk`` points, and the pieces share indices ending at ``last``."""
    lengths = [len(stamps) for stamps, _, _ in payload.values()]
    pieces = max(-(-n // per_chunk) for n in lengths)
    first = last - pieces + 1
    return {
        first + k: sum(min(per_chunk, max(0, n - k * per_chunk)) for n in lengths)
        for k in range(pieces)
    }
