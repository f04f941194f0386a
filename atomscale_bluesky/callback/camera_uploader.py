"""One camera of a run, on the worker: frames -> uint8 stacks -> chunks -> its RHEED stream(s).

A camera is one frame data key. Its frames are shaped, turned into 8-bit pixels by one scale
fixed for the run (:mod:`~atomscale_bluesky.callback.pixel_converter`), timed
(:mod:`~atomscale_bluesky.callback.frame_times`: every frame's hardware time and the measured
frame rate), ordered and chunked by hardware time
(:mod:`~atomscale_bluesky.callback.frame_chunker`), and pushed to a RHEED stream opened when the
frame rate is known. A change of frame shape starts a new segment (a new
stream, "part 2"); flat frames wait, bounded, until their height and width are known.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomscale_bluesky import frames as frame_rule
from atomscale_bluesky.callback.frame_chunker import CameraChunker, Chunk
from atomscale_bluesky.callback.frame_gaps import FrameSequence
from atomscale_bluesky.callback.frame_times import FrameTimer, TimedFrames
from atomscale_bluesky.callback.options import MiB
from atomscale_bluesky.callback.pixel_converter import PixelConverter
from atomscale_bluesky.callback.pixel_format import PixelDeclaration
from atomscale_bluesky.callback.routing import FrameKey
from atomscale_bluesky.callback.run_context import RunContext
from atomscale_bluesky.callback.summary import RheedSummary, note_correction

__all__ = ["HELD_MAX_BYTES", "CameraUploader", "Segment"]

logger = logging.getLogger(__name__)

HELD_MAX_BYTES = 64 * MiB  # flat frames held per camera until their height and width are known


@dataclass
class Segment:
    """One RHEED stream: a camera's frames of one shape."""

    chunker: CameraChunker
    summary: RheedSummary
    stream: Any = None
    failed: bool = False
    chunk_frames: dict[int, int] = field(default_factory=dict)  # chunk index -> frames


@dataclass
class _Held:
    """A flat frame waiting for its camera's height and width (``ArraySize0/1`` readings)."""

    fkey: FrameKey
    raw: np.ndarray
    stamps: list[float]
    counters: list[int | None] | None
    continuous: bool
    initial: bool
    host_timed: bool = False


@dataclass(frozen=True)
class _Timing:
    """What a reading's frames carry to the timer while their pixel scale may still be decided."""

    fkey: FrameKey
    stamps: list[float]
    counters: list[int | None] | None
    continuous: bool
    initial: bool
    host_timed: bool = False  # stamps taken on a host's clock (RunEngine event times), not an IOC's


class CameraUploader:
    """Frames of one data key of one run, to one RHEED stream per frame shape."""

    def __init__(self, key: str, ctx: RunContext) -> None:
        self.key = key
        self._ctx = ctx
        self.sequence = FrameSequence()
        self.timer = FrameTimer(fixed=ctx.options.overrides.fps)
        self.pixels: PixelConverter[_Timing] = PixelConverter(key, ctx.report)
        self._pixels_key: FrameKey | None = None  # the frame key of the latest frames converted
        self.fkey: FrameKey | None = None
        self.counter_key: str | None = None  # the monitor stream's counter its frames match
        self.segments: list[Segment] = []
        self.frame_shape: tuple[int, int] | None = None
        self._dtype: str | None = None
        self._held: collections.deque[_Held] = collections.deque()
        self._held_bytes = 0
        self._size_keys: tuple[str, str] | None = None  # (width, height) readings shaping frames
        self._timed_key: FrameKey | None = None  # the frame key of the frames the timer holds

    @property
    def current(self) -> Segment:
        return self.segments[-1]

    # -- set-up -----------------------------------------------------------------------------------
    def bind(self, fkey: FrameKey, continuous: bool) -> None:
        """Remember the camera's first frame key; a monitored camera looks for its counter."""
        if self.fkey is None:
            self.fkey = fkey
            if continuous:
                self.link_counter()

    def link_counter(self) -> None:
        """Match a monitored camera's frames to the counter stream of the same camera, if any."""
        fkey = self.fkey
        if self.counter_key is not None or fkey is None or fkey.counter_key is not None:
            return
        counter = self._ctx.facts.counter_for(fkey)
        if counter is None:
            return
        self.counter_key = counter.key
        self.sequence.feed = self._ctx.facts.counter_feed(counter.key)
        logger.debug(
            "Atomscale: %s: frames of %s are counted by %s",
            self._ctx.report.prefix,
            self.key,
            counter.key,
        )

    def resolve_gaps(self) -> None:
        """Count frames missing so far, now that more counter readings may be known."""
        if self.segments:
            self.sequence.resolve(self.current.chunker.fps)

    # -- frames -----------------------------------------------------------------------------------
    def add_frames(
        self,
        fkey: FrameKey,
        value: Any,
        stamps: list[float],
        counters: list[int | None] | None,
        continuous: bool,
        *,
        initial: bool = False,
        host_timed: bool = False,
    ) -> None:
        """Normalise one reading's array and time its frames; push full chunks.

        ``stamps`` holds one hardware time per frame, or the last frame's for the whole reading;
        ``initial`` marks a monitor's first reading (its value from before the subscription);
        ``host_timed`` says the stamps are a host's clock, so they are clock-corrected.
        """
        report = self._ctx.report
        raw = np.asarray(value)
        if raw.ndim == 1 and raw.size == 0:
            # an empty waveform: the camera published no image yet (NORD 0), so nothing is lost
            report.add(empty_frames=1)
            report.info_once(f"empty:{self.key}", f"{self.key}: empty image reading skipped")
            return
        shape = self._ctx.facts.declared_shape(fkey)
        if raw.ndim == 1 and raw.dtype.kind in "uif":
            shape = self._flat_shape(fkey, raw.size)
            if shape is None:
                self._hold(_Held(fkey, raw, stamps, counters, continuous, initial, host_timed))
                return
        self.release_if_shaped()  # frames that waited come first
        self._note_dtype(fkey, raw.dtype.str)
        try:
            stack = frame_rule.frame_layout(raw, shape if raw.ndim == 1 else None)
            timing = _Timing(fkey, stamps, counters, continuous, initial, host_timed)
            self._pixels_key = fkey
            ready = self.pixels.add(stack, timing, lambda: self._declared_pixels(fkey))
        except (ValueError, TypeError) as exc:
            self.reject(1, f"cannot normalise frame {raw.shape} {raw.dtype}: {exc}")
            return
        for frames, ready_timing in ready:
            self._time(frames, ready_timing)

    def _time(self, stack: np.ndarray, timing: _Timing) -> None:
        """uint8 frames to the timer; the frames it has timed to their chunks."""
        self._timed_key = timing.fkey
        if self.timer.cadence is None:
            self.timer.declared, self.timer.declared_source = self._declared_fps(timing.fkey)
        timed = self.timer.add(
            stack,
            timing.stamps,
            timing.counters,
            continuous=timing.continuous,
            initial=timing.initial,
            host_timed=timing.host_timed,
        )
        for frames in timed:
            self._chunk(timing.fkey, frames)

    def _chunk(self, fkey: FrameKey, timed: TimedFrames) -> None:
        """Timed frames to their segment's chunker (a new segment on a new frame shape)."""
        stack = timed.stack
        frame_shape = (int(stack.shape[1]), int(stack.shape[2]))
        if self.frame_shape is not None and frame_shape != self.frame_shape:
            self._new_segment(fkey, frame_shape)
        self.frame_shape = frame_shape
        segment = self.summary_segment(fkey)
        if segment.stream is None and not segment.failed and segment.chunker.fps:
            self._open(segment)  # before its first frames, so they are compressed as they arrive
        chunks = segment.chunker.add(
            stack,
            timed.stamps,
            timed.counters,
            continuous=timed.continuous,
            host_timed=timed.host_timed,
        )
        self._push(segment, chunks)

    def _note_dtype(self, fkey: FrameKey, dtype: str) -> None:
        if self._dtype is not None and dtype != self._dtype:
            self.summary_segment(fkey).summary.dtype_changes += 1
            self._ctx.report.warn_once(
                f"dtype:{self.key}:{dtype}", f"{self.key}: dtype changed to {dtype}"
            )
        self._dtype = dtype

    def _declared_pixels(self, fkey: FrameKey) -> PixelDeclaration:
        """What the user, the camera's configuration and the data key declare about its pixels."""
        ctx = self._ctx
        return ctx.facts.declared_pixels(
            fkey, ctx.options.pixels, ctx.options.overrides.bit_depth, ctx.meta.bit_depth
        )

    def reject(self, n: int, why: str) -> None:
        if self.segments:
            self.current.summary.rejected += n
        self._ctx.report.add(rejected_frames=n)
        self._ctx.report.warn_once(
            f"reject:{self.key}:{why[:40]}", f"{self.key}: {why}; rejected (counted)"
        )

    def note_external_failed(self, fkey: FrameKey, n: int = 1) -> None:
        """``n`` frames in files that could not be read: lost."""
        self.summary_segment(fkey).summary.external_failed += n
        self._ctx.counters.add(external_failed=n)

    # -- flat frames whose size is not known yet --------------------------------------------------
    def _flat_shape(self, fkey: FrameKey, size: int) -> tuple[int, int] | None:
        """(H, W) of a flat frame of ``size`` values: the first that fits it exactly of the
        user's ``frame_shapes``, the camera's latest width/height readings (a binning or ROI
        change), the descriptor's; None (wait) while none fits. Several frames in one flat
        array only when the descriptor says so."""
        candidates = [
            self._ctx.options.routing.frame_shape_for(fkey.key),
            self._read_size(fkey),
            self._ctx.facts.hints.size_for(fkey.object_name, fkey.key),
            fkey.frame_shape,
        ]
        shapes = [c for c in candidates if c is not None]
        for shape in shapes:
            if shape[0] * shape[1] == size:
                return shape
        per_event = fkey.frames_per_event or 1
        for shape in shapes:
            if per_event > 1 and shape[0] * shape[1] * per_event == size:
                return shape
        return None

    def _read_size(self, fkey: FrameKey) -> tuple[int, int] | None:
        """(H, W) from the camera's latest width/height readings in any stream."""
        facts = self._ctx.facts
        if self._size_keys is None:
            self._size_keys = facts.size_keys_for(fkey)
            if self._size_keys is None:
                return None
            self._ctx.report.info(
                "flat frames of %s are shaped by %s x %s",
                self.key,
                self._size_keys[1],
                self._size_keys[0],
            )
        return facts.read_size(self._size_keys)

    def _hold(self, held: _Held) -> None:
        """Keep a flat frame until its size is known; beyond the bound the oldest is rejected."""
        self._held.append(held)
        self._held_bytes += held.raw.nbytes
        self._ctx.report.info_once(
            f"hold:{self.key}",
            f"{self.key}: flat frames held until the camera's height and width are known",
        )
        while self._held_bytes > HELD_MAX_BYTES and len(self._held) > 1:
            oldest = self._held.popleft()
            self._held_bytes -= oldest.raw.nbytes
            self.reject(
                1,
                f"flat frame whose height and width are unknown (more than "
                f"{HELD_MAX_BYTES // MiB} MiB waiting)",
            )

    def release_if_shaped(self) -> None:
        """Feed the held flat frames, in order, once their size is known."""
        first = self._held[0] if self._held else None
        if first is None or self._flat_shape(first.fkey, first.raw.size) is None:
            return
        held = list(self._held)
        self._held.clear()
        self._held_bytes = 0
        for h in held:
            self.add_frames(
                h.fkey,
                h.raw,
                h.stamps,
                h.counters,
                h.continuous,
                initial=h.initial,
                host_timed=h.host_timed,
            )

    def _reject_held(self) -> None:
        if self._held:
            n = len(self._held)
            self._held.clear()
            self._held_bytes = 0
            self.reject(n, "flat frame whose height and width are unknown")

    # -- segments and streams ---------------------------------------------------------------------
    def summary_segment(self, fkey: FrameKey) -> Segment:
        """The current segment, made on first use."""
        if not self.segments:
            self.segments.append(self._make_segment(fkey, 1))
        return self.current

    def _make_segment(self, fkey: FrameKey, part: int) -> Segment:
        """A segment at the camera's cadence (known once its first frames were timed)."""
        cadence = self.timer.cadence
        name = f"{self._ctx.meta.name} ({self.key})" + (f" part {part}" if part > 1 else "")
        chunker = CameraChunker(
            fps=cadence.fps if cadence else None,
            chunk_seconds=self._ctx.options.chunk_seconds,
            fps_source=cadence.source if cadence else "measured",
            sequence=self.sequence,
        )
        summary = RheedSummary(camera=self.key, name=name)
        if cadence is not None:
            summary.fps_measured = cadence.measured
            if cadence.overruled:
                summary.fps_declared = cadence.declared
                summary.fps_declared_source = cadence.declared_source
        return Segment(chunker, summary)

    def _declared_fps(self, fkey: FrameKey) -> tuple[float | None, str | None]:
        """The camera's declared frame rate: its AcquirePeriod, else the run's metadata."""
        configured = self._ctx.facts.fps_for(fkey)
        if configured:
            return configured, "AcquirePeriod"
        if self._ctx.meta.fps:
            return self._ctx.meta.fps, "metadata"
        return None, None

    def _new_segment(self, fkey: FrameKey, frame_shape: tuple[int, int]) -> None:
        old = self.current
        self._push(old, old.chunker.finish())
        self._ctx.report.add(shape_changes=1)
        logger.warning(
            "Atomscale: %s: %s frame shape changed %s -> %s; starting a new RHEED stream",
            self._ctx.report.prefix,
            self.key,
            self.frame_shape,
            frame_shape,
        )
        self.segments.append(self._make_segment(fkey, len(self.segments) + 1))

    def _push(self, segment: Segment, chunks: list[Chunk]) -> None:
        """Push chunks to the segment's stream, opening it once the frame rate is known."""
        waiting = bool(chunks) or segment.chunker.pending > 0
        if waiting and segment.stream is None and not segment.failed and segment.chunker.fps:
            self._open(segment)
        summary = segment.summary
        for chunk in chunks:
            n = len(chunk.frames)
            if summary.first_ts is None:
                summary.first_ts = chunk.first_ts
            summary.last_ts = chunk.last_ts
            if segment.stream is None:
                summary.not_sent += n
                continue
            host = chunk.host_timed or self._ctx.options.ioc_clock == "host"
            ahead = chunk.compressed
            extra = {"compressed": ahead} if ahead and any(c is not None for c in ahead) else {}
            try:
                idx = segment.stream.push(
                    chunk.frames,
                    chunk.capture_start_ms,
                    time_source="host" if host else "hardware",
                    **extra,
                )
            except Exception as exc:  # noqa: BLE001
                summary.not_sent += n
                self._ctx.report.error(f"push of {n} frames of {self.key}", exc)
                continue
            correction = getattr(segment.stream, "last_correction", None)
            note_correction(summary, correction)
            if correction is not None:
                self._ctx.report.info_once(
                    f"corrected:{self.key}",
                    f"{self.key}: times taken on this computer's clock corrected by "
                    f"{correction.offset_ms:+d} ms (its offset against the endpoint)",
                )
            segment.chunk_frames[int(idx)] = n
            summary.frames += n
            summary.chunks += 1
            self._ctx.counters.add(frames_pushed=n, chunks_pushed=1)

    def _open(self, segment: Segment) -> None:
        chunker, summary = segment.chunker, segment.summary
        assert chunker.fps is not None and chunker.chunk_size is not None
        rpm = self._ctx.rotations_per_min()
        summary.fps, summary.fps_source = chunker.fps, chunker.fps_source
        summary.chunk_size, summary.rotations_per_min = chunker.chunk_size, rpm
        summary.frame_shape = self.frame_shape
        try:
            segment.stream = self._ctx.opener.open_rheed(
                self._ctx.meta,
                name=summary.name,
                fps=chunker.fps,
                rotations_per_min=rpm,
                chunk_size=chunker.chunk_size,
                compression_level=self._ctx.options.compression_level,
            )
        except Exception as exc:  # noqa: BLE001
            segment.failed = True
            summary.error = f"stream did not open: {exc}"
            self._ctx.report.error(f"opening the RHEED stream of {self.key}", exc)
            return
        summary.data_id = segment.stream.data_id  # None while its creation waits for the server
        chunker.compress = getattr(segment.stream, "compress_ahead", None)
        self._ctx.report.info(
            "RHEED stream %s opened for %s (%s, %.3g fps from %s, %.3g rpm, %d frames/chunk)",
            summary.data_id or "(spooled; created when the server answers)",
            self.key,
            self.frame_shape,
            chunker.fps,
            chunker.fps_source,
            rpm,
            chunker.chunk_size,
        )

    # -- end of run -------------------------------------------------------------------------------
    def finish(self) -> None:
        """Flush every segment's last chunk; held flat frames of unknown size are rejected."""
        self._reject_held()
        if self._pixels_key is not None:
            fkey = self._pixels_key
            for frames, timing in self.pixels.finish(lambda: self._declared_pixels(fkey)):
                self._time(frames, timing)
        if self._timed_key is not None:
            for timed in self.timer.finish():
                self._chunk(self._timed_key, timed)
        if self.segments:
            first = self.segments[0]
            first.chunker.stats.stale += self.timer.stats.stale
            first.summary.wall_clock_frames = self.timer.stats.wall_clock
            first.summary.pixels = self.pixels.summary
        for segment in self.segments:
            try:
                self._push(segment, segment.chunker.finish())
            except Exception as exc:  # noqa: BLE001
                self._ctx.report.error(f"flushing {self.key}", exc)
        fps = self.current.chunker.fps if self.segments else None
        self.sequence.resolve(fps, final=True)
