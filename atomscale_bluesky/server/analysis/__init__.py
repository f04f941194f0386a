"""Live RHEED analysis in the local server: specular spot, oscillations, growth rate, monolayers.

Modules, one concern each: ``spot`` (find and follow the specular spot), ``oscillation``
(detection and period over a window), ``monolayers`` (shutter states and counting since the
opening), ``shutter_feed`` (a stream's shutter points, read incrementally from storage),
``results`` (per-frame columns and the SDK's response shape), ``stream_analysis`` (one stream's
state), ``worker`` (the thread fed by storage), ``routes`` (the results endpoint).
"""

from __future__ import annotations

from typing import Any

from atomscale_bluesky.server.analysis.oscillation import OscillationFit, estimate_period
from atomscale_bluesky.server.analysis.worker import AnalysisWorker, ChunkNotice

__all__ = ["AnalysisWorker", "ChunkNotice", "OscillationFit", "estimate_period", "start_worker"]


def _fps(metadata: Any) -> float | None:
    try:
        value = float(metadata.get("raw_frame_rate"))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def start_worker(storage: Any, shutter_pattern: str) -> AnalysisWorker:
    """A running worker subscribed to ``storage``'s stored chunks."""
    worker = AnalysisWorker(storage, shutter_pattern=shutter_pattern)

    def on_chunk(grant: Any, result: Any) -> None:
        worker.submit(
            ChunkNotice(
                grant.data_id, grant.chunk_idx, result.n_frames, grant.start_ms,
                _fps(grant.metadata),
            )
        )  # fmt: skip

    storage.add_chunk_listener(on_chunk)
    worker.start()
    return worker
