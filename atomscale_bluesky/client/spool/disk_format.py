"""The spool's files: one folder per stream, holding a marker, a lock and the chunk entries.

Layout of ``<root>/<data_id>/``:

* ``stream.json``: ``{"version", "data_id", "endpoint", "kind" ("rheed" | "timeseries"),
  "created_at_ms", "last_upload_ms", "finalized", "info"}`` (``info`` holds the stream's
  settings, e.g. fps; never the API key).
* ``.lock``: an empty file held with ``fcntl.flock`` while a live client owns the stream, so a
  second client (in this or another process) never steals its entries.
* per chunk, the stem ``{spooled_at_ms:013}-{seq:010}-c{chunk_idx}``: ``<stem>.zarr`` (RHEED: the
  shard, exactly the PUT body) or ``<stem>.body`` (time series: the JSON request body), and
  ``<stem>.json``, the sidecar ``{"version", "data_id", "chunk_idx", "spooled_at_ms", "seq",
  "shard_len", "kind", "metadata"}``. Payload first, sidecar last, each via ``<file>.tmp`` and a
  rename, so an entry exists only once complete; deletion removes the sidecar first.

Every file is written by ``write_atomically``, every stream folder is made by
``create_stream_folder`` and every bad file or folder found goes through ``discard_bad_file`` or
``discard_bad_folder``: those are the places that decide how durable the spool is.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "Entry",
    "EntryKey",
    "Payload",
    "StreamMarker",
    "create_stream_folder",
    "discard_bad_file",
    "discard_bad_folder",
    "entry_meta",
    "is_payload_file",
    "is_sidecar_file",
    "is_temp_file",
    "lock_folder",
    "open_payload",
    "payload_nbytes",
    "read_marker",
    "read_sidecar",
    "remove_entry",
    "remove_folder",
    "sidecar_bytes",
    "stream_folder",
    "unlock",
    "write_atomically",
    "write_entry",
    "write_marker",
]

log = logging.getLogger("atomscale_bluesky.client.spool")

FORMAT_VERSION = 1
MARKER_FILE = "stream.json"
LOCK_FILE = ".lock"
SIDECAR_EXT = "json"
PAYLOAD_EXT = {"rheed": "zarr", "timeseries": "body"}
TMP_SUFFIX = ".tmp"

Payload = bytes | list[Any]
"""A chunk's bytes, or buffers that written one after another are its bytes."""
EntryKey = tuple[int, int, str]
"""``(spooled_at_ms, seq, data_id)``: the upload order of entries."""


# ---- entries ------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One spooled chunk: its sidecar record, its stream folder and its bytes on disk."""

    meta: dict[str, Any]
    dir: Path
    nbytes: int

    @property
    def key(self) -> EntryKey:
        return (self.meta["spooled_at_ms"], self.meta["seq"], self.meta["data_id"])

    @property
    def data_id(self) -> str:
        return str(self.meta["data_id"])

    @property
    def chunk_idx(self) -> int:
        return int(self.meta["chunk_idx"])

    @property
    def spooled_at_ms(self) -> int:
        return int(self.meta["spooled_at_ms"])

    @property
    def shard_len(self) -> int:
        return int(self.meta["shard_len"])

    @property
    def stem(self) -> str:
        m = self.meta
        return f"{m['spooled_at_ms']:013d}-{m['seq']:010d}-c{m['chunk_idx']}"

    @property
    def payload_path(self) -> Path:
        return self.dir / f"{self.stem}.{PAYLOAD_EXT[self.meta.get('kind', 'rheed')]}"

    @property
    def sidecar_path(self) -> Path:
        return self.dir / f"{self.stem}.{SIDECAR_EXT}"


def entry_meta(
    data_id: str,
    chunk_idx: int,
    spooled_at_ms: int,
    seq: int,
    payload_len: int,
    kind: str,
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """The sidecar record of a new entry."""
    return {
        "version": FORMAT_VERSION,
        "data_id": data_id,
        "chunk_idx": chunk_idx,
        "spooled_at_ms": spooled_at_ms,
        "seq": seq,
        "shard_len": payload_len,
        "kind": kind,
        "metadata": metadata,
    }


def sidecar_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta).encode()


def payload_nbytes(payload: Payload) -> int:
    if isinstance(payload, bytes):
        return len(payload)
    return sum(memoryview(part).nbytes for part in payload)


def write_entry(entry: Entry, payload: Payload, sidecar: bytes) -> None:
    """Write the payload, then the sidecar; on failure nothing of the entry is left."""
    write_atomically(entry.payload_path, payload)
    try:
        write_atomically(entry.sidecar_path, sidecar)
    except BaseException:
        with contextlib.suppress(OSError):
            entry.payload_path.unlink()
        raise


def remove_entry(entry: Entry) -> None:
    """Delete an entry's files, sidecar first (a payload without sidecar is an orphan)."""
    for path in (entry.sidecar_path, entry.payload_path):
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("could not delete a spooled file: %s", error)


def open_payload(entry: Entry) -> BinaryIO:
    """The entry's payload file, open for reading (uploads stream it; nothing is read whole)."""
    return open(entry.payload_path, "rb")


def read_sidecar(file: Path, data_id: str) -> Entry | None:
    """The entry a sidecar describes, when it is ours and its payload has the recorded size."""
    try:
        meta = json.loads(file.read_bytes())
        entry = Entry(meta, file.parent, 0)
        if meta["version"] != FORMAT_VERSION or meta["data_id"] != data_id:
            return None
        size = entry.payload_path.stat().st_size
        if size != meta["shard_len"]:
            return None
        entry.nbytes = size + file.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry


def is_temp_file(file: Path) -> bool:
    return file.name.endswith(TMP_SUFFIX)


def is_payload_file(file: Path) -> bool:
    return file.suffix.lstrip(".") in PAYLOAD_EXT.values()


def is_sidecar_file(file: Path) -> bool:
    return file.suffix == f".{SIDECAR_EXT}" and file.name != MARKER_FILE


# ---- stream folders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamMarker:
    """The record ``stream.json`` holds for one stream."""

    data_id: str
    endpoint: str
    kind: str
    created_at_ms: int
    last_upload_ms: int
    finalized: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "data_id": self.data_id,
                "endpoint": self.endpoint,
                "kind": self.kind,
                "created_at_ms": self.created_at_ms,
                "last_upload_ms": self.last_upload_ms,
                "finalized": self.finalized,
                "info": self.info,
            }
        ).encode()


def read_marker(folder: Path, default_ms: int) -> StreamMarker | None:
    """The folder's marker; None when it has none naming a stream and an endpoint.

    Times it lacks read as ``default_ms``; a marker with times or info that are not numbers or
    a mapping raises ValueError or TypeError.
    """
    try:
        raw = json.loads((folder / MARKER_FILE).read_bytes())
        data_id = str(raw["data_id"])
        endpoint = str(raw["endpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    created = int(raw.get("created_at_ms", default_ms))
    return StreamMarker(
        data_id=data_id,
        endpoint=endpoint,
        kind=str(raw.get("kind", "rheed")),
        created_at_ms=created,
        last_upload_ms=int(raw.get("last_upload_ms", default_ms)),
        finalized=bool(raw.get("finalized")),
        info=dict(raw.get("info") or {}),
    )


def write_marker(folder: Path, marker: StreamMarker) -> None:
    write_atomically(folder / MARKER_FILE, marker.to_bytes())


def stream_folder(root: Path, data_id: str) -> Path:
    """``<root>/<data_id>``; RuntimeError when the data_id cannot name a folder."""
    safe = data_id and all(c.isascii() and (c.isalnum() or c in "-_") for c in data_id)
    if not safe:
        raise RuntimeError(f"data_id {json.dumps(data_id)} cannot name a spool directory")
    return root / data_id


def create_stream_folder(folder: Path) -> int | None:
    """Make a stream's folder and lock it; None when a live client holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    return lock_folder(folder)


def lock_folder(folder: Path) -> int | None:
    """An exclusive flock on ``<folder>/.lock``; None when a live client holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return fd


def unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)


def remove_folder(folder: Path) -> None:
    """Delete a stream folder the spool is done with."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove %s: %s", folder, error)


def discard_bad_folder(folder: Path) -> None:
    """Get rid of a folder that holds no readable stream record."""
    log.info("removing %s: it has no readable stream record", folder)
    remove_folder(folder)


def discard_bad_file(file: Path) -> None:
    """Get rid of a temp file, an orphan payload or a sidecar that does not describe an entry."""
    log.debug("removing incomplete spool file %s", file)
    with contextlib.suppress(OSError):
        file.unlink()


# ---- writing ------------------------------------------------------------------------------------


def write_atomically(path: Path, data: Payload) -> None:
    """Write ``data`` (bytes, or buffers written one after another) to ``path`` via a rename."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        with open(tmp, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                for part in data:
                    fh.write(part)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
