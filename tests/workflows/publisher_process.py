"""A RunEngine process that only publishes documents over 0MQ (run by test_consume.py).

Usage: python publisher_process.py IN_ADDRESS TRUTH.npz NUM_FRAMES
It records what it published (frames, hardware timestamps) to TRUTH.npz for the test to compare.
"""

import sys
import time

import numpy as np
from bluesky import RunEngine
from bluesky.callbacks.zmq import Publisher
from bluesky.plans import count
from ophyd import Component as Cpt
from ophyd import Device, Signal

H, W = 30, 40


class Image(Signal):
    def describe(self):
        desc = super().describe()
        desc[self.name].update(dtype="array", dtype_numpy="|u1", shape=[H, W])
        return desc


class Camera(Device):
    image = Cpt(Image, value=np.zeros((H, W), np.uint8), kind="hinted")
    counter = Cpt(Signal, value=0, kind="normal")

    def trigger(self):
        n = self.counter.get() + 1
        stamp = time.time()
        self.image.put(
            np.random.default_rng(n).integers(1, 256, (H, W), dtype=np.uint8), timestamp=stamp
        )
        self.counter.put(n, timestamp=stamp)
        return super().trigger()


def main() -> None:
    address, truth_path, num = sys.argv[1], sys.argv[2], int(sys.argv[3])
    RE = RunEngine({})
    publisher = Publisher(address)
    RE.subscribe(publisher)
    frames, stamps = [], []

    def keep(name, doc):
        if name == "event":
            frames.append(np.asarray(doc["data"]["cam_image"]))
            stamps.append(doc["timestamps"]["cam_image"])

    RE.subscribe(keep)
    time.sleep(1.0)  # PUB/SUB slow joiner: let the proxy connection settle
    RE(count([Camera(name="cam")], num=num, delay=1 / 60), sample="zmq wafer", fps=60)
    time.sleep(0.5)
    publisher.close()
    np.savez(truth_path, frames=np.stack(frames), stamps=np.asarray(stamps))


if __name__ == "__main__":
    main()
