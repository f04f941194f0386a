"""tune_allocator: frame-sized buffers stay in their own mappings after large blocks were freed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from atomscale_bluesky.allocator import tune_allocator

# In a fresh interpreter: free one 8 MB block (glibc then raises its mmap threshold to 8 MB unless
# it is fixed), then allocate a 640x480 frame and see whether it got its own mapping.
PROBE = r"""
import ctypes, json, sys
from atomscale_bluesky.allocator import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
tuned = tune_allocator() if sys.argv[1] == "tune" else False
big = bytearray(8 * 1024 * 1024)
del big
before = libc.mallinfo2().hblkhd
frame = bytearray(640 * 480)
after = libc.mallinfo2().hblkhd
print(json.dumps({"tuned": tuned, "mapped": after - before}))
"""


def _is_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        return False


glibc = pytest.mark.skipif(not _is_glibc(), reason="glibc's malloc only")


def _probe(mode: str, **env: str) -> dict:
    """The probe's result in a fresh interpreter whose imports load from bytecode: compiling a
    module leaves large free chunks in the heap, which would serve the frame whatever the
    threshold (so the modules are compiled, and their bytecode written, beforehand)."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MALLOC_", "ATOMSCALE_TUNE", "PYTHONDONTWRITEBYTECODE"))
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


@glibc
def test_tuned_process_maps_frames_after_a_large_block_was_freed() -> None:
    untuned, tuned = _probe("plain"), _probe("tune")
    assert untuned["mapped"] == 0  # glibc's moving threshold put the frame in a heap
    assert tuned["tuned"] is True and tuned["mapped"] >= 640 * 480


@glibc
def test_environment_switch_and_the_users_own_setting_win() -> None:
    assert _probe("tune", ATOMSCALE_TUNE_MALLOC="0") == {"tuned": False, "mapped": 0}
    assert _probe("tune", MALLOC_MMAP_THRESHOLD_="8388608")["tuned"] is False


def test_a_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        tune_allocator(0)
