"""Crash recovery at start-up: what an earlier client left in the spool, checked and resumed.

Per stream folder, once its lock is taken (a folder locked by a live client is skipped; the
``quarantine`` folder is never read):

| folder state | action |
|---|---|
| marker missing, empty or corrupt | rebuild it from the sidecars when they name the endpoint and the folder is a remote id; else quarantine the folder |
| marker of another endpoint | leave it to a client of that endpoint |
| finalized and empty | delete the folder (everything was acknowledged and the stream ended) |
| otherwise | check every entry, purge what expired, resume the rest |

Checking an entry: ``.tmp`` leftovers (writes that never completed, never counted) are deleted;
a sidecar that is empty, corrupt or names another stream, or whose payload is missing, of
another size or another CRC32C, is quarantined with its payload, and its chunk counted as
purged with that reason; a payload without a sidecar is quarantined too (not counted: it was
never completely spooled). The good entries of the same stream are kept and resumed with their
original metadata and stamps. Nothing is given up for silence here: a stale stream continues in
a new part when the backend refuses it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .disk_format import (
    MARKER_FILE,
    QUARANTINE_DIR,
    BadEntry,
    Entry,
    StreamMarker,
    discard_bad_file,
    discard_bad_folder,
    is_payload_file,
    is_sidecar_file,
    is_temp_file,
    lock_folder,
    read_marker,
    read_sidecar,
    remove_entry,
    remove_folder,
    remove_temp_file,
    unlock,
    write_marker,
)
from .expiry import ExpiryRules, log_discarded
from .quarantine import Quarantined
from .stream_state import SpoolStream

__all__ = ["LOCAL_ID_PREFIX", "Recovered", "Recovery", "recover_streams", "scan_entries"]

log = logging.getLogger(__name__)

LOCAL_ID_PREFIX = "local-"
"""Folder names of streams the server had not created when they were opened."""
_CHUNK_OF_STEM = re.compile(r"^\d{13}-\d{10}-c(\d+)$")


@dataclass
class Recovered:
    """A stream found on disk: its record and the entries to upload."""

    stream: SpoolStream
    entries: list[Entry]


@dataclass
class Recovery:
    """What start-up found: streams to resume and files moved aside (with reasons)."""

    streams: list[Recovered] = field(default_factory=list)
    quarantined: list[Quarantined] = field(default_factory=list)


def recover_streams(
    root: Path, endpoint: str, rules: ExpiryRules, now_ms: int, *, fsync: bool = True
) -> Recovery:
    """Every unfinished stream of ``endpoint`` under ``root``; damaged files are moved aside."""
    found = Recovery()
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name == QUARANTINE_DIR:
            continue
        try:
            recovered = recover_stream(folder, endpoint, rules, now_ms, found, fsync=fsync)
        except Exception as error:
            log.warning("skipping spool directory %s: %s", folder, error)
            continue
        if recovered is not None:
            found.streams.append(recovered)
    return found


def _note(found: Recovery, moved: Quarantined | None) -> None:
    if moved is not None:
        found.quarantined.append(moved)


def rebuild_marker(folder: Path, now_ms: int) -> StreamMarker | None:
    """A marker made from the folder's sidecars; None when they cannot tell the stream.

    Possible for a stream whose folder is named by its remote id and whose sidecars record the
    endpoint; a stream still waiting for creation needs its creation request, which only the
    marker holds.
    """
    if folder.name.startswith(LOCAL_ID_PREFIX):
        return None
    metas: list[dict[str, Any]] = []
    for file in folder.iterdir():
        if is_sidecar_file(file):
            try:
                meta = json.loads(file.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("data_id") == folder.name:
                metas.append(meta)
    endpoints = {m.get("endpoint") for m in metas}
    if len(endpoints) != 1 or not isinstance(next(iter(endpoints)), str):
        return None
    first = min(metas, key=lambda m: int(m.get("spooled_at_ms", now_ms)))
    info: dict[str, Any] = {}
    metadata = first.get("metadata") or {}
    if first.get("kind", "rheed") == "rheed":
        info = {"fps": metadata.get("raw_frame_rate"), "chunk_size": metadata.get("chunk_size")}
    created = int(first.get("spooled_at_ms", now_ms))
    return StreamMarker(
        local_id=folder.name,
        endpoint=str(next(iter(endpoints))),
        kind=str(first.get("kind", "rheed")),
        created_at_ms=created,
        last_upload_ms=created,
        info=info,
        data_ids=(folder.name,),
    )


def _marker(folder: Path, now_ms: int, found: Recovery, fsync: bool) -> StreamMarker | None:
    """The folder's marker, rebuilt when damaged; None once the folder was moved aside."""
    try:
        return read_marker(folder, now_ms)
    except BadEntry as bad:
        problem = str(bad)
    rebuilt = rebuild_marker(folder, now_ms)
    if rebuilt is None:
        reason = f"{problem}, and it cannot be rebuilt from the chunks' sidecars"
        _note(found, discard_bad_folder(folder, reason))
        return None
    if (folder / MARKER_FILE).exists():
        _note(found, discard_bad_file(folder / MARKER_FILE, f"{problem}; rebuilt from sidecars"))
    write_marker(folder, rebuilt, fsync=fsync)
    log.warning("rebuilt %s of stream %s from its chunks' sidecars", MARKER_FILE, folder.name)
    return rebuilt


def recover_stream(
    folder: Path,
    endpoint: str,
    rules: ExpiryRules,
    now_ms: int,
    found: Recovery,
    *,
    fsync: bool = True,
) -> Recovered | None:
    """One stream folder, locked for this client; None when there is nothing of ours in it."""
    fd = lock_folder(folder)
    if fd is None:
        log.debug("%s belongs to a running client", folder)
        return None
    marker = _marker(folder, now_ms, found, fsync)
    if marker is None or marker.endpoint != endpoint:
        unlock(fd)
        return None
    stream = SpoolStream(
        folder.name,
        marker.kind,
        folder,
        fd,
        marker.created_at_ms,
        max(marker.created_at_ms, marker.last_upload_ms),
        now_ms,
        marker.info,
        data_ids=list(marker.data_ids),
        create=marker.create,
        linked=marker.linked,
        finalize_requested=marker.finalize_requested,
        resumed=True,
        ended=marker.finalized,
    )
    entries = scan_entries(folder, stream, found)
    if marker.finalized and not entries and stream.spooled == 0:
        unlock(fd)
        remove_folder(folder)
        return None
    fresh: list[Entry] = []
    for entry in entries:
        stream.count_spooled(entry.chunk_idx, entry.shard_len)
        if rules.expired(entry, now_ms):
            _purge(stream, entry, rules.retention_reason)
        else:
            fresh.append(entry)
    if fresh:
        log.info(
            "resuming upload of %d chunk(s) of stream %s left by an earlier run",
            len(fresh),
            stream.data_id or stream.local_id,
        )
    return Recovered(stream, fresh)


def _purge(stream: SpoolStream, entry: Entry, reason: str) -> None:
    log_discarded(entry, reason)
    remove_entry(entry)
    stream.count_lost("purged", entry.chunk_idx, reason)


def _chunk_of(file: Path) -> int | None:
    match = _CHUNK_OF_STEM.match(file.name.split(".", 1)[0])
    return int(match.group(1)) if match else None


def scan_entries(folder: Path, stream: SpoolStream, found: Recovery) -> list[Entry]:
    """The folder's complete entries in upload order; damaged ones are moved aside and counted."""
    entries: list[Entry] = []
    payloads: list[Path] = []
    sidecars: list[Path] = []
    for file in folder.iterdir():
        if is_temp_file(file):
            remove_temp_file(file)
        elif is_payload_file(file):
            payloads.append(file)
        elif is_sidecar_file(file):
            sidecars.append(file)
    claimed: set[Path] = set()
    for file in sorted(sidecars):
        stem = file.name.split(".", 1)[0]
        try:
            entries.append(read_sidecar(file, stream.local_id))
            claimed.update(p for p in payloads if p.name.split(".", 1)[0] == stem)
            continue
        except BadEntry as bad:
            reason = str(bad)
        _note(found, discard_bad_file(file, reason))
        for payload in payloads:
            if payload.name.split(".", 1)[0] == stem:
                claimed.add(payload)
                _note(found, discard_bad_file(payload, f"its sidecar was set aside: {reason}"))
        chunk_idx = _chunk_of(file)
        if chunk_idx is not None:
            stream.count_spooled(chunk_idx, 0)
            stream.count_lost(
                "purged", chunk_idx, f"damaged in the spool and quarantined: {reason}"
            )
    for payload in payloads:
        if payload not in claimed and payload.exists():
            reason = (
                "payload without a sidecar: its write never completed (or it was uploaded "
                "and its deletion was interrupted)"
            )
            _note(found, discard_bad_file(payload, reason))
    entries.sort(key=lambda e: e.key)
    return entries
