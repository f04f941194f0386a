"""RunEngine process for the crash test: publishes over 0MQ and stores the run in a Tiled catalog.

Usage: python crash_publisher.py IN_ADDRESS CATALOG_URI CATALOG_KEY TRUTH.npz NUM FPS
Prints ``uid <run uid>`` at the end and saves what it emitted (frames, stamps) to TRUTH.npz.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from bluesky import RunEngine
from bluesky.callbacks.buffer import BufferingWrapper
from bluesky.callbacks.zmq import Publisher
from bluesky.plans import count
from bluesky_tiled_plugins import TiledWriter
from ophyd import Component as Cpt
from ophyd import Device, Signal
from tiled.client import from_uri

H, W = 48, 64


class Image(Signal):
    def describe(self):  # type: ignore[no-untyped-def]
        desc = super().describe()
        desc[self.name].update(dtype="array", dtype_numpy="|u1", shape=[H, W])
        return desc


class Camera(Device):
    image = Cpt(Image, value=np.zeros((H, W), np.uint8), kind="hinted")

    def trigger(self):  # type: ignore[no-untyped-def]
        n = getattr(self, "_n", 0) + 1
        self._n = n
        frame = np.random.default_rng(n).integers(1, 256, (H, W), dtype=np.uint8)
        self.image.put(frame, timestamp=time.time())
        return super().trigger()


def main() -> None:
    address, uri, key, truth, num, fps = sys.argv[1:7]
    RE = RunEngine({})
    publisher = Publisher(address)
    writer = BufferingWrapper(TiledWriter(from_uri(uri, api_key=key)))
    RE.subscribe(publisher)
    RE.subscribe(writer)
    frames, stamps = [], []

    def keep(name, doc):  # type: ignore[no-untyped-def]
        if name == "event":
            frames.append(np.asarray(doc["data"]["cam_image"]))
            stamps.append(doc["timestamps"]["cam_image"])

    RE.subscribe(keep)
    time.sleep(1.0)  # PUB/SUB slow joiner
    (uid,) = RE(  # type: ignore[misc]
        count([Camera(name="cam")], num=int(num), delay=1 / float(fps)),
        sample="crash wafer",
        fps=float(fps),
    )
    writer.shutdown(wait=True)
    time.sleep(0.5)
    publisher.close()
    np.savez(truth, frames=np.stack(frames), stamps=np.asarray(stamps))
    print(f"uid {uid}", flush=True)


if __name__ == "__main__":
    main()
