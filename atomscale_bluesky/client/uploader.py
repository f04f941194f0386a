"""Upload workers: take the oldest spooled chunk of a ready stream, send it, retry until acknowledged.

Every attempt of a RHEED chunk asks for a fresh presigned URL (for the stream's current remote
id), then PUTs the shard. Outcomes (§5.1, with this client's durability rules):

* a refusal of the data itself (a 4xx other than 401, 403, 404, 408, 429, a stale-stream 409
  or S3's 400 RequestTimeout) is final: the chunk counts as failed, with the server's reason;
* 401/403: the API key was refused; the gate pauses uploads (see ``auth_gate``) and this
  request keeps retrying with backoff as the probe; nothing is failed;
* 409 naming ``stream_error``: the backend closed the stream; the chunk goes back to the spool
  and the stream waits for a continuation part (see ``stream_keeper``);
* everything else (transport errors, 5xx, 404, 408, 429, garbled replies, any PUT failure) is
  retried with backoff (0.5 s doubling to 30 s) until it succeeds or the entry expires.

Time-series chunks follow the same rules for their POST; their spooled body is sent with the
stream's current remote id.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import BinaryIO

from ..shards import shard_key
from ..thread_priority import lower_this_thread
from .api import AtomscaleApi
from .auth_gate import AuthGate
from .retry import Backoff, is_auth_error, is_rejection, is_stale_refusal
from .spool import Entry, Spool

__all__ = ["UploadWorkers"]

log = logging.getLogger(__name__)

WARN_AFTER_ATTEMPTS = 5


class Refused(Exception):
    """The backend refused the chunk's data for good; the message is the lost-chunk reason."""


class Stale(Exception):
    """The backend refused the stream as closed (``stream_error``)."""


class AuthRefused(Exception):
    """The backend refused the API key; the cause is the HTTP error."""


def _classify(error: Exception) -> Exception:
    """The outcome a failed presign or time-series POST stands for."""
    if is_rejection(error):
        return Refused(f"refused by the backend: {error}")
    if is_stale_refusal(error):
        return Stale(str(error))
    if is_auth_error(error):
        return AuthRefused(str(error))
    return error


def _with_data_id(body: bytes, data_id: str) -> bytes:
    """A spooled time-series body addressed to ``data_id`` (the stream's current remote id)."""
    value = json.loads(body)
    if value.get("data_id") == data_id:
        return body
    value["data_id"] = data_id
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


class UploadWorkers:
    """A bounded pool of threads draining the spool, plus the 60 s retention sweep; they run
    ``nice`` steps below the process's priority."""

    def __init__(
        self,
        spool: Spool,
        api: AtomscaleApi,
        gate: AuthGate,
        *,
        workers: int = 8,
        backoff: Backoff | None = None,
        nice: int = 0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"upload_workers must be at least 1; got {workers}")
        self.spool = spool
        self.api = api
        self.gate = gate
        self.backoff = backoff or Backoff()
        self.nice = nice
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
        lower_this_thread(self.nice)
        while not self._stop.wait(60.0):
            try:
                self.spool.sweep()
            except Exception:
                log.exception("spool sweep failed")

    def _work(self) -> None:
        lower_this_thread(self.nice)
        while not self._stop.is_set():
            if self.gate.paused:
                self.gate.wait_open(self._stop, 1.0)
                continue
            entry = self.spool.claim(self._stop, timeout=1.0)
            if entry is None:
                continue
            try:
                self._upload(entry)
            except Exception:  # never let a worker die
                log.exception("upload worker error on chunk %d", entry.meta["chunk_idx"])
                self.spool.release(entry)

    def _send(self, entry: Entry, payload: BinaryIO, data_id: str) -> None:
        meta = entry.meta
        if meta.get("kind") == "timeseries":
            payload.seek(0)
            body = _with_data_id(payload.read(), data_id)
            try:
                self.api.timeseries_post(meta["metadata"]["path"], body)
            except Exception as error:
                raise _classify(error) from None
            return
        key = shard_key(meta["chunk_idx"])
        metadata = {**meta["metadata"], "data_id": data_id}
        try:
            url = self.api.presign(meta["chunk_idx"], metadata, key)
        except Exception as error:
            raise _classify(error) from None
        self.api.put_shard(url, payload)

    def _upload(self, entry: Entry) -> None:
        try:
            payload = self.spool.open_payload(entry)
        except FileNotFoundError as error:
            self.spool.finish(entry, "purged", f"spooled shard is missing: {error}")
            return
        except OSError as error:
            log.warning("spooled chunk %d is unreadable now, retrying: %s", entry.chunk_idx, error)
            self.spool.release(entry)
            self._stop.wait(1.0)
            return
        with payload:
            self._attempts(entry, payload)

    def _attempts(self, entry: Entry, payload: BinaryIO) -> None:
        """Send the chunk until it is acknowledged, refused, handed back or the workers stop."""
        chunk_idx = entry.chunk_idx
        cancel = self.spool.cancel_event(entry)
        next_delay = self.backoff.delays()
        attempt = 0
        while True:
            if self._stop.is_set():
                self.spool.release(entry)
                return
            check = self.spool.check(entry)
            data_id = self.spool.destination(entry)
            if check == "gone":
                return
            if check == "wait" or data_id is None:
                self.spool.release(entry)
                return
            attempt += 1
            try:
                self._send(entry, payload, data_id)
            except Refused as refused:
                log.warning("chunk %d of stream %s was refused: %s", chunk_idx, data_id, refused)
                self.spool.finish(entry, "failed", str(refused))
                return
            except Stale as stale:
                if self.spool.mark_needs_part(entry.local_id, data_id):
                    log.warning(
                        "the backend closed stream %s (%s); its pending chunks continue in a "
                        "new part",
                        data_id,
                        stale,
                    )
                self.spool.release(entry)
                return
            except Exception as error:
                if isinstance(error, AuthRefused):
                    self.gate.pause(f"upload of chunk {chunk_idx} of stream {data_id}", error)
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
            self.gate.resume()
            log.debug("chunk %d of stream %s uploaded (attempt %d)", chunk_idx, data_id, attempt)
            self.spool.finish(entry, "uploaded")
            return
