"""Exceptions of the streaming client; none of them ever carries the API key."""

from __future__ import annotations

__all__ = [
    "AtomscaleClientError",
    "BadResponseError",
    "HttpStatusError",
    "RefusedError",
    "StreamClosedError",
    "UnknownStreamError",
]


class AtomscaleClientError(RuntimeError):
    """A request or stream operation failed (the reference client raises RuntimeError too)."""


class UnknownStreamError(AtomscaleClientError):
    """A data_id this client neither opened nor resumed from its spool."""

    def __init__(self, data_id: str) -> None:
        super().__init__(
            f"no stream initialized for data_id={data_id}; call initialize(...) first."
        )
        self.data_id = data_id


class StreamClosedError(AtomscaleClientError):
    """A push to a stream that was already finalized (or abandoned)."""


class HttpStatusError(AtomscaleClientError):
    """A non-2xx reply, kept typed so retries can tell transient from final."""

    def __init__(self, message: str, status: int, body: str) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class BadResponseError(AtomscaleClientError):
    """A 2xx reply whose body is not what the protocol promises (retried like a transport error)."""


class RefusedError(AtomscaleClientError):
    """The server refused a stream set-up request itself (e.g. a sample or tag id it lacks)."""
