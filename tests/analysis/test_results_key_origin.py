"""The analysis devices send the callback client's API key only to the client's own origin."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client.config import InsecureEndpointError
from atomscale_bluesky.devices.analysis_results import StreamLocator

KEY = "key-that-must-stay-home"


@pytest.fixture
def callback(make_client: Any) -> Any:
    client = make_client(SimpleNamespace(api_key=KEY, url="http://127.0.0.1:9"))
    cb = AtomscaleCallback(client)
    yield cb
    cb.close()


def test_the_clients_key_goes_to_the_clients_origin(callback: Any) -> None:
    source = StreamLocator(callback).source()
    assert source is not None and source.endpoint == "http://127.0.0.1:9"
    assert source.headers() == {"X-API-KEY": KEY}
    same = StreamLocator(callback, endpoint="http://127.0.0.1:9/").source()
    assert same is not None and same.headers() == {"X-API-KEY": KEY}


def test_another_origin_needs_its_own_key(callback: Any) -> None:
    elsewhere = StreamLocator(callback, endpoint="https://results.example.org")
    assert elsewhere.source() is None
    own = StreamLocator(callback, endpoint="https://results.example.org", api_key="other")
    source = own.source()
    assert source is not None and source.headers() == {"X-API-KEY": "other"}
    assert KEY not in repr(own) and "other" not in repr(own) and "other" not in repr(source)


def test_plain_http_to_another_host_is_refused() -> None:
    with pytest.raises(InsecureEndpointError):
        StreamLocator(data_id="abc", endpoint="http://192.0.2.10:8000", api_key="k")
