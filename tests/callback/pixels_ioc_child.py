"""A RunEngine run of a stock-ophyd camera on a simulated areaDetector IOC, in its own process.

Run by ``test_pixels_ioc.py``: the IOC serves on a port of its own, and pyepics reads the CA
port once per process, so the run gets a process whose environment points at that IOC. It
uploads through :class:`AtomscaleCallback` to the server at ``--endpoint`` (key from
``ATOMSCALE_API_KEY``) and writes the frames as the callback received them, and the summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from bluesky import RunEngine
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import AtomscaleClient


class StockCamera(Device):
    """Stock ophyd signals on standard areaDetector PVs: the image as Channel Access delivers
    it (a flat waveform, int16 for 16-bit data), the data type and frame size as configuration."""

    image = Cpt(EpicsSignalRO, "image1:ArrayData", kind="hinted")
    data_type = Cpt(EpicsSignalRO, "cam1:DataType_RBV", kind="config")
    width = Cpt(EpicsSignalRO, "image1:ArraySize0_RBV", kind="config")
    height = Cpt(EpicsSignalRO, "image1:ArraySize1_RBV", kind="config")
    counter = Cpt(EpicsSignalRO, "image1:ArrayCounter_RBV", kind="omitted")
    image_mode = Cpt(EpicsSignal, "cam1:ImageMode", kind="omitted")
    acquire = Cpt(EpicsSignal, "cam1:Acquire", kind="omitted")


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--events", type=int, default=15)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)

    cam = StockCamera(args.prefix, name="cam")
    cam.wait_for_connection(timeout=30)
    cam.image_mode.put(2, wait=True)  # Continuous
    cam.acquire.put(1, wait=False)
    if not _wait(lambda: (cam.counter.get() or 0) > 1, timeout=30):
        print("the camera published no frame", file=sys.stderr)
        return 2

    received: list[tuple[float, np.ndarray]] = []

    def collect(name: str, doc: dict) -> None:
        if name == "event" and "cam_image" in doc["data"]:
            frame = np.array(doc["data"]["cam_image"])  # a copy, as the callback received it
            received.append((doc["timestamps"]["cam_image"], frame))

    with AtomscaleClient(
        endpoint=args.endpoint, spool_dir=args.out / "spool", clock_sync=False
    ) as client:
        callback = AtomscaleCallback(client)
        engine = RunEngine({}, call_returns_result=False)
        engine.subscribe(collect)
        engine.subscribe(callback)
        engine(count([cam], num=args.events, delay=0.1))
        cam.acquire.put(0, wait=False)
        flushed = callback.flush(120)
        callback.close()
    (summary,) = callback.summaries
    np.savez(
        args.out / "received.npz",
        times=np.array([t for t, _ in received]),
        frames=np.stack([f for _, f in received]),
    )
    record = summary.as_dict() | {"flushed": flushed, "text": summary.text()}
    (args.out / "summary.json").write_text(json.dumps(record, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
