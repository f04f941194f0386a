"""What a finished run's upload amounted to: per-stream records and a few human lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from atomscale_bluesky.callback.data_links import where_to_see
from atomscale_bluesky.callback.delivery import Delivery

__all__ = [
    "ChannelSummary",
    "RheedSummary",
    "RunCounts",
    "RunSummary",
    "TimeseriesSummary",
    "count_noun",
]


@dataclass
class RheedSummary:
    """One RHEED stream of a run (one camera, one frame shape)."""

    camera: str
    name: str
    data_id: str | None = None
    frame_shape: tuple[int, int] | None = None
    fps: float | None = None
    fps_source: str | None = None
    fps_measured: float | None = None  # the cadence measured from hardware times
    fps_declared: float | None = None  # a declared fps that lost against the measured cadence
    fps_declared_source: str | None = None  # where that declared fps came from (AcquirePeriod)
    rotations_per_min: float = 0.0
    chunk_size: int | None = None
    frames: int = 0  # frames pushed
    chunks: int = 0
    duplicates: int = 0
    late: int = 0
    missing: int = 0  # frames absent from the camera's sequence (counter/timestamp gaps)
    gap_events: int = 0
    counter_resets: int = 0  # acquisition restarts (the frame counter went back)
    stale: int = 0  # a monitor's pre-subscription value followed by a pause or restart: not sent
    wall_clock_frames: int = 0  # frames without a hardware time, stamped on the callback's host
    rejected: int = 0  # bad frames (too big, not normalisable, wrong shape)
    dtype_changes: int = 0
    external_failed: int = 0
    not_sent: int = 0  # frames that never reached the client (stream failed to open or push failed)
    first_ts: float | None = None
    last_ts: float | None = None
    uploaded: int | None = None  # chunks acknowledged, from the client's StreamReport
    lost_chunks: int | None = None
    delivery: Delivery | None = None  # frames stored, pending, lost (from the client's report)
    report: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ChannelSummary:
    name: str
    key: str
    units: str | None
    points: int = 0
    non_finite: int = 0


@dataclass
class TimeseriesSummary:
    name: str
    data_id: str | None = None
    channels: dict[str, ChannelSummary] = field(default_factory=dict)
    points: int = 0
    non_finite: int = 0
    batches: int = 0
    not_sent: int = 0
    delivery: Delivery | None = None  # points stored, pending, lost (from the client's report)
    report: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class RunCounts:
    """Per-run counts of the documents and data the intake and the worker saw."""

    events: int = 0
    duplicate_events: int = 0
    duplicate_starts: int = 0
    out_of_order_events: int = 0
    orphan_events: int = 0
    dropped_overflow: int = 0
    rejected_frames: int = 0
    empty_frames: int = 0
    shape_changes: int = 0
    errors: int = 0


@dataclass(kw_only=True)
class RunSummary(RunCounts):
    """Everything a user wants to know about one run's upload, kept in ``callback.summaries``."""

    run_uid: str
    name: str
    plan_name: str | None = None
    scan_id: Any = None
    exit_status: str | None = None  # from the stop document, or "no stop document"
    endpoint: str | None = None
    rheed: list[RheedSummary] = field(default_factory=list)
    timeseries: TimeseriesSummary | None = None
    skipped_keys: dict[str, str] = field(default_factory=dict)
    error_messages: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.rheed)

    @property
    def chunks(self) -> int:
        return sum(r.chunks for r in self.rheed)

    @property
    def points(self) -> int:
        return self.timeseries.points if self.timeseries else 0

    @property
    def missing(self) -> int:
        return sum(r.missing for r in self.rheed)

    def _deliveries(self) -> list[Delivery]:
        found = [r.delivery for r in self.rheed if r.delivery is not None]
        if self.timeseries is not None and self.timeseries.delivery is not None:
            found.append(self.timeseries.delivery)
        return found

    @property
    def lost(self) -> int:
        """Frames and points that should have reached the server and never will.

        The sum of frames never sent (push failed), unreadable external frames, events dropped
        when the queue was full, rejected frames (undecodable, wrong shape, size unknown, too big),
        points not sent, and the frames and points of chunks the client lost with a reason
        (dropped by a full spool, refused by the backend); each count is kept separately as well.
        Stale pre-run frames and empty image readings are not frames of the run, so not lost.
        """
        frames_lost = sum(r.not_sent + r.external_failed for r in self.rheed)
        points_lost = self.timeseries.not_sent if self.timeseries else 0
        in_chunks = sum(d.lost for d in self._deliveries())
        return frames_lost + points_lost + self.dropped_overflow + self.rejected_frames + in_chunks

    @property
    def pending(self) -> int:
        """Frames and points still in the spool: they upload later (or with ``drain``)."""
        return sum(d.pending for d in self._deliveries())

    @property
    def stored(self) -> int:
        """Frames and points the server acknowledged."""
        return sum(d.stored for d in self._deliveries())

    @property
    def status(self) -> str:
        """``complete`` (all stored), ``pending`` (the rest still spooled) or ``incomplete``."""
        if self.lost:
            return "incomplete"
        return "pending" if self.pending else "complete"

    @property
    def auth_paused_s(self) -> float:
        """Seconds uploads of this run waited on authentication (401/403)."""
        return max((d.auth_paused_s for d in self._deliveries()), default=0.0)

    @property
    def data_ids(self) -> list[str]:
        """Every stream of the run, continuation parts included."""
        ids = []
        for r in self.rheed:
            ids += ([r.data_id] if r.data_id else []) + (r.delivery.parts if r.delivery else [])
        if self.timeseries and self.timeseries.data_id:
            ids.append(self.timeseries.data_id)
        return ids

    def _ids_by_kind(self) -> tuple[list[str], list[str]]:
        """The RHEED streams' data ids (continuation parts included), the time series' ids."""
        rheed = [i for i in self.data_ids if not self.timeseries or i != self.timeseries.data_id]
        series = [self.timeseries.data_id] if self.timeseries and self.timeseries.data_id else []
        return rheed, series

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            frames=self.frames,
            chunks=self.chunks,
            points=self.points,
            missing=self.missing,
            lost=self.lost,
            pending=self.pending,
            stored=self.stored,
            status=self.status,
            data_ids=self.data_ids,
        )
        return out

    def text(self) -> str:
        """A few human lines: totals, each stream with its data id, and every problem counted."""
        channels = (
            f" in {count_noun(len(self.timeseries.channels), 'channel')}" if self.timeseries else ""
        )
        head = (
            f"Atomscale run {self.run_uid[:8]} '{self.name}' ({self.exit_status or 'open'}): "
            f"{count_noun(self.frames, 'frame')} in {count_noun(self.chunks, 'chunk')}, "
            f"{count_noun(self.points, 'point')}{channels}, "
            f"{self.missing} missing from camera sequence, {self.lost} lost, "
            f"{self.pending} pending, {count_noun(self.errors, 'error')}; {self.status.upper()}"
        )
        lines = [head]
        if self.status == "pending":
            lines.append(
                "  frames or points still wait in the spool: they upload while this process "
                "runs; after a restart, run `atomscale-bluesky drain`"
            )
        if self.auth_paused_s:
            lines.append(
                f"  uploads paused {self.auth_paused_s:.0f} s on authentication errors (401/403)"
            )
        for r in self.rheed:
            lines.append(
                f"  RHEED {r.camera} -> {r.data_id or 'not opened'}: {count_noun(r.frames, 'frame')}/"
                f"{count_noun(r.chunks, 'chunk')}, {r.frame_shape}, {_fmt(r.fps)} fps "
                f"({r.fps_source}), {_fmt(r.rotations_per_min)} rpm"
                + _problems(r)
                + _delivered(r.delivery)
            )
        if self.timeseries:
            ts = self.timeseries
            lines.append(
                f"  time series -> {ts.data_id or 'not opened'}: {count_noun(ts.points, 'point')}, "
                f"channels {sorted(ts.channels)}"
                + (f", {ts.non_finite} non-finite skipped" if ts.non_finite else "")
                + (f", {ts.not_sent} not sent" if ts.not_sent else "")
                + _delivered(ts.delivery)
            )
        extra = [
            (self.duplicate_events, "duplicate event", "duplicate events"),
            (self.duplicate_starts, "repeated start document", "repeated start documents"),
            (self.out_of_order_events, "out-of-order event", "out-of-order events"),
            (self.orphan_events, "event before its descriptor", "events before their descriptor"),
            (self.dropped_overflow, "dropped (queue full)", "dropped (queue full)"),
            (self.rejected_frames, "rejected frame", "rejected frames"),
            (self.empty_frames, "empty image reading skipped", "empty image readings skipped"),
            (self.shape_changes, "shape change", "shape changes"),
        ]
        noted = [count_noun(n, one, many) for n, one, many in extra if n]
        if noted:
            lines.append("  " + ", ".join(noted))
        if self.skipped_keys:
            lines.append(f"  not uploaded (by design): {sorted(self.skipped_keys)}")
        where = where_to_see(self.endpoint, *self._ids_by_kind())
        if where:
            lines.append(f"  {where}")
        lines.extend(f"  error: {m}" for m in self.error_messages[:5])
        return "\n".join(lines)


def _delivered(delivery: Delivery | None) -> str:
    """`` [stored n, pending m, lost k: reason]`` when anything is not stored yet."""
    if delivery is None or not (delivery.pending or delivery.lost or delivery.parts):
        return ""
    text = f" [stored {delivery.stored}, pending {delivery.pending}, lost {delivery.lost}"
    if delivery.lost_reasons:
        text += ": " + "; ".join(delivery.lost_reasons)
    if delivery.parts:
        text += f"; continued as {', '.join(delivery.parts)}"
    return text + "]"


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{value:.3g}"


def count_noun(n: int, one: str, many: str | None = None) -> str:
    """``1 frame``, ``2 frames``: a count with its noun in the right number."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _problems(r: RheedSummary) -> str:
    parts = [
        (r.duplicates, "duplicate", None),
        (r.late, "late", "late"),
        (r.missing, "missing", "missing"),
        (r.counter_resets, "counter reset", None),
        (r.stale, "stale pre-run frame left out", "stale pre-run frames left out"),
        (
            r.wall_clock_frames,
            "frame without hardware time (host clock used)",
            "frames without hardware time (host clock used)",
        ),
        (r.rejected, "rejected", "rejected"),
        (r.dtype_changes, "dtype change", None),
        (r.external_failed, "external failed", "external failed"),
        (r.not_sent, "not sent", "not sent"),
        (r.lost_chunks or 0, "lost chunk", None),
    ]
    noted = [count_noun(n, one, many) for n, one, many in parts if n]
    if r.fps_declared is not None:
        noted.append(
            f"declared {_fmt(r.fps_declared)} fps ({r.fps_declared_source}) disagrees with the "
            f"measured {_fmt(r.fps_measured)} fps: measured used"
        )
    out = ", " + ", ".join(noted) if noted else ""
    return out + (f" [{r.error}]" if r.error else "")
