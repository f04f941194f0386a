"""The callback's options, defined once: what the constructor takes, validated in one place."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from atomscale_bluesky.callback.pixel_format import PixelOptions
from atomscale_bluesky.callback.progress import PROGRESS_MODES
from atomscale_bluesky.callback.routing import RoutingOptions
from atomscale_bluesky.callback.run_metadata import (
    MetadataKeys,
    RunDefaults,
    RunMetadata,
    RunOverrides,
)
from atomscale_bluesky.client.client import check_open_wait
from atomscale_bluesky.settings import IOC_CLOCKS
from atomscale_bluesky.shards import ZSTD_LEVEL, check_level
from atomscale_bluesky.thread_priority import DEFAULT_THREAD_NICE, check_thread_nice

__all__ = ["MiB", "CallbackOptions"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class CallbackOptions:
    """Every tuning knob of :class:`~atomscale_bluesky.callback.AtomscaleCallback`.

    The constructor documents each one; this record is what the stages read.
    """

    overrides: RunOverrides = field(default_factory=RunOverrides)
    routing: RoutingOptions = field(default_factory=RoutingOptions)
    pixels: PixelOptions = field(default_factory=PixelOptions)
    chunk_seconds: float = 2.0
    strict: bool = False
    max_frame_bytes: int = 64 * MiB
    queue_max_bytes: int = 256 * MiB
    queue_timeout_s: float = 0.1
    external_timeout_s: float = 10.0
    finalize_timeout_s: float = 600.0
    open_wait_s: float | None = 2.0  # None: wait as long as the client's set-up requests take
    stop_grace_s: float = 0.5
    points_per_chunk: int = 100
    point_flush_s: float = 1.0
    instrument_id: int | None = None
    progress: str | None = None  # resolved: "bar", "lines", "log" or None
    progress_interval_s: float = 0.5
    print_summary: bool = False
    run_defaults: RunDefaults = field(default_factory=RunDefaults)
    metadata_keys: MetadataKeys = field(default_factory=MetadataKeys)
    root_map: Mapping[str, str] = field(default_factory=dict)  # resource root -> local root
    handler_registry: Mapping[str, Any] = field(default_factory=dict)  # spec -> handler class
    run_filter: Callable[[Mapping[str, Any]], bool] | None = None  # start doc -> upload it?
    # "own": IOC times are stored as they are; "host": corrected like this computer's times
    ioc_clock: str = "own"
    compression_level: int = ZSTD_LEVEL
    thread_nice: int = DEFAULT_THREAD_NICE  # steps of nice below the process: worker, finalizers

    def __post_init__(self) -> None:
        if self.chunk_seconds <= 0:
            raise ValueError("chunk_seconds must be positive")
        check_level(self.compression_level)
        check_thread_nice(self.thread_nice)
        if self.overrides.fps is not None and self.overrides.fps <= 0:
            raise ValueError("fps must be positive")
        if self.stop_grace_s < 0:
            raise ValueError("stop_grace_s must not be negative")
        check_open_wait(self.open_wait_s)
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {PROGRESS_MODES}, not {self.progress!r}")
        if self.progress_interval_s <= 0:
            raise ValueError("progress_interval_s must be positive")
        if self.ioc_clock not in IOC_CLOCKS:
            raise ValueError(f"ioc_clock must be 'own' or 'host', not {self.ioc_clock!r}")

    def run_metadata(self, start: Mapping[str, Any]) -> RunMetadata:
        """A run's metadata: constructor overrides, then the run's own keys, then the defaults."""
        return RunMetadata.from_start(start, self.overrides, self.run_defaults, self.metadata_keys)

    @property
    def close_timeout_s(self) -> float:
        """How long :meth:`close` waits by default: every run's files, then its drain."""
        return self.finalize_timeout_s + self.external_timeout_s + 30
