"""The RHEED camera on any areaDetector IOC, with frames described as 2-D arrays of their native type.

Channel Access carries images as flat waveforms, so ophyd alone describes them as ``shape [H*W]``
with no ``dtype_numpy``. :class:`RheedImageSignal` reshapes to ``(H, W)`` from ``ArraySize0/1_RBV``,
describes ``dtype_numpy`` from ``DataType_RBV`` (``"|u1"`` for 8-bit, ``"<u2"`` for 16-bit) and drops
ctrl limits. Monitored signals use ``auto_monitor=True`` so each frame arrives with its own IOC
timestamp (see ecosystem-notes 4.5). Only standard areaDetector PV names are used.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ophyd import Component as Cpt
from ophyd import EpicsSignalRO
from ophyd.areadetector import DetectorBase, SingleTrigger
from ophyd.areadetector.cam import AreaDetectorCam
from ophyd.areadetector.plugins import ImagePlugin

from atomscale_bluesky.devices.signals import CallbackConsistentRead, strip_ctrl_limits

log = logging.getLogger(__name__)

# areaDetector NDDataType_t names -> numpy dtype strings accepted by event-model
AD_DTYPES = {
    "Int8": "|i1",
    "UInt8": "|u1",
    "Int16": "<i2",
    "UInt16": "<u2",
    "Int32": "<i4",
    "UInt32": "<u4",
    "Int64": "<i8",
    "UInt64": "<u8",
    "Float32": "<f4",
    "Float64": "<f8",
}
_AD_DTYPE_BY_INDEX = list(AD_DTYPES)


class RheedImageSignal(CallbackConsistentRead, EpicsSignalRO):
    """``ArrayData`` as a 2-D ``(H, W)`` array of the camera's native type.

    The parent provides ``width``, ``height`` and ``data_type`` signals (monitored, so cheap to get).
    """

    def _native_dtype(self) -> np.dtype[Any]:
        data_type = getattr(self.parent, "data_type", None)
        name: Any = data_type.get() if data_type is not None else "UInt8"
        if isinstance(name, (int, np.integer)):
            name = _AD_DTYPE_BY_INDEX[int(name)]
        return np.dtype(AD_DTYPES.get(str(name), "|u1"))

    def _frame_shape(self) -> tuple[int, int]:
        return int(self.parent.height.get()), int(self.parent.width.get())

    def get(self, **kwargs: Any) -> Any:
        flat = super().get(**kwargs)
        if flat is None or kwargs.get("as_string"):
            return flat
        return self.shape_frame(flat)

    def postprocess(self, value: Any) -> Any:
        return None if value is None else self.shape_frame(value)

    def shape_frame(self, flat: Any) -> np.ndarray:
        """Cast a flat CA waveform to the native dtype and reshape it to ``(H, W)``."""
        array = np.asarray(flat).ravel().astype(self._native_dtype(), copy=False)
        h, w = self._frame_shape()
        n = h * w
        if array.size != n:
            if array.size < n:
                # CA clients drop trailing zero bytes of CHAR waveforms; the frame ends dark
                log.debug(
                    "%s: %d elements for a %dx%d frame; zero-padding", self.name, array.size, w, h
                )
                array = np.concatenate([array, np.zeros(n - array.size, array.dtype)])
            array = array[:n]
        return array.reshape(h, w)

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        entry = desc[self.name]
        h, w = self._frame_shape()
        entry.update(dtype="array", dtype_numpy=self._native_dtype().str, shape=[h, w])
        strip_ctrl_limits(entry)
        return desc

    # a frame in every monitor descriptor's configuration would cost a full image each time
    def read_configuration(self) -> dict[str, Any]:
        return {}

    def describe_configuration(self) -> dict[str, Any]:
        return {}


class CounterSignal(CallbackConsistentRead, EpicsSignalRO):
    """A frame counter (``ArrayCounter_RBV``/``UniqueId_RBV``) without ctrl limits in its description."""

    def describe(self) -> dict[str, dict[str, Any]]:
        desc = super().describe()
        strip_ctrl_limits(desc[self.name])
        return desc


class RheedCam(AreaDetectorCam):
    """The driver (``cam1:``); every standard areaDetector camera has these PVs."""


class RheedImagePlugin(ImagePlugin):
    """The NDPluginStdArrays plugin (``image1:``), staged with callbacks enabled."""


class RheedCamera(SingleTrigger, DetectorBase):
    """A RHEED camera on an areaDetector IOC (simulated or real) with monitorable 2-D frames.

    Readings: ``<name>_image`` (2-D frame), ``<name>_array_counter`` and ``<name>_unique_id``.
    Configuration: ``<name>_acquire_period`` (s), ``<name>_acquire_time`` (s), ``<name>_width``,
    ``<name>_height`` (px) and ``<name>_data_type``.
    """

    cam = Cpt(RheedCam, "cam1:", kind="omitted")
    image1 = Cpt(RheedImagePlugin, "image1:", kind="omitted")
    image = Cpt(RheedImageSignal, "image1:ArrayData", auto_monitor=True, kind="hinted")
    array_counter = Cpt(CounterSignal, "image1:ArrayCounter_RBV", auto_monitor=True, kind="normal")
    unique_id = Cpt(CounterSignal, "image1:UniqueId_RBV", auto_monitor=True, kind="normal")
    acquire_period = Cpt(EpicsSignalRO, "cam1:AcquirePeriod_RBV", auto_monitor=True, kind="config")
    acquire_time = Cpt(EpicsSignalRO, "cam1:AcquireTime_RBV", auto_monitor=True, kind="config")
    width = Cpt(EpicsSignalRO, "image1:ArraySize0_RBV", auto_monitor=True, kind="config")
    height = Cpt(EpicsSignalRO, "image1:ArraySize1_RBV", auto_monitor=True, kind="config")
    data_type = Cpt(
        EpicsSignalRO, "image1:DataType_RBV", string=True, auto_monitor=True, kind="config"
    )

    def __init__(self, prefix: str, *, name: str, **kwargs: Any) -> None:
        kwargs.setdefault("read_attrs", ["image", "array_counter", "unique_id"])
        kwargs.setdefault(
            "configuration_attrs",
            ["acquire_period", "acquire_time", "width", "height", "data_type"],
        )
        super().__init__(prefix, name=name, **kwargs)
        self.stage_sigs.update(
            [
                ("cam.num_images", 1),
                ("image1.enable", 1),
                ("image1.blocking_callbacks", "Yes"),
            ]
        )

    def describe_configuration(self) -> dict[str, Any]:
        desc: dict[str, Any] = super().describe_configuration()
        for entry in desc.values():
            strip_ctrl_limits(entry)
        return desc

    @property
    def monitored(self) -> list[Any]:
        """The signals a monitor plan should subscribe to: the frame and its counters."""
        return [self.image, self.array_counter, self.unique_id]
