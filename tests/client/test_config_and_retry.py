"""Configuration resolution and retry classification (§1.1, §5.1)."""

from __future__ import annotations

import json

import httpx
import pytest

from atomscale_bluesky.client.config import (
    DEFAULT_ENDPOINT,
    ApiKey,
    clock_sync_enabled,
    resolve_api_key,
    resolve_endpoint,
)
from atomscale_bluesky.client.errors import BadResponseError, HttpStatusError
from atomscale_bluesky.client.retry import (
    Backoff,
    is_auth_error,
    is_rejection,
    is_stale_refusal,
    is_transient,
    is_transient_on_end,
    with_retries,
)


def test_api_key_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATOMSCALE_API_KEY", raising=False)
    monkeypatch.delenv("AS_API_KEY", raising=False)
    with pytest.raises(ValueError, match="ATOMSCALE_API_KEY"):
        resolve_api_key(None)
    monkeypatch.setenv("AS_API_KEY", "k-as")
    assert resolve_api_key(None).reveal() == "k-as"
    monkeypatch.setenv("ATOMSCALE_API_KEY", "k-atom")
    assert resolve_api_key(None).reveal() == "k-atom"
    assert resolve_api_key("k-arg").reveal() == "k-arg"


def test_api_key_never_formats() -> None:
    key = ApiKey("sekrit-value")
    for text in (repr(key), str(key), f"{key}", f"{key!r}", format(key, "")):
        assert "sekrit" not in text


def test_endpoint_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AS_API_ENDPOINT", raising=False)
    assert resolve_endpoint(None) == DEFAULT_ENDPOINT
    monkeypatch.setenv("AS_API_ENDPOINT", "http://127.0.0.1:1234///")
    assert resolve_endpoint(None) == "http://127.0.0.1:1234"
    assert resolve_endpoint("https://x.example/api/") == "https://x.example/api"
    with pytest.raises(ValueError, match="http"):
        resolve_endpoint("ftp://x")


def test_clock_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATOMSCALE_SKIP_CLOCK_SYNC", raising=False)
    assert clock_sync_enabled(None)
    monkeypatch.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "0")
    assert clock_sync_enabled(None)
    monkeypatch.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    assert not clock_sync_enabled(None)
    assert clock_sync_enabled(True)


@pytest.mark.parametrize(
    ("status", "body", "transient", "rejection"),
    [
        (500, "", True, False),
        (503, "", True, False),
        (429, "", True, False),
        (408, "", True, False),
        (400, "<Code>RequestTimeout</Code>", True, False),
        (400, "bad", False, True),
        (401, "", False, False),  # a refused key pauses uploads; it says nothing of the data
        (403, "", False, False),
        (404, "", False, False),  # retried: never turns data into "lost"
        (409, '{"detail": "stream_error"}', False, False),  # stale: continues in a new part
        (409, '{"detail": "dims differ"}', False, True),
        (422, "", False, True),
    ],
)
def test_status_classification(status: int, body: str, transient: bool, rejection: bool) -> None:
    err = HttpStatusError("x", status, body)
    assert is_transient(err) is transient
    assert is_rejection(err) is rejection
    assert is_auth_error(err) is (status in (401, 403))
    assert is_stale_refusal(err) is ("stream_error" in body)


def test_other_errors() -> None:
    assert is_transient(httpx.ConnectError("refused"))
    assert is_transient(httpx.ReadTimeout("slow"))
    assert is_transient(BadResponseError("no url"))
    assert is_transient(json.JSONDecodeError("x", "", 0))
    assert not is_transient(KeyError("bug"))
    assert not is_transient_on_end(HttpStatusError("x", 408, ""))
    assert is_transient_on_end(HttpStatusError("x", 503, ""))


def test_backoff_doubles_to_cap() -> None:
    step = Backoff().delays()
    assert [step() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_with_retries_stops_on_final_error() -> None:
    calls: list[int] = []

    def op() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise HttpStatusError("x", 503, "")
        return 7

    assert with_retries("t", 5, op, backoff=Backoff(0.001, 0.002)) == 7
    calls.clear()

    def refuse() -> int:
        calls.append(1)
        raise HttpStatusError("x", 404, "")

    with pytest.raises(HttpStatusError):
        with_retries("t", 5, refuse, backoff=Backoff(0.001, 0.002))
    assert len(calls) == 1
