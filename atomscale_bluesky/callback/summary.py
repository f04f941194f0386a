"""What a finished run's upload amounted to: per-stream records and a few human lines."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from atomscale_bluesky.callback.data_links import where_to_see
from atomscale_bluesky.callback.delivery import Delivery

if TYPE_CHECKING:
    from atomscale_bluesky.client.clock import Correction

__all__ = [
    "ChannelSummary",
    "PixelSummary",
    "RheedSummary",
    "RunCounts",
    "RunSummary",
    "TimeseriesSummary",
    "count_noun",
    "note_correction",
    "skew_text",
]

SKEW_REPORT_S = 1.0  # an IOC-to-host skew beyond this is reported


@dataclass
class PixelSummary:
    """How one camera's values became 8-bit pixels: types, bit depth and scale, each with where
    it came from (decided once per run; the counts cover all its frames)."""

    source_dtype: str  # as delivered, e.g. "<i2" over Channel Access
    read_as: str | None = None  # the type the values were read as when only the sign differs
    read_as_source: str | None = None
    read_as_guessed: bool = False
    reinterpreted_frames: int = 0  # frames whose values reading them as ``read_as`` changed
    bit_depth: int | None = None
    bit_depth_source: str | None = None
    bit_depth_guessed: bool = False
    scale_low: float | None = None  # the value that became 0
    scale_high: float | None = None  # the value that became 255
    scale_source: str | None = None
    scale_guessed: bool = False
    clipped_frames: int = 0  # frames with values outside the scale (clipped to 0 or 255)

    def notes(self) -> list[str]:
        """The fallbacks and corrections a user should know about (empty when all was declared)."""
        notes = []
        if self.read_as is not None and (self.read_as_guessed or self.reinterpreted_frames):
            how = "assumed" if self.read_as_guessed else "declared"
            notes.append(
                f"{self.source_dtype} read as {self.read_as} ({how}: {self.read_as_source}; "
                f"{count_noun(self.reinterpreted_frames, 'frame')} changed)"
            )
        scale = f"[{_value(self.scale_low)}, {_value(self.scale_high)}]"
        if self.bit_depth_guessed:
            notes.append(
                f"{self.bit_depth}-bit {self.bit_depth_source} (scale {scale}): declare bit_depth"
            )
        elif self.scale_guessed:
            notes.append(f"scale {scale} {self.scale_source}: declare pixel_range")
        if self.clipped_frames:
            notes.append(f"{count_noun(self.clipped_frames, 'frame')} clipped to {scale}")
        return notes


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
    clock_corrected_chunks: int = 0  # chunks whose host-clock start was corrected (not IOC times)
    clock_correction_ms: int | None = None  # the latest correction added to such a start
    pixels: PixelSummary | None = None  # the camera's pixel decisions (on its first stream)


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
    clock_corrected_batches: int = 0  # pushes whose timestamps were host time, corrected
    clock_correction_ms: float | None = None  # the latest correction added to them


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
    clipped_frames: int = 0  # frames with values outside their camera's pixel scale (clipped)
    empty_frames: int = 0
    shape_changes: int = 0
    skipped_arrays: int = 0  # readings of arrays that are not the RHEED camera's (not lost)
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
    ioc_clock_skew_s: float | None = None  # RunEngine host minus IOC time (median, fresh readings)
    ioc_clock_skew_readings: int = 0  # readings the skew was measured from

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
            if r.pixels is not None and r.pixels.notes():
                lines.append(f"    pixels of {r.camera}: " + "; ".join(r.pixels.notes()))
        if self.timeseries:
            ts = self.timeseries
            lines.append(
                f"  time series -> {ts.data_id or 'not opened'}: {count_noun(ts.points, 'point')}, "
                f"channels {sorted(ts.channels)}"
                + (f", {ts.non_finite} non-finite skipped" if ts.non_finite else "")
                + (f", {ts.not_sent} not sent" if ts.not_sent else "")
                + _ts_correction(ts)
                + _delivered(ts.delivery)
            )
        if self.ioc_clock_skew_s is not None and abs(self.ioc_clock_skew_s) > SKEW_REPORT_S:
            lines.append("  " + skew_text(self.ioc_clock_skew_s, self.ioc_clock_skew_readings))
        extra = [
            (self.duplicate_events, "duplicate event", "duplicate events"),
            (self.duplicate_starts, "repeated start document", "repeated start documents"),
            (self.out_of_order_events, "out-of-order event", "out-of-order events"),
            (self.orphan_events, "event before its descriptor", "events before their descriptor"),
            (self.dropped_overflow, "dropped (queue full)", "dropped (queue full)"),
            (self.rejected_frames, "rejected frame", "rejected frames"),
            (self.empty_frames, "empty image reading skipped", "empty image readings skipped"),
            (self.shape_changes, "shape change", "shape changes"),
            (
                self.skipped_arrays,
                "array reading of another device skipped",
                "array readings of other devices skipped",
            ),
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


def note_correction(summary: RheedSummary, correction: Correction | None) -> None:
    """Count a pushed chunk whose host-clock start the client corrected (None: passed through)."""
    if correction is not None:
        summary.clock_corrected_chunks += 1
        summary.clock_correction_ms = correction.offset_ms


def skew_text(skew_s: float, readings: int) -> str:
    """How far the IOCs' clocks are from the RunEngine host's, in words."""
    side = "behind" if skew_s > 0 else "ahead of"
    return (
        f"IOC clock {abs(skew_s):.1f} s {side} the RunEngine host (median of "
        f"{count_noun(readings, 'reading')}); no time is shifted by it"
    )


def _ts_correction(ts: TimeseriesSummary) -> str:
    if not ts.clock_corrected_batches or ts.clock_correction_ms is None:
        return ""
    return f", host-clock times corrected by {ts.clock_correction_ms:+.0f} ms"


def _value(value: float | None) -> str:
    """A pixel value as written: 4095, 0.5."""
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


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
    if r.clock_corrected_chunks and r.clock_correction_ms is not None:
        noted.append(
            f"{count_noun(r.clock_corrected_chunks, 'chunk')} on the host clock corrected by "
            f"{r.clock_correction_ms:+d} ms"
        )
    if r.fps_declared is not None:
        noted.append(
            f"declared {_fmt(r.fps_declared)} fps ({r.fps_declared_source}) disagrees with the "
            f"measured {_fmt(r.fps_measured)} fps: measured used"
        )
    out = ", " + ", ".join(noted) if noted else ""
    return out + (f" [{r.error}]" if r.error else "")
