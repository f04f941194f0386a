"""How far the IOCs' clocks are from the RunEngine host's, measured per run from the events.

An event's ``time`` is the RunEngine host's clock when the event was made; each reading's
``timestamps`` entry is the IOC's clock when it last processed. Their difference is the skew
plus the reading's age. Only readings that changed since the previous event of their stream
count (a setpoint's unchanged timestamp is legitimately old, and a monitor's first value is from
before the run); the median of those is robust to the few that aged. A skew beyond
:data:`~atomscale_bluesky.callback.summary.SKEW_REPORT_S` is warned once per run and shown in the
run's summary. Nothing is corrected with it: each stored time stays its own clock's.
"""

from __future__ import annotations

import math
import statistics

from atomscale_bluesky.callback.messages import EventRows
from atomscale_bluesky.callback.run_report import RunReport
from atomscale_bluesky.callback.summary import SKEW_REPORT_S, skew_text
from atomscale_bluesky.callback.values import as_float

__all__ = ["MAX_SAMPLES", "MIN_SAMPLES", "ClockSkew"]

MIN_SAMPLES = 5  # fresh readings before the skew is judged during the run
MAX_SAMPLES = 10_000  # the first this many fresh readings are kept (bounded memory)


class ClockSkew:
    """One run's IOC-to-host skew: fed every event row on the worker, judged once per run."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], float] = {}  # (descriptor, key) -> previous timestamp
        self._samples: list[float] = []
        self._judged = False

    @property
    def readings(self) -> int:
        """Fresh readings measured so far."""
        return len(self._samples)

    def skew_s(self) -> float | None:
        """RunEngine host time minus IOC time, median over fresh readings; None without any."""
        return statistics.median(self._samples) if self._samples else None

    def add_rows(self, rows: EventRows, report: RunReport) -> None:
        """Measure the rows' changed readings; judge the skew once enough are measured.

        Once ``MAX_SAMPLES`` readings are kept, later rows cost nothing.
        """
        samples = self._samples
        if len(samples) >= MAX_SAMPLES:
            return
        descriptor = rows.route.descriptor_uid
        last = self._last
        made_at = [as_float(t) for t in rows.times]
        for key, stamps in rows.timestamps.items():
            if stamps is None or len(stamps) == 0:
                continue
            slot = (descriptor, key)
            previous = last.get(slot)
            for made, raw in zip(made_at, stamps, strict=False):  # a short column ends early
                ts = as_float(raw)
                if not (-math.inf < ts < math.inf and -math.inf < made < math.inf):
                    continue  # NaN or infinite
                if previous is not None and ts != previous:
                    samples.append(made - ts)
                previous = ts
            if previous is not None:
                last[slot] = previous
        del samples[MAX_SAMPLES:]
        if not self._judged and len(samples) >= MIN_SAMPLES:
            self.judge(report)

    def judge(self, report: RunReport) -> None:
        """Warn once per run when the skew is beyond the limit (at the latest at the run's end)."""
        skew = self.skew_s()
        if skew is None:
            return
        self._judged = True
        if abs(skew) > SKEW_REPORT_S:
            report.warn_once("ioc-clock-skew", skew_text(skew, self.readings))
