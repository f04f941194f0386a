"""What a stream uses of the client that opened it, and nothing more.

The client builds one ``StreamServices`` and hands it to every stream it opens, so a stream spools
its chunks, reads its counters, stamps with the lab clock and finalizes without knowing the client.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import LabClock
from .frame_compressor import FrameCompressor
from .report import StreamReport

__all__ = ["Enqueue", "StreamServices"]

Enqueue = Callable[[str, int, str, dict[str, Any], "bytes | list[Any]"], "str | None"]
"""``(local_id, chunk_idx, kind, metadata, payload) -> None`` once spooled, else the drop reason."""


@dataclass(frozen=True)
class StreamServices:
    """The client's services a stream calls, each keyed by the stream's local id."""

    enqueue: Enqueue
    counts: Callable[[str], dict[str, Any]]
    """The spool's counters of a stream (reference keys); empty once the spool forgot it."""
    finalize: Callable[[str, float], StreamReport]
    """Drain, close and end a stream on the server, waiting at most the given seconds."""
    clock: LabClock | None
    """The endpoint's clock that corrects host times, or None when clock sync is off."""
    data_id: Callable[[str], str | None]
    """The stream's remote id, None until the server created it."""
    wait_opened: Callable[[str, float | None], bool]
    """Wait up to the given seconds (None: forever) for the remote id; True once known."""
    compressor: Callable[[int], FrameCompressor]
    """The client's frame compressor for a zstd level, shared by its RHEED streams."""
