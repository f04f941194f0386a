"""The backend's closing of silent RHEED streams (stream_error), and authentication outages."""

from __future__ import annotations

import numpy as np
import pytest
from server_kit import Proto

from atomscale_bluesky.server.runner import running_server

HOUR = 3600.0
START_MS = 1_700_000_000_000


def _frames(value: int) -> np.ndarray:
    return np.full((20, 4, 4), value, dtype=np.uint8)


def _upload(proto: Proto, data_id: str, chunk_idx: int) -> None:
    start = START_MS + chunk_idx * 2000
    response = proto.upload(data_id, chunk_idx, _frames(chunk_idx + 1), 20, start_ms=start)
    assert response.status_code == 200, response.text


def test_a_stream_silent_past_the_idle_limit_is_refused_as_stream_error(tmp_path) -> None:
    with running_server(data_dir=tmp_path) as server:
        proto = Proto.open(server.url, server.api_key)
        quiet, busy = proto.create_rheed(), proto.create_rheed()
        _upload(proto, quiet, 0)
        server.reader.advance_clock(1.5 * HOUR)
        _upload(proto, busy, 0)  # data keeps a stream open
        _upload(proto, quiet, 1)  # 1.5 h of silence is within the 2 h limit
        server.reader.advance_clock(2.5 * HOUR)
        meta = proto.presign_metadata(quiet, (20, 4, 4), 20, START_MS + 4000)
        refused = proto.presign(2, meta)
        assert refused.status_code == 409
        assert "stream_error" in refused.json()["detail"]
        assert proto.presign(3, meta).status_code == 409, "a closed stream stays closed"
        assert server.reader.rheed_stream(quiet)["status"] == "stream_error"
        assert server.reader.frames(quiet).shape == (40, 4, 4), "what it stored is kept"
        fresh = proto.create_rheed()  # a stream created after the silence takes data
        _upload(proto, fresh, 0)
        assert server.reader.frames(fresh).shape == (20, 4, 4)


def test_the_server_clock_only_moves_forward(tmp_path) -> None:
    with running_server(data_dir=tmp_path) as server:
        before = server.reader.advance_clock(0)["now"]
        after = server.reader.advance_clock(60)
        assert after["offset_s"] == 60 and after["now"] >= before + 60
        proto = Proto.open(server.url, server.api_key)
        assert proto.post("/local/clock/advance", json={"seconds": -1}).status_code == 422


@pytest.mark.parametrize("status", [401, 403])
def test_an_authentication_outage_answers_its_status_then_ends(tmp_path, status: int) -> None:
    with running_server(data_dir=tmp_path) as server:
        proto = Proto.open(server.url, server.api_key)
        server.reader.set_faults(outage=True, outage_mode=str(status))
        assert proto.post("/rheed/stream/", json={}).status_code == status
        assert server.reader.faults()["injected"] == {f"outage_{status}": 1}
        server.reader.clear_faults()
        _upload(proto, proto.create_rheed(), 0)
