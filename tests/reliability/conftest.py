"""Shared pieces of the reliability tests: figures every scenario reports, RSS, clients, frames.

Every fault scenario prints a ``FIGURES`` line (frames the IOC counted, frames the RunEngine
delivered, frames the server stored, lost) so a run with ``-s`` shows what each test proved.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from plugins.ioc_fixtures import ca_write, wait_for

from atomscale_bluesky.client import Backoff

#: Upload retries short enough for test time; the defaults (0.5 s doubling to 30 s) stay.
TEST_BACKOFF = Backoff(first=0.1, max=2.0)
PRESIGN = "/data_entries/raw_data/staged/upload_urls/"


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


class RssSampler:
    """Samples this process's RSS every ``interval`` s in a thread; ``peak`` and ``start``."""

    def __init__(self, interval: float = 0.25) -> None:
        self.start = rss_bytes()
        self.samples: list[int] = [self.start]
        self.times: list[float] = [time.monotonic()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append(rss_bytes())
            self.times.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.samples.append(rss_bytes())
        self.times.append(time.monotonic())

    def growth_between(self, t0: float, t1: float) -> int:
        """Largest RSS rise within monotonic times [t0, t1] over the RSS at ``t0``."""
        inside = [s for s, ts in zip(self.samples, self.times, strict=True) if t0 <= ts <= t1]
        return max(inside) - inside[0] if inside else 0

    @property
    def peak_growth(self) -> int:
        return max(self.samples) - self.start


def frame_hash(frame: Any) -> str:
    return hashlib.sha1(np.ascontiguousarray(frame, dtype=np.uint8).tobytes()).hexdigest()


@dataclass
class Figures:
    """What a scenario moved: IOC frames, RunEngine deliveries, server storage, and losses."""

    scenario: str
    sent: int = 0  # frames the IOC published (its ArrayCounter), or the publisher emitted
    delivered: int = 0  # image events the RunEngine emitted to the callback
    stored: int = 0  # frames the server holds
    stale: int = 0  # a monitor's pre-run value the callback leaves out by design (counted)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def lost(self) -> int:
        return self.delivered - self.stale - self.stored

    def report(self) -> str:
        text = (
            f"FIGURES {self.scenario}: sent {self.sent} (IOC), delivered {self.delivered} (RE), "
            f"stored {self.stored}, lost {self.lost}"
            + (f" (+{self.stale} stale pre-run frame left out)" if self.stale else "")
        )
        if self.extra:
            text += " | " + ", ".join(f"{k} {v}" for k, v in self.extra.items())
        print(text)
        return text


class EventFrames:
    """Hashes and hardware timestamps of every frame the RunEngine emits for ``key``."""

    def __init__(self, key: str = "rheed_image") -> None:
        self.key = key
        self.rows: list[tuple[float, str]] = []
        self._lock = threading.Lock()

    def __call__(self, name: str, doc: dict[str, Any]) -> None:
        if name == "event" and self.key in doc["data"]:
            row = (float(doc["timestamps"][self.key]), frame_hash(doc["data"][self.key]))
            with self._lock:
                self.rows.append(row)

    def hashes_in_time_order(self) -> list[str]:
        with self._lock:
            rows = sorted(self.rows)
        unique: dict[float, str] = {}
        for ts, digest in rows:
            unique.setdefault(ts, digest)  # the chunker drops a repeated timestamp
        return list(unique.values())


def stored_chunk_hashes(reader: Any, data_id: str) -> list[list[str]]:
    """Hashes of the frames of each stored chunk, in chunk order (gaps of absent chunks skipped)."""
    info = reader.rheed_stream(data_id)
    out = []
    for chunk in sorted(info["chunks"], key=lambda c: c["idx"]):
        lo = chunk["offset"]
        out.append([frame_hash(f) for f in reader.frames(data_id, lo, lo + chunk["n_frames"])])
    return out


def stored_hashes(reader: Any, data_id: str) -> list[str]:
    """Hashes of every frame a RHEED stream holds on the server, in frame order."""
    return [h for chunk in stored_chunk_hashes(reader, data_id) for h in chunk]


SMALL = (120, 160)  # (H, W): modest frames where size is not the point


def set_size(prefix: str, h: int, w: int, fps: float) -> None:
    """Resize the camera and publish a few frames so its last frame (a monitor's first) fits."""
    ca_write(prefix + "cam1:SizeX", w)
    ca_write(prefix + "cam1:SizeY", h)
    ca_write(prefix + "cam1:AcquirePeriod", 1.0 / fps)
    ca_write(prefix + "cam1:ImageMode", 2)
    ca_write(prefix + "cam1:Acquire", 1)
    time.sleep(0.3)
    ca_write(prefix + "cam1:Acquire", 0)
    time.sleep(0.2)


@pytest.fixture
def small_camera(camera: Any) -> Iterator[Any]:
    """The session camera at 160x120 for the test; back to 640x480 afterwards."""
    set_size(camera.prefix, *SMALL, fps=30.0)
    wait_for(lambda: (camera.height.get(), camera.width.get()) == SMALL, 5)
    try:
        yield camera
    finally:
        ca_write(camera.prefix + "cam1:SizeX", 640)
        ca_write(camera.prefix + "cam1:SizeY", 480)
