"""Against the official client and the protocol's exact texts, through a recording endpoint."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pytest

from atomscale_bluesky.client import AtomscaleClient, AtomscaleClientError
from atomscale_bluesky.shards import EMPTY_ENTRY, split_shard

from .conftest import FAST_BACKOFF, rheed_like
from .recorder import recording_server

KEY = "frames.zarr/frames/c/{}/0/0"


def _frames_by_index(shard: bytes, n: int) -> tuple[list[tuple[int, int]], list[bytes | None]]:
    entries, _ = split_shard(shard, n)
    blobs = [None if o == EMPTY_ENTRY else shard[o : o + s] for o, s in entries]
    return entries, blobs


def test_shards_byte_identical_to_the_official_client(tmp_path: Path) -> None:
    official = pytest.importorskip("atomscale.streaming")
    chunks = [rheed_like(20, 48, 64, seed=1), rheed_like(20, 48, 64, seed=2), rheed_like(7, 48, 64)]
    chunks[0][[0, 5]] = 0
    chunks[1][:] = np.random.default_rng(3).integers(0, 256, (20, 48, 64), dtype=np.uint8)
    chunks.append(rheed_like(20, 300, 500, seed=4))
    with recording_server() as rec:
        ref = official.RHEEDStreamer("k", endpoint=rec.url, spool_dir=str(tmp_path / "ref"))
        ref_id = ref.initialize(fps=10.0, rotations_per_min=0.0, chunk_size=20)
        for idx, frames in enumerate(chunks[:3]):
            ref.push(ref_id, idx, frames)
        ref.finalize(ref_id)
        ref2_id = ref.initialize(fps=10.0, rotations_per_min=0.0, chunk_size=20)
        ref.push(ref2_id, 0, chunks[3])
        ref.finalize(ref2_id)
        with AtomscaleClient(
            "k", rec.url, spool_dir=tmp_path / "ours", spool_min_free_bytes=0, clock_sync=False
        ) as client:
            ours = client.open_rheed_stream(fps=10.0)
            for frames in chunks[:3]:
                ours.push(frames)
            ours.finalize()
            ours2 = client.open_rheed_stream(fps=10.0)
            ours2.push(chunks[3])
            ours2.finalize()
        recording = rec.recording()
    pairs = [(ref_id, ours.data_id, i, chunks[i]) for i in range(3)]
    pairs.append((ref2_id, ours2.data_id, 0, chunks[3]))
    for ref_data, our_data, idx, frames in pairs:
        theirs = recording.shards[(ref_data, KEY.format(idx))]
        mine = recording.shards[(our_data, KEY.format(idx))]
        n = len(frames)
        t_entries, t_blobs = _frames_by_index(theirs, n)
        m_entries, m_blobs = _frames_by_index(mine, n)
        assert t_blobs == m_blobs  # every zstd frame byte-identical, zero frames omitted alike
        assert [s for _, s in t_entries] == [s for _, s in m_entries]
        assert len(theirs) == len(mine)
        if [o for o, _ in t_entries if o != EMPTY_ENTRY] == sorted(
            o for o, _ in t_entries if o != EMPTY_ENTRY
        ):
            assert theirs == mine  # same placement: the whole shard, index and CRC identical


def test_request_sequence_and_presign_body_match_the_reference(tmp_path: Path) -> None:
    official = pytest.importorskip("atomscale.streaming")
    frames = rheed_like(20, 8, 6)
    with recording_server() as rec:
        ref = official.RHEEDStreamer("k", endpoint=rec.url, spool_dir=str(tmp_path / "ref"))
        ref_id = ref.initialize(fps=10.0, rotations_per_min=0.0, chunk_size=20, stream_name="probe")
        ref.push(ref_id, 0, frames, 1_700_000_000_000)
        ref.finalize(ref_id)
        with AtomscaleClient(
            "k", rec.url, spool_dir=tmp_path / "ours", spool_min_free_bytes=0
        ) as client:
            ours = client.open_rheed_stream(fps=10.0, stream_name="probe")
            ours.push(frames, 1_700_000_000_000)
            ours.finalize()
        recording = rec.recording()

    creates = [r for r in recording.requests if r["path"] == "/rheed/stream/"]
    assert json.loads(creates[0]["body"]) == json.loads(creates[1]["body"])
    assert creates[0]["body"] == creates[1]["body"]  # same field order and number text
    presigns = [r for r in recording.requests if r["path"].endswith("/upload_urls/")]
    ref_meta, our_meta = (json.loads(p["body"]) for p in presigns)
    for meta in (ref_meta, our_meta):
        meta.pop("data_id")
    # the clock is measured independently by each client: compare the rule, not the offset
    for meta in (ref_meta, our_meta):
        offset = int(meta.pop("clock_offset_ms", "0"))
        meta.pop("clock_uncertainty_ms", None)
        assert int(meta["start_unix_ms_utc"]) == 1_700_000_000_000 + offset
        meta.pop("start_unix_ms_utc")
        meta.pop("end_unix_ms_utc")
    assert ref_meta == our_meta
    assert list(json.loads(presigns[0]["body"])) == list(json.loads(presigns[1]["body"]))
    assert presigns[0]["query"] == presigns[1]["query"]
    puts = [r for r in recording.requests if r["method"] == "PUT"]
    assert all("x-api-key" not in p["headers"] and p["headers"]["content-type"] == "" for p in puts)
    ends = [r for r in recording.requests if r["path"].endswith("/end")]
    assert len(ends) == 2 and all(e["headers"].get("x-api-key") == "k" for e in ends)


def test_presign_refusal_is_final_and_reported(tmp_path: Path) -> None:
    with recording_server() as rec:
        with AtomscaleClient(
            "k",
            rec.url,
            spool_dir=tmp_path,
            spool_min_free_bytes=0,
            clock_sync=False,
            backoff=FAST_BACKOFF,
        ) as client:
            stream = client.open_rheed_stream(fps=10.0)
            rec.script(presign_statuses=[500, 429, 408, 200, 422])
            stream.push(rheed_like(20, 8, 8))
            assert client._spool.drain(stream.data_id, 30)
            stream.push(rheed_like(20, 8, 8, seed=1))
            with pytest.warns(RuntimeWarning, match="1 refused by the backend"):
                report = stream.finalize(drain_timeout_s=30)
        recording = rec.recording()
    assert report.uploaded == 1 and report.failed == 1
    assert report.lost == [
        (
            1,
            "refused by the backend: presigned URL request failed: presign: HTTP 422 "
            'Unprocessable Entity: {"detail": "scripted refusal"}',
        )
    ]
    assert sum(p.endswith("/upload_urls/") for p in recording.paths()) == 5


def test_finalize_end_is_retried_on_503(tmp_path: Path) -> None:
    with recording_server() as rec:
        with AtomscaleClient(
            "k", rec.url, spool_dir=tmp_path, spool_min_free_bytes=0, clock_sync=False
        ) as client:
            stream = client.open_rheed_stream(fps=10.0)
            rec.script(end_statuses=[503, 503])
            t0 = time.monotonic()
            assert stream.finalize().ok
            assert time.monotonic() - t0 >= 1.4  # 0.5 s then 1 s between attempts
            rec.script(end_statuses=[404])
            other = client.open_rheed_stream(fps=10.0)
            with pytest.raises(AtomscaleClientError, match="404"):
                other.finalize()
        ends = [p for p in rec.recording().paths() if p.endswith("/end")]
    assert len(ends) == 4


def test_api_key_never_leaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from atomscale_bluesky.server.runner import running_server

    planted = "PLANTED-Key-7f3a9c"
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    with running_server(data_dir=tmp_path / "srv", api_key=planted) as srv:
        client = AtomscaleClient(
            planted,
            srv.url,
            spool_dir=tmp_path / "spool",
            spool_min_free_bytes=0,
            backoff=FAST_BACKOFF,
            clock_sync=True,
        )
        stream = client.open_rheed_stream(fps=10.0, physical_sample="S", tags=["a"])
        ts = client.open_timeseries_stream()
        srv.reader.set_faults(outage=True, paths=[])  # every chunk stays spooled while we read
        stream.push(rheed_like(20, 8, 8))
        ts.push("t", [1.0], [2.0])
        spool_files = [p for p in (tmp_path / "spool").rglob("*") if p.is_file()]
        assert {".zarr", ".body"} <= {p.suffix for p in spool_files}  # both chunks, on disk
        texts += [p.read_bytes().decode("latin-1") for p in spool_files]
        time.sleep(0.5)  # let retries log
        srv.reader.set_faults(outage=False, error_rate=0.2, drop_rate=0.1, seed=1, paths=[])
        texts += [repr(client), repr(stream), repr(ts), repr(client.config), str(client.status())]
        texts += [repr(stream.finalize(drain_timeout_s=60)), repr(ts.finalize(drain_timeout_s=60))]
        srv.reader.clear_faults()
        try:
            client.finalize("nope")
        except AtomscaleClientError as error:
            texts.append(str(error))
        client.close()
        with AtomscaleClient(
            planted + "-wrong", srv.url, spool_dir=tmp_path / "s2", clock_sync=False
        ) as wrong:
            # a refused key pauses (loudly) instead of raising; the stream waits in the spool
            pending = wrong.open_rheed_stream(fps=10.0)
            assert pending.data_id is None and wrong.status()["auth_paused"]
            texts += [repr(pending), str(wrong.status())]
            texts += [p.read_bytes().decode("latin-1") for p in (tmp_path / "s2").rglob("*.json")]
    texts += [r.getMessage() for r in caplog.records]
    texts += [caplog.text]
    assert len(caplog.records) > 5
    assert not [t for t in texts if re.search("PLANTED-Key", t, re.IGNORECASE)]
