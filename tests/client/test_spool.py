"""Spool rules with a controlled clock: retention, no abandonment, recovery, quarantine, modes."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atomscale_bluesky.client.spool import Spool

EP = "http://127.0.0.1:1"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def _invariant(spool: Spool) -> None:
    for stream in spool.streams():
        report = stream.report()
        assert report.spooled == report.uploaded + report.pending + report.failed + report.purged
        assert report.pending >= 0


def test_chunks_wait_without_a_time_limit_unless_a_retention_is_set(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path / "default", EP, min_free_bytes=0, now_ms=clock)
    spool.open_stream("s0", "timeseries", data_id="s0")
    assert spool.enqueue("s0", 0, "timeseries", {"path": "/x"}, b"{}") is None
    clock.ms += 30 * 24 * 3600 * 1000  # a month of outage
    spool.sweep()
    stream = spool.stream("s0")
    assert stream is not None and stream.pending == 1 and not stream.losses
    spool.close()


def test_a_set_retention_purges_with_the_reference_reason(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock, retention_s=24 * 3600.0)
    spool.open_stream("s1", "timeseries", data_id="s1")
    assert spool.enqueue("s1", 0, "timeseries", {"path": "/x"}, b"{}") is None
    clock.ms += 24 * 3600 * 1000 + 1
    spool.sweep()
    stream = spool.stream("s1")
    assert stream is not None and stream.purged == 1 and stream.pending == 0
    assert stream.losses == [(0, "not uploaded within the 24 h retention limit")]
    _invariant(spool)


def test_a_live_stream_idle_beyond_the_abandon_window_is_kept(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock)
    spool.open_stream("r1", "rheed", data_id="r1")
    spool.enqueue("r1", 0, "rheed", {}, b"shard")
    clock.ms += 5 * 3600 * 1000  # a five-hour anneal with the camera stopped
    spool.sweep()
    stream = spool.stream("r1")
    assert stream is not None and stream.closed is None and stream.pending == 1
    assert not stream.finalize_requested and (tmp_path / "r1").exists()
    assert spool.enqueue("r1", 1, "rheed", {}, b"x") is None  # pushes still spool
    _invariant(spool)


def test_an_idle_resumed_stream_is_asked_to_finalize_not_purged(tmp_path: Path) -> None:
    clock = Clock()
    first = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock)
    first.open_stream("r2", "rheed", data_id="r2")
    first.enqueue("r2", 0, "rheed", {}, b"shard")
    first.close()
    clock.ms += 3 * 3600 * 1000
    second = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock)
    second.sweep()
    stream = second.stream("r2")
    assert stream is not None and stream.finalize_requested and stream.pending == 1
    assert stream.closed is None and len(list((tmp_path / "r2").glob("*.zarr"))) == 1
    assert not second.close_stream("r2")  # never closed while a chunk is pending


def test_recovery_quarantines_damaged_files_and_keeps_good_chunks(tmp_path: Path) -> None:
    first = Spool(tmp_path, EP, min_free_bytes=0)
    first.open_stream("r3", "rheed", {"fps": 10.0}, data_id="r3")
    for idx, payload in enumerate([b"A", b"BB", b"CCC", b"DDDD"]):
        assert first.enqueue("r3", idx, "rheed", {"dims": "1,1,1"}, payload) is None
    first.close()
    folder = tmp_path / "r3"
    (folder / "junk.zarr.tmp").write_bytes(b"t")  # an unfinished write: deleted
    (folder / "9999999999999-0000000099-c9.zarr").write_bytes(b"orphan")  # no sidecar
    by_chunk = {
        int(p.stem.rsplit("-c", 1)[1]): p for p in folder.glob("*.json") if p.name != "stream.json"
    }
    by_chunk[1].write_bytes(b"")  # zero-length sidecar
    by_chunk[2].with_suffix(".zarr").write_bytes(b"CC")  # truncated payload
    by_chunk[3].with_suffix(".zarr").write_bytes(b"DDDX")  # same size, other bytes
    (tmp_path / "nomarker").mkdir()
    (tmp_path / "nomarker" / "x.zarr").write_bytes(b"?")
    second = Spool(tmp_path, EP, min_free_bytes=0)
    stream = second.stream("r3")
    assert stream is not None and stream.pending == 1 and stream.info == {"fps": 10.0}
    assert stream.spooled == 4 and stream.purged == 3
    reasons = dict(stream.losses)
    assert "sidecar is empty" in reasons[1]
    assert "truncated" in reasons[2]
    assert "CRC32C" in reasons[3]
    _invariant(second)
    left = sorted(p.name for p in folder.iterdir())
    assert left == sorted([".lock", "stream.json", *(p.name for p in folder.glob("*-c0.*"))])
    quarantine = tmp_path / "quarantine"
    moved = {Path(q["path"]).name: q["reason"] for q in second.status()["quarantined"]}
    assert any("without a sidecar" in r for r in moved.values())
    assert "nomarker" in moved and "stream.json is missing" in moved["nomarker"]
    assert (quarantine / "nomarker" / "x.zarr").read_bytes() == b"?"
    for record in second.status()["quarantined"]:
        assert Path(record["path"]).exists()
    assert len(list(quarantine.glob("r3/*.reason.txt"))) == 7  # 3 sidecars, their payloads, orphan
    assert not (folder / "junk.zarr.tmp").exists()


def test_an_empty_stream_json_is_rebuilt_from_the_sidecars(tmp_path: Path) -> None:
    first = Spool(tmp_path, EP, min_free_bytes=0)
    first.open_stream("r4", "rheed", data_id="r4")
    first.enqueue("r4", 0, "rheed", {"raw_frame_rate": 10.0, "chunk_size": 20}, b"A")
    first.enqueue("r4", 1, "rheed", {"raw_frame_rate": 10.0, "chunk_size": 20}, b"B")
    first.close()
    (tmp_path / "r4" / "stream.json").write_bytes(b"")
    second = Spool(tmp_path, EP, min_free_bytes=0)
    stream = second.stream("r4")
    assert stream is not None and stream.pending == 2 and stream.data_ids == ["r4"]
    assert json.loads((tmp_path / "r4" / "stream.json").read_bytes())["endpoint"] == EP
    (moved,) = second.status()["quarantined"]
    assert "stream.json is empty" in moved["reason"]


def test_an_empty_stream_json_of_an_uncreated_stream_quarantines_the_folder(tmp_path: Path) -> None:
    first = Spool(tmp_path, EP, min_free_bytes=0)
    first.open_stream("local-abc", "rheed", create={"kind": "rheed"}, linked=False)
    first.enqueue("local-abc", 0, "rheed", {}, b"A")
    first.close()
    (tmp_path / "local-abc" / "stream.json").write_bytes(b"")
    second = Spool(tmp_path, EP, min_free_bytes=0)
    assert second.stream("local-abc") is None
    assert not (tmp_path / "local-abc").exists()
    assert len(list((tmp_path / "quarantine" / "local-abc").glob("*.zarr"))) == 1
    (moved,) = second.status()["quarantined"]
    assert "cannot be rebuilt" in moved["reason"]


def test_other_endpoints_and_locked_folders_are_left_alone(tmp_path: Path) -> None:
    first = Spool(tmp_path, EP, min_free_bytes=0)
    first.open_stream("r5", "rheed", data_id="r5")
    first.enqueue("r5", 0, "rheed", {}, b"A")
    assert Spool(tmp_path, EP).resumed == []  # r5 still locked by `first`
    first.close()
    elsewhere = Spool(tmp_path, "http://elsewhere")
    elsewhere.open_stream("keep", "rheed", data_id="keep")
    elsewhere.close()
    second = Spool(tmp_path, EP, min_free_bytes=0)
    assert second.resumed == ["r5"]
    assert (tmp_path / "keep" / "stream.json").exists()


def test_spool_files_are_private(tmp_path: Path) -> None:
    root = tmp_path / "private"
    spool = Spool(root, EP, min_free_bytes=0)
    spool.open_stream("r6", "timeseries", data_id="r6")
    spool.enqueue("r6", 0, "timeseries", {"path": "/x"}, b"{}")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "r6").stat().st_mode) == 0o700
    for file in (root / "r6").iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file


def test_fsync_covers_payload_sidecar_and_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    spool = Spool(tmp_path, EP, min_free_bytes=0)
    spool.open_stream("r7", "rheed", data_id="r7")
    monkeypatch.setattr(os, "fsync", spy)
    spool.enqueue("r7", 0, "rheed", {}, b"A")
    assert any(p.endswith(".zarr.tmp") for p in synced)
    assert any(p.endswith(".json.tmp") for p in synced)
    assert str(tmp_path / "r7") in synced
    synced.clear()
    quick = Spool(tmp_path / "nofsync", EP, min_free_bytes=0, fsync=False)
    quick.open_stream("r8", "rheed", data_id="r8")
    quick.enqueue("r8", 0, "rheed", {}, b"A")
    assert synced == []


def test_disk_full_and_write_errors_drop_with_reasons_then_recover(tmp_path: Path) -> None:
    free = {"bytes": 10**12}
    spool = Spool(
        tmp_path, EP, min_free_bytes=1000, max_bytes=10**9, free_space=lambda _: free["bytes"]
    )
    spool.open_stream("r9", "rheed", data_id="r9")
    assert spool.enqueue("r9", 0, "rheed", {}, b"A") is None
    free["bytes"] = 500
    reason = spool.enqueue("r9", 1, "rheed", {}, b"B")
    assert reason is not None and reason.startswith("disk has 500 bytes free")
    free["bytes"] = 10**12
    (tmp_path / "r9").chmod(0o500)  # the folder cannot take files: the write fails
    try:
        failed = spool.enqueue("r9", 2, "rheed", {}, b"C")
    finally:
        (tmp_path / "r9").chmod(0o700)
    if os.geteuid() != 0:
        assert failed is not None and failed.startswith("could not write to the spool: ")
    assert spool.enqueue("r9", 3, "rheed", {}, b"D") is None
    stream = spool.stream("r9")
    assert stream is not None
    assert [i for i, _ in stream.losses] == ([1, 2] if os.geteuid() != 0 else [1])
    assert all(r.startswith("dropped: ") for _, r in stream.losses)
    _invariant(spool)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.sampled_from(["push", "upload", "fail", "purge", "release", "drop"]),
        min_size=1,
        max_size=40,
    )
)
def test_accounting_invariant_under_interleavings(
    tmp_path_factory: pytest.TempPathFactory, ops: list[str]
) -> None:
    root = tmp_path_factory.mktemp("inv")
    free = {"bytes": 10**12}
    spool = Spool(root, EP, min_free_bytes=0, free_space=lambda _: free["bytes"])
    spool.open_stream("s", "rheed", data_id="s")
    stop = threading.Event()
    held = []
    idx = 0
    for op in ops:
        if op in ("push", "drop"):
            free["bytes"] = 0 if op == "drop" else 10**12
            spool.enqueue("s", idx, "rheed", {}, b"x" * (idx + 1))
            idx += 1
        else:
            entry = spool.claim(stop, timeout=0)
            if entry is None:
                continue
            if op == "release":
                spool.release(entry)
            else:
                fate = {"upload": "uploaded", "fail": "failed", "purge": "purged"}[op]
                spool.finish(entry, fate, "reason")  # type: ignore[arg-type]
        _invariant(spool)
        held.append(op)
    stream = spool.stream("s")
    assert stream is not None
    assert stream.spooled + stream.dropped == idx
    assert len(list((root / "s").glob("*.zarr"))) == stream.pending
    spool.close()
