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
import time
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from atomscale_bluesky.settings import AtomscaleSettings, load_settings

from ..shards import ZSTD_LEVEL, check_level
from ..thread_priority import resolve_thread_nice
from .api import AtomscaleApi, rotational_period
from .auth_gate import AuthGate
from .clock import FIRST_ATTEMPT_WAIT_S, LabClock, clock_for
from .config import ClientConfig, clock_sync_enabled, resolve_api_key, resolve_endpoint
from .errors import AtomscaleClientError, UnknownStreamError
from .frame_compressor import SharedCompressors
from .key_guard import KeyOriginGuard
from .report import StreamReport
from .retry import (
    FINALIZE_ATTEMPTS,
    Backoff,
    is_auth_error,
    is_transient_on_end,
    refuses_request,
    with_retries,
)
from .rheed import RheedStream
from .secret import ApiKey
from .spool import Spool, SpoolStream, default_spool_root
from .spool.recovery import LOCAL_ID_PREFIX
from .stream_keeper import StreamKeeper
from .stream_services import StreamServices
from .stream_setup import StreamSetup, end_path
from .timeseries import TimeseriesStream
from .uploader import UploadWorkers

__all__ = ["AtomscaleClient", "default_stream_name"]

log = logging.getLogger(__name__)

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


def _links(
    sample: str | None, project: str | None, tags: Sequence[str] | str | None
) -> dict[str, Any]:
    """The links part of a creation request, as given (resolved when the stream is created)."""
    if isinstance(tags, str):
        tags = [tags]
    return {"physical_sample": sample, "project_id": project, "tags": list(tags or [])}


def _busy(stream: SpoolStream) -> bool:
    """Something of the stream is left to do: chunks, creation, or its end request."""
    return bool(stream.pending) or not stream.ready or stream.finalize_requested


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

    The key is ``api_key`` (a str or an :class:`ApiKey`), else ``ATOMSCALE_API_KEY``, else
    ``AS_API_KEY``, else the file ``ATOMSCALE_API_KEY_FILE`` names. An ``http://`` endpoint whose
    host is not this machine is refused (the key would travel in clear) unless
    ``allow_insecure_http=True`` or ``ATOMSCALE_ALLOW_INSECURE_HTTP=1``; redirects are never
    followed, and no request to another origin carries the key.
    ``verify=False`` turns TLS certificate checks off (only for a lab proxy you trust);
    ``backoff`` shortens upload retries (tests); defaults follow the reference client.
    ``spool_direct_io=False`` writes spooled chunks through the page cache instead of past it.
    ``thread_nice`` (0 to 19, default 0): how many steps of nice below the process the
    compression and upload threads run (Linux), so a RunEngine in the same process comes first.
    Every argument left None comes from ``settings`` (default: the environment, read now; see
    :mod:`atomscale_bluesky.settings`), then the defaults.
    """

    def __init__(
        self,
        api_key: str | ApiKey | None = None,
        endpoint: str | None = None,
        *,
        allow_insecure_http: bool | None = None,
        spool_dir: str | Path | None = None,
        spool_max_bytes: int | None = None,
        spool_min_free_bytes: int | None = None,
        spool_retention_s: float | None = None,
        upload_workers: int = 8,
        clock_sync: bool | None = None,
        verify: bool = True,
        backoff: Backoff | None = None,
        fsync: bool = True,
        spool_direct_io: bool = True,
        thread_nice: int | None = None,
        settings: AtomscaleSettings | None = None,
    ) -> None:
        settings = load_settings() if settings is None else settings
        self.thread_nice = resolve_thread_nice(thread_nice, settings.thread_nice)
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
        self.config = ClientConfig(
            resolve_api_key(api_key, settings),
            resolve_endpoint(endpoint, allow_insecure_http, settings),
            verify,
        )
        self.endpoint = self.config.endpoint
        self._clock: LabClock | None = (
            clock_for(self.endpoint, verify=verify)
            if clock_sync_enabled(clock_sync, settings)
            else None
        )
        self._http = httpx.Client(
            timeout=REQUEST_TIMEOUT,
            verify=verify,
            follow_redirects=False,
            event_hooks={"request": [KeyOriginGuard(self.endpoint)]},
            mounts={"http://": None},  # plain http never goes through HTTP_PROXY/ALL_PROXY
            limits=httpx.Limits(
                max_connections=upload_workers + 8, max_keepalive_connections=upload_workers + 8
            ),
        )
        self._api = AtomscaleApi(self.config, self._http)
        self._spool = self._open_spool(
            spool_dir if spool_dir is not None else settings.spool_dir,
            spool_max_bytes,
            spool_min_free_bytes,
            spool_retention_s,
            fsync,
            spool_direct_io,
        )
        self._compressors = SharedCompressors(nice=self.thread_nice)
        self._services = StreamServices(
            enqueue=self._spool.enqueue,
            counts=self._stream_counts,
            finalize=self.finalize,
            clock=self._clock,
            data_id=self._data_id,
            wait_opened=self._wait_opened,
            compressor=self._compressors.get,
        )
        self._streams: dict[str, RheedStream | TimeseriesStream] = {}
        self._finalized: dict[str, StreamReport] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._gate = AuthGate(on_resume=self._spool.add_auth_pause)
        self._setup = StreamSetup(self._api)
        self._keeper = StreamKeeper(
            self._spool, self._setup, self._gate, backoff=backoff, on_ended=self._ended
        )
        self._workers = UploadWorkers(
            self._spool,
            self._api,
            self._gate,
            workers=upload_workers,
            backoff=backoff,
            nice=self.thread_nice,
        )
        self._workers.start()
        self._keeper.start()
        if self._spool.resumed:
            log.info(
                "resumed %d unfinished stream(s) from %s",
                len(self._spool.resumed),
                self._spool.root,
            )
        if self._spool.quarantined:
            log.warning(
                "moved %d damaged spool file(s) to %s/quarantine (see status()['quarantined'])",
                len(self._spool.quarantined),
                self._spool.root,
            )

    def _open_spool(
        self,
        spool_dir: str | Path | None,
        max_bytes: int | None,
        min_free: int | None,
        retention: float | None,
        fsync: bool,
        direct_io: bool,
    ) -> Spool:
        root = Path(spool_dir) if spool_dir is not None else default_spool_root()
        kwargs: dict[str, Any] = {
            "max_bytes": max_bytes,
            "min_free_bytes": min_free,
            "retention_s": retention,
            "fsync": fsync,
            "direct_io": direct_io,
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

    @property
    def spool_root(self) -> Path:
        """The folder this client spools chunks in."""
        return Path(self._spool.root)

    def __repr__(self) -> str:
        return f"AtomscaleClient(endpoint={self.endpoint!r}, spool_dir={str(self._spool.root)!r})"

    # ---- streams ----

    def _wait_for_clock(self, at_most_s: float | None) -> None:
        if self._clock is not None:
            limit = FIRST_ATTEMPT_WAIT_S if at_most_s is None else at_most_s
            self._clock.wait_for_first_attempt(min(limit, FIRST_ATTEMPT_WAIT_S))

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
        compression_level: int = ZSTD_LEVEL,
        open_wait_s: float | None = None,
    ) -> RheedStream:
        """Open a RHEED stream (same requests and checks as the reference).

        ``compression_level`` is the zstd level of its frames (3, the protocol's, gives the
        reference client's bytes; lower is faster and larger, see the performance page).

        Bad arguments raise ValueError, and a refusal of the request itself (400/422, an
        unknown sample or tag id) raises AtomscaleClientError with the server's reason. When
        the server cannot be reached or answers otherwise, the stream is returned anyway with
        ``data_id`` None: pushes are spooled at once and the stream is created in the
        background (see ``wait_opened``).

        ``open_wait_s`` bounds how long this call waits for the server (None: as long as the
        set-up requests and their retries take, which a server that accepts connections and
        never answers stretches to minutes). Past it the stream is returned spooled, as when
        the server cannot be reached: a thread that must not stall, such as the callback's
        worker, passes one.
        """
        self._check_open()
        fps = float(fps)
        rotations_per_min = float(rotations_per_min)
        if not math.isfinite(fps) or fps <= 0:
            raise ValueError(f"fps must be a positive number; got {fps}")
        check_level(compression_level)
        check_open_wait(open_wait_s)
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
        request = {
            "kind": "rheed",
            "settings": settings,
            "links": _links(sample, project, tags),
        }
        info = {
            "fps": fps,
            "rotations_per_min": rotations_per_min,
            "chunk_size": chunk_size,
            "name": name,
        }
        local_id = self._open_stream(request, info, open_wait_s)
        stream = self._rheed_stream(local_id, info, name, compression_level)
        log.info(
            "opened RHEED stream %s (%r, %.6g fps, chunk %d, zstd level %d)",
            stream.data_id or local_id,
            name,
            fps,
            chunk_size,
            compression_level,
        )
        return stream

    def attach_rheed_stream(
        self,
        data_id: str,
        *,
        fps: float,
        rotations_per_min: float = 0.0,
        chunk_size: int,
        stream_name: str | None = None,
        compression_level: int = ZSTD_LEVEL,
    ) -> RheedStream:
        """A stream object for a RHEED stream the server already holds (``data_id``), opened by
        an earlier process: nothing is created or linked, chunk indices start again at 0, so
        pushing the same chunks again rewrites them in place (the server keeps one copy per
        index)."""
        self._check_open()
        check_level(compression_level)
        info = {
            "fps": float(fps),
            "rotations_per_min": float(rotations_per_min),
            "chunk_size": chunk_size,
            "name": stream_name,
        }
        local_id = self._attach(data_id, "rheed", info)
        stream = self._rheed_stream(local_id, info, stream_name or data_id, compression_level)
        log.info("attached to RHEED stream %s (%r)", data_id, stream_name)
        return stream

    def attach_timeseries_stream(
        self, data_id: str, *, stream_name: str | None = None, points_per_chunk: int = 100
    ) -> TimeseriesStream:
        """A stream object for a tool-state stream the server already holds, as
        :meth:`attach_rheed_stream`."""
        self._check_open()
        info = {"points_per_chunk": points_per_chunk, "name": stream_name}
        local_id = self._attach(data_id, "timeseries", info)
        stream = self._timeseries_stream(local_id, points_per_chunk)
        log.info("attached to time-series stream %s (%r)", data_id, stream_name)
        return stream

    def _rheed_stream(
        self, local_id: str, info: dict[str, Any], name: str, compression_level: int
    ) -> RheedStream:
        """The RHEED stream object of a spooled stream (opened or attached), registered."""
        stream = RheedStream(
            self._services,
            local_id,
            fps=float(info["fps"]),
            rotations_per_min=float(info["rotations_per_min"]),
            chunk_size=info["chunk_size"],
            name=name,
            compression_level=compression_level,
        )
        with self._lock:
            self._streams[local_id] = stream
        return stream

    def _timeseries_stream(self, local_id: str, points_per_chunk: int) -> TimeseriesStream:
        """The time-series stream object of a spooled stream (opened or attached), registered."""
        stream = TimeseriesStream(self._services, local_id, points_per_chunk=points_per_chunk)
        with self._lock:
            self._streams[local_id] = stream
        return stream

    def _attach(self, data_id: str, kind: str, info: dict[str, Any]) -> str:
        """Spool an existing remote stream under a fresh local id (an earlier process may still
        hold a spool folder named by the data_id)."""
        local_id = f"{data_id}-{uuid.uuid4().hex[:12]}"
        self._open_spool_stream(local_id, kind, info, data_id, {"kind": kind}, linked=True)
        return local_id

    def _open_stream(
        self, request: dict[str, Any], info: dict[str, Any], wait_s: float | None = None
    ) -> str:
        """Create the stream remotely, or spool it for the background; its local id.

        The clock's first measurement is waited for first (its corrections stamp the chunks).
        ``wait_s`` bounds both: the set-up requests give up once it has passed without an
        answer, and the stream is spooled as when the server is unreachable. A creation the
        server still completed after that leaves it an empty extra stream, as a retried one may.
        """
        started = time.monotonic()
        self._wait_for_clock(wait_s)
        if wait_s is not None:
            wait_s = max(0.0, wait_s - (time.monotonic() - started))
        with self._api.answer_within(wait_s):
            return self._create_or_spool(request["kind"], request, info)

    def _create_or_spool(self, kind: str, request: dict[str, Any], info: dict[str, Any]) -> str:
        try:
            links = self._setup.resolve(request)
            data_id = self._setup.create(request)
        except Exception as error:
            if refuses_request(error):
                raise
            if is_auth_error(error):
                self._gate.pause(f"opening a {kind} stream", error)
            local_id = f"{LOCAL_ID_PREFIX}{uuid.uuid4().hex}"
            log.warning(
                "could not open the %s stream on %s now (%s); its data is spooled under %s "
                "and the stream is created as soon as the server answers",
                kind,
                self.endpoint,
                error,
                local_id,
            )
            self._open_spool_stream(local_id, kind, info, None, request, linked=False)
            return local_id
        self._gate.resume()
        linked = True
        try:
            self._setup.link(data_id, links)
        except Exception as error:
            if refuses_request(error):
                self._api.end_after_failed_link(data_id, end_path(kind, data_id), error)
            if is_auth_error(error):
                self._gate.pause(f"linking stream {data_id}", error)
            log.warning("linking stream %s failed (%s); retrying in the background", data_id, error)
            linked = False
        self._open_spool_stream(data_id, kind, info, data_id, request, linked=linked)
        return data_id

    def _open_spool_stream(
        self,
        local_id: str,
        kind: str,
        info: dict[str, Any],
        data_id: str | None,
        request: dict[str, Any],
        *,
        linked: bool,
    ) -> None:
        try:
            self._spool.open_stream(
                local_id, kind, info, data_id=data_id, create=request, linked=linked
            )
        except RuntimeError as error:
            raise AtomscaleClientError(
                f"stream {data_id or local_id} cannot be spooled: {error}"
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
        open_wait_s: float | None = None,
    ) -> TimeseriesStream:
        """Open a tool-state stream (the reference's requests), durably like RHEED streams;
        ``open_wait_s`` as in :meth:`open_rheed_stream`."""
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
        check_open_wait(open_wait_s)
        sample = _trimmed(physical_sample)
        project = _trimmed(project_id)
        request = {
            "kind": "timeseries",
            "stream_name": stream_name,
            "instrument_id": instrument_id,
            "points_per_chunk": points_per_chunk,
            "project_id": project,
            "links": _links(sample, project, tags),
        }
        local_id = self._open_stream(
            request,
            {"points_per_chunk": points_per_chunk, "name": stream_name},
            open_wait_s,
        )
        stream = self._timeseries_stream(local_id, points_per_chunk)
        log.info("opened time-series stream %s (%r)", stream.data_id or local_id, stream_name)
        return stream

    def stream(self, stream_id: str) -> RheedStream | TimeseriesStream:
        """The live stream object opened by this client, by its data_id or local_id."""
        spooled = self._spool.stream(stream_id)
        with self._lock:
            found = self._streams.get(spooled.local_id if spooled else stream_id)
        if found is None:
            raise UnknownStreamError(stream_id)
        return found

    def _stream_counts(self, local_id: str) -> dict[str, Any]:
        """The spool's counters of a stream; empty once the spool has forgotten it."""
        spooled = self._spool.stream(local_id)
        if spooled is None:
            return {}
        counts = spooled.counts()
        counts["auth_paused_s"] = self._report(spooled).auth_paused_s
        return counts

    def _data_id(self, local_id: str) -> str | None:
        spooled = self._spool.stream(local_id)
        if spooled is not None:
            return spooled.first_data_id
        with self._lock:
            done = self._finalized.get(local_id)
        return done.data_id if done is not None else None

    def _wait_opened(self, local_id: str, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self._spool.changes
            if self._data_id(local_id) is not None:
                return True
            remaining = 0.5 if deadline is None else deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return False
            self._spool.wait_changed(min(remaining, 0.5), seen)

    def resumed_streams(self) -> list[str]:
        """Ids (data_id, or local_id if not created yet) of streams an earlier process left
        unfinished in this spool, now uploading again."""
        found = []
        for local_id in self._spool.resumed:
            spooled = self._spool.stream(local_id)
            if spooled is not None and spooled.closed is None:
                found.append(spooled.first_data_id or local_id)
        return found

    # ---- finalize and drain ----

    def _report(self, spooled: SpoolStream, drained: bool = True) -> StreamReport:
        waiting = spooled.closed is None and (spooled.pending > 0 or not spooled.ready)
        return spooled.report(drained, self._gate.current_pause_s() if waiting else 0.0)

    def _ended(self, local_id: str) -> None:
        """A stream was ended (or its end refused) and its folder removed: keep its report."""
        spooled = self._spool.stream(local_id)
        if spooled is None:
            return
        report = self._report(spooled)
        with self._lock:
            for key in spooled.ids():
                self._finalized[key] = report
            live = self._streams.pop(local_id, None)
        if live is not None:
            live.report = report
        self._spool.forget_stream(local_id)
        if report.not_uploaded:
            message = (
                f"{report.not_uploaded} of the {report.spooled + report.dropped} chunk(s) of "
                f"stream {report.data_id or local_id} were not uploaded: "
                f"{_describe_losses(report)}"
            )
            log.warning(message)
        log.info(
            "finalized stream %s: %d uploaded, %d not uploaded",
            report.data_id or local_id,
            report.uploaded,
            report.not_uploaded,
        )

    def finalize(self, stream_id: str, drain_timeout_s: float = 600.0) -> StreamReport:
        """Drain up to ``drain_timeout_s``, then end the stream on the server (12 attempts).

        ``stream_id`` is its data_id or local_id; works for resumed streams too. If chunks are
        still pending at the timeout nothing is deleted: the stream is marked "finalize
        requested" in its spool, keeps uploading while this client lives (or in the next one on
        the same spool), and is ended after its last chunk; the report says ``pending``. A
        second call after the end returns the same report.
        """
        if not (drain_timeout_s >= 0):
            raise ValueError("drain_timeout_s must be non-negative")
        with self._lock:
            done = self._finalized.get(stream_id)
        if done is not None:
            return done
        spooled = self._spool.stream(stream_id)
        if spooled is None:
            raise UnknownStreamError(stream_id)
        local_id = spooled.local_id
        with self._lock:
            live = self._streams.get(local_id)
        if live is not None:
            live.mark_finalizing()
        deadline = time.monotonic() + drain_timeout_s
        while not self._keeper.begin_end(local_id):  # the background is ending it right now
            if time.monotonic() >= deadline:
                break
            self._spool.wait_changed(0.1)
        else:
            try:
                self._spool.request_finalize(local_id)
                drained = self._spool.drain(local_id, max(deadline - time.monotonic(), 0.0))
                ended = drained and spooled.closed is None and self._end_now(spooled)
            finally:
                self._keeper.end_done(local_id)
            if ended:
                report = self._report(spooled)
                self._ended(local_id)
                if report.not_uploaded:
                    warnings.warn(
                        f"{report.not_uploaded} of the {report.spooled + report.dropped} "
                        f"chunk(s) of stream {report.data_id} were not uploaded: "
                        f"{_describe_losses(report)}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                return report
        with self._lock:
            done = self._finalized.get(local_id)
        if done is not None:  # the background ended it meanwhile
            return done
        self._spool.request_finalize(local_id)
        report = self._report(spooled, drained=False)
        if live is not None:
            live.report = report
        self._warn_pending(report, drain_timeout_s)
        return report

    def _end_now(self, spooled: SpoolStream) -> bool:
        """Send the end request (retrying outages); False when the key was refused."""
        data_id = spooled.data_id
        assert data_id is not None
        try:
            with_retries(
                f"finalize {data_id}",
                FINALIZE_ATTEMPTS,
                lambda: self._setup.end(spooled.kind, data_id),
                transient=is_transient_on_end,
            )
        except Exception as error:
            if is_auth_error(error):
                self._gate.pause(f"ending stream {data_id}", error)
                return False
            raise AtomscaleClientError(str(error)) from None
        self._gate.resume()
        self._spool.close_stream(spooled.local_id)
        return True

    def _warn_pending(self, report: StreamReport, waited_s: float) -> None:
        what = report.data_id or f"{report.local_id} (not created on the server yet)"
        log.warning(
            "stream %s is not finalized after %.0f s: %d chunk(s) still pending in the spool "
            "(nothing is deleted); they keep uploading while this process runs and the stream "
            "is ended after the last one; to finish them later run `atomscale-bluesky drain`",
            what,
            waited_s,
            report.pending,
        )
        if report.not_uploaded:
            log.warning(
                "%d of the chunk(s) of stream %s were not uploaded: %s",
                report.not_uploaded,
                what,
                _describe_losses(report),
            )

    def drain(
        self,
        timeout_s: float | None = None,
        progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[StreamReport]:
        """Upload everything this spool holds for this endpoint and finalize what can be.

        Streams still to be created are created, streams whose finalize was requested and
        every resumed stream (its process is gone) are ended after their last chunk; streams
        this client still holds open are uploaded, not ended. Waits up to ``timeout_s`` (None:
        until done), calling ``progress`` with a status dict about once a second. Returns one
        report per stream; on timeout nothing is deleted (reports say ``pending``).
        """
        if timeout_s is not None and not (timeout_s >= 0):
            raise ValueError("timeout_s must be non-negative")
        streams = [s for s in self._spool.streams() if s.closed is None]
        for spooled in streams:
            if not spooled.live:
                self._spool.request_finalize(spooled.local_id)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        shown = 0.0
        while True:
            busy = [s for s in streams if s.closed is None and _busy(s)]
            now = time.monotonic()
            if progress is not None and (not busy or now - shown >= 1.0):
                shown = now
                progress(self._progress(busy))
            if not busy or (deadline is not None and now >= deadline):
                break
            wait = 0.5 if deadline is None else min(0.5, max(deadline - now, 0.0))
            self._spool.wait_changed(wait)
        reports = []
        for spooled in streams:
            with self._lock:
                done = self._finalized.get(spooled.local_id)
            reports.append(done if done is not None else self._report(spooled, drained=False))
        pending = sum(r.pending for r in reports)
        if pending:
            log.warning(
                "drain stopped after %.0f s with %d chunk(s) still pending in %s (nothing is "
                "deleted); run it again to finish them",
                timeout_s or 0.0,
                pending,
                self._spool.root,
            )
        return reports

    def _progress(self, busy: list[SpoolStream]) -> dict[str, Any]:
        status = self.status()
        return {
            "streams_busy": len(busy),
            "chunks_pending": status["chunks_pending"],
            "chunks_uploaded": status["chunks_uploaded"],
            "bytes": status["bytes"],
            "auth_paused": status["auth_paused"],
            "streams_not_created": sum(1 for s in busy if not s.data_ids),
        }

    # ---- status ----

    def status(self) -> dict[str, Any]:
        """Spool status (the reference's keys, ``quarantined``), endpoint, clock, auth pause."""
        status = self._spool.status()
        status["endpoint"] = self.endpoint
        status["clock"] = self.clock_status()
        status["auth_paused"] = self._gate.paused
        status["auth_pauses"] = self._gate.pauses
        status["auth_paused_s"] = self._gate.paused_s + self._gate.current_pause_s()
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
        self._keeper.request_stop()
        self._spool.close()
        self._workers.join(timeout)
        self._keeper.join(timeout)
        self._compressors.close()
        self._http.close()

    def __enter__(self) -> AtomscaleClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_open_wait(open_wait_s: float | None) -> float | None:
    """``open_wait_s`` if it is None or a non-negative number, else ValueError."""
    if open_wait_s is not None and (isinstance(open_wait_s, bool) or not open_wait_s >= 0):
        raise ValueError(f"open_wait_s must be None or a non-negative number; got {open_wait_s!r}")
    return open_wait_s
