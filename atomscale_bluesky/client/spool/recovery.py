"""Crash recovery at start-up: what an earlier client left in the spool, cleaned and ready to resume.

Per stream folder, once its lock is taken (a folder locked by a live client is skipped):

| folder state | action |
|---|---|
| no readable marker | discard the folder |
| marker of another endpoint | leave it to a client of that endpoint |
| finalized | delete the folder |
| otherwise | clean it, purge what expired, and resume it (or purge it all when abandoned) |

Cleaning removes temp files, payloads without a sidecar and sidecars that are invalid or whose
payload has another size. Resumed entries keep their original metadata and stamps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .disk_format import (
    Entry,
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
    unlock,
)
from .expiry import ExpiryRules, closing_reason, log_abandoned, log_discarded
from .stream_state import SpoolStream

__all__ = ["Recovered", "recover_streams", "scan_entries"]

log = logging.getLogger("atomscale_bluesky.client.spool")


@dataclass
class Recovered:
    """A stream found on disk: its record and the entries to upload (none once abandoned)."""

    stream: SpoolStream
    entries: list[Entry]

    @property
    def abandoned(self) -> bool:
        return self.stream.closed is not None


def recover_streams(root: Path, endpoint: str, rules: ExpiryRules, now_ms: int) -> list[Recovered]:
    """Every unfinished stream of ``endpoint`` under ``root``; cleans up what it can."""
    found: list[Recovered] = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        try:
            recovered = recover_stream(folder, endpoint, rules, now_ms)
        except Exception as error:
            log.warning("skipping spool directory %s: %s", folder, error)
            continue
        if recovered is not None:
            found.append(recovered)
    return found


def recover_stream(
    folder: Path, endpoint: str, rules: ExpiryRules, now_ms: int
) -> Recovered | None:
    """One stream folder, locked for this client; None when there is nothing of ours in it."""
    fd = lock_folder(folder)
    if fd is None:
        log.debug("%s belongs to a running client", folder)
        return None
    try:
        marker = read_marker(folder, now_ms)
    except (ValueError, TypeError):
        unlock(fd)
        raise
    if marker is None:
        unlock(fd)
        discard_bad_folder(folder)
        return None
    if marker.endpoint != endpoint:
        unlock(fd)
        return None
    if marker.finalized:
        unlock(fd)
        remove_folder(folder)
        return None
    entries = scan_entries(folder, marker.data_id)
    stream = SpoolStream(
        marker.data_id,
        marker.kind,
        folder,
        fd,
        marker.created_at_ms,
        max(marker.created_at_ms, marker.last_upload_ms),
        now_ms,
        marker.info,
        resumed=True,
        spooled=len(entries),
    )
    fresh: list[Entry] = []
    for entry in entries:
        if rules.expired(entry, now_ms):
            _purge(stream, entry, rules.retention_reason)
        else:
            fresh.append(entry)
    if rules.abandoned(stream, now_ms):
        if fresh:
            log_abandoned(stream.data_id, rules, len(fresh))
        stream.closed = "abandoned"
        for entry in fresh:
            stream.count_lost("purged", entry.chunk_idx, closing_reason(stream.closed))
        stream.lock_fd = None
        unlock(fd)
        remove_folder(folder)
        return Recovered(stream, [])
    if fresh:
        log.info(
            "resuming upload of %d chunk(s) of stream %s left by an earlier run",
            len(fresh),
            stream.data_id,
        )
    stream.pending = len(fresh)
    stream.spooled_bytes = sum(e.shard_len for e in fresh)
    return Recovered(stream, fresh)


def _purge(stream: SpoolStream, entry: Entry, reason: str) -> None:
    log_discarded(entry, reason)
    remove_entry(entry)
    stream.count_lost("purged", entry.chunk_idx, reason)


def scan_entries(folder: Path, data_id: str) -> list[Entry]:
    """The folder's complete entries in upload order; discards temp files, orphans, bad sidecars."""
    entries: list[Entry] = []
    payloads: list[Path] = []
    for file in folder.iterdir():
        if is_temp_file(file):
            discard_bad_file(file)
        elif is_payload_file(file):
            payloads.append(file)
        elif is_sidecar_file(file):
            entry = read_sidecar(file, data_id)
            if entry is None:
                discard_bad_file(file)
            else:
                entries.append(entry)
    kept = {entry.payload_path for entry in entries}
    for payload in payloads:
        if payload not in kept:
            discard_bad_file(payload)
    entries.sort(key=lambda e: e.key)
    return entries
