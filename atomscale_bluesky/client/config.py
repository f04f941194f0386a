"""Where the client talks to and with which key: arguments first, then the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = ["DEFAULT_ENDPOINT", "ApiKey", "ClientConfig", "resolve_api_key", "resolve_endpoint"]

DEFAULT_ENDPOINT = "https://api.atomscale.ai"
API_KEY_ENVS = ("ATOMSCALE_API_KEY", "AS_API_KEY")
ENDPOINT_ENV = "AS_API_ENDPOINT"
SKIP_CLOCK_ENV = "ATOMSCALE_SKIP_CLOCK_SYNC"


class ApiKey:
    """The API key, kept out of every repr, str and format so it cannot leak into logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself, for the one place that needs it: the X-API-KEY header."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> str:
        raise TypeError("an API key is not picklable")


def resolve_api_key(api_key: str | None) -> ApiKey:
    """The argument, else ``ATOMSCALE_API_KEY``, else ``AS_API_KEY``; a missing key is an error."""
    value = api_key
    if value is None:
        value = next((os.environ[e] for e in API_KEY_ENVS if os.environ.get(e, "").strip()), None)
    if value is None or not value.strip():
        raise ValueError(
            "no Atomscale API key: pass api_key=... or set ATOMSCALE_API_KEY (or AS_API_KEY)"
        )
    value = value.strip()
    if not all(" " < c <= "~" for c in value):
        # httpx would refuse the header and quote the key in its error; say why without it
        raise ValueError(
            "the Atomscale API key holds whitespace, control or non-ASCII characters, which an "
            "HTTP header cannot carry; check the value you set (it is not shown here)"
        )
    return ApiKey(value)


def resolve_endpoint(endpoint: str | None) -> str:
    """The argument, else ``AS_API_ENDPOINT``, else production; trailing slashes removed."""
    value = endpoint if endpoint is not None else os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    value = value.strip().rstrip("/")
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"endpoint must be an http(s) URL; got {value!r}")
    return value


def clock_sync_enabled(clock_sync: bool | None) -> bool:
    """An explicit argument wins; otherwise on unless ``ATOMSCALE_SKIP_CLOCK_SYNC`` is set."""
    if clock_sync is not None:
        return clock_sync
    return os.environ.get(SKIP_CLOCK_ENV, "") in ("", "0")


@dataclass(frozen=True)
class ClientConfig:
    """Resolved connection settings; ``repr`` never shows the key."""

    api_key: ApiKey = field(repr=False)
    endpoint: str
    verify: bool = True
