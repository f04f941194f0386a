"""Presigned upload URLs: unguessable, bound to one chunk of one stream, single use, expiring.

``POST /data_entries/raw_data/staged/upload_urls/`` turns the client's string-valued chunk metadata
into a ``ChunkGrant`` and registers it under a fresh ``secrets.token_urlsafe`` token; the PUT to
``/upload/<token>`` needs no API key, only a live token. A PUT claims its token (checked and taken in
one locked step, so two PUTs with one token store at most one shard); the token is spent when the
chunk is stored, and a PUT that is refused leaves it usable until it expires after a TTL
(default 15 min). Tokens live in memory: after a restart the client's next presign gets a new one.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from atomscale_bluesky.server.storage import ChunkGrant

DATA_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
SHARD_KEY_RE = re.compile(r"^frames\.zarr/frames/c/(0|[1-9][0-9]{0,8})/0/0$")
MAX_DIM = 1 << 16
#: Largest capture time or clock offset accepted, in ms (2**53: exact in a float, fits SQLite's
#: 64-bit INTEGER; about 285,000 years after 1970).
MAX_TIME_MS = 1 << 53


class PresignError(ValueError):
    """The presign request is malformed (answered 400/422 with this message)."""


def _text(meta: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = meta.get(key)
    if value is None:
        if required:
            raise PresignError(f"metadata field {key!r} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise PresignError(f"metadata field {key!r} must be a string or number, got {value!r}")
    return str(value)


def _int(meta: Mapping[str, Any], key: str, required: bool = True) -> int | None:
    text = _text(meta, key, required)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise PresignError(f"metadata field {key!r} must be an integer, got {text!r}") from None
    if not math.isfinite(number) or number != int(number):
        raise PresignError(f"metadata field {key!r} must be an integer, got {text!r}")
    return int(number)


def _float(meta: Mapping[str, Any], key: str) -> float | None:
    text = _text(meta, key, required=False)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        raise PresignError(f"metadata field {key!r} must be a number, got {text!r}") from None
    if not math.isfinite(number):
        raise PresignError(f"metadata field {key!r} must be finite, got {text!r}")
    return number


def _time_ms(
    meta: Mapping[str, Any], key: str, required: bool = True, signed: bool = False
) -> int | None:
    """A time in ms within what storage holds exactly (|value| < 2**53; >= 0 unless signed)."""
    value = _int(meta, key, required)
    if value is not None and not ((-MAX_TIME_MS if signed else 0) <= value < MAX_TIME_MS):
        raise PresignError(f"metadata field {key!r} is out of range (ms since 1970), got {value}")
    return value


def parse_dims(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
        raise PresignError(f'dims must be "N,H,W" with positive integers, got {text!r}')
    n, h, w = (int(p) for p in parts)
    if min(n, h, w) < 1 or max(h, w) > MAX_DIM or n > 1_000_000:
        raise PresignError(f"dims {text!r} out of range (1 <= N <= 1e6, 1 <= H, W <= {MAX_DIM})")
    return n, h, w


def parse_grant(
    original_filename: str, metadata: Mapping[str, Any], max_frame_bytes: int
) -> ChunkGrant:
    """Validate a presign request (shard key + metadata) into the grant its URL will carry."""
    match = SHARD_KEY_RE.match(original_filename)
    if match is None:
        raise PresignError(
            "original_filename must be the shard key 'frames.zarr/frames/c/{chunk_idx}/0/0', "
            f"got {original_filename[:200]!r}"
        )
    data_id = _text(metadata, "data_id") or ""
    if not DATA_ID_RE.match(data_id):
        raise PresignError(f"data_id must match [A-Za-z0-9_-]+, got {data_id[:200]!r}")
    stream_kind = _text(metadata, "data_stream", required=False)
    if stream_kind is not None and stream_kind != "rheed":
        raise PresignError(f"data_stream must be 'rheed', got {stream_kind[:100]!r}")
    dims = parse_dims(_text(metadata, "dims") or "")
    chunk_size = _int(metadata, "chunk_size")
    assert chunk_size is not None
    if chunk_size < 1 or chunk_size > 1_000_000:
        raise PresignError(f"chunk_size must be within 1..1000000, got {chunk_size}")
    if dims[0] * dims[1] * dims[2] > max_frame_bytes:
        raise PresignError(
            f"chunk of dims {dims} is {dims[0] * dims[1] * dims[2]} bytes decoded, more than "
            f"the server's limit of {max_frame_bytes}"
        )
    start_ms = _time_ms(metadata, "start_unix_ms_utc")
    end_ms = _time_ms(metadata, "end_unix_ms_utc")
    offset = _time_ms(metadata, "clock_offset_ms", required=False, signed=True)
    uncertainty = _float(metadata, "clock_uncertainty_ms")
    return ChunkGrant(
        data_id=data_id,
        chunk_idx=int(match.group(1)),
        dims=dims,
        chunk_size=chunk_size,
        start_ms=start_ms,
        end_ms=end_ms,
        clock_offset_ms=offset,
        clock_uncertainty_ms=uncertainty,
        metadata={k: metadata[k] for k in sorted(metadata)},
    )


@dataclass
class _Entry:
    grant: ChunkGrant
    expires_at: float


class PresignRegistry:
    """Live upload tokens (thread-safe); each one stores at most one shard.

    A PUT ``claim``s its token, which takes it out of the live set in the same locked step that
    checks it, so a second PUT with the token is refused even while the first is still storing.
    The first then ``spend``s it (stored) or ``release``s it (refused: usable again until it
    expires).
    """

    def __init__(self, ttl_s: float = 900.0) -> None:
        if ttl_s <= 0:
            raise ValueError("presign TTL must be positive")
        self.ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}
        self._claimed: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def issue(self, grant: ChunkGrant) -> str:
        now = time.monotonic()
        token = secrets.token_urlsafe(32)
        with self._lock:
            for key in [k for k, e in self._entries.items() if e.expires_at <= now]:
                del self._entries[key]
            self._entries[token] = _Entry(grant, now + self.ttl_s)
        return token

    def lookup(self, token: str) -> ChunkGrant | None:
        """The grant of a live token, or None when unknown, claimed, spent or expired."""
        with self._lock:
            entry = self._entries.get(token)
            if entry is None or entry.expires_at <= time.monotonic():
                return None
            return entry.grant

    def claim(self, token: str) -> ChunkGrant | None:
        """Check and take a live token for one upload, atomically; None when it is not live."""
        with self._lock:
            entry = self._entries.pop(token, None)
            if entry is None or entry.expires_at <= time.monotonic():
                return None
            self._claimed[token] = entry
            return entry.grant

    def release(self, token: str) -> None:
        """The claimed upload was refused: the token is live again (until it expires)."""
        with self._lock:
            entry = self._claimed.pop(token, None)
            if entry is not None:
                self._entries[token] = entry

    def spend(self, token: str) -> None:
        """The claimed upload stored its shard: the token is gone for good."""
        with self._lock:
            self._claimed.pop(token, None)
            self._entries.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries) + len(self._claimed)
