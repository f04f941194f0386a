"""The Atomscale HTTP endpoints the streaming client calls, one method each (protocol §2, §6).

Every authenticated request carries ``X-API-KEY``; ``/gateway/time`` and the presigned PUT carry
none. Error texts follow the reference client's so users see the same messages; none of them
contains the key (only URLs, statuses and response bodies).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import math
import os
import re
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, BinaryIO, TypeVar

import httpx

from .config import ClientConfig
from .errors import AtomscaleClientError, BadResponseError, HttpStatusError, RefusedError

__all__ = ["AtomscaleApi", "StreamLinks", "rust_float_text", "looks_like_uuid"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Extra PUT time per byte: 60 s plus the shard at 100 kB/s (the reference's allowance).
PUT_BASE_TIMEOUT_S = 60.0
PUT_MIN_BYTES_PER_S = 100_000.0
#: Attempts at each stream set-up request (lists, creates, links, initialize): a lost reply, 5xx,
#: 429 or 408 is tried again 0.5, 1 and 2 s later, so one transient failure does not cost a run's
#: whole stream (the reference tries once; a retried create may leave an empty extra stream).
SETUP_ATTEMPTS = 4
SETUP_FIRST_DELAY_S = 0.5

#: When the set-up requests of the running context give up (``time.monotonic``; None: never).
_answer_by: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "atomscale_answer_by", default=None
)


def looks_like_uuid(text: str) -> bool:
    """36 characters, 8-4-4-4-12 hex digits in either case."""
    return bool(_UUID.match(text))


def rust_float_text(value: float) -> str:
    """A float as serde_json writes it: shortest round trip, ``.0`` kept, exponents unpadded."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exponent = text.split("e")
        sign = "-" if exponent.startswith("-") else ""
        text = f"{mantissa.removesuffix('.0')}e{sign}{exponent.lstrip('+-').lstrip('0') or '0'}"
    return text


def _json_text(value: Any) -> str:
    """A metadata value on the presign wire: numbers and booleans become their JSON text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return rust_float_text(value)
    return str(value)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _status_text(response: httpx.Response) -> str:
    """reqwest's ``error_for_status`` text."""
    side = "client" if response.status_code < 500 else "server"
    return (
        f"HTTP status {side} error ({response.status_code} {_phrase(response.status_code)}) "
        f"for url ({response.url})"
    )


def _check(response: httpx.Response, context: str | None = None) -> httpx.Response:
    if response.is_success:
        return response
    message = _status_text(response)
    if context:
        message = f"{context}: {message}"
    raise HttpStatusError(message, response.status_code, response.text)


def _json(response: httpx.Response, context: str) -> Any:
    try:
        return response.json()
    except ValueError as error:
        raise BadResponseError(f"{context}: error decoding response body: {error}") from None


def _is_certificate_failure(error: BaseException) -> bool:
    """True when a TLS certificate was refused somewhere in ``error``'s chain (never transient)."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class StreamLinks:
    """What a new stream is linked to once created."""

    physical_sample_id: str | None = None
    project_id: str | None = None
    tag_ids: list[str] = field(default_factory=list)


class AtomscaleApi:
    """Thin typed wrappers over the endpoints; no retries here (callers decide)."""

    def __init__(self, config: ClientConfig, http: httpx.Client) -> None:
        self.endpoint = config.endpoint
        self._key = config.api_key
        self.http = http

    def __repr__(self) -> str:
        return f"AtomscaleApi(endpoint={self.endpoint!r})"

    def _headers(self) -> dict[str, str]:
        return {"X-API-KEY": self._key.reveal()}

    def _post_json(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        headers = {**self._headers(), "Content-Type": "application/json"}
        return self.http.post(
            f"{self.endpoint}{path}", content=_dumps(body), headers=headers, **kwargs
        )

    @contextlib.contextmanager
    def answer_within(self, seconds: float | None) -> Iterator[None]:
        """Inside the block, this thread's set-up requests (and those the link pools send for
        it) give up about ``seconds`` from now: each phase of a request (connect, send, each
        read) times out by then, none starts after it, nor a retry (None: no limit)."""
        token = _answer_by.set(None if seconds is None else time.monotonic() + seconds)
        try:
            yield
        finally:
            _answer_by.reset(token)

    def _timeout(self, timeout: Any) -> Any:
        """``timeout`` for the next set-up request, ending by the block's limit if any."""
        deadline = _answer_by.get()
        if deadline is None:
            return timeout
        left = deadline - time.monotonic()
        if left <= 0:
            raise httpx.ReadTimeout("not sent: the time the caller allowed (open_wait_s) is over")
        base = self.http.timeout if timeout is httpx.USE_CLIENT_DEFAULT else httpx.Timeout(timeout)
        parts = (base.connect, base.read, base.write, base.pool)
        connect, read, write, pool = (left if p is None else min(p, left) for p in parts)
        return httpx.Timeout(connect=connect, read=read, write=write, pool=pool)

    def _setup_request(
        self,
        what: str,
        send: Callable[[Any], httpx.Response],
        timeout: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        """Send a stream set-up request, retrying transport errors, 5xx, 429 and 408 (within
        the limit of :meth:`answer_within`). ``send`` takes the request's timeout."""
        delay = SETUP_FIRST_DELAY_S
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            request_timeout = self._timeout(timeout)
            try:
                response = send(request_timeout)
            except httpx.TransportError as error:
                last = attempt == SETUP_ATTEMPTS or not _time_for(delay)
                if last or _is_certificate_failure(error):
                    raise
                log.info(
                    "%s failed (attempt %d), retrying in %.1f s: %s", what, attempt, delay, error
                )
            else:
                code = response.status_code
                transient = code >= 500 or code in (408, 429)
                if not transient or attempt == SETUP_ATTEMPTS or not _time_for(delay):
                    return response
                log.info(
                    "%s answered HTTP %d (attempt %d), retrying in %.1f s",
                    what,
                    code,
                    attempt,
                    delay,
                )
            time.sleep(delay)
            delay *= 2
        raise AssertionError("unreachable: the last attempt returns or raises")

    # ---- physical samples and tags (initialize, §2.2 A) ----

    def _list(self, path: str, what: str) -> list[dict[str, Any]]:
        try:
            response = self._setup_request(
                f"list {what}s",
                lambda t: self.http.get(
                    f"{self.endpoint}{path}", headers=self._headers(), timeout=t
                ),
            )
        except httpx.TransportError as error:
            raise AtomscaleClientError(f"failed to request {what}s: {error}") from None
        _check(response, f"{what} list returned error status")
        items = _json(response, f"failed to deserialize {what} list")
        if not isinstance(items, list) or not all(
            isinstance(i, dict) and isinstance(i.get("id"), str) and isinstance(i.get("name"), str)
            for i in items
        ):
            raise BadResponseError(f"failed to deserialize {what} list")
        return items

    def _create(self, path: str, what: str, name: str) -> str:
        try:
            response = self._setup_request(
                f"create {what}", lambda t: self._post_json(path, {"name": name}, timeout=t)
            )
        except httpx.TransportError as error:
            raise AtomscaleClientError(f"failed to create {what}: {error}") from None
        if what == "physical sample" and response.status_code == 409:
            detail = _json(response, "").get("detail") if response.content else None
            found = (detail or {}).get("physical_sample_id") or (detail or {}).get("id")
            if not isinstance(found, str):
                raise BadResponseError(
                    "physical sample creation returned 409 without the existing sample's id"
                )
            return found
        _check(response, f"{what} creation returned error status")
        body = _json(response, f"failed to deserialize {what} creation response")
        key = ("physical_sample_id", "id") if what == "physical sample" else ("id",)
        found = next((body.get(k) for k in key if isinstance(body, dict) and body.get(k)), None)
        if not isinstance(found, str):
            raise BadResponseError(f"failed to deserialize {what} creation response")
        return found

    def resolve_physical_sample(self, name_or_id: str) -> str:
        """A sample id from an id (must exist) or a name (matched ignoring case, else created)."""
        wanted = name_or_id.strip()
        if not wanted:
            raise ValueError("physical_sample cannot be empty")
        samples = self._list("/physical_samples/", "physical sample")
        if looks_like_uuid(wanted):
            for sample in samples:
                if sample["id"] == wanted:
                    return wanted
            raise RefusedError(f"physical sample with id '{wanted}' not found")

        def named(items: list[dict[str, Any]]) -> str | None:
            return next(
                (s["id"] for s in items if s["name"].strip().lower() == wanted.lower()), None
            )

        found = named(samples)
        if found is not None:
            return found
        try:
            return self._create("/physical_samples/", "physical sample", wanted)
        except Exception as create_error:
            try:
                found = named(self._list("/physical_samples/", "physical sample"))
            except Exception:
                found = None
            if found is None:
                raise create_error from None
            return found

    def resolve_tags(self, inputs: Sequence[str]) -> list[str]:
        """Tag ids for ``inputs``: trimmed, de-duplicated ignoring case, created when missing."""
        cleaned: list[str] = []
        seen: set[str] = set()
        for raw in inputs:
            tag = raw.strip()
            if tag and tag.lower() not in seen:
                seen.add(tag.lower())
                cleaned.append(tag)
        if not cleaned:
            return []
        existing = self._list("/tags/", "tag")

        def named(items: list[dict[str, Any]], name: str) -> str | None:
            return next((t["id"] for t in items if t["name"].lower() == name.lower()), None)

        ids: list[str] = []
        for tag in cleaned:
            if looks_like_uuid(tag):
                if not any(t["id"] == tag for t in existing):
                    raise RefusedError(f"tag with id '{tag}' not found")
                ids.append(tag)
                continue
            found = named(existing, tag)
            if found is None:
                try:
                    found = self._create("/tags/", "tag", tag)
                except Exception as create_error:
                    try:
                        found = named(self._list("/tags/", "tag"), tag)
                    except Exception:
                        found = None
                    if found is None:
                        raise create_error from None
            ids.append(found)
        return ids

    def resolve_links(
        self, physical_sample: str | None, project_id: str | None, tags: Sequence[str]
    ) -> StreamLinks:
        """Resolve the sample and the tags concurrently, as the reference does."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="atomscale-links") as pool:
            sample_f = _submit_here(
                pool,
                lambda: self.resolve_physical_sample(physical_sample) if physical_sample else None,
            )
            tags_f = _submit_here(pool, self.resolve_tags, list(tags))
            sample_id = sample_f.result()
            tag_ids = tags_f.result()
        return StreamLinks(sample_id, project_id, tag_ids)

    # ---- stream creation, links and end ----

    def create_rheed_stream(self, settings: Mapping[str, Any]) -> str:
        """``POST /rheed/stream/``; the reply is a bare JSON string, the data_id."""
        response = _check(
            self._setup_request(
                "create RHEED stream",
                lambda t: self._post_json("/rheed/stream/", settings, timeout=t),
            )
        )
        data_id = _json(response, "error decoding response body")
        if not isinstance(data_id, str):
            raise BadResponseError("error decoding response body")
        return data_id

    def _link_sample_and_project(self, data_id: str, links: StreamLinks) -> None:
        if links.physical_sample_id is None:
            return
        body = {"data_ids": [data_id], "physical_sample_id": links.physical_sample_id}
        try:
            response = self._setup_request(
                "link physical sample",
                lambda t: self._post_json("/data_entries/physical_sample", body, timeout=t),
            )
        except httpx.TransportError as error:
            raise AtomscaleClientError(
                f"failed to link physical sample to data item: {error}"
            ) from None
        _check(response, "physical sample link returned error status")
        if links.project_id is not None:
            path = f"/projects/{links.project_id}/configuration/tracking_samples"
            body2 = {"physical_sample_id": links.physical_sample_id, "set_active": True}
            try:
                response = self._setup_request(
                    "track sample in project", lambda t: self._post_json(path, body2, timeout=t)
                )
            except httpx.TransportError as error:
                raise AtomscaleClientError(
                    f"failed to add tracking sample to project: {error}"
                ) from None
            _check(response, "project tracking-sample update returned error status")

    def _attach_tags(self, data_id: str, tag_ids: list[str]) -> None:
        if not tag_ids:
            return
        body = {"data_ids": [data_id], "tag_ids": tag_ids}
        try:
            response = self._setup_request(
                "attach tags", lambda t: self._post_json("/tags/data-items/", body, timeout=t)
            )
        except httpx.TransportError as error:
            raise AtomscaleClientError(f"failed to attach tags to data item: {error}") from None
        _check(response, "tag attach returned error status")

    def link_stream(self, data_id: str, links: StreamLinks) -> None:
        """Link sample/project and tags concurrently; raises the first failure."""
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="atomscale-links") as pool:
            futures = [
                _submit_here(pool, self._link_sample_and_project, data_id, links),
                _submit_here(pool, self._attach_tags, data_id, links.tag_ids),
            ]
            errors = [f.exception() for f in futures]
        cause = next((e for e in errors if e is not None), None)
        if cause is not None:
            raise cause

    def end_after_failed_link(self, data_id: str, end_path: str, cause: BaseException) -> None:
        """End a stream whose links the server refused, once, and raise why."""
        try:
            timeout = self._timeout(httpx.USE_CLIENT_DEFAULT)
            _check(
                self.http.post(
                    f"{self.endpoint}{end_path}", headers=self._headers(), timeout=timeout
                )
            )
        except Exception as end_error:
            raise AtomscaleClientError(
                f"stream {data_id} was created but could not be linked, and ending it failed "
                f'({end_error}); call finalize("{data_id}") to close it: {cause}'
            ) from None
        raise AtomscaleClientError(
            f"stream {data_id} was created but could not be linked, so it was ended: {cause}"
        ) from None

    def end_rheed_stream(self, data_id: str) -> Any:
        """``POST /rheed/stream/{id}/end`` (no body); the reply must be JSON."""
        response = _check(
            self.http.post(f"{self.endpoint}/rheed/stream/{data_id}/end", headers=self._headers())
        )
        return _json(response, "error decoding response body")

    # ---- shard upload (§2.4) ----

    def presign(self, chunk_idx: int, metadata: Mapping[str, Any], shard_key: str) -> str:
        """A fresh presigned URL for one shard; raises HttpStatusError/BadResponseError."""
        body = {k: _json_text(v) for k, v in metadata.items() if v is not None}
        params = {"original_filename": shard_key, "num_parts": "1", "staging_type": "stream"}
        response = self._post_json(
            "/data_entries/raw_data/staged/upload_urls/", body, params=params
        )
        if not response.is_success:
            code = response.status_code
            raise HttpStatusError(
                f"presigned URL request failed: presign: HTTP {code} {_phrase(code)}: {response.text}",
                code,
                response.text,
            )
        value = _json(response, "presigned URL request failed")
        if isinstance(value, list):
            value = value[0] if value else {}
        url = value.get("url") if isinstance(value, dict) else None
        if not isinstance(url, str):
            raise BadResponseError("presigned URL request failed: missing 'url'")
        return url

    def put_shard(self, url: str, shard: bytes | BinaryIO) -> None:
        """PUT the raw shard to a presigned URL: no key, empty Content-Type, sized timeout.

        ``shard`` is the bytes, or a seekable file holding them (sent from its start, in pieces).
        """
        size = len(shard) if isinstance(shard, bytes) else shard.seek(0, os.SEEK_END)
        timeout = PUT_BASE_TIMEOUT_S + size / PUT_MIN_BYTES_PER_S
        headers = {"Content-Type": "", "Content-Length": str(size)}
        response = self.http.put(
            url, content=_pieces(shard), headers=headers, timeout=httpx.Timeout(timeout)
        )
        if not response.is_success:
            code = response.status_code
            raise HttpStatusError(
                f"PUT bytes failed: put presigned: HTTP {code} {_phrase(code)}: {response.text}",
                code,
                response.text,
            )

    # ---- tool-state time series (§6) ----

    def timeseries_initialize(
        self,
        stream_name: str | None,
        instrument_id: int | None,
        points_per_chunk: int,
        project_id: str | None,
    ) -> str:
        """``POST /tool-state/stream/initialize`` -> data_id."""
        body: dict[str, Any] = {"stream_name": stream_name}
        if instrument_id is not None:
            body["synth_source_id"] = instrument_id
        body["points_per_chunk"] = points_per_chunk
        body["project_id"] = project_id
        response = self._setup_request(
            "initialize time-series stream",
            lambda t: self._post_json("/tool-state/stream/initialize", body, timeout=t),
            timeout=30.0,
        )
        if not response.is_success:
            code = response.status_code
            raise HttpStatusError(
                f"HTTP {code} {_phrase(code)}: {response.text}", code, response.text
            )
        value = _json(response, "error decoding response body")
        if not (
            isinstance(value, dict)
            and isinstance(value.get("data_id"), str)
            and isinstance(value.get("processed_data_id"), str)
        ):
            raise BadResponseError("error decoding response body")
        return str(value["data_id"])

    def timeseries_post(self, path: str, body: bytes) -> None:
        """Send one spooled tool-state chunk body to ``path``."""
        headers = {**self._headers(), "Content-Type": "application/json"}
        response = self.http.post(
            f"{self.endpoint}{path}", content=body, headers=headers, timeout=30.0
        )
        if not response.is_success:
            code = response.status_code
            raise HttpStatusError(
                f"HTTP {code} {_phrase(code)}: {response.text}", code, response.text
            )

    def timeseries_finalize(self, data_id: str) -> None:
        """``POST /tool-state/stream/{id}/finalize`` (no body); any 2xx."""
        response = self.http.post(
            f"{self.endpoint}/tool-state/stream/{data_id}/finalize",
            headers=self._headers(),
            timeout=30.0,
        )
        if not response.is_success:
            code = response.status_code
            raise HttpStatusError(
                f"HTTP {code} {_phrase(code)}: {response.text}", code, response.text
            )


def rotational_period(fps: float, rotations_per_min: float) -> float | None:
    """``fps*60/rpm``; infinite (rpm 0) is sent as JSON null, as serde_json writes it."""
    try:
        value = fps * 60.0 / rotations_per_min
    except ZeroDivisionError:
        return None
    return value if math.isfinite(value) else None


PUT_PIECE_BYTES = 1 << 20


def _pieces(data: bytes | BinaryIO) -> Iterator[bytes]:
    """The body in 1 MiB pieces: the HTTP layer re-slices what it has left after every socket
    send, which for one multi-megabyte body means copying the rest again and again; a file is
    read a piece at a time, from its start."""
    if not isinstance(data, bytes):
        data.seek(0)
        while piece := data.read(PUT_PIECE_BYTES):
            yield piece
        return
    view = memoryview(data)
    for start in range(0, len(view), PUT_PIECE_BYTES):
        yield bytes(view[start : start + PUT_PIECE_BYTES])


def _time_for(delay: float) -> bool:
    """Whether a retry ``delay`` seconds from now starts within the ``answer_within`` limit."""
    deadline = _answer_by.get()
    return deadline is None or time.monotonic() + delay < deadline


def _submit_here(pool: ThreadPoolExecutor, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``pool.submit`` in a copy of the caller's context, so the task keeps its
    :meth:`AtomscaleApi.answer_within` limit."""
    return pool.submit(contextvars.copy_context().run, fn, *args)
