"""One RHEED video stream: push uint8 frame chunks, finalize (protocol §2.3, §2.5)."""

from __future__ import annotations

import logging
import operator
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..frames import FrameError, as_frame_stack
from ..shards import ZSTD_LEVEL, check_level, encode_shard_parts
from .clock import Correction
from .errors import StreamClosedError
from .frame_compressor import CompressedFrame, FrameCompressor
from .spooled_stream import SpooledStream
from .stamps import check_time_source, chunk_stamps, now_ms
from .stream_services import StreamServices

__all__ = ["RheedStream"]

log = logging.getLogger(__name__)


def _capture_start(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"capture_start_ms_utc must be an int (ms since the epoch); got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(
            f"capture_start_ms_utc must be an int (ms since the Unix epoch); got {value!r}"
        ) from None


def _uint8_planes(frames: Any, bit_depth: int | None) -> list[np.ndarray] | None:
    """A list/tuple of equal 2-D uint8 frames as is (encoded without a stacking copy), else None."""
    if not isinstance(frames, (list, tuple)) or not frames or bit_depth not in (None, 8):
        return None
    first = frames[0]
    if not isinstance(first, np.ndarray) or first.ndim != 2:
        return None
    for frame in frames:
        if not (
            isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.shape == first.shape
        ):
            return None
    return list(frames)


class RheedStream(SpooledStream):
    """A stream opened by :meth:`AtomscaleClient.open_rheed_stream`; push from any thread."""

    def __init__(
        self,
        services: StreamServices,
        local_id: str,
        *,
        fps: float,
        rotations_per_min: float,
        chunk_size: int,
        name: str,
        compression_level: int = ZSTD_LEVEL,
    ) -> None:
        super().__init__(services, local_id)
        self.compression_level = check_level(compression_level)
        self.fps = fps
        self.rotations_per_min = rotations_per_min
        self.chunk_size = chunk_size
        self.name = name
        self._next_idx = 0
        self._frame_shape: tuple[int, int] | None = None
        self._frames_pushed = 0
        self._opened = time.monotonic()
        self.last_correction: Correction | None = None
        """What was added to the latest chunk's start (None: its time passed through)."""
        self._compressor: FrameCompressor | None = None
        self._compressor_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"RheedStream(data_id={self.data_id!r}, local_id={self.local_id!r}, fps={self.fps}, "
            f"chunk_size={self.chunk_size})"
        )

    def compress_ahead(self, frame: np.ndarray) -> CompressedFrame:
        """Start compressing one uint8 ``(H, W)`` frame at the stream's level, as it arrives;
        hand what this returns to :meth:`push` (``compressed=``) with the frame's chunk.

        Compressing frames as they arrive (in groups of a few MB, on a small thread pool)
        overlaps compression with acquisition and spreads it over the cores instead of a burst
        at chunk close; the shard's bytes are the same.
        """
        with self._compressor_lock:
            if self._finalizing:
                raise StreamClosedError(f"stream {self.name_for_logs} was finalized")
            if self._compressor is None:
                self._compressor = self._services.compressor(self.compression_level)
            return self._compressor.submit(frame)

    def mark_finalizing(self) -> None:
        """Refuse further pushes and hand the compressions still gathering to the threads."""
        super().mark_finalizing()
        with self._compressor_lock:
            compressor, self._compressor = self._compressor, None
        if compressor is not None:
            compressor.flush()

    def push(
        self,
        frames: Any,
        capture_start_ms_utc: int | None = None,
        *,
        chunk_idx: int | None = None,
        bit_depth: int | None = None,
        time_source: str = "host",
        compressed: Sequence[CompressedFrame | None] | None = None,
    ) -> int:
        """Stamp, encode and spool one chunk; returns its index once it is on disk.

        ``frames``: ``(H,W)`` or ``(N,H,W)`` (any dtype the frame rule accepts), or a list of
        equal ``(H,W)`` uint8 frames (encoded as they are, without a stacking copy);
        ``capture_start_ms_utc``: host-clock ms of the first frame (default: arrival minus the
        chunk's span); ``chunk_idx``: default the next index; ``time_source``: ``"host"`` (the
        capture start is this computer's clock: corrected by the measured offset, as the
        reference does) or ``"hardware"`` (an IOC's clock: stored as given); ``compressed``:
        per frame of a list of uint8 frames, its :meth:`compress_ahead` future (None: compress
        it here). Never waits on the network; a chunk the spool drops is counted in the report,
        not raised.
        """
        arrival = now_ms()
        source = check_time_source(time_source)
        if self._finalizing:
            raise StreamClosedError(
                f"stream {self.name_for_logs} was finalized; no more chunks can be pushed to it"
            )
        start_ms = _capture_start(capture_start_ms_utc)
        planes = _uint8_planes(frames, bit_depth)
        stack: np.ndarray | list[np.ndarray]
        if planes is None:
            stack = as_frame_stack(frames, bit_depth=bit_depth)
            n, h, w = stack.shape
        else:
            stack = planes
            n, (h, w) = len(planes), planes[0].shape
        if n > self.chunk_size:
            raise FrameError(
                f"a chunk of {n} frames exceeds stream {self.name_for_logs}'s chunk_size "
                f"{self.chunk_size}; push it in pieces of at most {self.chunk_size} frames"
            )
        with self._lock:
            if self._frame_shape is None:
                self._frame_shape = (h, w)
            elif self._frame_shape != (h, w):
                raise FrameError(
                    f"frames of stream {self.name_for_logs} are {self._frame_shape[0]}x"
                    f"{self._frame_shape[1]}; got {h}x{w}"
                )
            if chunk_idx is None:
                idx = self._next_idx
            else:
                idx = operator.index(chunk_idx)
                if idx < 0:
                    raise ValueError(f"chunk_idx must be >= 0; got {idx}")
            self._next_idx = max(self._next_idx, idx + 1)
        start, end, correction = chunk_stamps(
            n, self.fps, arrival, start_ms, self._services.clock, source
        )
        self.last_correction = correction
        metadata: dict[str, Any] = {
            "data_id": self.data_id,
            "data_stream": "rheed",
            "is_stream": 1,
            "is_rotating": 1 if self.rotations_per_min > 0 else 0,
            "raw_frame_rate": float(self.fps),
            "avg_frame_rate": float(self.fps),
            "chunk_size": self.chunk_size,
            "dims": f"{n},{h},{w}",
            "start_unix_ms_utc": start,
            "end_unix_ms_utc": end,
        }
        if correction is not None:
            metadata["clock_offset_ms"] = correction.offset_ms
            metadata["clock_uncertainty_ms"] = correction.uncertainty_ms
        blobs = None
        if compressed is not None and planes is not None:
            with self._compressor_lock:
                if self._compressor is not None:
                    self._compressor.flush()
            blobs = [None if c is None or not c.dispatched else c.result() for c in compressed]
        shard = encode_shard_parts(stack, level=self.compression_level, compressed=blobs)
        dropped = self._services.enqueue(self.local_id, idx, "rheed", metadata, shard)
        with self._lock:
            self._frames_pushed += n
        if dropped is None:
            log.debug("chunk %d of stream %s spooled (%d frames)", idx, self.name_for_logs, n)
        return idx

    def status(self) -> dict[str, Any]:
        """Counters (reference keys) plus frames pushed and throughput since open."""
        counts = self._counts()
        elapsed = max(time.monotonic() - self._opened, 1e-9)
        uploaded_bytes = counts.get("bytes_uploaded", 0)
        return {
            **counts,
            "data_id": self.data_id,
            "local_id": self.local_id,
            "frames_pushed": self._frames_pushed,
            "frames_per_s": self._frames_pushed / elapsed,
            "upload_bytes_per_s": uploaded_bytes / elapsed,
            "elapsed_s": elapsed,
            "finalized": self.report is not None,
        }
