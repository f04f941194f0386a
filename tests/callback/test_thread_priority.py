"""Background threads run below the process's priority; the RunEngine's thread keeps its own.

Read back from the kernel (``getpriority`` of each thread id) during and after a real run.
"""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest
from bluesky.plans import count

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import AtomscaleClient
from atomscale_bluesky.settings import load_settings
from atomscale_bluesky.thread_priority import (
    DEFAULT_THREAD_NICE,
    check_thread_nice,
    lower_this_thread,
    resolve_thread_nice,
)

from .devices import MemoryCamera

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's"
)


def _nice(tid: int | None) -> int:
    assert tid is not None
    return os.getpriority(os.PRIO_PROCESS, tid)


def _in_thread(target, *args):
    """``target(*args)`` on a new thread: (its result, its nice value after)."""
    out: dict[str, object] = {}

    def run() -> None:
        out["result"] = target(*args)
        out["nice"] = _nice(threading.get_native_id())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out["result"], out["nice"]


def test_a_thread_lowers_only_itself_and_never_rises() -> None:
    base = _base_below(4)
    assert _in_thread(lower_this_thread, 3) == (base + 3, base + 3)
    assert _in_thread(lower_this_thread, 0) == (None, base)
    assert _nice(threading.get_native_id()) == base  # the calling thread is untouched

    def lowered_then_asked_less() -> tuple[int | None, int]:
        lower_this_thread(4)
        return _in_thread(lower_this_thread, 1)  # a child inherits 4 and is not raised to 1

    (child, child_nice), _ = _in_thread(lowered_then_asked_less)
    assert child == child_nice == base + 4


def test_the_increment_stops_at_the_lowest_priority() -> None:
    result, nice = _in_thread(lower_this_thread, 19)
    assert result == nice == 19


@pytest.mark.parametrize("bad", [-1, 20, 2.5, "3", True, None])
def test_a_bad_increment_is_refused_naming_the_range(bad) -> None:
    with pytest.raises(ValueError, match="thread_nice must be an integer from 0 to 19"):
        check_thread_nice(bad)


def test_the_argument_wins_over_the_setting_which_wins_over_the_default() -> None:
    assert resolve_thread_nice(None, None) == DEFAULT_THREAD_NICE == 0
    assert resolve_thread_nice(None, 3) == 3
    assert resolve_thread_nice(0, 3) == 0
    assert resolve_thread_nice(12, None) == 12
    with pytest.raises(ValueError, match="thread_nice"):
        AtomscaleCallback(endpoint="http://127.0.0.1:9", thread_nice=25)


def _names_and_nice() -> dict[str, int]:
    return {t.name: _nice(t.native_id) for t in threading.enumerate() if t.native_id}


def _base_below(nice: int) -> int:
    """This process's nice value, when ``nice`` more steps stay within Linux's range."""
    base = _nice(os.getpid())
    if base + nice > 19:
        pytest.skip("the test process already runs at the lowest priority")
    return base


def _client(server, tmp_path, **options) -> AtomscaleClient:
    return AtomscaleClient(
        api_key=server.api_key,
        endpoint=server.url,
        spool_dir=tmp_path / "spool",
        clock_sync=False,
        **options,
    )


@pytest.mark.parametrize("nice", [0, 6])
def test_a_run_uploads_from_lowered_threads_while_the_run_engine_keeps_its_priority(
    server, tmp_path, RE, nice
) -> None:
    base = _base_below(nice)
    seen: dict[str, int] = {}

    def look(name: str, doc: dict) -> None:
        if name == "event" and doc["seq_num"] == 30:  # mid-run, from the RunEngine's thread
            seen["run_engine"] = _nice(threading.get_native_id())
            seen.update(_names_and_nice())

    settings = load_settings({"ATOMSCALE_THREAD_NICE": str(nice)})
    with _client(server, tmp_path, settings=settings) as client:
        assert client.thread_nice == nice
        callback = AtomscaleCallback(client, settings=settings)
        assert callback.options.thread_nice == nice
        cam = MemoryCamera(name="cam")
        RE.subscribe(callback)
        RE.subscribe(look)
        RE(count([cam], num=40))
        assert callback.flush(60)
        seen.update(_names_and_nice())  # the finalizer, started at the run's end
        callback.close()
    (rheed,) = callback.summaries[0].rheed
    assert rheed.frames == 40 and callback.summaries[0].lost == 0
    assert seen["run_engine"] == base
    assert seen["atomscale-local-server"] == base  # the server in this process is not ours
    background = {
        k: v
        for k, v in seen.items()
        if k.startswith(("atomscale-callback", "atomscale-upload", "atomscale-spool-sweep"))
        or k.startswith("atomscale-finalize")
    }
    assert {"atomscale-callback", "atomscale-upload-0", "atomscale-spool-sweep"} <= set(background)
    assert set(background.values()) == {base + nice}, background


@pytest.mark.parametrize("nice", [0, 5])
def test_compression_threads_run_at_the_clients_nice(server, tmp_path, nice) -> None:
    base = _base_below(nice)
    frames = np.random.default_rng(1).integers(0, 200, size=(20, 48, 64), dtype=np.uint8)
    with _client(server, tmp_path, thread_nice=nice) as client:
        stream = client.open_rheed_stream(fps=10.0, chunk_size=20)
        ahead = [stream.compress_ahead(f) for f in frames]
        stream.push(list(frames), compressed=ahead)  # waits for the pool's results
        compress = {k: v for k, v in _names_and_nice().items() if "compress" in k}
        assert compress and set(compress.values()) == {base + nice}, compress
        assert stream.finalize().ok
    assert np.array_equal(server.reader.frames(stream.data_id), frames)
