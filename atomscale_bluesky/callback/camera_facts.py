"""What the worker learns about a run's cameras: frame sizes, fps, frame counters, rotation.

Facts come from descriptors' configuration and from readings in any stream of the run (a monitor
stream's descriptor only describes the image signal, so its camera's size, AcquirePeriod and
frame counter come from other streams). Owned by the worker; the intake keeps its own hints.
"""

from __future__ import annotations

import logging
import math

from atomscale_bluesky.callback.frame_gaps import CounterFeed
from atomscale_bluesky.callback.messages import EventRows
from atomscale_bluesky.callback.pixel_format import PixelDeclaration, PixelOptions, first_declared
from atomscale_bluesky.callback.routing import (
    CounterKey,
    FrameKey,
    Route,
    RunHints,
    SizeKey,
    pick_counter,
    pick_size,
)
from atomscale_bluesky.callback.values import as_float, as_int, last_row, positive, row

__all__ = ["CameraFacts"]

logger = logging.getLogger(__name__)


class CameraFacts:
    """Run-wide camera knowledge, updated from descriptors and event rows on the worker."""

    def __init__(self, rotation_key: str | None) -> None:
        self.hints = RunHints()
        self.rotation_key = rotation_key
        self.rotation: float | None = None  # latest reading of the rotation key, rpm
        self._size_keys: dict[str, SizeKey] = {}  # width/height readings, any stream
        self._size_values: dict[str, int] = {}  # their latest values
        self._counter_keys: dict[str, CounterKey] = {}  # frame counters on monitor streams
        self._feeds: dict[str, CounterFeed] = {}

    # -- learning ---------------------------------------------------------------------------------
    def absorb_descriptor(self, route: Route) -> bool:
        """Learn a descriptor's configuration and readings; True when it adds frame counters."""
        self.hints.absorb(route)
        self._size_keys.update(route.sizes)
        if route.counters and route.continuous:
            self._counter_keys.update(route.counters)
            return True
        return False

    def absorb_rows(self, rows: EventRows) -> None:
        """Sizes, AcquirePeriod, counters and rotation from one descriptor's new rows."""
        route, data = rows.route, rows.data
        for obj, (width_key, height_key) in route.size_readings.items():
            width = as_int(last_row(data.get(width_key)))
            height = as_int(last_row(data.get(height_key)))
            if width and height and width > 0 and height > 0:
                self.hints.sizes[obj] = (height, width)
        for key in route.sizes:
            value = as_int(last_row(data.get(key)))
            if value is not None and value > 0:
                self._size_values[key] = value
        for obj, key in route.period_readings.items():
            period = positive(last_row(data.get(key)))
            if period:
                self.hints.fps[obj] = 1.0 / period
        if route.counters and route.continuous:
            self._feed_counters(rows)

    def note_rotation(self, key: str, value: float) -> None:
        if key == self.rotation_key and math.isfinite(value):
            self.rotation = abs(value)

    def _feed_counters(self, rows: EventRows) -> None:
        """Keep a monitor stream's frame-counter readings by timestamp for its camera's frames."""
        for key in rows.route.counters:
            values = rows.data.get(key)
            if values is None:
                continue
            stamps = rows.timestamps.get(key)
            feed = self.counter_feed(key)
            for i, value in enumerate(values):
                ts = as_float(row(stamps, i))
                number = as_int(value)
                if number is not None and math.isfinite(ts):
                    feed.add(ts, number)

    # -- questions --------------------------------------------------------------------------------
    def counter_feed(self, key: str) -> CounterFeed:
        feed = self._feeds.get(key)
        if feed is None:
            feed = self._feeds[key] = CounterFeed()
        return feed

    def counter_for(self, fkey: FrameKey) -> CounterKey | None:
        """The monitor-stream counter of the same camera as ``fkey``, if the run has one."""
        return pick_counter(fkey, self._counter_keys.values())

    def declared_shape(self, fkey: FrameKey) -> tuple[int, int] | None:
        """(H, W) from the descriptor, the user's ``frame_shapes`` or the run's hints."""
        return fkey.frame_shape or self.hints.size_for(fkey.object_name, fkey.key)

    def size_keys_for(self, fkey: FrameKey) -> tuple[str, str] | None:
        """The (width, height) reading keys that shape ``fkey``'s flat frames, if any."""
        picked = pick_size(fkey, self._size_keys.values())
        return None if picked is None else (picked[0].key, picked[1].key)

    def read_size(self, size_keys: tuple[str, str]) -> tuple[int, int] | None:
        """(H, W) from the latest width/height readings."""
        width = self._size_values.get(size_keys[0])
        height = self._size_values.get(size_keys[1])
        return (height, width) if width and height else None

    def declared_pixels(
        self,
        fkey: FrameKey,
        options: PixelOptions,
        option_bit_depth: int | None,
        run_bit_depth: int | None,
    ) -> PixelDeclaration:
        """The camera's pixel declarations, fact by fact from the first that gives it: the user's
        options, the camera's configuration (any descriptor of the run), the data key, the
        ``bit_depth`` option, the start document's ``bit_depth``."""
        option_depth = PixelDeclaration(
            bit_depth=option_bit_depth, bit_depth_source="option bit_depth"
        )
        run_depth = PixelDeclaration(
            bit_depth=run_bit_depth, bit_depth_source="start document bit_depth"
        )
        return first_declared(
            [
                options.for_key(fkey.key),
                self.hints.pixels_for(fkey.object_name, fkey.key),
                fkey.pixels,
                option_depth if option_bit_depth else None,
                run_depth if run_bit_depth else None,
            ]
        )

    def fps_for(self, fkey: FrameKey) -> float | None:
        """The camera's configured fps (AcquirePeriod), from the descriptor or the run."""
        return fkey.fps or self.hints.fps_for(fkey.object_name, fkey.key)
