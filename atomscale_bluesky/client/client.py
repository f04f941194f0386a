"""AtomscaleClient: opens RHEED and time-series streams, owns the spool, workers and clock.

Construction sends no authenticated request: it resolves the key and endpoint, starts (or joins)
the endpoint's clock, opens the spool (resuming streams an earlier process left unfinished) and
starts the upload workers. ``open_*_stream`` and ``finalize`` do HTTP, so call them from a
worker, never from the RunEngine thread.
"""

from __future__ import annotations

import datetime
import logging
import math
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from .api import AtomscaleApi, rotational_period
from .clock import LabClock, clock_for
from .config import ClientConfig, clock_sync_enabled, resolve_api_key, resolve_endpoint
from .errors import AtomscaleClientError, UnknownStreamError
from .report import StreamReport
from .retry import FINALIZE_ATTEMPTS, Backoff, is_transient_on_end, with_retries
from .rheed import RheedStream
from .spool import Spool, default_spool_root
from .stream_services import StreamServices
from .timeseries import TimeseriesStream
from .uploader import UploadWorkers

__all__ = ["AtomscaleClient", "default_stream_name"]

log = logging.getLogger("atomscale_bluesky.client")

REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
LISTED_LOSSES = 5


def default_stream_name(now: datetime.datetime | None = None) -> str:
    """``RHEED Stream @ 9:31AM``: local time, unpadded hour, upper-case AM/PM."""
    t = now or datetime.datetime.now()
    return f"RHEED Stream @ {t.hour % 12 or 12}:{t.minute:02d}{'AM' if t.hour < 12 else 'PM'}"


def _trimmed(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _describe_losses(report: StreamReport) -> str:
    text = (
        f"{report.dropped} dropped (spool full, disk low or write failed), {report.failed} "
        f"refused by the backend, {report.purged} discarded unsent"
    )
    for idx, reason in report.lost[:LISTED_LOSSES]:
        text += f"; chunk {idx}: {reason}"
    if len(report.lost) > LISTED_LOSSES:
        text += "; …"
    return text


class AtomscaleClient:
    """Streams RHEED video and tool-state time series to an Atomscale endpoint, durably.

    ``verify=False`` turns TLS certificate checks off (only for a lab proxy you trust);
    ``backoff`` shortens upload retries (tests); defaults follow the reference client.
    """

    def __init__(
        self,
        api_key: str | None = None,
        endpoint: str | None = None,
        *,
        spool_dir: str | Path | None = None,
        spool_max_bytes: int | None = None,
        spool_min_free_bytes: int | None = None,
        spool_retention_s: float | None = None,
        upload_workers: int = 8,
        clock_sync: bool | None = None,
        verify: bool = True,
        backoff: Backoff | None = None,
    ) -> None:
        if spool_retention_s is not None and not (
            math.isfinite(spool_retention_s) and spool_retention_s > 0
        ):
            raise ValueError("spool_retention_s must be positive")
        for name, value in (
            ("spool_max_bytes", spool_max_bytes),
            ("spool_min_free_bytes", spool_min_free_bytes),
        ):
            if value is not None and value < 0:
                raise ValueError(f"{name} must be non-negative")
        self.config = ClientConfig(resolve_api_key(api_key), resolve_endpoint(endpoint), verify)
        self.endpoint = self.config.endpoint
        self._clock: LabClock | None = (
            clock_for(self.endpoint, verify=verify) if clock_sync_enabled(clock_sync) else None
        )
        self._http = httpx.Client(
            timeout=REQUEST_TIMEOUT,
            verify=verify,
            limits=httpx.Limits(
                max_connections=upload_workers + 8, max_keepalive_connections=upload_workers + 8
            ),
        )
        self._api = AtomscaleApi(self.config, self._http)
        self._spool = self._open_spool(
            spool_dir, spool_max_bytes, spool_min_free_bytes, spool_retention_s
        )
        self._services = StreamServices(
            enqueue=self._spool.enqueue,
            counts=self._stream_counts,
            finalize=self.finalize,
            clock=self._clock,
        )
        self._streams: dict[str, RheedStream | TimeseriesStream] = {}
        self._finalized: dict[str, StreamReport] = {}
        self._lock = threading.Lock()
        self._workers = UploadWorkers(
            self._spool, self._api, workers=upload_workers, backoff=backoff
        )
        self._workers.start()
        self._closed = False
        if self._spool.resumed:
            log.info(
                "resumed %d unfinished stream(s) from %s",
                len(self._spool.resumed),
                self._spool.root,
            )

    def _open_spool(
        self,
        spool_dir: str | Path | None,
        max_bytes: int | None,
        min_free: int | None,
        retention: float | None,
    ) -> Spool:
        root = Path(spool_dir) if spool_dir is not None else default_spool_root()
        kwargs: dict[str, Any] = {
            "max_bytes": max_bytes,
            "min_free_bytes": min_free,
            "retention_s": retention,
        }
        try:
            return Spool(root, self.endpoint, **kwargs)
        except OSError as error:
            if spool_dir is not None:
                raise AtomscaleClientError(
                    f"cannot create spool directory {root}: {error}"
                ) from None
            fallback = Path(tempfile.gettempdir()) / "atomscale-bluesky-spool"
            log.warning("cannot use spool directory %s (%s); using %s", root, error, fallback)
            return Spool(fallback, self.endpoint, **kwargs)

    def __repr__(self) -> str:
        return f"AtomscaleClient(endpoint={self.endpoint!r}, spool_dir={str(self._spool.root)!r})"

    # ---- streams ----

    def _wait_for_clock(self) -> None:
        if self._clock is not None:
            self._clock.wait_for_first_attempt()

    def open_rheed_stream(
        self,
        *,
        fps: float,
        rotations_per_min: float = 0.0,
        chunk_size: int | None = None,
        stream_name: str | None = None,
        physical_sample: str | None = None,
        project_id: str | None = None,
        tags: Sequence[str] | None = None,
        azimuth: str | None = None,
    ) -> RheedStream:
        """Create a RHEED stream on the server (same requests and checks as the reference)."""
        self._check_open()
        fps = float(fps)
        rotations_per_min = float(rotations_per_min)
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number; got {fps}")
        self._wait_for_clock()
        min_chunk = math.ceil(2.0 * fps)
        if chunk_size is None:
            chunk_size = min_chunk
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
            raise ValueError(f"chunk_size must be an int; got {chunk_size!r}")
        if chunk_size < min_chunk:
            raise ValueError(
                f"chunk_size must be at least 2×fps (>= {min_chunk}); got {chunk_size}"
            )
        name = (
            stream_name
            if stream_name is not None and stream_name.strip()
            else default_stream_name()
        )
        sample = _trimmed(physical_sample)
        project = _trimmed(project_id)
        azimuth_label = _trimmed(azimuth)
        if azimuth_label is not None and rotations_per_min > 0:
            raise ValueError(
                "azimuth is for parked streams (rotations_per_min=0); a rotating stream carries "
                "several azimuths"
            )
        if isinstance(tags, str):
            tags = [tags]
        links = self._api.resolve_links(sample, project, list(tags or []))
        settings: dict[str, Any] = {
            "data_item_name": name,
            "rotational_period": rotational_period(fps, rotations_per_min),
            "rotations_per_min": rotations_per_min,
            "fps_capture_rate": fps,
        }
        if project is not None:
            settings["project_id"] = project
        if azimuth_label is not None:
            settings["azimuth_label"] = azimuth_label
        data_id = self._api.create_rheed_stream(settings)
        self._api.link_new_stream(data_id, links, f"/rheed/stream/{data_id}/end")
        info = {
            "fps": fps,
            "rotations_per_min": rotations_per_min,
            "chunk_size": chunk_size,
            "name": name,
        }
        self._open_spool_stream(data_id, "rheed", info)
        stream = RheedStream(
            self._services,
            data_id,
            fps=fps,
            rotations_per_min=rotations_per_min,
            chunk_size=chunk_size,
            name=name,
        )
        with self._lock:
            self._streams[data_id] = stream
        log.info("opened RHEED stream %s (%r, %.6g fps, chunk %d)", data_id, name, fps, chunk_size)
        return stream

    def _open_spool_stream(self, data_id: str, kind: str, info: dict[str, Any]) -> None:
        try:
            self._spool.open_stream(data_id, kind, info)
        except RuntimeError as error:
            raise AtomscaleClientError(
                f"stream {data_id} was created but cannot be spooled: {error}"
            ) from None

    def open_timeseries_stream(
        self,
        *,
        stream_name: str | None = None,
        instrument_id: int | None = None,
        physical_sample: str | None = None,
        project_id: str | None = None,
        tags: Sequence[str] | None = None,
        points_per_chunk: int = 100,
    ) -> TimeseriesStream:
        """Create a tool-state stream (same requests as the reference's TimeseriesStreamer)."""
        self._check_open()
        if (
            isinstance(points_per_chunk, bool)
            or not isinstance(points_per_chunk, int)
            or points_per_chunk < 1
        ):
            raise ValueError(f"points_per_chunk must be a positive int; got {points_per_chunk!r}")
        if instrument_id is not None and (
            isinstance(instrument_id, bool) or not isinstance(instrument_id, int)
        ):
            raise ValueError(f"instrument_id must be an int; got {instrument_id!r}")
        self._wait_for_clock()
        sample = _trimmed(physical_sample)
        project = _trimmed(project_id)
        if isinstance(tags, str):
            tags = [tags]
        links = self._api.resolve_links(sample, project, list(tags or []))
        data_id = self._api.timeseries_initialize(
            stream_name, instrument_id, points_per_chunk, project
        )
        self._api.link_new_stream(data_id, links, f"/tool-state/stream/{data_id}/finalize")
        self._open_spool_stream(
            data_id, "timeseries", {"points_per_chunk": points_per_chunk, "name": stream_name}
        )
        stream = TimeseriesStream(self._services, data_id, points_per_chunk=points_per_chunk)
        with self._lock:
            self._streams[data_id] = stream
        log.info("opened time-series stream %s (%r)", data_id, stream_name)
        return stream

    def stream(self, data_id: str) -> RheedStream | TimeseriesStream:
        """The live stream object of ``data_id`` opened by this client."""
        with self._lock:
            found = self._streams.get(data_id)
        if found is None:
            raise UnknownStreamError(data_id)
        return found

    def _stream_counts(self, data_id: str) -> dict[str, Any]:
        """The spool's counters of ``data_id``; empty once the spool has forgotten the stream."""
        spooled = self._spool.stream(data_id)
        return spooled.counts() if spooled is not None else {}

    def resumed_streams(self) -> list[str]:
        """data_ids an earlier process left unfinished in this spool, now uploading again."""
        return [d for d in self._spool.resumed if self._spool.stream(d) is not None]

    # ---- finalize ----

    def finalize(self, data_id: str, drain_timeout_s: float = 600.0) -> StreamReport:
        """Drain, close the spool stream, then end it on the server (12 attempts for RHEED).

        Works for streams this client opened and for resumed ones. A second call after success
        returns the same report; after a failed end request it repeats the request.
        """
        if not (drain_timeout_s >= 0):
            raise ValueError("drain_timeout_s must be non-negative")
        with self._lock:
            done = self._finalized.get(data_id)
            live = self._streams.get(data_id)
        if done is not None:
            return done
        if live is not None:
            live.mark_finalizing()
        spooled = self._spool.stream(data_id)
        if spooled is None:
            raise UnknownStreamError(data_id)
        kind = spooled.kind
        drained = self._spool.drain(data_id, drain_timeout_s)
        self._spool.close_stream(data_id, "finalized")
        report = spooled.report(drained=drained)
        if report.not_uploaded:
            message = (
                f"{report.not_uploaded} of the {report.spooled + report.dropped} chunk(s) of "
                f"stream {data_id} were not uploaded: {_describe_losses(report)}"
            )
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        if kind == "rheed":
            end = lambda: self._api.end_rheed_stream(data_id)  # noqa: E731
            transient = is_transient_on_end
        else:
            end = lambda: self._api.timeseries_finalize(data_id)  # noqa: E731
            transient = is_transient_on_end
        try:
            with_retries(f"finalize {data_id}", FINALIZE_ATTEMPTS, end, transient=transient)
        except Exception as error:
            raise AtomscaleClientError(str(error)) from None
        self._spool.forget_stream(data_id)
        with self._lock:
            self._finalized[data_id] = report
            self._streams.pop(data_id, None)
        if live is not None:
            live.report = report
        log.info(
            "finalized stream %s: %d uploaded, %d not uploaded",
            data_id,
            report.uploaded,
            report.not_uploaded,
        )
        return report

    # ---- status ----

    def status(self) -> dict[str, Any]:
        """Spool status (the reference's keys), endpoint and the clock status."""
        status = self._spool.status()
        status["endpoint"] = self.endpoint
        status["clock"] = self.clock_status()
        return status

    def clock_status(self) -> dict[str, float] | None:
        """``{"offset_ms", "uncertainty_ms", "measured_at_unix_ms"}``, or None when unmeasured or off."""
        return None if self._clock is None else self._clock.status()

    # ---- lifetime ----

    def _check_open(self) -> None:
        if self._closed:
            raise AtomscaleClientError("this AtomscaleClient is closed")

    def close(self, timeout: float = 5.0) -> None:
        """Stop the workers and release the spool; unfinished streams resume in the next client."""
        if self._closed:
            return
        self._closed = True
        self._workers.request_stop()
        self._spool.close()
        self._workers.join(timeout)
        self._http.close()

    def __enter__(self) -> AtomscaleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
