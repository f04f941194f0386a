"""The background thread that finishes what the network delayed, for every stream in the spool.

For each stream it creates the remote stream when opening it failed (then links it), creates a
continuation part when the backend refused the stream as stale, and sends the end request of a
stream whose finalize was requested once its last chunk is acknowledged. Each step is retried
with the upload backoff; a 401/403 pauses the uploads through the auth gate; only a refusal of
the request itself gives up: a refused creation fails the stream's chunks with the server's
reason, a refused link or end is logged and skipped (the data is not lost for it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .auth_gate import AuthGate
from .retry import Backoff, is_auth_error, refuses_request
from .spool import Spool, SpoolStream
from .stream_setup import StreamSetup

__all__ = ["StreamKeeper"]

log = logging.getLogger(__name__)


@dataclass
class _Schedule:
    """When a stream's next set-up attempt is due, and the delays after it."""

    due: float = 0.0
    next_delay: Callable[[], float] | None = None
    attempts: int = 0
    last_error: str = field(default="")


class StreamKeeper:
    """One thread tending every stream of the spool: create, link, continue, end."""

    def __init__(
        self,
        spool: Spool,
        setup: StreamSetup,
        gate: AuthGate,
        *,
        backoff: Backoff | None = None,
        on_ended: Callable[[str], None],
    ) -> None:
        self.spool = spool
        self.setup = setup
        self.gate = gate
        self.backoff = backoff or Backoff()
        self._on_ended = on_ended
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._ending: set[str] = set()
        self._schedules: dict[str, _Schedule] = {}
        self._thread = threading.Thread(target=self._run, name="atomscale-streams", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    # ---- who sends the end request ----

    def begin_end(self, local_id: str) -> bool:
        """Claim the end request of a stream (False when someone else is sending it)."""
        with self._lock:
            if local_id in self._ending:
                return False
            self._ending.add(local_id)
            return True

    def end_done(self, local_id: str) -> None:
        with self._lock:
            self._ending.discard(local_id)

    # ---- the loop ----

    def _run(self) -> None:
        while not self._stop.is_set():
            seen = self.spool.changes
            for stream in self.spool.streams():
                if self._stop.is_set():
                    return
                try:
                    self._tend(stream)
                except Exception:  # never let the keeper die
                    if not self._stop.is_set():  # (requests fail once the client closed)
                        log.exception("tending stream %s failed", stream.local_id)
            self.spool.wait_changed(0.5, seen)

    def _due(self, local_id: str) -> bool:
        schedule = self._schedules.get(local_id)
        return schedule is None or time.monotonic() >= schedule.due

    def _failed(self, stream: SpoolStream, what: str, error: BaseException) -> None:
        """Schedule the next attempt of a transient failure (and pause on a refused key)."""
        if is_auth_error(error):
            self.gate.pause(f"{what} of stream {stream.local_id}", error)
        schedule = self._schedules.setdefault(stream.local_id, _Schedule())
        if schedule.next_delay is None:
            schedule.next_delay = self.backoff.delays()
        delay = schedule.next_delay()
        schedule.due = time.monotonic() + delay
        schedule.attempts += 1
        level = (
            logging.WARNING
            if schedule.attempts in (1, 5) or schedule.attempts % 20 == 0
            else logging.DEBUG
        )
        log.log(
            level,
            "%s of stream %s failed (attempt %d), retrying in %.1f s: %s",
            what,
            stream.local_id,
            schedule.attempts,
            delay,
            error,
        )

    def _succeeded(self, stream: SpoolStream) -> None:
        self._schedules.pop(stream.local_id, None)
        self.gate.resume()

    def _tend(self, stream: SpoolStream) -> None:
        if stream.closed is not None or not self._due(stream.local_id):
            return
        if not stream.data_ids:
            self._create(stream)
        elif not stream.linked:
            self._link(stream)
        elif stream.needs_part:
            self._continue(stream)
        elif stream.finalize_requested and not stream.ended and self.spool.drained(stream.local_id):
            self._end(stream)

    def _request(self, stream: SpoolStream) -> dict[str, Any] | None:
        request = stream.create
        if request is None:
            reason = (
                "refused by the backend: the stream cannot be created or continued: its "
                "creation request was lost (its stream.json was rebuilt from the sidecars)"
            )
            log.error("stream %s: %s", stream.local_id, reason)
            self.spool.fail_stream(stream.local_id, reason)
        return request

    def _create(self, stream: SpoolStream) -> None:
        request = self._request(stream)
        if request is None:
            return
        try:
            links = self.setup.resolve(request)
            data_id = self.setup.create(request)
        except Exception as error:
            if refuses_request(error):
                reason = f"refused by the backend: stream creation: {error}"
                log.error("stream %s cannot be created: %s", stream.local_id, reason)
                self.spool.fail_stream(stream.local_id, reason)
                return
            self._failed(stream, "creating", error)
            return
        self.spool.record_created(stream.local_id, data_id, linked=False)
        log.info("created stream %s on the server as %s", stream.local_id, data_id)
        self._succeeded(stream)
        self._link(stream, links)

    def _link(self, stream: SpoolStream, links: Any = None) -> None:
        request = stream.create or {}
        data_id = stream.data_id
        assert data_id is not None
        try:
            self.setup.link(data_id, links if links is not None else self.setup.resolve(request))
        except Exception as error:
            if not refuses_request(error):
                self._failed(stream, "linking", error)
                return
            log.error(
                "stream %s: the server refused its sample/project/tag links (%s); its data "
                "uploads unlinked",
                data_id,
                error,
            )
        self.spool.record_linked(stream.local_id)
        self._succeeded(stream)

    def _continue(self, stream: SpoolStream) -> None:
        request = self._request(stream)
        if request is None:
            return
        part = len(stream.data_ids) + 1
        try:
            links = self.setup.resolve(request)
            data_id = self.setup.create(request, part=part)
            self.setup.link(data_id, links)
        except Exception as error:
            if refuses_request(error):
                reason = f"refused by the backend: continuation part {part}: {error}"
                log.error("stream %s cannot be continued: %s", stream.local_id, reason)
                self.spool.fail_stream(stream.local_id, reason)
                return
            self._failed(stream, f"creating part {part}", error)
            return
        log.warning(
            "stream %s continues as part %d, %s, after the backend closed %s",
            stream.local_id,
            part,
            data_id,
            stream.data_id,
        )
        self.spool.record_part(stream.local_id, data_id)
        self._succeeded(stream)

    def _end(self, stream: SpoolStream) -> None:
        if not self.begin_end(stream.local_id):
            return
        data_id = stream.data_id
        assert data_id is not None
        try:
            self.setup.end(stream.kind, data_id)
        except Exception as error:
            if not refuses_request(error) and not _refused_end(error):
                self._failed(stream, "ending", error)
                return
            log.error("the server refused to end stream %s: %s", data_id, error)
            self.spool.close_stream(stream.local_id, ended=False)
        else:
            self._succeeded(stream)
            self.spool.close_stream(stream.local_id)
            log.info("ended stream %s after its last chunk was uploaded", data_id)
        finally:
            self.end_done(stream.local_id)
        self._on_ended(stream.local_id)


def _refused_end(error: BaseException) -> bool:
    """The end request's own refusals: any 4xx but auth, 408 and 429."""
    from .errors import HttpStatusError

    return (
        isinstance(error, HttpStatusError)
        and 400 <= error.status < 500
        and error.status not in (401, 403, 408, 429)
    )
