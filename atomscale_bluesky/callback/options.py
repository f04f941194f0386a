"""The callback's options, defined once: what the constructor takes, validated in one place."""

from __future__ import annotations

from dataclasses import dataclass, field

from atomscale_bluesky.callback.progress import PROGRESS_MODES
from atomscale_bluesky.callback.routing import RoutingOptions
from atomscale_bluesky.callback.run_metadata import RunOverrides

__all__ = ["MiB", "CallbackOptions"]

MiB = 1024 * 1024


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
    progress: str | None = None  # resolved: "bar", "lines", "log" or None
    progress_interval_s: float = 0.5
    print_summary: bool = False

    def __post_init__(self) -> None:
        if self.chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be positive")
        if self.overrides.fps is not None and self.overrides.fps <= 0:
            raise ValueError("fps must be positive")
        if self.stop_grace_s < 0:
            raise ValueError("stop_grace_s must not be negative")
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, not {self.progress!r}")
        if self.progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be positive")

    @property
    def close_timeout_s(self) -> float:
        """How long :meth:`close` waits by default: every run's files, then its drain."""
        return self.finalize_timeout_s + self.external_timeout_s + 30
