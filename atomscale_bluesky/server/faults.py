"""Fault injection for reliability tests: latency, error statuses, dropped connections, outages.

A ``FaultSwitch`` holds the current ``Faults`` (settable at start-up and at run time, thread-safe)
and a seeded RNG, and decides per request what happens. ``FaultMiddleware`` applies that decision
to the protocol endpoints only; the ``/local/`` read and control endpoints are never faulted, so a
test can always switch faults off and read back what was stored.

A dropped connection aborts the TCP connection without any response: the runner's uvicorn protocol
puts the connection's transport into ``scope["state"]`` for that purpose.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

TRANSPORT_STATE_KEY = "atomscale.transport"
UNFAULTED_PREFIXES = ("/local/", "/openapi.json", "/docs", "/redoc")
OUTAGE_MODES = ("drop", "503", "401", "403")


@dataclass(frozen=True)
class Faults:
    """Fault switches; all off by default.

    - ``latency_s``: seconds added before every faulted request is handled.
    - ``error_rate``: fraction (0..1) of requests answered with one of ``error_statuses``.
    - ``error_statuses``: statuses to answer with, chosen at random (5xx and 429 are transient;
      another 4xx, such as 422, is the backend refusing the request itself).
    - ``drop_rate``: fraction (0..1) of requests whose connection is closed without a response.
    - ``outage``: when true, every faulted request fails (``outage_mode``) until switched off.
    - ``outage_s``: start an outage window of this many seconds (counted from when it is set).
    - ``outage_mode``: during an outage, "drop" (close the connection), "503" (answer 503), or
      "401"/"403" (an authentication outage: a rotated key or an auth gateway's glitch).
    - ``paths``: path prefixes the faults apply to (empty = every protocol endpoint).
    - ``seed``: seed of the RNG that draws errors and drops (None = unseeded).
    """

    latency_s: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503, 429)
    drop_rate: float = 0.0
    outage: bool = False
    outage_s: float = 0.0
    outage_mode: str = "drop"
    paths: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.latency_s >= 0, "latency_s must be >= 0"),
            (0.0 <= self.error_rate <= 1.0, "error_rate must be within 0..1"),
            (0.0 <= self.drop_rate <= 1.0, "drop_rate must be within 0..1"),
            (self.outage_s >= 0, "outage_s must be >= 0"),
            (self.outage_mode in OUTAGE_MODES, f"outage_mode must be one of {OUTAGE_MODES}"),
            (bool(self.error_statuses), "error_statuses must not be empty"),
            (
                all(400 <= s <= 599 for s in self.error_statuses),
                "error_statuses must be 4xx or 5xx",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: Faults | None = None) -> Faults:
        """Build from JSON-like values, starting from ``base``; unknown names raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown fault switch(es) {unknown}; known: {sorted(names)}")
        merged = {**dataclasses.asdict(base or cls()), **values}
        try:
            return cls(
                latency_s=float(merged["latency_s"]),
                error_rate=float(merged["error_rate"]),
                error_statuses=tuple(int(s) for s in merged["error_statuses"]),
                drop_rate=float(merged["drop_rate"]),
                outage=_as_bool(merged["outage"]),
                outage_s=float(merged["outage_s"]),
                outage_mode=str(merged["outage_mode"]),
                paths=tuple(str(p) for p in merged["paths"]),
                seed=None if merged["seed"] is None else int(merged["seed"]),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad fault switch value: {exc}") from exc


def _as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected a boolean, got {value!r}")


@dataclass
class Decision:
    """What to do with one request."""

    delay_s: float = 0.0
    drop: bool = False
    status: int | None = None
    reason: str = ""


@dataclass
class FaultSwitch:
    """The run-time fault state of one server; ``set(**switches)`` changes it, ``clear()`` resets."""

    _faults: Faults = field(default_factory=Faults)
    _outage_until: float = 0.0
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    injected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._apply(self._faults)

    def _apply(self, faults: Faults) -> None:
        self._faults = faults
        self._rng = random.Random(faults.seed)
        self._outage_until = time.monotonic() + faults.outage_s if faults.outage_s > 0 else 0.0

    def set(self, **switches: Any) -> Faults:
        """Change some switches (others keep their value); re-seeds the RNG; returns the result."""
        with self._lock:
            self._apply(Faults.from_mapping(switches, self._faults))
            return self._faults

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._apply(faults)

    def clear(self) -> None:
        """Switch every fault off."""
        self.replace(Faults())

    @property
    def current(self) -> Faults:
        return self._faults

    def outage_remaining_s(self) -> float:
        return max(0.0, self._outage_until - time.monotonic())

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            out = dataclasses.asdict(self._faults)
            out["error_statuses"] = list(self._faults.error_statuses)
            out["paths"] = list(self._faults.paths)
            out["outage_remaining_s"] = self.outage_remaining_s()
            out["injected"] = dict(self.injected)
            return out

    def decide(self, path: str) -> Decision:
        """Draw the fate of one request to ``path``."""
        with self._lock:
            f = self._faults
            if f.paths and not any(path.startswith(p) for p in f.paths):
                return Decision()
            decision = Decision(delay_s=f.latency_s)
            if f.outage or self.outage_remaining_s() > 0:
                decision.reason = "outage"
                if f.outage_mode == "drop":
                    decision.drop = True
                else:
                    decision.status = int(f.outage_mode)
            elif f.drop_rate and self._rng.random() < f.drop_rate:
                decision.drop, decision.reason = True, "drop"
            elif f.error_rate and self._rng.random() < f.error_rate:
                decision.status = self._rng.choice(f.error_statuses)
                decision.reason = "error"
            if decision.reason:
                key = f"{decision.reason}_{'drop' if decision.drop else decision.status}"
                self.injected[key] = self.injected.get(key, 0) + 1
            return decision


class FaultMiddleware:
    """ASGI middleware applying a FaultSwitch to every HTTP path but ``/local/`` and the API docs."""

    def __init__(self, app: ASGIApp, switch: FaultSwitch) -> None:
        self.app = app
        self.switch = switch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNFAULTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        decision = self.switch.decide(scope["path"])
        if decision.delay_s > 0:
            await asyncio.sleep(decision.delay_s)
        if decision.drop:
            await drop_connection(scope)
            return
        if decision.status is not None:
            body = json.dumps(
                {"detail": f"injected fault ({decision.reason}): HTTP {decision.status}"}
            ).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ]
            if decision.status in (429, 503):
                headers.append((b"retry-after", b"1"))
            await send(
                {"type": "http.response.start", "status": decision.status, "headers": headers}
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)


class DroppedConnection(Exception):
    """Raised when the server cannot reach the connection's transport to drop it."""


async def drop_connection(scope: Scope) -> None:
    """Abort the TCP connection of this request without sending a response."""
    transport = scope.get("state", {}).get(TRANSPORT_STATE_KEY)
    if transport is None:
        raise DroppedConnection("fault injection: dropping the connection")
    transport.abort()
    # let uvicorn see connection_lost, so it does not try to answer on the dead connection
    for _ in range(3):
        await asyncio.sleep(0)
