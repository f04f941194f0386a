"""A server that takes connections and does not answer while the run's streams open (a stalled
gateway, a blackholed route): the worker waits ``open_wait_s`` once, spools the run, and every
frame and point reaches the server once it answers."""

from __future__ import annotations

import logging

import numpy as np

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import RunDocs, SensorSpec, camera_stream, make_camera

#: How long the server holds each stream creation: far longer than the worker may wait.
HUNG_S = 12.0
CREATES = ["/rheed/stream", "/tool-state/stream"]


def test_a_server_that_does_not_answer_the_opens_does_not_stall_the_worker(server, client, caplog):
    cam = make_camera("cam_image", 200, fps=20.0, seed=5)
    temp = SensorSpec("temperature", 600 + np.arange(200) * 0.5, cam.times + 0.003, units="K")
    rd = RunDocs.start()
    camera_stream(rd, [cam], sensors=[temp])
    rd.stop()
    callback = AtomscaleCallback(client, open_wait_s=0.5)
    server.reader.set_faults(latency_s=HUNG_S, paths=CREATES)
    try:
        with caplog.at_level(logging.WARNING, logger="atomscale_bluesky.client"):
            rd.feed(callback)
            # every event is processed and spooled while both creations still hang
            assert callback.spooled(timeout=HUNG_S - 4)
        counters = callback.counters
        assert counters.frames_pushed == 200
        assert counters.points_pushed == 200
        assert counters.dropped_overflow == 0
        opens = [r.getMessage() for r in caplog.records if "could not open the" in r.getMessage()]
        assert len(opens) == 2, opens
        assert "rheed stream" in opens[0] and "timed out" in opens[0]  # waited 0.5 s
        # the time series opened while the RHEED stream still waited: it did not wait again
        assert "timeseries stream" in opens[1]
        assert "the time the caller allowed (open_wait_s) is over" in opens[1]
    finally:
        server.reader.clear_faults()
    assert callback.flush(120)
    callback.close()
    (summary,) = callback.summaries
    assert summary.lost == 0, summary.text()
    (rheed,) = summary.rheed
    assert rheed.data_id
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), cam.frames)
    assert summary.timeseries is not None and summary.timeseries.data_id
    ts, values, _ = server.reader.points(summary.timeseries.data_id, "temperature")
    np.testing.assert_allclose(ts, temp.times, rtol=0, atol=1e-6)
    np.testing.assert_allclose(values, temp.values)


def test_opens_wait_again_once_the_window_after_an_unanswered_one_is_over(
    server, client, caplog, monkeypatch
):
    """Opens skip the wait only for ``UNANSWERED_S`` after one the server did not answer."""
    import event_model

    from atomscale_bluesky.callback import stream_opener
    from atomscale_bluesky.callback.counters import LockedCounters
    from atomscale_bluesky.callback.options import CallbackOptions

    start = event_model.compose_run().start_doc
    meta = CallbackOptions().run_metadata(start)
    opener = stream_opener.StreamOpener(
        client, lambda: client, LockedCounters(), None, open_wait_s=0.3
    )

    def opens(names: list[str]) -> list[str]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="atomscale_bluesky.client"):
            for name in names:
                opener.open_timeseries(meta, name=name, instrument_id=None, points_per_chunk=10)
        return [r.getMessage() for r in caplog.records if "could not open the" in r.getMessage()]

    server.reader.set_faults(latency_s=HUNG_S, paths=["/tool-state/stream"])
    try:
        waited, skipped = opens(["first", "within the window"])
        assert "timed out" in waited
        assert "the time the caller allowed (open_wait_s) is over" in skipped
        monkeypatch.setattr(stream_opener, "UNANSWERED_S", 0.0)
        (waited_again,) = opens(["after the window"])
        assert "timed out" in waited_again
    finally:
        server.reader.clear_faults()


def test_a_stream_the_server_created_late_is_recorded_for_a_redelivered_run(
    server, client, tmp_path
):
    """A bus consumer's run ledger gets the id of a stream the server created only after its
    open returned; the run handled again (a redelivery after a crash) goes to that stream, and
    every frame is stored once."""
    from atomscale_bluesky.apps.buses.run_ledger import FileStore, RunLedger

    cam = make_camera("cam_image", 60, fps=20.0, seed=7)
    rd = RunDocs.start()
    camera_stream(rd, [cam])
    rd.stop()
    uid = rd.run.start_doc["uid"]
    before = {s["data_id"] for s in server.reader.streams() if s["kind"] == "rheed"}
    path = tmp_path / "runs.json"
    ledger = RunLedger(FileStore(path))
    ledger.started(uid)
    first = AtomscaleCallback(client, open_wait_s=0.3, run_streams=ledger)
    server.reader.set_faults(latency_s=8.0, paths=["/rheed/stream"])
    try:
        rd.feed(first)
        assert first.spooled(timeout=30)
        reader = RunLedger(FileStore(path))
        assert reader.state(uid) == "started"
        assert reader.streams(uid) == {}  # spooled under a local id: nothing to record yet
    finally:
        server.reader.clear_faults()
    first.close(timeout=60)  # as a consumer stops: no flush; the run stays unacknowledged
    created = first.summaries[-1].rheed[0].data_id
    assert created

    # the consumer died before the run was acknowledged: the bus hands it over again
    again = RunLedger(FileStore(path))
    assert again.state(uid) == "started"
    assert list(again.streams(uid).values()) == [created], path.read_text()
    again.started(uid)
    second = AtomscaleCallback(client, run_streams=again)
    rd.feed(second)
    assert second.flush(60)
    second.close()
    assert second.summaries[-1].rheed[0].data_id == created
    np.testing.assert_array_equal(server.reader.frames(created), cam.frames)
    # every frame stored once: any other stream is the empty one a creation the server completed
    # after the client stopped waiting for it leaves
    rheed = {s["data_id"] for s in server.reader.streams() if s["kind"] == "rheed"}
    others = rheed - before - {created}
    assert all(server.reader.chunk_times(other) == [] for other in others)
