"""Where a user sees a run's data: the Atomscale web app, or the local server's read URLs."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["ATOMSCALE_WEB_APP", "where_to_see"]

ATOMSCALE_WEB_APP = "https://www.atomscale.ai"
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def is_local_server(endpoint: str) -> bool:
    """True for an endpoint on this machine (the local Atomscale-compatible server)."""
    return (urlsplit(endpoint).hostname or "") in _LOCAL_HOSTS


def where_to_see(endpoint: str | None, rheed_ids: list[str], timeseries_ids: list[str]) -> str:
    """One line saying where the run's streams can be looked at, by data id."""
    ids = rheed_ids + timeseries_ids
    if not ids:
        return ""
    if endpoint and is_local_server(endpoint):
        base = endpoint.rstrip("/")
        urls = [f"{base}/local/rheed/{i}" for i in rheed_ids]
        urls += [f"{base}/local/timeseries/{i}" for i in timeseries_ids]
        return "see them on the local server: " + ", ".join(urls)
    noun = "data id" if len(ids) == 1 else "data ids"
    return f"see them in the Atomscale web app ({ATOMSCALE_WEB_APP}): {noun} {', '.join(ids)}"
