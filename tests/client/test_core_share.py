"""Compression threads keep off one core while they keep up, and take every core when behind."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from atomscale_bluesky.client.frame_compressor import FrameCompressor
from atomscale_bluesky.core_share import CoreShare, process_cores, spare_cores
from atomscale_bluesky.shards import compress_frame

from .conftest import compress_threads, rheed_like

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and two cores",
)


def _on_a_thread(fn: Callable[[], Any]) -> Any:
    """``fn``'s result, run on a new thread (a thread's cores are its own)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(10)
    return out[0]


def test_spare_cores_leave_out_the_lowest() -> None:
    assert spare_cores(frozenset({0, 1, 2, 3})) == {1, 2, 3}
    assert spare_cores(frozenset({2, 5})) == {5}
    assert spare_cores(frozenset({3})) == frozenset()
    assert spare_cores(frozenset()) == frozenset()


def test_core_share_moves_a_thread_between_all_but_one_and_every_core() -> None:
    share = CoreShare()
    cores = process_cores()

    def place(behind_first: bool, behind_then: bool) -> tuple[frozenset[int], frozenset[int]]:
        share.place_this_thread(behind=behind_first)
        first = frozenset(os.sched_getaffinity(0))
        share.place_this_thread(behind=behind_then)
        return first, frozenset(os.sched_getaffinity(0))

    assert _on_a_thread(lambda: place(False, True)) == (cores - {min(cores)}, cores)
    assert _on_a_thread(lambda: place(True, False)) == (cores, cores - {min(cores)})


def test_a_compressor_keeping_up_runs_off_the_first_core() -> None:
    frames = rheed_like(6, 60, 80, seed=3)
    before = compress_threads()
    compressor = FrameCompressor(3, threads=2, group_bytes=2 * frames[0].nbytes)
    try:
        for i in range(0, 6, 2):  # one group at a time: each is done before the next is handed over
            handles = [compressor.submit(f) for f in frames[i : i + 2]]
            assert [bytes(h.result()) for h in handles] == [
                compress_frame(f, 3) for f in frames[i : i + 2]
            ]
        cores = process_cores()
        used = {t: frozenset(os.sched_getaffinity(t)) for t in compress_threads() - before}
        assert used and set(used.values()) == {cores - {min(cores)}}, used
    finally:
        compressor.close(wait=True)
