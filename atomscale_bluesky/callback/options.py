"""The callback's options, defined once: what the constructor takes, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from atomscale_bluesky.callback.routing import RoutingOptions
from atomscale_bluesky.callback.run_metadata import RunOverrides
from atomscale_bluesky.shards import ZSTD_LEVEL, check_level

__all__ = ["MiB", "CallbackOptions"]

MiB = 1024 * 1024
PROGRESS_MODES = (None, "log", "ipython")


@dataclass(frozen=True)
class CallbackOptions:
    """Every tuning knob of :class:`~atomscale_bluesky.callback.AtomscaleCallback`.

    The constructor documents each one; this record is what the stages read.
    """

    overrides: RunOverrides = field(default_factory=RunOverrides)
    routing: RoutingOptions = field(default_factory=RoutingOptions)
    chunk_seconds: float = 2.0
    strict: bool = False
    max_frame_bytes: int = 64 * MiB
    queue_max_bytes: int = 256 * MiB
    queue_timeout_s: float = 0.1
    external_timeout_s: float = 10.0
    finalize_timeout_s: float = 600.0
    stop_grace_s: float = 0.5
    points_per_chunk: int = 100
    point_flush_s: float = 1.0
    instrument_id: int | None = None
    progress: str | None = None
    progress_interval_s: float = 5.0
    compression_level: int = ZSTD_LEVEL

    def __post_init__(self) -> None:
        if self.chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be positive")
        check_level(self.compression_level)
        if self.overrides.fps is not None and self.overrides.fps <= 0:
            raise ValueError("fps must be positive")
        if self.stop_grace_s < 0:
            raise ValueError("stop_grace_s must not be negative")
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be None, 'log' or 'ipython', not {self.progress!r}")

    @property
    def close_timeout_s(self) -> float:
        """How long :meth:`close` waits by default: every run's files, then its drain."""
        return self.finalize_timeout_s + self.external_timeout_s + 30
