"""Spooled payloads written past the page cache (O_DIRECT) and uploaded from memory."""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import mmap
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from atomscale_bluesky.client.spool import Spool, direct_write
from atomscale_bluesky.client.spool.direct_write import ALIGN, DIRECT_MIN_BYTES, STAGE_BYTES
from atomscale_bluesky.client.spool.held_payloads import HeldPayloads, PayloadReader

from .conftest import rheed_like, stored_chunks

EP = "http://127.0.0.1:1"


def _cached_pages(path: Path) -> tuple[int, int]:
    """(pages of ``path`` in the page cache, pages in all), from the kernel's ``mincore``."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    size = path.stat().st_size
    pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, size, vec) == 0, ctypes.get_errno()
            return sum(b & 1 for b in vec.raw), pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def _parts(total: int, seed: int = 0) -> list[bytes]:
    """Random buffers of uneven sizes adding up to ``total`` bytes (like zstd frames)."""
    rng = np.random.default_rng(seed)
    out, left = [], total
    while left:
        n = min(left, int(rng.integers(1, 400_000)))
        out.append(rng.integers(0, 256, n, dtype=np.uint8).tobytes())
        left -= n
    return out


def _spool_one(root: Path, payload: Any, **options: Any) -> tuple[Spool, Path]:
    spool = Spool(root, EP, min_free_bytes=0, **options)
    spool.open_stream("s", "rheed", data_id="s")
    assert spool.enqueue("s", 0, "rheed", {}, payload) is None
    (path,) = root.glob("s/*.zarr")
    return spool, path


@pytest.mark.parametrize(
    "total",
    [DIRECT_MIN_BYTES, 3 * STAGE_BYTES, 3 * STAGE_BYTES + 1, 2 * STAGE_BYTES + ALIGN - 1,
     STAGE_BYTES + 12_345],
)  # fmt: skip
def test_a_large_payload_is_written_past_the_page_cache(tmp_path: Path, total: int) -> None:
    parts = _parts(total)
    spool, path = _spool_one(tmp_path / "direct", parts)
    if not spool.status()["direct_io"]:
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    cached, pages = _cached_pages(path)  # before anything reads the file
    assert cached <= 1, f"{cached} of {pages} pages in the page cache"  # only an unaligned tail
    assert path.read_bytes() == b"".join(parts)
    spool.close()
    buffered, path = _spool_one(tmp_path / "buffered", parts, direct_io=False)
    assert _cached_pages(path)[0] >= 0.9 * pages  # what the direct write saves
    assert path.read_bytes() == b"".join(parts)
    buffered.close()
    # a new spool resumes the entry: its checksum holds
    again = Spool(tmp_path / "direct", EP, min_free_bytes=0)
    assert not again.quarantined and again.status()["chunks_pending"] == 1
    again.close()


def test_small_payloads_and_time_series_bodies_are_written_buffered(tmp_path: Path) -> None:
    parts = _parts(DIRECT_MIN_BYTES - 1)
    spool, path = _spool_one(tmp_path, parts)
    cached, pages = _cached_pages(path)
    assert cached >= 0.9 * pages
    assert path.read_bytes() == b"".join(parts)
    spool.close()


def test_a_filesystem_refusing_o_direct_gets_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The system refuses the flag at open (as tmpfs did before Linux 6.6), or at the first
    write (an alignment the device does not take): the spool writes buffered from then on."""
    real_open, real_write = os.open, os.write
    refused: list[str] = []

    def open_refusing(path: Any, flags: int, *args: Any) -> int:
        if flags & getattr(os, "O_DIRECT", 0):
            refused.append("open")
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_open(path, flags, *args)

    def write_refusing(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0):
            refused.append("write")
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    caplog.set_level(logging.INFO, logger=direct_write.__name__)
    for name, patch in (("open", open_refusing), ("write", write_refusing)):
        monkeypatch.setattr(os, name, patch)
        parts = _parts(2 * STAGE_BYTES + 777, seed=len(refused))
        spool, path = _spool_one(tmp_path / name, parts)
        spool.open_stream("t", "rheed", data_id="t")
        assert spool.enqueue("t", 0, "rheed", {}, parts[::-1]) is None
        monkeypatch.undo()
        assert path.read_bytes() == b"".join(parts)
        assert (next((tmp_path / name).glob("t/*.zarr"))).read_bytes() == b"".join(parts[::-1])
        assert not spool.status()["direct_io"]
        spool.close()
    assert refused == ["open", "write"]  # once each: the second chunk was not tried direct
    assert sum("refused O_DIRECT" in r.getMessage() for r in caplog.records) == 2


def test_an_upload_sends_the_payload_held_in_memory(server: Any, make_client: Any) -> None:
    """While the server is down the chunk waits; its file is then damaged on disk. The upload
    sends what the spool holds in memory, so the server stores the frames pushed."""
    client = make_client(server)
    stream = client.open_rheed_stream(fps=10.0)
    server.reader.set_faults(outage=True, outage_mode="drop")
    frames = rheed_like(20, 480, 640, seed=3)  # a chunk of a few MB: written with O_DIRECT
    idx = stream.push(frames)
    status = client.status()
    assert status["chunks_pending"] == 1 and status["held_bytes"] > DIRECT_MIN_BYTES
    (path,) = Path(status["dir"]).glob("*/*.zarr")
    path.write_bytes(bytes(path.stat().st_size))
    server.reader.set_faults(outage=False)
    report = stream.finalize(drain_timeout_s=60)
    assert report.ok and report.uploaded == 1, report
    assert np.array_equal(stored_chunks(server.reader, stream.data_id, 20)[idx], frames)
    assert client.status()["held_bytes"] == 0


def test_held_payloads_keep_to_their_budget(tmp_path: Path) -> None:
    spool = Spool(tmp_path, EP, min_free_bytes=0, hold_bytes=5_000)
    spool.open_stream("s", "timeseries", data_id="s")
    for i, body in enumerate([b"a" * 3_000, b"b" * 3_000]):
        assert spool.enqueue("s", i, "timeseries", {"path": "/x"}, body) is None
    assert spool.status()["held_bytes"] == 3_000
    stop = threading.Event()
    first, second = spool.claim(stop, 1.0), spool.claim(stop, 1.0)
    assert first is not None and second is not None
    with spool.open_payload(first) as held, spool.open_payload(second) as from_disk:
        assert isinstance(held, PayloadReader) and not isinstance(from_disk, PayloadReader)
        assert held.read() == b"a" * 3_000 and from_disk.read() == b"b" * 3_000
    spool.finish(first, "uploaded")
    assert spool.status()["held_bytes"] == 0
    spool.close()


def test_payload_reader_reads_across_buffers() -> None:
    parts = [b"abc", memoryview(b"defgh"), bytearray(b""), np.frombuffer(b"ijklmnop", np.uint8)]
    reader = PayloadReader(parts)
    assert reader.seek(0, os.SEEK_END) == 16 and reader.seek(0) == 0
    assert [reader.read(4) for _ in range(5)] == [b"abcd", b"efgh", b"ijkl", b"mnop", b""]
    reader.seek(2)
    assert reader.read(-1) == b"cdefghijklmnop"
    reader.seek(-3, os.SEEK_END)
    buffer = bytearray(8)
    assert reader.readinto(buffer) == 3 and buffer[:3] == b"nop"
    with pytest.raises(ValueError):
        reader.seek(-1)
    held = HeldPayloads(max_bytes=10)
    assert held.hold("k", [b"x" * 6], 6) and not held.hold("j", [b"y" * 6], 6)
    assert held.nbytes == 6 and held.reader("j") is None
    held.drop("k")
    assert held.nbytes == 0 and held.reader("k") is None


def test_a_short_write_and_concurrent_writers_keep_the_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device taking part of a direct write (the rest goes buffered), and four threads
    writing at once through the writer's pool of staging buffers."""
    real_write = os.write
    shortened: list[int] = []

    def short_write(fd: int, data: Any) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & getattr(os, "O_DIRECT", 0) and not shortened:
            shortened.append(fd)
            return real_write(fd, memoryview(data)[: len(data) // 2 // ALIGN * ALIGN])
        return real_write(fd, data)

    spool = Spool(tmp_path, EP, min_free_bytes=0)
    if not spool.status()["direct_io"]:
        pytest.skip(f"the filesystem of {tmp_path} refuses O_DIRECT")
    payloads = {f"s{i}": _parts(STAGE_BYTES + 5_000 * i + 3, seed=i) for i in range(5)}
    for name in payloads:
        spool.open_stream(name, "rheed", data_id=name)
    monkeypatch.setattr(os, "write", short_write)
    assert spool.enqueue("s0", 0, "rheed", {}, payloads["s0"]) is None
    monkeypatch.undo()
    assert shortened and spool.status()["direct_io"]  # a short write is no refusal
    errors: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for idx in range(3):
                assert spool.enqueue(name, idx, "rheed", {}, payloads[name]) is None
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in list(payloads)[1:]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for name, parts in payloads.items():
        files = sorted((tmp_path / name).glob("*.zarr"))
        assert len(files) == (1 if name == "s0" else 3)
        assert all(f.read_bytes() == b"".join(parts) for f in files)
    spool.close()


def test_held_payloads_are_let_go_with_their_stream_and_the_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, EP, min_free_bytes=0)
    for name in ("refused", "kept"):
        spool.open_stream(name, "timeseries", data_id=name)
        assert spool.enqueue(name, 0, "timeseries", {"path": "/x"}, b"x" * 1000) is None
    assert spool.status()["held_bytes"] == 2000
    spool.fail_stream("refused", "the backend refused the stream")
    assert spool.status()["held_bytes"] == 1000
    spool.close()
    assert spool.status()["held_bytes"] == 0
    spool.open_stream("late", "timeseries", data_id="late")
    spool.enqueue("late", 0, "timeseries", {"path": "/x"}, b"y" * 1000)  # after close
    assert spool.status()["held_bytes"] == 0


def _mount_types() -> dict[str, str]:
    """Mount point -> filesystem type, from /proc/mounts."""
    with open("/proc/mounts") as fh:
        return {fields[1]: fields[2] for fields in (line.split() for line in fh) if len(fields) > 2}


def test_a_spool_in_memory_is_written_buffered() -> None:
    mounts = _mount_types()
    if mounts.get("/dev/shm") != "tmpfs":
        pytest.skip("/dev/shm is not a tmpfs here")
    assert direct_write.memory_filesystem(Path("/dev/shm")) == "tmpfs"
    writer = direct_write.DirectWriter(Path("/dev/shm"))
    assert not writer.enabled and not writer.wants(10 * DIRECT_MIN_BYTES)
    if mounts.get("/") not in ("tmpfs", "ramfs"):
        assert direct_write.memory_filesystem(Path("/")) is None
