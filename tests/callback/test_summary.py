"""The run summary: what counts as lost, and how it reads."""

from __future__ import annotations

import re

from atomscale_bluesky.callback.delivery import Delivery, delivery_from_report
from atomscale_bluesky.callback.summary import (
    ChannelSummary,
    RheedSummary,
    RunSummary,
    TimeseriesSummary,
)


def _summary(**counts: int) -> RunSummary:
    return RunSummary(run_uid="0123456789abcdef", name="growth", exit_status="success", **counts)


def test_lost_counts_every_frame_and_point_not_delivered_and_keeps_the_parts():
    summary = _summary(dropped_overflow=2, rejected_frames=3)
    summary.rheed.append(
        RheedSummary(camera="cam", name="growth (cam)", frames=10, not_sent=5, external_failed=7)
    )
    summary.rheed.append(RheedSummary(camera="cam2", name="growth (cam2)", stale=1, rejected=3))
    summary.timeseries = TimeseriesSummary(name="growth (sensors)", not_sent=11)
    # stale pre-run frames are not frames of the run; per-stream rejects are within the run's
    assert summary.lost == 2 + 3 + 5 + 7 + 11
    assert summary.as_dict()["lost"] == 28
    assert summary.as_dict()["rejected_frames"] == 3 and summary.as_dict()["dropped_overflow"] == 2
    assert "28 lost" in summary.text()


def test_a_run_that_rejected_every_frame_is_not_reported_as_nothing_lost():
    summary = _summary(rejected_frames=120)
    assert summary.frames == 0 and summary.lost == 120
    assert "0 frames in 0 chunks" in summary.text() and "120 lost" in summary.text()


def _every_count(n: int) -> RunSummary:
    """A summary in which every counted thing happened ``n`` times."""
    summary = _summary(
        errors=n, duplicate_events=n, duplicate_starts=n, out_of_order_events=n,
        orphan_events=n, dropped_overflow=n, rejected_frames=n, empty_frames=n, shape_changes=n,
    )  # fmt: skip
    summary.endpoint = "http://127.0.0.1:8766"
    summary.rheed.append(
        RheedSummary(
            camera="cam", name="growth (cam)", data_id="rheed-1", frame_shape=(48, 64), fps=40.0,
            fps_source="metadata", frames=n, chunks=n, duplicates=n, late=n, missing=n,
            counter_resets=n, stale=n, rejected=n, dtype_changes=n, external_failed=n,
            not_sent=n, lost_chunks=n,
        )
    )  # fmt: skip
    ts = TimeseriesSummary(name="growth (sensors)", data_id="ts-1", points=n, not_sent=n)
    for i in range(n):
        ts.channels[f"T{i}"] = ChannelSummary(name=f"T{i}", key=f"T{i}", units="K", points=1)
    summary.timeseries = ts
    return summary


def test_summary_text_says_one_thing_in_the_singular():
    text = _every_count(1).text()
    for phrase in [
        "1 frame in 1 chunk, 1 point in 1 channel,", "1 error; INCOMPLETE\n", "1 frame/1 chunk,",
        "1 duplicate,", "1 counter reset,", "1 stale pre-run frame left out,", "1 dtype change,",
        "1 lost chunk", "1 duplicate event,", "1 repeated start document,",
        "1 out-of-order event,", "1 event before its descriptor,", "1 rejected frame,",
        "1 empty image reading skipped,", "1 shape change\n", "/local/rheed/rheed-1, ",
    ]:  # fmt: skip
        assert phrase in text, (phrase, text)
    assert not re.findall(r"\b1 [a-z-]+s\b", text), text  # no "1 frames", "1 errors" ...


def test_summary_text_uses_plurals_for_other_counts():
    text = _every_count(2).text()
    for phrase in [
        "2 frames in 2 chunks, 2 points in 2 channels,", "2 errors; INCOMPLETE\n", "2 frames/2 chunks,",
        "2 stale pre-run frames left out,", "2 events before their descriptor,",
        "2 lost chunks", "2 empty image readings skipped,",
    ]:  # fmt: skip
        assert phrase in text, (phrase, text)
    zero = _summary()
    assert "0 frames in 0 chunks, 0 points, 0 missing" in zero.text()
    one_stream = _summary(endpoint="http://x")
    one_stream.rheed.append(RheedSummary(camera="cam", name="n", data_id="only"))
    assert "web app (https://www.atomscale.ai): data id only" in one_stream.text()


def test_a_run_whose_chunks_wait_in_the_spool_is_pending_not_a_success():
    summary = _summary()
    rheed = RheedSummary(camera="cam", name="growth (cam)", data_id="rheed-1", frames=300)
    rheed.delivery = delivery_from_report(
        {"uploaded": 2, "pending": 1, "pending_chunks": [2], "lost": []},
        {0: 120, 1: 120, 2: 60},
    )
    summary.rheed.append(rheed)
    assert (summary.stored, summary.pending, summary.lost) == (240, 60, 0)
    assert summary.status == "pending"
    text = summary.text()
    assert "0 lost, 60 pending, 0 errors; PENDING" in text
    assert "atomscale-bluesky drain" in text
    assert "[stored 240, pending 60, lost 0]" in text


def test_frames_of_lost_chunks_are_lost_with_their_reason_and_parts_are_linked():
    summary = _summary()
    summary.endpoint = "http://127.0.0.1:8766"
    rheed = RheedSummary(camera="cam", name="growth (cam)", data_id="rheed-1", frames=360)
    rheed.delivery = delivery_from_report(
        {
            "uploaded": 2,
            "pending": 0,
            "lost": [(1, "dropped: spool is full (1 of 2 bytes waiting to upload)")],
            "parts": ["rheed-2"],
            "auth_paused_s": 61.5,
        },
        {0: 120, 1: 120, 2: 120},
    )
    summary.rheed.append(rheed)
    assert rheed.delivery == Delivery(
        stored=240, pending=0, lost=120, pending_chunks=0, lost_chunks=1,
        lost_reasons=["dropped: spool is full (1 of 2 bytes waiting to upload)"],
        auth_paused_s=61.5, parts=["rheed-2"],
    )  # fmt: skip
    assert summary.status == "incomplete" and summary.lost == 120
    assert summary.data_ids == ["rheed-1", "rheed-2"]
    text = summary.text()
    assert "120 lost, 0 pending" in text and "INCOMPLETE" in text
    assert "lost 120: dropped: spool is full" in text and "continued as rheed-2" in text
    assert "paused 62 s on authentication errors" in text
    assert "/local/rheed/rheed-1, http://127.0.0.1:8766/local/rheed/rheed-2" in text


def test_a_fully_stored_run_is_complete():
    summary = _summary()
    rheed = RheedSummary(camera="cam", name="growth (cam)", data_id="rheed-1", frames=240)
    rheed.delivery = delivery_from_report(
        {"uploaded": 2, "pending": 0, "lost": []}, {0: 120, 1: 120}
    )
    summary.rheed.append(rheed)
    ts = TimeseriesSummary(name="growth (sensors)", data_id="ts-1", points=150)
    ts.delivery = delivery_from_report({"uploaded": 2, "pending": 0, "lost": []}, {0: 100, 1: 50})
    summary.timeseries = ts
    assert (summary.stored, summary.pending, summary.lost, summary.status) == (
        390,
        0,
        0,
        "complete",
    )
    assert "COMPLETE" in summary.text() and "pending 0" not in summary.text()
