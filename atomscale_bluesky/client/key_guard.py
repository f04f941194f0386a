"""Keeping the API key on its endpoint: no request to another origin carries ``X-API-KEY``.

The client's httpx session does not follow redirects, and the presigned PUT sets no key; this
guard holds whatever else happens. It is an httpx request hook, so it sees every request the
session sends, each redirect hop included: a request whose origin (scheme, host, port) differs
from the endpoint's loses the key header before it is sent, and a warning says so.
"""

from __future__ import annotations

import logging

import httpx

__all__ = ["KEY_HEADER", "KeyOriginGuard", "origin"]

log = logging.getLogger(__name__)

KEY_HEADER = "X-API-KEY"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` with the scheme's default port filled in, host in lower case."""
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


class KeyOriginGuard:
    """An httpx request hook removing the key from requests to any origin but the endpoint's."""

    def __init__(self, endpoint: str) -> None:
        self._origin = origin(httpx.URL(endpoint))

    def __call__(self, request: httpx.Request) -> None:
        if KEY_HEADER not in request.headers or origin(request.url) == self._origin:
            return
        del request.headers[KEY_HEADER]
        log.warning(
            "a request to %s://%s is not to the configured endpoint's origin; it is sent "
            "without the API key",
            request.url.scheme,
            request.url.netloc.decode("ascii", "replace"),
        )
