"""The spool's files: one folder per stream, holding a marker, a lock and the chunk entries.

Layout of ``<root>/<data_id>/``:

* ``stream.json``: ``{"version", "data_id", "endpoint", "kind" ("rheed" | "timeseries"),
  "created_at_ms", "last_upload_ms", "finalized", "info", "local_id", "data_ids", "create",
  "linked", "finalize_requested"}``. ``data_id`` is the remote id (null until the server created
  the stream), ``data_ids`` every remote part in order (continuations after a stale refusal),
  ``create`` the full creation request (so a later client can create the stream or a new part),
  ``info`` the stream's settings, e.g. fps; never the API key.
* ``.lock``: an empty file held with ``fcntl.flock`` while a live client owns the stream, so a
  second client (in this or another process) never steals its entries.
* per chunk, the stem ``{spooled_at_ms:013}-{seq:010}-c{chunk_idx}``: ``<stem>.zarr`` (RHEED: the
  shard, exactly the PUT body) or ``<stem>.body`` (time series: the JSON request body), and
  ``<stem>.json``, the sidecar ``{"version", "data_id" (the stream's spool key: its folder
  name), "chunk_idx", "spooled_at_ms", "seq", "shard_len", "crc32c", "endpoint", "kind",
  "metadata"}``. Payload first, sidecar last, each via ``<file>.tmp``, fsync and a rename, then
  the folder is fsynced: an entry exists only once complete and durable; deletion removes the
  sidecar first.

Files are created 0600 and folders 0700 (owner only). With ``fsync=False`` (for measuring its
cost) writes skip the fsyncs and a power loss may lose or truncate recent entries.

Every file is written by ``write_atomically``, every stream folder is made by
``create_stream_folder`` and every bad file or folder found goes through ``discard_bad_file`` or
``discard_bad_folder``, which move it under ``<root>/quarantine/`` with a reason file (see
``quarantine``); only ``.tmp`` leftovers, never counted as spooled, are deleted.
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

import crc32c

from .direct_write import DirectWriter
from .quarantine import QUARANTINE_DIR, Quarantined, move_aside

__all__ = [
    "QUARANTINE_DIR",
    "BadEntry",
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
    "make_private_dir",
    "open_payload",
    "payload_crc32c",
    "payload_nbytes",
    "payload_parts",
    "read_marker",
    "read_sidecar",
    "remove_entry",
    "remove_folder",
    "remove_temp_file",
    "sidecar_bytes",
    "stream_folder",
    "sync_directory",
    "unlock",
    "write_atomically",
    "write_entry",
    "write_marker",
]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER_FILE = "stream.json"
LOCK_FILE = ".lock"
SIDECAR_EXT = "json"
PAYLOAD_EXT = {"rheed": "zarr", "timeseries": "body"}
TMP_SUFFIX = ".tmp"
FILE_MODE = 0o600
DIR_MODE = 0o700

Payload = bytes | list[Any]
"""A chunk's bytes, or buffers that written one after another are its bytes."""
EntryKey = tuple[int, int, str]
"""``(spooled_at_ms, seq, data_id)``: the upload order of entries."""


class BadEntry(Exception):
    """A sidecar or payload that does not make a complete entry; the message says why."""


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
    def local_id(self) -> str:
        """The stream's spool key (its folder name)."""
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
    local_id: str,
    chunk_idx: int,
    spooled_at_ms: int,
    seq: int,
    payload: Payload,
    kind: str,
    metadata: dict[str, Any],
    endpoint: str,
) -> dict[str, Any]:
    """The sidecar record of a new entry (with the payload's length and CRC32C)."""
    return {
        "version": FORMAT_VERSION,
        "data_id": local_id,
        "chunk_idx": chunk_idx,
        "spooled_at_ms": spooled_at_ms,
        "seq": seq,
        "shard_len": payload_nbytes(payload),
        "crc32c": payload_crc32c(payload),
        "endpoint": endpoint,
        "kind": kind,
        "metadata": metadata,
    }


def sidecar_bytes(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta).encode()


def payload_parts(payload: Payload) -> list[Any]:
    """The payload as the buffers that, one after another, are its bytes."""
    return [payload] if isinstance(payload, bytes) else list(payload)


def payload_nbytes(payload: Payload) -> int:
    if isinstance(payload, bytes):
        return len(payload)
    return sum(memoryview(part).nbytes for part in payload)


def payload_crc32c(payload: Payload) -> int:
    """CRC32C of the payload's bytes, so recovery can tell a damaged payload from a good one."""
    if isinstance(payload, bytes):
        return int(crc32c.crc32c(payload))
    value = 0
    for part in payload:
        value = crc32c.crc32c(memoryview(part).cast("B"), value)
    return int(value)


def file_crc32c(path: Path) -> int:
    value = 0
    with open(path, "rb") as fh:
        while piece := fh.read(1 << 20):
            value = crc32c.crc32c(piece, value)
    return int(value)


def write_entry(
    entry: Entry,
    payload: Payload,
    sidecar: bytes,
    *,
    fsync: bool = True,
    direct: DirectWriter | None = None,
) -> None:
    """Write the payload (through ``direct`` when given), then the sidecar, then sync the
    folder; on failure nothing is left.

    When this returns (with ``fsync``) both files and their names are on stable storage: only
    then does the chunk count as spooled.
    """
    write_atomically(entry.payload_path, payload, fsync=fsync, sync_dir=False, direct=direct)
    try:
        write_atomically(entry.sidecar_path, sidecar, fsync=fsync, sync_dir=fsync)
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


def read_sidecar(file: Path, local_id: str) -> Entry:
    """The entry a sidecar describes; BadEntry (with the reason) when it is not a complete one.

    Complete means: the sidecar parses, names this stream, and its payload has the recorded
    size and (for sidecars that record one) the recorded CRC32C.
    """
    try:
        raw = file.read_bytes()
    except OSError as error:
        raise BadEntry(f"sidecar unreadable: {error}") from None
    if not raw:
        raise BadEntry("sidecar is empty (0 bytes)")
    try:
        meta = json.loads(raw)
        entry = Entry(meta, file.parent, 0)
        version, owner, recorded = meta["version"], meta["data_id"], int(meta["shard_len"])
        _ = entry.payload_path, entry.stem
    except (ValueError, KeyError, TypeError) as error:
        raise BadEntry(f"sidecar is not a valid record ({type(error).__name__}: {error})") from None
    if version != FORMAT_VERSION:
        raise BadEntry(f"sidecar has format version {version!r}, not {FORMAT_VERSION}")
    if owner != local_id:
        raise BadEntry(f"sidecar names stream {owner!r}, not this folder's {local_id!r}")
    try:
        size = entry.payload_path.stat().st_size
    except FileNotFoundError:
        raise BadEntry(f"payload {entry.payload_path.name} is missing") from None
    except OSError as error:
        raise BadEntry(f"payload unreadable: {error}") from None
    if size != recorded:
        raise BadEntry(f"payload is {size} bytes, the sidecar records {recorded} (truncated)")
    expected = meta.get("crc32c")
    if expected is not None:
        try:
            actual = file_crc32c(entry.payload_path)
        except OSError as error:
            raise BadEntry(f"payload unreadable: {error}") from None
        if actual != expected:
            raise BadEntry(
                f"payload CRC32C {actual:#010x} differs from the recorded {expected:#010x}"
            )
    entry.nbytes = size + len(raw)
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
    """The record ``stream.json`` holds for one stream.

    ``data_ids`` lists the stream's remote parts (empty until the server created it); ``create``
    is the creation request (None only for markers rebuilt from sidecars or from older versions);
    ``finalized`` means the end request was sent.
    """

    local_id: str
    endpoint: str
    kind: str
    created_at_ms: int
    last_upload_ms: int
    finalized: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    data_ids: tuple[str, ...] = ()
    create: dict[str, Any] | None = None
    linked: bool = True
    finalize_requested: bool = False

    @property
    def data_id(self) -> str | None:
        """The remote id chunks go to now (the last part), None until created."""
        return self.data_ids[-1] if self.data_ids else None

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
                "local_id": self.local_id,
                "data_ids": list(self.data_ids),
                "create": self.create,
                "linked": self.linked,
                "finalize_requested": self.finalize_requested,
            }
        ).encode()


def read_marker(folder: Path, default_ms: int) -> StreamMarker:
    """The folder's marker; BadEntry (with the reason) when it has none naming an endpoint.

    Times it lacks read as ``default_ms``; markers of the previous format (no ``local_id``)
    name their stream by ``data_id``, which is also the folder name.
    """
    path = folder / MARKER_FILE
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise BadEntry(f"{MARKER_FILE} is missing") from None
    except OSError as error:
        raise BadEntry(f"{MARKER_FILE} unreadable: {error}") from None
    if not raw_bytes:
        raise BadEntry(f"{MARKER_FILE} is empty (0 bytes)")
    try:
        raw = json.loads(raw_bytes)
        endpoint = str(raw["endpoint"])
        data_id = raw.get("data_id")
        local_id = str(raw.get("local_id") or data_id)
        if "data_ids" in raw:
            data_ids = tuple(str(d) for d in raw["data_ids"])
        else:
            data_ids = (str(data_id),) if data_id else ()
        created = int(raw.get("created_at_ms", default_ms))
        create = raw.get("create")
        return StreamMarker(
            local_id=local_id,
            endpoint=endpoint,
            kind=str(raw.get("kind", "rheed")),
            created_at_ms=created,
            last_upload_ms=int(raw.get("last_upload_ms", default_ms)),
            finalized=bool(raw.get("finalized")),
            info=dict(raw.get("info") or {}),
            data_ids=data_ids,
            create=dict(create) if isinstance(create, dict) else None,
            linked=bool(raw.get("linked", True)),
            finalize_requested=bool(raw.get("finalize_requested")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise BadEntry(
            f"{MARKER_FILE} is not a valid record ({type(error).__name__}: {error})"
        ) from None


def write_marker(folder: Path, marker: StreamMarker, *, fsync: bool = True) -> None:
    write_atomically(folder / MARKER_FILE, marker.to_bytes(), fsync=fsync)


def stream_folder(root: Path, data_id: str) -> Path:
    """``<root>/<data_id>``; RuntimeError when the data_id cannot name a folder."""
    safe = data_id and all(c.isascii() and (c.isalnum() or c in "-_") for c in data_id)
    if not safe or data_id == QUARANTINE_DIR:
        raise RuntimeError(f"data_id {json.dumps(data_id)} cannot name a spool directory")
    return root / data_id


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` (and parents) readable by the owner only."""
    folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def create_stream_folder(folder: Path, *, fsync: bool = True) -> int | None:
    """Make a stream's folder (0700, its name synced into the root) and lock it.

    None when a live client holds it.
    """
    existed = folder.exists()
    make_private_dir(folder)
    if not existed and fsync:
        sync_directory(folder.parent)
    return lock_folder(folder)


def lock_folder(folder: Path) -> int | None:
    """An exclusive flock on ``<folder>/.lock``; None when a live client holds it."""
    fd = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_WRONLY, FILE_MODE)
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
    """Delete a stream folder the spool is done with (every chunk of it was acknowledged)."""
    try:
        shutil.rmtree(folder)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("could not remove %s: %s", folder, error)


def discard_bad_folder(folder: Path, reason: str) -> Quarantined | None:
    """Move a folder that holds no usable stream record aside, with the reason."""
    return move_aside(folder.parent, folder, reason)


def discard_bad_file(file: Path, reason: str) -> Quarantined | None:
    """Move a damaged payload, sidecar or marker aside (``<root>/quarantine/<folder>/``)."""
    return move_aside(file.parent.parent, file, reason)


def remove_temp_file(file: Path) -> None:
    """Delete a ``.tmp`` leftover: a write that never completed, so never counted as spooled."""
    log.debug("removing incomplete spool file %s", file)
    with contextlib.suppress(OSError):
        file.unlink()


# ---- writing ------------------------------------------------------------------------------------


def sync_directory(folder: Path) -> None:
    """fsync a directory, so the names created or renamed in it survive a power loss."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(
    path: Path,
    data: Payload,
    *,
    fsync: bool = True,
    sync_dir: bool | None = None,
    direct: DirectWriter | None = None,
) -> None:
    """Write ``data`` (bytes, or buffers written one after another) to ``path`` via a rename.

    The file is created 0600; with ``fsync`` its content is synced before the rename and the
    directory after it (``sync_dir`` overrides the latter, for writers that sync it once later).
    A large payload goes through ``direct`` (``O_DIRECT``, past the page cache) when given.
    """
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = None
        if direct is not None and direct.wants(payload_nbytes(data)):
            fd = direct.write_new(tmp, payload_parts(data), FILE_MODE)
        if fd is None:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                with open(fd, "wb", closefd=False) as fh:
                    for part in payload_parts(data):
                        fh.write(part)
            except BaseException:
                os.close(fd)
                raise
        try:
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync if sync_dir is None else sync_dir:
        sync_directory(path.parent)
