"""``open_*_stream(open_wait_s=...)``: the set-up requests give up after that long and the stream
is spooled, against the real local server answering, refusing or not answering in time."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from atomscale_bluesky.client import AtomscaleClientError

from .conftest import rheed_like

CREATE = "/rheed/stream"
HUNG_S = 20.0  # a request the server holds this long: far beyond any wait here


def test_an_answering_server_opens_the_stream_within_the_wait(server, make_client):
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0, stream_name="answered", open_wait_s=30.0)
    assert stream.data_id is not None
    frames = rheed_like(20, 32, 48)
    stream.push(frames, 1_700_000_000_000)
    report = stream.finalize(30)
    assert report.uploaded == 1
    np.testing.assert_array_equal(server.reader.frames(stream.data_id), frames)
    assert server.reader.rheed_stream(stream.data_id)["name"] == "answered"


def test_a_server_that_does_not_answer_in_time_gets_the_stream_later(server, make_client, caplog):
    """The open returns spooled once the wait is over; the pushed frames reach the server when
    the stream keeper's creation is answered."""
    client = make_client(server)
    server.reader.set_faults(latency_s=3.0, paths=[CREATE])
    try:
        with caplog.at_level(logging.WARNING, logger="atomscale_bluesky.client"):
            stream = client.open_rheed_stream(fps=10.0, stream_name="late", open_wait_s=0.5)
        assert stream.data_id is None
        assert "could not open the rheed stream" in caplog.text
        assert "timed out" in caplog.text
        with caplog.at_level(logging.WARNING, logger="atomscale_bluesky.client"):
            at_once = client.open_timeseries_stream(stream_name="no wait", open_wait_s=0.0)
        assert at_once.data_id is None  # a wait of 0 sends nothing and spools the stream
        assert "the time the caller allowed (open_wait_s) is over" in caplog.text
        frames = rheed_like(20, 32, 48, seed=3)
        stream.push(frames, 1_700_000_000_000)
        assert stream.wait_opened(60)
    finally:
        server.reader.clear_faults()
    report = stream.finalize(60)
    assert report.uploaded == 1
    np.testing.assert_array_equal(server.reader.frames(stream.data_id), frames)
    assert at_once.wait_opened(60)


def test_links_the_server_does_not_answer_end_with_the_wait(server, make_client, caplog):
    """A server that creates the stream but hangs on linking it: the open returns once the wait
    is over, with the stream created, and the keeper links it when the server answers."""
    client = make_client(server)
    server.reader.set_faults(latency_s=HUNG_S, paths=["/tags/data-items"])
    try:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="atomscale_bluesky.client"):
            stream = client.open_rheed_stream(
                fps=10.0, stream_name="linked late", tags=["growth"], open_wait_s=1.0
            )
        assert time.monotonic() - started < HUNG_S / 2  # not the hung link's answer
        assert stream.data_id is not None
        assert f"linking stream {stream.data_id} failed" in caplog.text
        frames = rheed_like(20, 32, 48, seed=4)
        stream.push(frames, 1_700_000_000_000)
    finally:
        server.reader.clear_faults()
    report = stream.finalize(120)
    assert report.uploaded == 1
    np.testing.assert_array_equal(server.reader.frames(stream.data_id), frames)


def test_a_refusal_within_the_wait_raises_like_a_direct_open(server, make_client, tmp_path):
    client = make_client(server)
    server.reader.set_faults(error_rate=1.0, error_statuses=[422], paths=[CREATE])
    try:
        started = time.monotonic()
        with pytest.raises(AtomscaleClientError, match="422"):
            client.open_rheed_stream(fps=10.0, stream_name="refused", open_wait_s=60.0)
        assert time.monotonic() - started < 60.0  # the refusal ended the wait, not its bound
        with pytest.raises(AtomscaleClientError, match="422"):
            client.open_rheed_stream(fps=10.0, stream_name="refused")  # the direct open alike
    finally:
        server.reader.clear_faults()
    assert client.status()["streams"] == {}  # the refused stream left nothing spooled
    assert not [p for p in (tmp_path / "spool").iterdir() if p.name.startswith("local-")]


def test_open_wait_must_be_a_non_negative_number(server, make_client):
    client = make_client(server)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="open_wait_s"):
            client.open_rheed_stream(fps=10.0, open_wait_s=bad)
        with pytest.raises(ValueError, match="open_wait_s"):
            client.open_timeseries_stream(open_wait_s=bad)


def test_a_change_between_a_look_and_the_wait_is_not_missed(tmp_path):
    """The stream keeper and an open look at the spool, then wait for a change: one made in
    between (a stream opened, a stream created) ends the wait at once."""
    from atomscale_bluesky.client.spool import Spool

    spool = Spool(tmp_path, "http://127.0.0.1:1", min_free_bytes=0)
    try:
        seen = spool.changes
        spool.open_stream("local-a", "rheed", create={"kind": "rheed"}, linked=False)
        assert spool.changes > seen
        started = time.monotonic()
        spool.wait_changed(60.0, seen)
        assert time.monotonic() - started < 60.0
        seen = spool.changes
        spool.record_created("local-a", "remote-a", linked=False)
        spool.wait_changed(60.0, seen)
        assert time.monotonic() - started < 60.0
    finally:
        spool.close()
