"""Where the client talks to and with which key: arguments first, then the settings (the
environment, :mod:`atomscale_bluesky.settings`), then the defaults."""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass, field

from atomscale_bluesky.settings import AtomscaleSettings, ConfigError, load_settings

from .secret import ApiKey

__all__ = [
    "API_KEY_FILE_ENV",
    "DEFAULT_ENDPOINT",
    "INSECURE_HTTP_ENV",
    "ApiKey",
    "ClientConfig",
    "ConfigError",
    "InsecureEndpointError",
    "check_endpoint",
    "is_loopback_host",
    "resolve_api_key",
    "resolve_endpoint",
]

DEFAULT_ENDPOINT = "https://api.atomscale.ai"
API_KEY_FILE_ENV = "ATOMSCALE_API_KEY_FILE"
MAX_KEY_FILE_CHARS = 4096
INSECURE_HTTP_ENV = "ATOMSCALE_ALLOW_INSECURE_HTTP"


class InsecureEndpointError(ConfigError):
    """The endpoint is plain ``http://`` to a host that is not this machine, and not allowed."""


def _key_from_file(path: str) -> str:
    """The key a file holds (systemd credentials, Kubernetes secrets), one trailing newline off.

    Errors name the variable and the path, never what the file holds.
    """
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_KEY_FILE_CHARS + 1)
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else "not text"
        raise ConfigError(
            f"{API_KEY_FILE_ENV}={path}: the API key file cannot be read ({reason})"
        ) from None
    if len(text) > MAX_KEY_FILE_CHARS:
        raise ConfigError(f"{API_KEY_FILE_ENV}={path}: the file is too long to be an API key")
    text = text.removesuffix("\n").removesuffix("\r")
    if not text.strip():
        raise ConfigError(f"{API_KEY_FILE_ENV}={path}: the API key file is empty")
    return text


def _key_text(api_key: str | ApiKey | None, settings: AtomscaleSettings) -> tuple[str, str]:
    """The key's text and where it came from, in the documented order of sources."""
    if isinstance(api_key, ApiKey):
        return api_key.reveal(), "the api_key argument"
    if api_key is not None:
        return api_key, "the api_key argument"
    if settings.api_key is not None:
        return settings.api_key.reveal(), settings.source("api_key")
    if settings.api_key_file is not None:
        return _key_from_file(str(settings.api_key_file)), f"the file {API_KEY_FILE_ENV} names"
    raise ConfigError(
        "no Atomscale API key: pass api_key=... or set ATOMSCALE_API_KEY (or AS_API_KEY), or "
        f"{API_KEY_FILE_ENV} to a file holding it"
    )


def resolve_api_key(
    api_key: str | ApiKey | None, settings: AtomscaleSettings | None = None
) -> ApiKey:
    """The key from, in order: the argument, ``ATOMSCALE_API_KEY``, ``AS_API_KEY``, the file
    ``ATOMSCALE_API_KEY_FILE`` names (``settings``, default: the environment). A missing key, or
    one no HTTP header can carry, is an error that never shows the key."""
    value, source = _key_text(api_key, load_settings() if settings is None else settings)
    value = value.strip()
    if not value:
        raise ConfigError(f"the Atomscale API key from {source} is empty")
    if not all(" " < c <= "~" for c in value):
        # httpx would refuse the header and quote the key in its error; say why without it
        raise ConfigError(
            f"the Atomscale API key from {source} holds whitespace, control or non-ASCII "
            "characters, which an HTTP header cannot carry; check the value you set (it is not "
            "shown here)"
        )
    return ApiKey(value)


def is_loopback_host(host: str) -> bool:
    """``localhost``, an address in 127.0.0.0/8, ``::1`` (or 127.x as an IPv4-mapped address)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def insecure_http_allowed(
    allow_insecure_http: bool | None, settings: AtomscaleSettings | None = None
) -> bool:
    """An explicit argument wins; otherwise ``ATOMSCALE_ALLOW_INSECURE_HTTP`` (yes/no)."""
    if allow_insecure_http is not None:
        return allow_insecure_http
    return (load_settings() if settings is None else settings).allow_insecure_http


def _split_url(url: str) -> urllib.parse.SplitResult | None:
    """The URL's parts, or None when it cannot be parsed (an unclosed ``[``, a bad port)."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parsed lazily; a bad port raises here
    except ValueError:
        return None
    return parts


def check_endpoint(
    endpoint: str,
    allow_insecure_http: bool | None = None,
    settings: AtomscaleSettings | None = None,
) -> None:
    """Refuse a URL the key would travel in clear to: ``http://`` to a host that is not loopback.

    ``https://`` goes anywhere; ``http://`` only to loopback unless the opt-in is given (a site
    that terminates TLS on a trusted local network).
    """
    parts = _split_url(endpoint)
    scheme = parts.scheme.lower() if parts else ""
    if parts is None or not parts.hostname or scheme not in ("http", "https"):
        raise ConfigError(f"endpoint must be an http(s) URL with a host; got {endpoint!r}")
    if scheme == "https" or is_loopback_host(parts.hostname):
        return
    if not insecure_http_allowed(allow_insecure_http, settings):
        shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # no user:password
        raise InsecureEndpointError(
            f"refusing to send the Atomscale API key in clear text to {shown!r}: plain http:// "
            "is allowed only to this machine (localhost, 127.0.0.0/8, ::1). Use an https:// URL "
            "(the endpoint argument, --endpoint, ATOMSCALE_ENDPOINT or AS_API_ENDPOINT), or, if TLS ends on a "
            f"trusted local network, set {INSECURE_HTTP_ENV}=1 (allow_insecure_http=True)"
        )


def resolve_endpoint(
    endpoint: str | None,
    allow_insecure_http: bool | None = None,
    settings: AtomscaleSettings | None = None,
) -> str:
    """The argument, else ``ATOMSCALE_ENDPOINT`` (or ``AS_API_ENDPOINT``), else production;
    trailing slashes removed; an ``http://`` URL to a host that is not loopback refused (see
    :func:`check_endpoint`)."""
    settings = load_settings() if settings is None else settings
    value = endpoint if endpoint is not None else settings.endpoint or DEFAULT_ENDPOINT
    value = value.strip().rstrip("/")
    check_endpoint(value, allow_insecure_http, settings)
    return value


def clock_sync_enabled(clock_sync: bool | None, settings: AtomscaleSettings | None = None) -> bool:
    """An explicit argument wins; otherwise on unless ``ATOMSCALE_SKIP_CLOCK_SYNC`` is true."""
    if clock_sync is not None:
        return clock_sync
    return not (load_settings() if settings is None else settings).skip_clock_sync


@dataclass(frozen=True)
class ClientConfig:
    """Resolved connection settings; ``repr`` never shows the key."""

    api_key: ApiKey = field(repr=False)
    endpoint: str
    verify: bool = True
