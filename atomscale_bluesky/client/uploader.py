"""Upload workers: take the oldest spooled chunk, send it, retry until acknowledged (§5.1).

Every attempt of a RHEED chunk asks for a fresh presigned URL, then PUTs the shard. A presign
refusal (a 4xx other than 408, 429 or S3's 400 RequestTimeout) is final and the chunk counts as
failed; everything else (transport errors, 5xx, 429, 408, garbled replies, any PUT failure) is
retried with backoff (0.5 s doubling to 30 s) until it succeeds, the stream closes, the entry
expires or the stream is abandoned. Time-series chunks follow the same rules for their POST.
"""

from __future__ import annotations

import logging
import threading
from typing import BinaryIO

from ..shards import shard_key
from .api import AtomscaleApi
from .retry import Backoff, is_rejection
from .spool import Entry, Spool

__all__ = ["UploadWorkers"]

log = logging.getLogger("atomscale_bluesky.client.upload")

WARN_AFTER_ATTEMPTS = 5


class Refused(Exception):
    """The backend refused the chunk for good; the message is the lost-chunk reason."""


class UploadWorkers:
    """A bounded pool of threads draining the spool, plus the 60 s retention/abandon sweep."""

    def __init__(
        self, spool: Spool, api: AtomscaleApi, *, workers: int = 8, backoff: Backoff | None = None
    ) -> None:
        if workers < 1:
            raise ValueError(f"upload_workers must be at least 1; got {workers}")
        self.spool = spool
        self.api = api
        self.backoff = backoff or Backoff()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._work, name=f"atomscale-upload-{i}", daemon=True)
            for i in range(workers)
        ]
        self._threads.append(
            threading.Thread(target=self._sweep, name="atomscale-spool-sweep", daemon=True)
        )

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def request_stop(self) -> None:
        """Stop taking work; entries in flight are left on disk for the next client."""
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _sweep(self) -> None:
        while not self._stop.wait(60.0):
            try:
                self.spool.sweep()
            except Exception:
                log.exception("spool sweep failed")

    def _work(self) -> None:
        while not self._stop.is_set():
            entry = self.spool.claim(self._stop, timeout=1.0)
            if entry is None:
                continue
            try:
                self._upload(entry)
            except Exception:  # never let a worker die
                log.exception("upload worker error on chunk %d", entry.meta["chunk_idx"])
                self.spool.release(entry)

    def _send(self, entry: Entry, payload: BinaryIO) -> None:
        meta = entry.meta
        if meta.get("kind") == "timeseries":
            payload.seek(0)
            try:
                self.api.timeseries_post(meta["metadata"]["path"], payload.read())
            except Exception as error:
                if is_rejection(error):
                    raise Refused(f"refused by the backend: {error}") from None
                raise
            return
        key = shard_key(meta["chunk_idx"])
        try:
            url = self.api.presign(meta["chunk_idx"], meta["metadata"], key)
        except Exception as error:
            if is_rejection(error):
                raise Refused(f"refused by the backend: {error}") from None
            raise
        self.api.put_shard(url, payload)

    def _upload(self, entry: Entry) -> None:
        try:
            payload = self.spool.open_payload(entry)
        except FileNotFoundError as error:
            self.spool.finish(entry, "failed", f"spooled shard is missing: {error}")
            return
        except OSError as error:
            self.spool.finish(entry, "failed", f"spooled shard unreadable: {error}")
            return
        with payload:
            self._attempts(entry, payload)

    def _attempts(self, entry: Entry, payload: BinaryIO) -> None:
        """Send the chunk until it is acknowledged, refused, stale or the workers stop."""
        chunk_idx, data_id = entry.meta["chunk_idx"], entry.meta["data_id"]
        cancel = self.spool.cancel_event(entry)
        next_delay = self.backoff.delays()
        attempt = 0
        while True:
            if self._stop.is_set():
                self.spool.release(entry)
                return
            if self.spool.stale(entry):
                return
            attempt += 1
            try:
                self._send(entry, payload)
            except Refused as refused:
                log.warning("chunk %d of stream %s was refused: %s", chunk_idx, data_id, refused)
                self.spool.finish(entry, "failed", str(refused))
                return
            except Exception as error:
                delay = next_delay()
                if attempt == WARN_AFTER_ATTEMPTS or attempt % (4 * WARN_AFTER_ATTEMPTS) == 0:
                    log.warning(
                        "chunk %d of stream %s still not uploaded after %d attempts; it stays "
                        "spooled and keeps retrying: %s",
                        chunk_idx,
                        data_id,
                        attempt,
                        error,
                    )
                else:
                    log.debug(
                        "chunk %d of stream %s attempt %d failed, retrying in %.1f s: %s",
                        chunk_idx,
                        data_id,
                        attempt,
                        delay,
                        error,
                    )
                if cancel.wait(delay) and self._stop.is_set():
                    self.spool.release(entry)
                    return
                continue
            log.debug("chunk %d of stream %s uploaded (attempt %d)", chunk_idx, data_id, attempt)
            self.spool.finish(entry, "uploaded")
            return
