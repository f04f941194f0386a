"""tune_allocator: frame-sized buffers from every thread come from one heap and are reused."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from atomscale_bluesky.allocator import on_glibc, tune_allocator

# In a fresh interpreter: four threads each allocate a 1 MiB buffer and hold it (how much of it is
# mapped, how many arenas serve them), then one thread allocates and frees such a buffer 40 times
# (the page faults that costs).
PROBE = r"""
import ctypes, json, os, resource, sys, tempfile, threading
from atomscale_bluesky.allocator import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
libc.fclose.argtypes = [ctypes.c_void_p]
tuned = tune_allocator() if sys.argv[1] == "tune" else False
MiB = 1 << 20
held, ready, release = [], threading.Barrier(5), threading.Event()

def hold():
    held.append(bytearray(MiB))
    ready.wait()
    release.wait()

threads = [threading.Thread(target=hold) for _ in range(4)]
base = libc.mallinfo2().hblkhd
for t in threads:
    t.start()
ready.wait()
mapped = libc.mallinfo2().hblkhd - base
path = os.path.join(tempfile.mkdtemp(), "info.xml")
fp = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, fp)
libc.fclose(fp)
arenas = open(path).read().count("<heap nr=")
release.set()
for t in threads:
    t.join()
held.clear()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    buffer = bytearray(MiB)
    del buffer
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "mapped": mapped, "arenas": arenas, "faults": faults}))
"""


glibc = pytest.mark.skipif(not on_glibc(), reason="glibc's malloc only")


def _probe(mode: str, **env: str) -> dict:
    """The probe's result in a fresh interpreter whose imports load from bytecode: compiling a
    module leaves large free chunks in the heap, which would serve the frame whatever the
    threshold (so the modules are compiled, and their bytecode written, beforehand)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("MALLOC_", "GLIBC_TUNABLES", "ATOMSCALE_TUNE", "PYTHONDONTWRITEBYTECODE")
        )
    }
    subprocess.run(
        [sys.executable, "-c", "import atomscale_bluesky.allocator, atomscale_bluesky.settings"],
        env=clean, check=True, timeout=60,
    )  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=clean | env, capture_output=True, text=True,
        check=True, timeout=60,
    )  # fmt: skip
    return json.loads(out.stdout)


PAGES = (1 << 20) // resource.getpagesize()  # of one 1 MiB buffer


@glibc
def test_tuned_process_serves_frame_buffers_from_one_reused_heap() -> None:
    untuned, tuned = _probe("plain"), _probe("tune")
    assert untuned["mapped"] >= 1 << 20 or untuned["arenas"] > 1  # glibc's own ways
    assert tuned["tuned"] is True
    assert tuned["mapped"] == 0  # no buffer of a frame's size in a mapping of its own
    assert tuned["arenas"] == 1  # every thread's buffers in the one heap
    assert tuned["faults"] < PAGES  # 40 buffers, reused: not faulted in again


@glibc
def test_environment_switch_and_the_users_own_setting_win() -> None:
    off = _probe("tune", ATOMSCALE_TUNE_MALLOC="0")
    assert off["tuned"] is False and off["arenas"] > 1
    mapped = _probe("tune", MALLOC_MMAP_THRESHOLD_="131072")  # every such buffer mapped afresh
    assert mapped["tuned"] is False
    assert mapped["mapped"] >= 4 << 20 and mapped["faults"] >= 10 * PAGES  # mapped anew each time
    assert _probe("tune", MALLOC_ARENA_MAX="4")["tuned"] is False
    assert _probe("tune", GLIBC_TUNABLES="glibc.malloc.arena_max=4")["tuned"] is False


def test_settings_must_be_positive() -> None:
    with pytest.raises(ValueError, match="mmap_threshold must be a positive"):
        tune_allocator(0)
    with pytest.raises(ValueError, match="trim_threshold must be a positive"):
        tune_allocator(trim_threshold=-1)
    with pytest.raises(ValueError, match="arena_max must be a positive"):
        tune_allocator(arena_max=0)
