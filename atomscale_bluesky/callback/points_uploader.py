"""A run's scalar channels, on the worker: readings -> batches -> its time-series stream."""

from __future__ import annotations

from typing import Any

from atomscale_bluesky.callback.messages import EventRows
from atomscale_bluesky.callback.point_batcher import PointBatcher
from atomscale_bluesky.callback.run_context import RunContext
from atomscale_bluesky.callback.summary import ChannelSummary, TimeseriesSummary
from atomscale_bluesky.callback.values import as_float, row, scalar_value

__all__ = ["PointsUploader"]


class PointsUploader:
    """Batches every channel of a run and pushes batches to one time-series stream."""

    def __init__(self, ctx: RunContext) -> None:
        self._ctx = ctx
        self._points_per_chunk = ctx.options.points_per_chunk
        self._batcher = PointBatcher(
            points_per_chunk=ctx.options.points_per_chunk, max_age_s=ctx.options.point_flush_s
        )
        self._channel_keys: dict[str, str] = {}  # channel name -> data key
        self.stream: Any = None
        self.chunk_points: dict[int, int] = {}  # chunk index -> points
        self._failed = False
        self.summary: TimeseriesSummary | None = None

    def add_rows(self, rows: EventRows) -> None:
        """Batch the channel readings of new event rows, each with its own hardware time.

        Counted once per page, not per point: with many channels the counters' lock would
        otherwise be taken for every reading.
        """
        facts, report, batcher = self._ctx.facts, self._ctx.report, self._batcher
        queued = skipped = 0
        n_rows = len(rows)
        for key, channel in rows.route.channels.items():
            values = rows.data.get(key)
            if values is None:
                continue
            self._channel_keys.setdefault(channel.name, key)
            stamps = rows.timestamps.get(key)
            rotation = key == facts.rotation_key
            for i in range(min(n_rows, len(values))):
                value = scalar_value(values[i], channel.enum_strs)
                ts = as_float(row(stamps, i))
                if rotation:
                    facts.note_rotation(key, value)
                if batcher.add(channel.name, ts, value, channel.units):
                    queued += 1
                    continue
                skipped += 1
                report.warn_once(
                    f"nonfinite:{key}",
                    f"non-finite value or timestamp for {key!r} skipped (counted)",
                )
        if queued or skipped:
            self._ctx.counters.add(points_queued=queued, skipped_points=skipped)
        self.push_if_due()

    def push_if_due(self) -> None:
        if self._batcher.due():
            self.push()

    def push(self) -> None:
        """Push everything batched, opening the stream on first use."""
        payload = self._batcher.take()
        if not payload:
            return
        n = sum(len(stamps) for stamps, _, _ in payload.values())
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
                key=self._channel_keys.get(name, name),
                units=stats.units,
                points=stats.points,
                non_finite=stats.non_finite,
            )
        summary.points = sum(c.points for c in summary.channels.values()) - summary.not_sent
        summary.non_finite = sum(c.non_finite for c in summary.channels.values())


def _points_per_chunk(
    payload: dict[str, tuple[list[float], list[float], str | None]], last: int, per_chunk: int
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
