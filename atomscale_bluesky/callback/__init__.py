"""The Bluesky callback: documents -> intake -> worker (one uploader per run) -> client.

See ``docs/architecture.md`` for which thread runs which module.
"""

from atomscale_bluesky.callback.atomscale_callback import AtomscaleCallback, AtomscaleCallbackError
from atomscale_bluesky.callback.counters import CallbackCounters
from atomscale_bluesky.callback.summary import (
    ChannelSummary,
    RheedSummary,
    RunSummary,
    TimeseriesSummary,
)

__all__ = [
    "AtomscaleCallback",
    "AtomscaleCallbackError",
    "CallbackCounters",
    "ChannelSummary",
    "RheedSummary",
    "RunSummary",
    "TimeseriesSummary",
]
