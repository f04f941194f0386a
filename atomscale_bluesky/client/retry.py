"""Which failures are worth another attempt, and how long to wait before it (protocol §5.1)."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from .errors import BadResponseError, HttpStatusError, RefusedError

__all__ = [
    "AUTH_STATUSES",
    "FINALIZE_ATTEMPTS",
    "Backoff",
    "is_auth_error",
    "is_rejection",
    "is_stale_refusal",
    "is_transient",
    "refuses_request",
    "with_retries",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Statuses that mean the API key was refused: uploads pause until it works, nothing is lost.
AUTH_STATUSES = (401, 403)
#: Statuses retried like outages rather than taken as a refusal of the data (an auth gateway or
#: a backend that does not know a just-created stream yet answers them).
RETRIED_STATUSES = (404, 408, 429)

#: Attempts at closing a stream: 0.5, 1, 2, 4, 8, 16 then 30 s apart (about three minutes).
FINALIZE_ATTEMPTS = 12


@dataclass(frozen=True)
class Backoff:
    """Delay between attempts: ``first`` seconds, doubling up to ``max``."""

    first: float = 0.5
    max: float = 30.0

    def delays(self) -> Callable[[], float]:
        """A fresh delay sequence: each call returns the next delay."""
        state = {"next": self.first}

        def step() -> float:
            delay = state["next"]
            state["next"] = min(delay * 2.0, self.max)
            return delay

        return step


def _status_transient(status: int, body: str) -> bool:
    return status >= 500 or status in (408, 429) or (status == 400 and "RequestTimeout" in body)


def is_transient(error: BaseException) -> bool:
    """Transport errors, timeouts, unreadable bodies, 5xx, 429, 408 and S3's 400 RequestTimeout."""
    if isinstance(error, HttpStatusError):
        return _status_transient(error.status, error.body)
    return isinstance(error, httpx.TransportError | json.JSONDecodeError | BadResponseError)


def is_auth_error(error: BaseException) -> bool:
    """A 401 or 403: the API key was refused (rotated, mistyped, or a gateway glitch)."""
    return isinstance(error, HttpStatusError) and error.status in AUTH_STATUSES


def is_stale_refusal(error: BaseException) -> bool:
    """A 409 naming ``stream_error``: the backend closed the stream (idle too long)."""
    return (
        isinstance(error, HttpStatusError) and error.status == 409 and "stream_error" in error.body
    )


def is_rejection(error: BaseException) -> bool:
    """A refusal of the data itself: a 4xx other than auth, 404, 408, 429, a stale stream or
    S3's 400 RequestTimeout. Only this turns a spooled chunk into a lost one."""
    return (
        isinstance(error, HttpStatusError)
        and 400 <= error.status < 500
        and error.status not in AUTH_STATUSES + RETRIED_STATUSES
        and not _status_transient(error.status, error.body)
        and not is_stale_refusal(error)
    )


def refuses_request(error: BaseException) -> bool:
    """Stream set-up errors that are the request's own fault, raised to the caller at once.

    Invalid arguments, a sample or tag id the server does not know, a 4xx refusal of the
    request (:func:`is_rejection`), or a TLS certificate the client refuses (a configuration
    error retrying cannot fix). Everything else is retried in the background.
    """
    if isinstance(error, ValueError | RefusedError) or is_rejection(error):
        return True
    return _certificate_refused(error)


def _certificate_refused(error: BaseException) -> bool:
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def is_transient_on_end(error: BaseException) -> bool:
    """The finalize ``/end`` path retries only transport errors, decode errors, 5xx and 429."""
    if isinstance(error, HttpStatusError):
        return error.status >= 500 or error.status == 429
    return isinstance(error, httpx.TransportError | json.JSONDecodeError | BadResponseError)


def with_retries(
    what: str,
    attempts: int,
    op: Callable[[], T],
    *,
    backoff: Backoff | None = None,
    transient: Callable[[BaseException], bool] = is_transient,
    stop: threading.Event | None = None,
) -> T:
    """Run ``op`` up to ``attempts`` times, sleeping between transient failures."""
    next_delay = (backoff or Backoff()).delays()
    for attempt in range(1, attempts + 1):
        try:
            return op()
        except Exception as error:
            if attempt >= attempts or not transient(error):
                log.warning("%s failed after %d attempt(s): %s", what, attempt, error)
                raise
            delay = next_delay()
            log.debug("%s failed (attempt %d), retrying in %.1f s: %s", what, attempt, delay, error)
            if stop is not None:
                if stop.wait(delay):
                    raise
            else:
                time.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")
