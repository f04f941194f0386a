"""Where the frames or points handed to one stream ended up: stored, pending, or lost (and why).

The client reports chunks; the uploaders know how many items (frames, points) each chunk index
holds, so a stream's :class:`Delivery` counts items exactly from the client's report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Delivery", "delivery_from_report"]

MAX_REASONS = 5


@dataclass
class Delivery:
    """Items of one stream: acknowledged by the server, still in the spool, or lost with a reason."""

    stored: int = 0
    pending: int = 0
    lost: int = 0
    pending_chunks: int = 0
    lost_chunks: int = 0
    lost_reasons: list[str] = field(default_factory=list)
    auth_paused_s: float = 0.0
    parts: list[str] = field(default_factory=list)  # data ids of continuation streams


def delivery_from_report(report: Mapping[str, Any], items: Mapping[int, int]) -> Delivery:
    """Count items per outcome from a client report and the items each chunk index holds."""
    total = sum(items.values())
    lost_entries = list(report.get("lost") or [])
    lost_idx = {int(idx) for idx, _ in lost_entries}
    reasons: list[str] = []
    for _, reason in lost_entries:
        if str(reason) not in reasons and len(reasons) < MAX_REASONS:
            reasons.append(str(reason))
    pending_idx = _pending_indices(report, items, lost_idx)
    lost = sum(items.get(idx, 0) for idx in lost_idx)
    pending = sum(items.get(idx, 0) for idx in pending_idx)
    return Delivery(
        stored=max(0, total - lost - pending),
        pending=pending,
        lost=lost,
        pending_chunks=len(pending_idx),
        lost_chunks=len(lost_idx),
        lost_reasons=reasons,
        auth_paused_s=float(report.get("auth_paused_s") or 0.0),
        parts=[str(p) for p in report.get("parts") or []],
    )


def _pending_indices(
    report: Mapping[str, Any], items: Mapping[int, int], lost: set[int]
) -> set[int]:
    """The chunk indices still spooled: listed by the report, else its newest ``pending`` ones."""
    listed = report.get("pending_chunks")
    if isinstance(listed, (list, tuple, set)):
        return {int(idx) for idx in listed}
    count = int(report.get("pending") or 0)
    if count <= 0:
        return set()
    candidates = sorted((idx for idx in items if idx not in lost), reverse=True)
    return set(candidates[:count])
