"""Bookkeeping shared by every stage: per-run counts, warn-once logging, errors and strict mode.

The intake (delivering threads) and the worker both count into one run's :class:`RunReport`; it
is thread-safe by construction, so neither side needs the other's lock.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field, fields

from atomscale_bluesky.callback.counters import CallbackCounters, LockedCounters
from atomscale_bluesky.callback.summary import RunCounts

__all__ = ["FailureLatch", "RunReport", "log_error", "report_outside_runs"]

logger = logging.getLogger(__name__)

MAX_ERROR_MESSAGES = 20
_TOTAL_NAMES = frozenset(f.name for f in fields(CallbackCounters))


class FailureLatch:
    """The first failure of the callback, for strict mode (set by any thread, read by any)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._message: str | None = None

    def trip(self, message: str) -> None:
        with self._lock:
            if self._message is None:
                self._message = message

    def reset(self) -> None:
        with self._lock:
            self._message = None

    @property
    def message(self) -> str | None:
        with self._lock:
            return self._message


@dataclass
class _Record:
    counts: RunCounts = field(default_factory=RunCounts)
    warned: set[str] = field(default_factory=set)
    error_messages: list[str] = field(default_factory=list)
    skipped_keys: dict[str, str] = field(default_factory=dict)
    exit_status: str | None = None


def log_error(prefix: str, context: str, exc: BaseException | str, counters: LockedCounters) -> str:
    """Log a failure with its context and count it; returns the logged message."""
    message = f"{prefix}: {context}: {exc}"
    if isinstance(exc, BaseException):
        logger.error("Atomscale: %s", message, exc_info=exc)
    else:
        logger.error("Atomscale: %s", message)
    counters.add(errors=1)
    return message


def report_outside_runs(
    context: str,
    exc: BaseException | str,
    counters: LockedCounters,
    failure: FailureLatch,
    *,
    strict: bool,
) -> None:
    """A failure no run can own: logged, counted, and remembered for strict mode."""
    message = log_error("run -", context, exc, counters)
    if strict:
        failure.trip(message)


class RunReport:
    """One run's counts, warnings and errors; every method is safe from any thread."""

    def __init__(
        self, uid: str, counters: LockedCounters, failure: FailureLatch, *, strict: bool
    ) -> None:
        self.uid = uid
        self.prefix = f"run {uid[:8]}"
        self._totals = counters
        self._failure = failure
        self._strict = strict
        self._lock = threading.Lock()
        self._record = _Record()

    def add(self, **amounts: int) -> None:
        """Count into this run, and into the callback's totals where they have the same name."""
        with self._lock:
            counts = self._record.counts
            for name, amount in amounts.items():
                setattr(counts, name, getattr(counts, name) + amount)
        totals = {name: n for name, n in amounts.items() if name in _TOTAL_NAMES}
        if totals:
            self._totals.add(**totals)

    def first_time(self, tag: str) -> bool:
        """True the first time ``tag`` is seen in this run (for once-per-run messages)."""
        with self._lock:
            if tag in self._record.warned:
                return False
            self._record.warned.add(tag)
            return True

    def warn_once(self, tag: str, message: str) -> None:
        """Warn once per run and tag; later occurrences are only counted by the caller."""
        if self.first_time(tag):
            logger.warning("Atomscale: %s: %s", self.prefix, message)

    def info_once(self, tag: str, message: str) -> None:
        if self.first_time(tag):
            logger.info("Atomscale: %s: %s", self.prefix, message)

    def info(self, message: str, *args: object) -> None:
        logger.info("Atomscale: %s: " + message, self.prefix, *args)

    def error(self, context: str, exc: BaseException | str) -> None:
        """Log with context, count, remember for the summary and strict mode; never raise."""
        message = log_error(self.prefix, context, exc, self._totals)
        with self._lock:
            self._record.counts.errors += 1
            if len(self._record.error_messages) < MAX_ERROR_MESSAGES:
                self._record.error_messages.append(f"{context}: {exc}")
        if self._strict:
            self._failure.trip(message)

    def skip_key(self, key: str, reason: str) -> None:
        """Note a data key that is not uploaded, by design; logged once per run."""
        with self._lock:
            if key in self._record.skipped_keys:
                return
            self._record.skipped_keys[key] = reason
        logger.info("Atomscale: %s: not uploading %r (%s)", self.prefix, key, reason)

    def set_exit_status(self, status: str | None) -> None:
        with self._lock:
            self._record.exit_status = status

    def counts(self) -> RunCounts:
        with self._lock:
            return RunCounts(**asdict(self._record.counts))

    def snapshot(self) -> tuple[RunCounts, list[str], dict[str, str], str | None]:
        """Counts, error messages, skipped keys and exit status, copied under the lock."""
        with self._lock:
            record = self._record
            return (
                RunCounts(**asdict(record.counts)),
                list(record.error_messages),
                dict(record.skipped_keys),
                record.exit_status,
            )
