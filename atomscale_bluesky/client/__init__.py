"""Our httpx implementation of the Atomscale streaming protocol: durable, exact, thread-safe.

``AtomscaleClient`` opens ``RheedStream`` and ``TimeseriesStream`` objects; ``push`` returns once a
chunk is on the disk spool, upload workers send it with retries, ``finalize`` waits for the drain
and returns a ``StreamReport``. See ``docs`` and the module docstrings for the wire details.

TLS: certificates of ``https://`` endpoints are always verified (``verify=True`` reaches httpx and
the clock). The only way to relax it is ``AtomscaleClient(..., verify=False)``, for a lab proxy
you trust; a refused certificate fails stream set-up at once and is not retried.
"""

from __future__ import annotations

from .client import AtomscaleClient, default_stream_name
from .config import DEFAULT_ENDPOINT
from .errors import (
    AtomscaleClientError,
    BadResponseError,
    HttpStatusError,
    StreamClosedError,
    UnknownStreamError,
)
from .report import StreamReport
from .retry import Backoff
from .rheed import RheedStream
from .timeseries import TimeseriesStream

__all__ = [
    "DEFAULT_ENDPOINT",
    "AtomscaleClient",
    "AtomscaleClientError",
    "Backoff",
    "BadResponseError",
    "HttpStatusError",
    "RheedStream",
    "StreamClosedError",
    "StreamReport",
    "TimeseriesStream",
    "UnknownStreamError",
    "default_stream_name",
]
