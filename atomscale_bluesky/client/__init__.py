"""Our httpx implementation of the Atomscale streaming protocol: durable, exact, thread-safe.

``AtomscaleClient`` opens ``RheedStream`` and ``TimeseriesStream`` objects; ``push`` returns once a
chunk is on the disk spool, upload workers send it with retries, ``finalize`` waits for the drain
and returns a ``StreamReport``. See ``docs`` and the module docstrings for the wire details.

TLS: certificates of ``https://`` endpoints are always verified (``verify=True`` reaches httpx and
the clock). The only way to relax it is ``AtomscaleClient(..., verify=False)``, for a lab proxy
you trust; a refused certificate fails stream set-up at once and is not retried.

The key travels only over TLS or to this machine: an ``http://`` endpoint whose host is not
loopback (localhost, 127.0.0.0/8, ::1) raises ``InsecureEndpointError`` before any request, unless
``allow_insecure_http=True`` or ``ATOMSCALE_ALLOW_INSECURE_HTTP=1``. The key is held as an
``ApiKey`` (masked in every text form, not picklable); redirects are not followed and no request
to another origin carries it.
"""

from __future__ import annotations

from .client import AtomscaleClient, default_stream_name
from .config import DEFAULT_ENDPOINT, ConfigError, InsecureEndpointError
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
from .secret import ApiKey
from .timeseries import TimeseriesStream

__all__ = [
    "DEFAULT_ENDPOINT",
    "ApiKey",
    "AtomscaleClient",
    "AtomscaleClientError",
    "Backoff",
    "BadResponseError",
    "ConfigError",
    "HttpStatusError",
    "InsecureEndpointError",
    "RheedStream",
    "StreamClosedError",
    "StreamReport",
    "TimeseriesStream",
    "UnknownStreamError",
    "default_stream_name",
]
