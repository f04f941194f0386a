"""What a run's uploaders are handed by their run: metadata, options, report and the stream opener."""

from __future__ import annotations

from dataclasses import dataclass

from atomscale_bluesky.callback.camera_facts import CameraFacts
from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.options import CallbackOptions
from atomscale_bluesky.callback.run_metadata import RunMetadata
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.stream_opener import StreamOpener

__all__ = ["RunContext"]


@dataclass(frozen=True)
class RunContext:
    """One run's shared, worker-side context (the facts are worker-owned and mutable)."""

    meta: RunMetadata
    options: CallbackOptions
    report: RunReport
    counters: LockedCounters
    opener: StreamOpener
    facts: CameraFacts

    def rotations_per_min(self) -> float:
        """The constructor's rpm, else the latest rotation reading, else the start document's."""
        override = self.options.overrides.rotations_per_min
        if override is not None:
            return float(override)
        if self.facts.rotation is not None:
            return self.facts.rotation
        if self.meta.rotations_per_min is not None:
            return self.meta.rotations_per_min
        return 0.0
