"""Bad input to the callback: a table of malformed and hostile documents, each fed into the middle
of a good run. Each must give its clear count or error, never raise into the RunEngine, and leave
every good frame and point intact on the server (read back and compared)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import event_model
import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import AtomscaleClient
from atomscale_bluesky.server.runner import running_server

from .conftest import TEST_BACKOFF, frame_hash

H, W, N, FPS = 24, 32, 30, 10.0
T0 = 1_700_000_000.0  # only for times of documents that refer to nothing
Docs = list[tuple[Any, Any]]


def _uid() -> str:
    return str(uuid.uuid4())


@dataclass
class Ctx:
    """What a case may refer to: the run's start and descriptor, a scratch directory."""

    start: dict[str, Any]
    desc: dict[str, Any]
    tmp: Path
    frames: np.ndarray
    t0: float  # the good frames' first hardware time, just after the start document
    seq: list[int] = field(default_factory=lambda: [1000])

    def event(self, data: Any = None, timestamps: Any = None, **over: Any) -> dict[str, Any]:
        """A raw event of the good descriptor (fresh seq_num, stamped after the good frames)."""
        self.seq[0] += 1
        data = {"cam_image": self.frames[0], "temp": 1.0} if data is None else data
        t = self.t0 + (N + self.seq[0] - 1000) / FPS  # the camera's cadence, after the good frames
        stamps = (
            {k: t for k in (data if isinstance(data, dict) else {})}
            if timestamps is None
            else timestamps
        )
        doc = {"uid": _uid(), "descriptor": self.desc["uid"], "seq_num": self.seq[0],
               "time": t, "data": data, "timestamps": stamps, "filled": {}}  # fmt: skip
        doc.update(over)
        return doc

    def frame(self, value: Any, **over: Any) -> dict[str, Any]:
        return self.event({"cam_image": value}, **over)

    def external(self, root: str, spec: str = "AD_HDF5") -> Docs:
        """A descriptor with a FILESTORE camera, a resource under ``root`` and one datum event."""
        desc = {
            "uid": _uid(), "run_start": self.start["uid"], "name": "ext", "time": self.t0,
            "data_keys": {"ext_image": {"source": "x", "dtype": "array", "shape": [H, W],
                                        "dtype_numpy": "|u1", "external": "FILESTORE:",
                                        "object_name": "ext"}},
            "configuration": {}, "object_keys": {"ext": ["ext_image"]},
        }  # fmt: skip
        res = {"uid": _uid(), "run_start": self.start["uid"], "spec": spec, "root": root,
               "resource_path": "frames.h5", "resource_kwargs": {"frame_per_point": 1},
               "path_semantics": "posix"}  # fmt: skip
        datum = {"datum_id": res["uid"] + "/0", "resource": res["uid"],
                 "datum_kwargs": {"point_number": 0}}  # fmt: skip
        event = {"uid": _uid(), "descriptor": desc["uid"], "seq_num": 1, "time": self.t0 + 1,
                 "data": {"ext_image": datum["datum_id"]},
                 "timestamps": {"ext_image": self.t0 + 1}, "filled": {}}  # fmt: skip
        return [("descriptor", desc), ("resource", res), ("datum", datum), ("event", event)]


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Ctx], Docs]
    expect: dict[str, int]  # counter -> least increase ({} = must be harmless: no error)
    xfail: str | None = None


ODD = np.full((H, W), 77, np.uint8)  # a frame unlike every good one


def _garbage_file(ctx: Ctx) -> Docs:
    (ctx.tmp / "frames.h5").write_bytes(b"not an HDF5 file at all" * 10)
    return ctx.external(str(ctx.tmp))


CASES = [
    # documents out of order or referring to nothing
    Case("event before its descriptor", lambda c: [("event", {**c.event(), "descriptor": _uid()})], {"orphan_events": 1}),
    Case("event_page of an unknown descriptor", lambda c: [("event_page", {"descriptor": _uid(), "seq_num": [1], "time": [T0], "uid": [_uid()], "data": {}, "timestamps": {}, "filled": {}})], {"orphan_events": 1}),
    Case("datum of an unknown resource", lambda c: [("datum", {"datum_id": "x/0", "resource": _uid(), "datum_kwargs": {}})], {"orphan_events": 1}),
    Case("stop of an unknown run", lambda c: [("stop", {"uid": _uid(), "run_start": _uid(), "time": T0, "exit_status": "success"})], {"orphan_events": 1}),
    Case("descriptor of an unknown run", lambda c: [("descriptor", {**c.desc, "uid": _uid(), "run_start": _uid()})], {"orphan_events": 1}),
    # not documents at all
    Case("event doc is None", lambda c: [("event", None)], {"errors": 1}),
    Case("event doc is a list", lambda c: [("event", [1, 2, 3])], {"errors": 1}),
    Case("descriptor doc is a string", lambda c: [("descriptor", "junk")], {"errors": 1}),
    Case("unknown document name", lambda c: [("bogus", {"uid": _uid()})], {}),
    Case("document name is None", lambda c: [(None, {"uid": _uid()})], {}),
    Case("bulk_events of garbage", lambda c: [("bulk_events", {"x": [None]})], {"errors": 1}),
    Case("event data is not a mapping", lambda c: [("event", c.event(data=[1, 2]))], {"errors": 1}),
    Case("descriptor whose data_keys is a string", lambda c: [("descriptor", {**c.desc, "uid": _uid(), "data_keys": "junk"})], {"errors": 1}),
    Case("descriptor without uid", lambda c: [("descriptor", {k: v for k, v in c.desc.items() if k != "uid"})], {"errors": 1}),
    # bad frames
    Case("frame of the wrong shape", lambda c: [("event", c.frame(np.ones((8, 8), np.uint8)))], {}),
    Case("flat frame of the wrong size", lambda c: [("event", c.frame(np.ones(H * W + 1, np.uint8)))], {"rejected_frames": 1}),
    Case("frame holding NaN", lambda c: [("event", c.frame(np.full((H, W), np.nan)))], {"rejected_frames": 1}),
    Case("frame holding infinity", lambda c: [("event", c.frame(np.full((H, W), np.inf)))], {"rejected_frames": 1}),
    Case("frame of negative integers", lambda c: [("event", c.frame(-np.ones((H, W), np.int16)))], {"clipped_frames": 1}),
    Case("frame beyond [0, 255] floats", lambda c: [("event", c.frame(np.full((H, W), 300.5)))], {"clipped_frames": 1}),
    Case("huge frame (over max_frame_bytes)", lambda c: [("event", c.frame(np.ones((1500, 1500), np.uint8)))], {"rejected_frames": 1}),
    Case("frame is a string", lambda c: [("event", c.frame("not an image"))], {"rejected_frames": 1}),
    Case("frame is None", lambda c: [("event", c.frame(None))], {"rejected_frames": 1}),
    Case("frame is a ragged list", lambda c: [("event", c.frame([[1, 2], [3]]))], {"errors": 1}),
    Case("frame dtype changes to uint16", lambda c: [("event", c.frame(np.full((H, W), 4000, np.uint16)))], {}),
    Case("frame is an empty array", lambda c: [("event", c.frame(np.zeros((0, W), np.uint8)))], {"rejected_frames": 1}),
    Case("frame is a 5-D array", lambda c: [("event", c.frame(np.ones((1, 1, 2, H, W), np.uint8)))], {"rejected_frames": 1}),
    # bad times, duplicates
    Case("timestamp is a word", lambda c: [("event", c.frame(ODD, timestamps={"cam_image": "yesterday"}))], {}),
    Case("timestamp is NaN", lambda c: [("event", c.frame(ODD, timestamps={"cam_image": float("nan")}))], {}),
    Case("timestamp far in the future (year 5e12)", lambda c: [("event", c.frame(ODD, timestamps={"cam_image": 1e20}))], {"errors": 1}),
    Case("timestamps missing", lambda c: [("event", c.frame(ODD, timestamps={}))], {}),
    Case("duplicate event (same seq_num)", lambda c: [("event", {**c.event(), "seq_num": 3})], {"duplicate_events": 1}),
    Case("duplicate start document (same uid)", lambda c: [("start", dict(c.start))], {}),
    Case("start document without uid", lambda c: [("start", {"time": T0})], {"errors": 1}),
    Case("duplicate descriptor (same uid)", lambda c: [("descriptor", dict(c.desc))], {}),
    # bad channel values
    Case("channel value is a word", lambda c: [("event", c.event({"temp": "hot"}))], {"skipped_points": 1}),
    Case("channel value is NaN", lambda c: [("event", c.event({"temp": float("nan")}))], {"skipped_points": 1}),
    Case("channel value is infinity", lambda c: [("event", c.event({"temp": float("inf")}))], {"skipped_points": 1}),
    Case("channel value is a dict", lambda c: [("event", c.event({"temp": {"a": 1}}))], {"skipped_points": 1}),
    # external frames that cannot be read
    Case("resource whose file is missing", lambda c: c.external(str(c.tmp / "nowhere")), {"external_failed": 1, "errors": 1}),
    Case("resource whose file is not HDF5", _garbage_file, {"external_failed": 1, "errors": 1}),
    Case("resource of an unknown spec", lambda c: c.external(str(c.tmp), spec="NO_SUCH_SPEC"), {"external_failed": 1, "errors": 1}),
]  # fmt: skip


def _good_run(
    frames: np.ndarray, temps: np.ndarray, t0: float
) -> tuple[dict[str, Any], dict[str, Any], Docs]:
    bundle = event_model.compose_run(metadata={"plan_name": "count", "scan_id": 1, "fps": FPS})
    desc_bundle = bundle.compose_descriptor(
        name="primary",
        data_keys={
            "cam_image": {"source": "sim", "dtype": "array", "dtype_numpy": "|u1",
                          "shape": [H, W], "object_name": "cam"},
            "temp": {"source": "sim", "dtype": "number", "shape": [], "units": "degC",
                     "object_name": "temp"},
        },
        object_keys={"cam": ["cam_image"], "temp": ["temp"]},
    )  # fmt: skip
    docs: Docs = [("start", bundle.start_doc), ("descriptor", desc_bundle.descriptor_doc)]
    for i in range(N):
        t = t0 + i / FPS
        docs.append(("event", desc_bundle.compose_event(
            data={"cam_image": frames[i], "temp": float(temps[i])},
            timestamps={"cam_image": t, "temp": t}, seq_num=i + 1,
        )))  # fmt: skip
    docs.append(("stop", bundle.compose_stop(exit_status="success")))
    return dict(bundle.start_doc), dict(desc_bundle.descriptor_doc), docs


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with running_server() as srv:
        yield srv


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.xfail)) if c.xfail else c
     for c in CASES],
    ids=[c.name for c in CASES],
)  # fmt: skip
def test_hostile_document_is_counted_and_the_good_run_survives(
    case: Case, server: Any, tmp_path: Path
) -> None:
    rng = np.random.default_rng(len(case.name))
    frames = rng.integers(1, 256, (N, H, W), dtype=np.uint8)
    temps = 500.0 + np.arange(N)
    t0 = time.time() + 1.0  # live frames follow their run's start document
    start, desc, docs = _good_run(frames, temps, t0)
    ctx = Ctx(start, desc, tmp_path, frames, t0)
    hostile = case.make(ctx)
    with AtomscaleClient(server.api_key, server.url, spool_dir=tmp_path / "spool",
                         clock_sync=False, backoff=TEST_BACKOFF,
                         spool_min_free_bytes=0) as client:  # fmt: skip
        callback = AtomscaleCallback(
            client, max_frame_bytes=1_000_000, external_timeout_s=1.0, point_flush_s=0.2
        )
        for name, doc in docs[:12]:
            callback(name, doc)
        before = callback.counters.as_dict()
        for name, doc in hostile:
            assert callback(name, doc) == (name, doc)  # never raises into the RunEngine
        for name, doc in docs[12:]:
            callback(name, doc)
        assert callback.flush(60)
        after = callback.counters.as_dict()
        callback.close()
    delta = {k: after[k] - before[k] for k in after}
    for counter, least in case.expect.items():
        assert delta[counter] >= least, (counter, delta)
    if "errors" not in case.expect:
        assert delta["errors"] == 0, (delta, callback.summaries[0].error_messages)
    (summary,) = [s for s in callback.summaries if s.run_uid == start["uid"]]
    assert summary.exit_status == "success"
    # the good frames: every one stored, in order, in the camera's (H, W) stream(s)
    stored: list[str] = []
    for rheed in summary.rheed:
        if rheed.frame_shape == (H, W) and rheed.data_id:
            stored += [frame_hash(f) for f in server.reader.frames(rheed.data_id)]
    good = [frame_hash(f) for f in frames]
    positions = [stored.index(h) for h in good if h in stored]
    assert len(positions) == N and positions == sorted(positions), (len(positions), summary.text())
    # the good points: all 30 temperatures with their hardware times
    assert summary.timeseries is not None
    ts, values, units = server.reader.points(summary.timeseries.data_id, "temp")
    good_rows = {(round(t, 6), v) for t, v in zip(t0 + np.arange(N) / FPS, temps, strict=True)}
    assert good_rows <= {(round(t, 6), v) for t, v in zip(ts, values, strict=True)}
    assert units == "degC"
