"""One run on the worker: hands each work item to the run's camera uploaders, points uploader
and external reader, and flushes them all when the run ends."""

from __future__ import annotations

import time

from atomscale_bluesky.callback.camera_facts import CameraFacts
from atomscale_bluesky.callback.camera_uploader import CameraUploader
from atomscale_bluesky.callback.clock_skew import ClockSkew
from atomscale_bluesky.callback.counters import LockedCounters
from atomscale_bluesky.callback.external_reader import ExternalReader
from atomscale_bluesky.callback.handlers import HandlerRegistry
from atomscale_bluesky.callback.messages import (
    DescriptorArrived,
    EventRows,
    ExternalDocument,
    RunOpened,
)
from atomscale_bluesky.callback.options import CallbackOptions
from atomscale_bluesky.callback.points_uploader import PointsUploader
from atomscale_bluesky.callback.routing import FrameKey, Route
from atomscale_bluesky.callback.run_context import RunContext
from atomscale_bluesky.callback.stream_opener import StreamOpener
from atomscale_bluesky.callback.values import as_float, as_int, row

__all__ = ["RunUploader"]


class RunUploader:
    """Everything the worker holds for one run; owned by the worker until the run is finished."""

    def __init__(
        self,
        opened: RunOpened,
        options: CallbackOptions,
        counters: LockedCounters,
        opener: StreamOpener,
    ) -> None:
        self.ctx = RunContext(
            meta=opened.meta,
            options=options,
            report=opened.report,
            counters=counters,
            opener=opener,
            facts=CameraFacts(options.routing.rotation_key),
        )
        self.cameras: dict[str, CameraUploader] = {}
        self.points = PointsUploader(self.ctx)
        self.external = ExternalReader(
            opened.report,
            HandlerRegistry(options.handler_registry, options.root_map),
            options.external_timeout_s,
        )
        self.skew = ClockSkew()
        self._routes: dict[str, Route] = {}  # descriptor uid -> route, as the intake sent it

    @property
    def uid(self) -> str:
        return self.ctx.meta.uid

    def camera(self, key: str) -> CameraUploader:
        camera = self.cameras.get(key)
        if camera is None:
            camera = self.cameras[key] = CameraUploader(key, self.ctx)
        return camera

    # -- work items -------------------------------------------------------------------------------
    def on_descriptor(self, item: DescriptorArrived) -> None:
        route = item.route
        self._routes[route.descriptor_uid] = route
        if self.ctx.facts.absorb_descriptor(route):
            for camera in self.cameras.values():
                camera.link_counter()
        self.external.watch_descriptor(route)

    def on_rows(self, rows: EventRows) -> None:
        """Camera facts first (they may release held frames), then points, then frames."""
        self.ctx.facts.absorb_rows(rows)
        self.skew.add_rows(rows, self.ctx.report)
        route = rows.route
        if route.sizes:
            for camera in self.cameras.values():
                camera.release_if_shaped()
        self.external.note_rows(rows)
        self.points.add_rows(rows)
        if route.counters and route.continuous:
            for camera in self.cameras.values():
                if camera.counter_key in route.counters:
                    camera.resolve_gaps()
        for key, fkey in route.frames.items():
            if key in rows.skip_keys or key not in rows.data:
                continue
            try:
                self._frames(fkey, rows, route.continuous)
            except Exception as exc:  # noqa: BLE001
                self.ctx.report.error(
                    f"{route.stream_name} event seq {rows.seq_nums[0]} key {key}", exc
                )

    def _frames(self, fkey: FrameKey, rows: EventRows, continuous: bool) -> None:
        """One frame key's rows: inline arrays to the camera, datum ids to the external reader."""
        values = rows.data[fkey.key]
        stamps = rows.timestamps.get(fkey.key)
        counters = None
        if fkey.counter_key and fkey.counter_key in rows.data:
            counters = [as_int(c) for c in rows.data[fkey.counter_key]]
        camera = self.camera(fkey.key)
        camera.bind(fkey, continuous)
        for i, value in enumerate(values):
            ts = as_float(row(stamps, i))
            counter = row(counters, i)
            if fkey.external == "FILESTORE":
                self.external.wait_for_datum(camera, fkey, str(value), ts, counter, continuous)
                continue
            initial = continuous and rows.seq_nums[i] == 1  # a monitor's pre-subscription value
            camera.add_frames(fkey, value, [ts], [counter], continuous, initial=initial)
        if self.external.has_waiting(camera):
            self.external.drain(camera, final=False)

    def on_external(self, item: ExternalDocument) -> None:
        """Register a resource or datum; a stream datum's frames wait for their file."""
        key = self.external.add_document(item)
        if item.name != "stream_datum" or key is None:
            return
        route = self._routes.get(item.doc.get("descriptor", ""))
        if route is None or key not in route.frames:
            return  # not a frame key (a scalar written to file, or excluded)
        camera = self.camera(key)
        self.external.wait_for_stream_datum(camera, route.frames[key], item.doc, route.continuous)
        self.external.drain(camera, final=False)

    def periodic(self) -> None:
        """Between work items: push due point batches, retry files not readable before."""
        try:
            self.points.push_if_due()
            now = time.monotonic()
            for camera in self.cameras.values():
                if self.external.due(camera, now):
                    self.external.drain(camera, final=False)
        except Exception as exc:  # noqa: BLE001
            self.ctx.report.error("periodic flush", exc)

    def finish(self) -> None:
        """The run ended: read what files remain, flush every camera and the points."""
        cameras = list(self.cameras.values())
        self.external.drain_all(cameras, self.ctx.options.external_timeout_s)
        for camera in cameras:
            camera.timer.stats.wall_clock += self.external.host_timed.get(camera.key, 0)
            camera.finish()
        self.points.finish()
        self.external.close()
        self.skew.judge(self.ctx.report)
