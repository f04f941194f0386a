"""The work queue's overload policy: after one wait for room times out, a full queue sheds at once.

A worker slower than the stream must cost dropped frames, not a RunEngine paced at the worker's
rate: that backlog piles up in ophyd's dispatcher queue, which has no bound.
"""

from __future__ import annotations

import threading
import time

from atomscale_bluesky.callback.work_queue import WorkQueue

ITEM = 100


def _full_queue() -> WorkQueue[int]:
    queue: WorkQueue[int] = WorkQueue(max_bytes=10 * ITEM)
    for i in range(10):
        assert queue.try_put_data(i, ITEM)
    assert not queue.try_put_data(10, ITEM)
    return queue


def test_a_timed_out_wait_starts_shedding_until_half_drained() -> None:
    queue = _full_queue()
    assert not queue.shedding
    assert not queue.wait_for_room(ITEM, deadline=time.monotonic())  # timed out: dropped
    assert queue.shedding
    for expected in range(4):
        assert queue.get(timeout=0) == expected
        assert queue.shedding, f"still {10 - expected - 1} of 10 items queued"
    assert queue.get(timeout=0) == 4  # down to half
    assert not queue.shedding


def test_while_shedding_a_full_queue_refuses_without_waiting() -> None:
    queue = _full_queue()
    assert not queue.wait_for_room(ITEM, deadline=time.monotonic())
    answers: list[bool] = []
    waiter = threading.Thread(
        target=lambda: answers.append(queue.wait_for_room(ITEM, time.monotonic() + 3600))
    )
    waiter.start()
    waiter.join(60)  # without shedding it would wait for room for an hour
    assert not waiter.is_alive() and answers == [False]


def test_while_shedding_items_that_fit_still_go_in() -> None:
    queue = _full_queue()
    assert not queue.wait_for_room(ITEM, deadline=time.monotonic())
    assert queue.get(timeout=0) == 0
    assert queue.shedding
    assert queue.wait_for_room(ITEM, deadline=time.monotonic() + 3600)
    assert queue.try_put_data(10, ITEM)
    assert queue.depth() == (10, 10 * ITEM)


def test_a_wait_that_finds_room_does_not_shed() -> None:
    queue = _full_queue()
    threading.Timer(0.05, lambda: queue.get(timeout=0)).start()
    assert queue.wait_for_room(ITEM, deadline=time.monotonic() + 60)
    assert not queue.shedding
