"""This computer's clock measured against the endpoint's reference clock (protocol §2.6).

An NTP-style four-timestamp exchange with ``GET /gateway/time``: the offset (reference minus host)
is the mean of the two one-way differences and its error at most half the round trip. The
estimate keeps the lowest-delay of the last 8 samples, steps on the first 4 samples or a jump of
more than 1 s, and otherwise slews at no more than 0.5 ms per second so stamps never run
backwards. One clock per endpoint per process, measured by its own daemon thread: a burst of 4
exchanges 2 s apart, then one every 300 s. The host clock itself is never changed.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import httpx

__all__ = [
    "ClockSample",
    "ClockState",
    "Correction",
    "LabClock",
    "clock_for",
    "round_half_away",
    "sample_from_exchange",
]

log = logging.getLogger(__name__)

BURST_SAMPLES = 4
BURST_SPACING_S = 2.0
SAMPLE_INTERVAL_S = 300.0
SAMPLE_WINDOW = 8
EXCHANGE_TIMEOUT_S = 10.0
STEP_THRESHOLD_MS = 1000.0
MAX_SLEW_MS_PER_S = 0.5
FIRST_ATTEMPT_WAIT_S = 5.0


def round_half_away(x: float) -> int:
    """Round half away from zero, like Rust's ``f64::round`` (Python's round is half-even)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def host_now_ms() -> float:
    """Host wall-clock time in ms as a float."""
    return time.time() * 1000.0


@dataclass(frozen=True)
class ClockSample:
    """One exchange: reference minus host, its round trip, and when the server sent it."""

    offset_ms: float
    delay_ms: float
    measured_at_ms: float


@dataclass(frozen=True)
class Correction:
    """What was added to one stamp, recorded beside it so a consumer can undo it."""

    offset_ms: int
    uncertainty_ms: float


def sample_from_exchange(t1: float, t4: float, t2: float, t3: float) -> ClockSample | None:
    """A sample from send/receive (host) and receive/transmit (server) times; None on a step."""
    held = t3 - t2
    delay = (t4 - t1) - held
    if delay < 0.0 or held < 0.0:
        return None
    return ClockSample(((t2 - t1) + (t3 - t4)) / 2.0, delay, t3)


class ClockState:
    """The filter: sample window, best sample, and the stepped-or-slewed applied offset."""

    def __init__(self) -> None:
        self.samples: list[ClockSample] = []
        self.best: ClockSample | None = None
        self.offset_ms: float | None = None
        self.target_ms = 0.0
        self.adjusted_at_ms = 0.0

    def record(self, sample: ClockSample, now_ms: float) -> None:
        """Add a sample; clear history on a host clock jump; step or retarget the slew."""
        if (
            self.best is not None
            and abs(sample.offset_ms - self.best.offset_ms) > STEP_THRESHOLD_MS + sample.delay_ms
        ):
            self.samples.clear()
        self.samples.append(sample)
        if len(self.samples) > SAMPLE_WINDOW:
            self.samples.pop(0)
        best = self.samples[0]
        for candidate in self.samples[1:]:
            if candidate.delay_ms <= best.delay_ms:  # ties go to the newer sample
                best = candidate
        self.best = best
        current = self.current(now_ms)
        if (
            current is None
            or len(self.samples) <= BURST_SAMPLES
            or abs(best.offset_ms - current) > STEP_THRESHOLD_MS
        ):
            self.offset_ms = best.offset_ms
            self.adjusted_at_ms = now_ms
        self.target_ms = best.offset_ms

    def current(self, now_ms: float) -> float | None:
        """The applied offset now, slewed toward the target since the last read."""
        if self.offset_ms is None:
            return None
        allowed = max(now_ms - self.adjusted_at_ms, 0.0) / 1000.0 * MAX_SLEW_MS_PER_S
        step = min(max(self.target_ms - self.offset_ms, -allowed), allowed)
        self.offset_ms += step
        self.adjusted_at_ms = now_ms
        return self.offset_ms


class LabClock:
    """The shared, thread-safe clock of one endpoint."""

    def __init__(self, endpoint: str, *, verify: bool = True) -> None:
        self.url = endpoint.rstrip("/") + "/gateway/time"
        self._verify = verify
        self._state = ClockState()
        self._lock = threading.Lock()
        self._attempted = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the measuring thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"atomscale-clock {self.url}", daemon=True
            )
            self._thread.start()

    def measure_once(self, client: httpx.Client) -> None:
        """One exchange; raises on a failed or malformed reply."""
        sent = host_now_ms()
        with client.stream("GET", self.url, headers={"Cache-Control": "no-store"}) as response:
            received = host_now_ms()  # headers have arrived
            response.read()
        if not response.is_success:
            raise RuntimeError(f"reference time request failed ({response.status_code})")
        body = response.json()
        t2 = float(body["receivedAtUnixMs"])
        t3 = float(body["transmittedAtUnixMs"])
        sample = sample_from_exchange(sent, received, t2, t3)
        if sample is None:
            return
        with self._lock:
            self._state.record(sample, host_now_ms())

    def _run(self) -> None:
        taken = 0
        measured_before = False
        with httpx.Client(timeout=EXCHANGE_TIMEOUT_S, verify=self._verify) as client:
            while True:
                try:
                    self.measure_once(client)
                    status = self.status()
                    if status is not None and not measured_before:
                        measured_before = True
                        side = "behind" if status["offset_ms"] > 0 else "ahead of"
                        log.info(
                            "this computer's clock is %.0f ms %s the reference (±%.0f ms); "
                            "streams carry corrected times",
                            abs(status["offset_ms"]),
                            side,
                            math.ceil(status["uncertainty_ms"]),
                        )
                except Exception as error:  # any failure: keep the schedule
                    log.debug("clock measurement against %s failed: %s", self.url, error)
                self._attempted.set()
                taken += 1
                time.sleep(BURST_SPACING_S if taken < BURST_SAMPLES else SAMPLE_INTERVAL_S)

    def wait_for_first_attempt(self, timeout: float = FIRST_ATTEMPT_WAIT_S) -> bool:
        """Block until the first exchange finished (either way), at most ``timeout`` s."""
        return self._attempted.wait(timeout)

    def offset_ms(self) -> float:
        """Reference minus host in ms (unrounded); 0 until the first measurement."""
        with self._lock:
            current = self._state.current(host_now_ms())
        return 0.0 if current is None else current

    def correct_ms(self, host_ms: int) -> tuple[int, Correction | None]:
        """A host-clock ms stamp as reference UTC, with the correction applied (None: none)."""
        with self._lock:
            current = self._state.current(host_now_ms())
            best = self._state.best
        if current is None or best is None:
            return host_ms, None
        offset = round_half_away(current)
        uncertainty = round_half_away(best.delay_ms / 2.0 * 10.0) / 10.0
        return host_ms + offset, Correction(offset, uncertainty)

    def status(self) -> dict[str, float] | None:
        """``{"offset_ms", "uncertainty_ms", "measured_at_unix_ms"}`` or None if unmeasured."""
        with self._lock:
            current = self._state.current(host_now_ms())
            best = self._state.best
        if current is None or best is None:
            return None
        return {
            "offset_ms": current,
            "uncertainty_ms": best.delay_ms / 2.0,
            "measured_at_unix_ms": best.measured_at_ms,
        }


_registry: dict[str, LabClock] = {}
_registry_lock = threading.Lock()


def clock_for(endpoint: str, *, verify: bool = True) -> LabClock:
    """The process-wide clock of ``endpoint`` (exact string), started on first use."""
    with _registry_lock:
        clock = _registry.get(endpoint)
        if clock is None:
            clock = LabClock(endpoint, verify=verify)
            _registry[endpoint] = clock
    clock.start()
    return clock
