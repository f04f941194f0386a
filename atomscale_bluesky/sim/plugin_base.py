"""The PVs every areaDetector plugin serves (NDPluginBase/NDArrayBase), and the frame hand-off.

Stock ophyd (``PluginBase``) and ophyd-async (``NDPluginBaseIO``) classes connect to these; a
plugin group built on :class:`PluginGroup` updates its array counters, sizes and data type for
each frame the camera hands it with :meth:`PluginGroup.receive`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .ad_pvs import COLOR_MODES, DATA_TYPES, DISABLE_ENABLE, NO_YES, MirrorGroup, PvSpec

NUMPY_DATA_TYPES = {np.dtype(name.lower()).str: name for name in DATA_TYPES}

PLUGIN_BASE_SPECS: tuple[PvSpec, ...] = (
    PvSpec("ArrayCounter", 0),
    PvSpec("ArrayRate", 0.0, read_only=True),
    PvSpec("AsynIO", 0, rbv=False),
    PvSpec("NDAttributesFile", "", rbv=False, long_string=True),
    PvSpec("PoolAllocBuffers", 0, rbv=False),
    PvSpec("PoolFreeBuffers", 0, rbv=False),
    PvSpec("PoolMaxBuffers", 0, rbv=False),
    PvSpec("PoolMaxMem", 0.0, rbv=False),
    PvSpec("PoolUsedBuffers", 0, rbv=False),
    PvSpec("PoolUsedMem", 0.0, rbv=False),
    PvSpec("ArraySize0", 0, read_only=True),
    PvSpec("ArraySize1", 0, read_only=True),
    PvSpec("ArraySize2", 0, read_only=True),
    PvSpec("ArraySize", 0, read_only=True),
    PvSpec("ArraySizeX", 0, read_only=True),
    PvSpec("ArraySizeY", 0, read_only=True),
    PvSpec("ArraySizeZ", 0, read_only=True),
    PvSpec("NDimensions", 0, read_only=True),
    PvSpec("Dimensions", 0, read_only=True),
    PvSpec("BayerPattern", "RGGB", read_only=True, enum=("RGGB", "GBRG", "GRBG", "BGGR")),
    PvSpec("ColorMode", "Mono", read_only=True, enum=tuple(COLOR_MODES)),
    PvSpec("DataType", "UInt8", read_only=True, enum=tuple(DATA_TYPES)),
    PvSpec("BlockingCallbacks", "No", enum=tuple(NO_YES)),
    PvSpec("EnableCallbacks", "Disable", enum=tuple(DISABLE_ENABLE)),
    PvSpec("Dim0SA", 0, rbv=False),
    PvSpec("Dim1SA", 0, rbv=False),
    PvSpec("Dim2SA", 0, rbv=False),
    PvSpec("DroppedArrays", 0),
    PvSpec("MinCallbackTime", 0.0),
    PvSpec("NDArrayAddress", 0),
    PvSpec("QueueFree", 20),
    PvSpec("QueueFreeLow", 0, rbv=False),
    PvSpec("QueueSize", 20),
    PvSpec("QueueUse", 0, rbv=False),
    PvSpec("QueueUseHIGH", 0, rbv=False),
    PvSpec("QueueUseHIHI", 0, rbv=False),
    PvSpec("TimeStamp", 0.0, read_only=True),
    PvSpec("UniqueId", 0, read_only=True),
    PvSpec("ADCoreVersion", "3.12.1", read_only=True, short_string=True),
    PvSpec("DriverVersion", "caproto-sim", read_only=True, short_string=True),
)


@dataclass(frozen=True)
class Frame:
    """One frame as the camera hands it to its plugins: 2-D pixels, capture time, unique id."""

    pixels: np.ndarray
    time: float
    unique_id: int

    @property
    def data_type(self) -> str:
        return NUMPY_DATA_TYPES[self.pixels.dtype.str]


class PluginGroup(MirrorGroup):
    """Base of the simulated plugins: counts and describes each frame it receives."""

    async def receive(self, frame: Frame) -> None:
        """Take one frame from the camera (only while EnableCallbacks is on)."""
        if not self.enabled:
            return
        await self.describe_frame(frame)
        await self.handle(frame)

    @property
    def enabled(self) -> bool:
        return self.pvdb[self.prefix + "EnableCallbacks"].value == "Enable"

    async def describe_frame(self, frame: Frame) -> None:
        """Publish the frame's sizes, type, id and time on this plugin's readbacks."""
        height, width = frame.pixels.shape
        t = frame.time
        counter = self.pv("ArrayCounter_RBV")
        updates: tuple[tuple[str, Any], ...] = (
            ("ArraySize0_RBV", width),
            ("ArraySize1_RBV", height),
            ("ArraySize2_RBV", 0),
            ("ArraySizeX_RBV", width),
            ("ArraySizeY_RBV", height),
            ("ArraySize_RBV", frame.pixels.nbytes),
            ("NDimensions_RBV", 2),
            ("DataType_RBV", frame.data_type),
            ("UniqueId_RBV", frame.unique_id),
            ("TimeStamp_RBV", t),
            ("ArrayCounter_RBV", int(counter.value) + 1),
        )
        for name, value in updates:
            pv = self.pv(name)
            if pv.value != value or name in ("UniqueId_RBV", "TimeStamp_RBV", "ArrayCounter_RBV"):
                await pv.write(value, timestamp=t)

    async def handle(self, frame: Frame) -> None:
        """What the plugin does with a frame (nothing in the base)."""

    def pv(self, name: str) -> Any:
        """This plugin's PV ``<prefix><name>``."""
        return self.pvdb[self.prefix + name]
