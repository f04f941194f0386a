"""Monitor events that arrive just after their run's stop document are still streamed.

bluesky emits monitor events from ophyd's monitor thread, so an event taken just before the stop
can reach subscribers just after it; the callback keeps the run open for ``stop_grace_s``.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback

from .docs import RunDocs, camera_stream, make_camera


def _late_event_run(tmp_path):
    cam = make_camera("cam_image", 41, fps=20.0, fps_config=20.0, seed=4)
    rd = RunDocs.start(name="late monitor event")
    camera_stream(rd, [cam], tmp_path=tmp_path, storage="inline", form="event")
    rd.stop()
    names = [name for name, _ in rd.docs]
    stop_at = names.index("stop")
    last_event = max(i for i, name in enumerate(names) if name == "event")
    docs = list(rd.docs)
    docs.insert(stop_at, docs.pop(last_event))  # the last event now comes after the stop
    return cam, docs


def test_event_after_stop_within_the_grace_is_kept(server, client, tmp_path):
    cam, docs = _late_event_run(tmp_path)
    assert docs[-1][0] == "event"
    callback = AtomscaleCallback(client, stop_grace_s=2.0)
    for name, doc in docs:
        callback(name, doc)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    assert summary.exit_status == "success" and summary.orphan_events == 0
    (rheed,) = summary.rheed
    np.testing.assert_array_equal(server.reader.frames(rheed.data_id), cam.frames)


def test_without_grace_a_late_event_is_an_orphan_and_counted(server, client, tmp_path):
    cam, docs = _late_event_run(tmp_path)
    callback = AtomscaleCallback(client, stop_grace_s=0)
    for name, doc in docs:
        callback(name, doc)
    assert callback.flush(60)
    callback.close()
    (summary,) = callback.summaries
    (rheed,) = summary.rheed
    assert rheed.frames == len(cam.frames) - 1
    assert callback.counters.orphan_events == 1


def test_the_grace_ends_by_itself_and_the_run_is_finalized(server, client, tmp_path):
    _, docs = _late_event_run(tmp_path)
    callback = AtomscaleCallback(client, stop_grace_s=0.2)
    for name, doc in docs:
        callback(name, doc)
    deadline = time.monotonic() + 30
    while not callback.summaries and time.monotonic() < deadline:
        time.sleep(0.05)
    assert callback.summaries and callback.summaries[0].exit_status == "success"
    callback.close()


def test_negative_grace_is_refused():
    with pytest.raises(ValueError, match="stop_grace_s"):
        AtomscaleCallback(client=object(), stop_grace_s=-1)
