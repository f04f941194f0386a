"""Spool rules with a controlled clock: retention, abandonment, recovery clean-up, locking."""

from __future__ import annotations

from pathlib import Path

from atomscale_bluesky.client.spool import Spool

EP = "http://127.0.0.1:1"


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def test_retention_purges_with_the_reference_reason(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock)
    spool.open_stream("s1", "timeseries")
    assert spool.enqueue("s1", 0, "timeseries", {"path": "/x"}, b"{}") is None
    clock.ms += 24 * 3600 * 1000 + 1
    spool.sweep()
    counts = spool.close_stream("s1", "finalized")
    assert counts is not None and counts["chunks_purged"] == 1
    assert counts["lost"] == [(0, "not uploaded within the 24 h retention limit")]


def test_abandoned_rheed_stream_is_closed_and_purged(tmp_path: Path) -> None:
    clock = Clock()
    spool = Spool(tmp_path, EP, min_free_bytes=0, now_ms=clock)
    spool.open_stream("r1", "rheed")
    spool.enqueue("r1", 0, "rheed", {}, b"shard")
    clock.ms += 2 * 3600 * 1000 + 1
    spool.sweep()
    stream = spool.stream("r1")
    assert stream is not None and stream.closed == "abandoned" and stream.purged == 1
    assert not (tmp_path / "r1").exists()
    assert spool.enqueue("r1", 1, "rheed", {}, b"x") == "stream was abandoned"


def test_recovery_keeps_complete_entries_and_cleans_the_rest(tmp_path: Path) -> None:
    first = Spool(tmp_path, EP, min_free_bytes=0)
    first.open_stream("r2", "rheed", {"fps": 10.0})
    first.enqueue("r2", 0, "rheed", {"dims": "1,1,1"}, b"A")
    first.enqueue("r2", 1, "rheed", {"dims": "1,1,1"}, b"B")
    folder = tmp_path / "r2"
    (folder / "junk.zarr.tmp").write_bytes(b"t")
    (folder / "9999999999999-0000000099-c9.zarr").write_bytes(b"orphan")
    sidecars = sorted(p for p in folder.glob("*-c1.json"))
    sidecars[0].write_text("{broken")
    (tmp_path / "nomarker").mkdir()
    assert Spool(tmp_path, EP).resumed == []  # r2 still locked by `first`
    first.close()
    elsewhere = Spool(tmp_path, "http://elsewhere")
    elsewhere.open_stream("keep", "rheed")
    elsewhere.close()
    second = Spool(tmp_path, EP, min_free_bytes=0)
    assert second.resumed == ["r2"]
    stream = second.stream("r2")
    assert stream is not None and stream.pending == 1 and stream.info == {"fps": 10.0}
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [".lock", "stream.json", *(p.name for p in folder.glob("*-c0.*"))]
    )
    assert not (tmp_path / "nomarker").exists()
    assert (tmp_path / "keep" / "stream.json").exists()  # another endpoint's: untouched
    assert "keep" not in second.resumed
