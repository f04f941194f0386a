"""caproto PVGroup of a simulated RHEED camera with areaDetector-compatible PV names.

``<prefix>cam1:`` is the driver (Acquire, AcquirePeriod, ImageMode, PixelFormat, ...), ``<prefix>HDF1:``
the HDF5 file plugin (sim/hdf5_plugin.py), ``<prefix>TIFF1:`` the TIFF one, ``<prefix>image1:`` an
NDPluginStdArrays plugin carrying ``ArrayData``; ``<prefix>sim:`` holds the growth conditions that
drive the pattern. Every frame and its counters are written with the same capture timestamp.
"""

from __future__ import annotations

import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from caproto import ChannelType
from caproto.server import PVGroup, SubGroup, pvproperty

from .ad_pvs import COLOR_MODES, DATA_TYPES, MirrorGroup, enum_pv, long_str_pv, str_pv
from .follow import follow_sensors
from .growth import GrowthModel, GrowthParams
from .hdf5_plugin import Hdf5PluginGroup
from .image_plugin import make_image_group
from .pattern import PatternConfig, RheedPattern
from .plugin_base import Frame
from .tiff_plugin import TiffPluginGroup

__all__ = [
    "COLOR_MODES",
    "DATA_TYPES",
    "CameraConfig",
    "ConfigError",
    "MirrorGroup",
    "RheedCameraIOC",
    "build_camera_ioc",
    "make_camera_ioc_class",
    "make_image_group",
]

IMAGE_MODES = ["Single", "Multiple", "Continuous"]
TRIGGER_MODES = ["Internal", "External"]
DETECTOR_STATES = [
    "Idle",
    "Acquire",
    "Readout",
    "Correct",
    "Saving",
    "Aborting",
    "Error",
    "Waiting",
    "Initializing",
    "Disconnected",
    "Aborted",
]
PIXEL_FORMATS = ["Mono8", "Mono10", "Mono12", "Mono14", "Mono16"]
PIXEL_SIZES = ["Bpp8", "Bpp10", "Bpp12", "Bpp14", "Bpp16"]
MIN_PERIOD_S = 1.0 / 2000.0
MAX_PERIOD_S = 3600.0


class ConfigError(ValueError):
    """An invalid camera configuration write (refused; the IOC reports it in StatusMessage_RBV)."""


@dataclass(frozen=True)
class CameraConfig:
    """Start-up options of the camera IOC."""

    width: int = 640
    height: int = 480
    bit_depth: int = 8
    fps: float = 30.0
    seed: int = 0
    sensors_prefix: str | None = None
    continuous: bool = False  # start acquiring in Continuous mode at start-up

    def __post_init__(self) -> None:
        PatternConfig(self.width, self.height, self.bit_depth)  # validates size and depth
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"fps must be > 0, got {self.fps}")

    @property
    def data_type(self) -> str:
        return "UInt8" if self.bit_depth == 8 else "UInt16"

    @property
    def pixel_format(self) -> str:
        """The GenICam pixel format (Mono8 .. Mono16) of the frames."""
        return f"Mono{self.bit_depth}"

    @property
    def pixel_size(self) -> str:
        return f"Bpp{self.bit_depth}"


_enum = enum_pv
_str = str_pv


class CamGroup(MirrorGroup):
    """The ``cam1:`` driver PVs ophyd's ``SimDetectorCam``/``AreaDetectorCam`` need."""

    parent: RheedCameraIOC

    acquire = _enum("Acquire", ["Done", "Acquire"], "Done")
    acquire_rbv = _enum("Acquire_RBV", ["Done", "Acquire"], "Done", read_only=True)
    acquire_time = pvproperty(
        name="AcquireTime",
        value=0.005,
        units="s",
        precision=4,
        lower_ctrl_limit=1e-5,
        upper_ctrl_limit=MAX_PERIOD_S,
    )
    acquire_time_rbv = pvproperty(
        name="AcquireTime_RBV", value=0.005, units="s", precision=4, read_only=True
    )
    acquire_period = pvproperty(name="AcquirePeriod", value=1 / 30, units="s", precision=5)
    acquire_period_rbv = pvproperty(
        name="AcquirePeriod_RBV", value=1 / 30, units="s", precision=5, read_only=True
    )
    image_mode = _enum("ImageMode", IMAGE_MODES, "Continuous")
    image_mode_rbv = _enum("ImageMode_RBV", IMAGE_MODES, "Continuous", read_only=True)
    num_images = pvproperty(
        name="NumImages", value=1, lower_ctrl_limit=1, upper_ctrl_limit=2_000_000_000
    )
    num_images_rbv = pvproperty(name="NumImages_RBV", value=1, read_only=True)
    num_images_counter_rbv = pvproperty(name="NumImagesCounter_RBV", value=0, read_only=True)
    num_exposures = pvproperty(
        name="NumExposures", value=1, lower_ctrl_limit=1, upper_ctrl_limit=1000
    )
    num_exposures_rbv = pvproperty(name="NumExposures_RBV", value=1, read_only=True)
    trigger_mode = _enum("TriggerMode", TRIGGER_MODES, "Internal")
    trigger_mode_rbv = _enum("TriggerMode_RBV", TRIGGER_MODES, "Internal", read_only=True)
    array_counter = pvproperty(
        name="ArrayCounter", value=0, lower_ctrl_limit=0, upper_ctrl_limit=2_000_000_000
    )
    array_counter_rbv = pvproperty(name="ArrayCounter_RBV", value=0, read_only=True)
    array_rate_rbv = pvproperty(
        name="ArrayRate_RBV", value=0.0, units="Hz", precision=2, read_only=True
    )
    array_callbacks = _enum("ArrayCallbacks", ["Disable", "Enable"], "Enable")
    array_callbacks_rbv = _enum(
        "ArrayCallbacks_RBV", ["Disable", "Enable"], "Enable", read_only=True
    )
    detector_state_rbv = _enum("DetectorState_RBV", DETECTOR_STATES, "Idle", read_only=True)
    status_message_rbv = pvproperty(
        name="StatusMessage_RBV",
        value="Idle",
        dtype=ChannelType.CHAR,
        max_length=256,
        read_only=True,
    )
    data_type = _enum("DataType", DATA_TYPES, "UInt8")
    # an mbbi, so stock ophyd reads DataType_RBV.DISA (0: the data type is in use)
    data_type_rbv = _enum("DataType_RBV", DATA_TYPES, "UInt8", read_only=True, record="mbbi")
    color_mode = _enum("ColorMode", COLOR_MODES, "Mono")
    color_mode_rbv = _enum("ColorMode_RBV", COLOR_MODES, "Mono", read_only=True)
    pixel_format = _enum("PixelFormat", PIXEL_FORMATS, "Mono8")
    pixel_format_rbv = _enum("PixelFormat_RBV", PIXEL_FORMATS, "Mono8", read_only=True)
    pixel_size = _enum("PixelSize", PIXEL_SIZES, "Bpp8")
    pixel_size_rbv = _enum("PixelSize_RBV", PIXEL_SIZES, "Bpp8", read_only=True)
    bit_depth_rbv = pvproperty(name="BitDepth_RBV", value=8, read_only=True)
    unique_id_rbv = pvproperty(name="UniqueId_RBV", value=0, read_only=True)
    nd_attributes_file = long_str_pv("NDAttributesFile")
    ad_core_version_rbv = _str("ADCoreVersion_RBV", "3.12.1")
    sdk_version_rbv = _str("SDKVersion_RBV", "caproto-sim")
    wait_for_plugins = _enum("WaitForPlugins", ["No", "Yes"], "No")
    size_x = pvproperty(name="SizeX", value=640, units="px")
    size_x_rbv = pvproperty(name="SizeX_RBV", value=640, units="px", read_only=True)
    size_y = pvproperty(name="SizeY", value=480, units="px")
    size_y_rbv = pvproperty(name="SizeY_RBV", value=480, units="px", read_only=True)
    max_size_x_rbv = pvproperty(name="MaxSizeX_RBV", value=640, units="px", read_only=True)
    max_size_y_rbv = pvproperty(name="MaxSizeY_RBV", value=480, units="px", read_only=True)
    array_size_x_rbv = pvproperty(name="ArraySizeX_RBV", value=640, read_only=True)
    array_size_y_rbv = pvproperty(name="ArraySizeY_RBV", value=480, read_only=True)
    array_size_z_rbv = pvproperty(name="ArraySizeZ_RBV", value=0, read_only=True)
    array_size_rbv = pvproperty(name="ArraySize_RBV", value=640 * 480, read_only=True)
    array_size0_rbv = pvproperty(name="ArraySize0_RBV", value=640, read_only=True)
    array_size1_rbv = pvproperty(name="ArraySize1_RBV", value=480, read_only=True)
    array_size2_rbv = pvproperty(name="ArraySize2_RBV", value=0, read_only=True)
    n_dimensions_rbv = pvproperty(name="NDimensions_RBV", value=2, read_only=True)
    gain = pvproperty(
        name="Gain", value=1.0, precision=2, lower_ctrl_limit=0.0, upper_ctrl_limit=100.0
    )
    gain_rbv = pvproperty(name="Gain_RBV", value=1.0, precision=2, read_only=True)
    manufacturer_rbv = _str("Manufacturer_RBV", "atomscale-bluesky")
    model_rbv = _str("Model_RBV", "Simulated RHEED camera")
    serial_number_rbv = _str("SerialNumber_RBV", "SIM-0001")
    firmware_version_rbv = _str("FirmwareVersion_RBV", "1.0")
    driver_version_rbv = _str("DriverVersion_RBV", "caproto-sim")
    port_name_rbv = _str("PortName_RBV", "RHEED.CAM")
    time_remaining_rbv = pvproperty(
        name="TimeRemaining_RBV", value=0.0, units="s", precision=3, read_only=True
    )

    @acquire.putter  # type: ignore[untyped-decorator,no-redef]
    async def acquire(self, instance: Any, value: Any) -> Any:
        on = value in (1, "Acquire")
        if on:
            self.parent.request_start()
        else:
            self.parent.request_stop()
        return value

    @acquire_period.putter  # type: ignore[untyped-decorator,no-redef]
    async def acquire_period(self, instance: Any, value: Any) -> Any:
        period = await self.parent.validate(
            "AcquirePeriod", value, lambda v: math.isfinite(v) and v > 0, "must be > 0 s"
        )
        clamped = min(max(period, MIN_PERIOD_S), MAX_PERIOD_S)
        if clamped != period:
            await self.parent.report(f"AcquirePeriod {period} clamped to {clamped}")
        await self.acquire_period_rbv.write(clamped)
        return clamped

    @size_x.putter  # type: ignore[untyped-decorator,no-redef]
    async def size_x(self, instance: Any, value: Any) -> Any:
        return await self.parent.set_size("SizeX", value, self.max_size_x_rbv.value)

    @size_y.putter  # type: ignore[untyped-decorator,no-redef]
    async def size_y(self, instance: Any, value: Any) -> Any:
        return await self.parent.set_size("SizeY", value, self.max_size_y_rbv.value)

    @data_type.putter  # type: ignore[untyped-decorator,no-redef]
    async def data_type(self, instance: Any, value: Any) -> Any:
        native = self.parent.config.data_type
        if value != native:
            await self.parent.error(f"DataType {value} not supported: this camera is {native}")
            raise ConfigError(f"DataType is fixed to {native}")
        return value

    @pixel_format.putter  # type: ignore[untyped-decorator,no-redef]
    async def pixel_format(self, instance: Any, value: Any) -> Any:
        return await self._fixed("PixelFormat", value, self.parent.config.pixel_format)

    @pixel_size.putter  # type: ignore[untyped-decorator,no-redef]
    async def pixel_size(self, instance: Any, value: Any) -> Any:
        return await self._fixed("PixelSize", value, self.parent.config.pixel_size)

    async def _fixed(self, name: str, value: Any, native: str) -> Any:
        """Accept only the camera's native value of a fixed setting (as DataType)."""
        if value != native:
            await self.parent.error(f"{name} {value} not supported: this camera is {native}")
            raise ConfigError(f"{name} is fixed to {native}")
        return value

    @color_mode.putter  # type: ignore[untyped-decorator,no-redef]
    async def color_mode(self, instance: Any, value: Any) -> Any:
        if value != "Mono":
            await self.parent.error(f"ColorMode {value} not supported: this camera is Mono")
            raise ConfigError("ColorMode is fixed to Mono")
        return value

    @array_counter.putter  # type: ignore[untyped-decorator,no-redef]
    async def array_counter(self, instance: Any, value: Any) -> Any:
        self.parent.counter = int(value)
        await self.array_counter_rbv.write(int(value))
        return value


class SimGroup(PVGroup):
    """``sim:`` growth conditions driving the pattern (written by users or mirrored from sensors)."""

    parent: RheedCameraIOC

    shutter_open = _enum("ShutterOpen", ["Closed", "Open"], "Closed", doc="growth shutter")
    monolayer_period = pvproperty(
        name="MonolayerPeriod",
        value=1.0,
        units="s",
        precision=3,
        lower_ctrl_limit=0.05,
        upper_ctrl_limit=1000.0,
    )
    damping = pvproperty(
        name="Damping",
        value=20.0,
        units="s",
        precision=2,
        lower_ctrl_limit=0.1,
        upper_ctrl_limit=1e5,
    )
    recovery = pvproperty(
        name="Recovery",
        value=4.0,
        units="s",
        precision=2,
        lower_ctrl_limit=0.1,
        upper_ctrl_limit=1e5,
    )
    amplitude = pvproperty(
        name="Amplitude", value=0.5, precision=3, lower_ctrl_limit=0.0, upper_ctrl_limit=1.0
    )
    rotation_rpm = pvproperty(
        name="RotationRPM",
        value=0.0,
        units="rpm",
        precision=2,
        lower_ctrl_limit=-120.0,
        upper_ctrl_limit=120.0,
    )
    azimuth = pvproperty(
        name="Azimuth",
        value=0.0,
        units="deg",
        precision=2,
        lower_ctrl_limit=-360.0,
        upper_ctrl_limit=360.0,
    )
    seed = pvproperty(name="Seed", value=0, lower_ctrl_limit=0, upper_ctrl_limit=2_000_000_000)
    specular_rbv = pvproperty(name="Specular_RBV", value=1.0, precision=4, read_only=True)
    monolayers_rbv = pvproperty(
        name="Monolayers_RBV", value=0.0, units="ML", precision=3, read_only=True
    )
    roughness_rbv = pvproperty(name="Roughness_RBV", value=0.0, precision=4, read_only=True)
    layer_monolayers_rbv = pvproperty(
        name="LayerMonolayers_RBV", value=0.0, units="ML", precision=3, read_only=True,
        doc="monolayers grown since the growth shutter last opened",
    )  # fmt: skip
    sensors_prefix_rbv = _str("SensorsPrefix_RBV", "")
    follow_sensors = _enum("FollowSensors", ["Off", "On"], "Off", doc="mirror the sensors IOC")

    @shutter_open.putter  # type: ignore[untyped-decorator,no-redef]
    async def shutter_open(self, instance: Any, value: Any) -> Any:
        self.parent.growth.set_shutter(value in (1, "Open"), time.time())
        return value

    @monolayer_period.putter  # type: ignore[untyped-decorator,no-redef]
    async def monolayer_period(self, instance: Any, value: Any) -> Any:
        self.parent.sync_params(monolayer_period_s=float(value))
        return value

    @damping.putter  # type: ignore[untyped-decorator,no-redef]
    async def damping(self, instance: Any, value: Any) -> Any:
        self.parent.sync_params(damping_s=float(value))
        return value

    @recovery.putter  # type: ignore[untyped-decorator,no-redef]
    async def recovery(self, instance: Any, value: Any) -> Any:
        self.parent.sync_params(recovery_s=float(value))
        return value

    @amplitude.putter  # type: ignore[untyped-decorator,no-redef]
    async def amplitude(self, instance: Any, value: Any) -> Any:
        self.parent.sync_params(amplitude=float(value))
        return value

    @rotation_rpm.putter  # type: ignore[untyped-decorator,no-redef]
    async def rotation_rpm(self, instance: Any, value: Any) -> Any:
        self.parent.sync_params(rotation_rpm=float(value))
        return value

    @azimuth.putter  # type: ignore[untyped-decorator,no-redef]
    async def azimuth(self, instance: Any, value: Any) -> Any:
        self.parent.growth.advance(time.time())
        self.parent.growth.set_azimuth(float(value))
        return value

    @seed.putter  # type: ignore[untyped-decorator,no-redef]
    async def seed(self, instance: Any, value: Any) -> Any:
        self.parent.pattern_dirty = True
        return value

    @specular_rbv.scan(period=0.1)  # type: ignore[untyped-decorator,no-redef]
    async def specular_rbv(self, instance: Any, async_lib: Any) -> None:
        state = self.parent.growth.advance(time.time())
        await instance.write(state.specular)
        await self.monolayers_rbv.write(state.monolayers)
        await self.layer_monolayers_rbv.write(state.layer_monolayers)
        await self.roughness_rbv.write(state.roughness)
        await self.azimuth.write(state.azimuth_deg, verify_value=False)
        await self.parent.uptime.write(time.time() - self.parent.started)


def make_camera_ioc_class(config: CameraConfig) -> type[RheedCameraIOC]:
    """A :class:`RheedCameraIOC` subclass whose ``image1:ArrayData`` fits ``config``."""
    image_cls = make_image_group(config.width * config.height, config.bit_depth)

    class SizedRheedCameraIOC(RheedCameraIOC):
        image1 = SubGroup(image_cls, prefix="image1:")

    return SizedRheedCameraIOC


class RheedCameraIOC(PVGroup):
    """The simulated RHEED camera: PV groups plus the acquisition loop publishing frames."""

    cam1 = SubGroup(CamGroup, prefix="cam1:")
    hdf1 = SubGroup(Hdf5PluginGroup, prefix="HDF1:")
    tiff1 = SubGroup(TiffPluginGroup, prefix="TIFF1:")
    sim = SubGroup(SimGroup, prefix="sim:")
    image1: Any  # set by make_camera_ioc_class

    def __init__(self, *args: Any, config: CameraConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config = config
        self.growth = GrowthModel(GrowthParams(), t0=time.time())
        self.counter = 0
        self.pattern_dirty = True
        self.pattern: RheedPattern | None = None
        self.published = 0  # frames published since start (for rate PVs)
        self._start = asyncio.Event()
        self.started = time.time()
        self._stop_requested = False
        self._acquiring = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rheed-render")

    # ---- helpers used by the sub-groups ---------------------------------------------------
    def sync_params(self, **changes: float) -> None:
        self.growth.advance(time.time())
        for key, value in changes.items():
            setattr(self.growth.params, key, value)

    def request_start(self) -> None:
        self._stop_requested = False
        self._start.set()

    def request_stop(self) -> None:
        self._stop_requested = True

    async def report(self, message: str) -> None:
        await self.cam1.status_message_rbv.write(message[:255])

    async def error(self, message: str) -> None:
        """Enter the Error detector state with a message (cleared by the next good Acquire)."""
        await self.cam1.detector_state_rbv.write("Error")
        await self.report(message)

    async def validate(self, name: str, value: Any, ok: Any, rule: str) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not ok(number):
            await self.error(f"{name}={value!r} refused: {rule}")
            raise ConfigError(f"{name} {rule}")
        return number

    async def set_size(self, name: str, value: Any, maximum: int) -> int:
        size = int(
            await self.validate(name, value, lambda v: 1 <= v <= maximum, f"must be 1..{maximum}")
        )
        if size < 16:
            await self.error(f"{name}={size} refused: must be >= 16")
            raise ConfigError(f"{name} must be >= 16")
        rbv = self.cam1.size_x_rbv if name == "SizeX" else self.cam1.size_y_rbv
        await rbv.write(size)
        self.pattern_dirty = True
        return size

    # ---- acquisition -----------------------------------------------------------------------
    def _pattern_config(self) -> PatternConfig:
        return PatternConfig(
            width=int(self.cam1.size_x.value),
            height=int(self.cam1.size_y.value),
            bit_depth=self.config.bit_depth,
            seed=int(self.sim.seed.value),
        )

    async def _ensure_pattern(self) -> RheedPattern:
        if self.pattern is None or self.pattern_dirty:
            cfg = self._pattern_config()
            self.pattern_dirty = False
            loop = asyncio.get_running_loop()
            self.pattern = await loop.run_in_executor(self._executor, RheedPattern, cfg)
            await self._publish_sizes(cfg.width, cfg.height)
        return self.pattern

    async def _publish_sizes(self, width: int, height: int) -> None:
        cam, img = self.cam1, self.image1
        for group in (cam, img):
            await group.array_size0_rbv.write(width)
            await group.array_size1_rbv.write(height)
            await group.array_size2_rbv.write(0)
            await group.array_size_rbv.write(
                width * height * (1 if self.config.bit_depth == 8 else 2)
            )
        await cam.array_size_x_rbv.write(width)
        await cam.array_size_y_rbv.write(height)
        # the file plugin starts primed (as after an IOC's start-up frame): stock HDF5Plugin
        # stage() refuses a plugin whose array size is still 0
        for plugin in (self.hdf1, self.tiff1):
            for name, value in (("ArraySize0_RBV", width), ("ArraySize1_RBV", height)):
                await plugin.pv(name).write(value)
            await plugin.pv("NDimensions_RBV").write(2)

    def _render(self, pattern: RheedPattern, t: float) -> tuple[Any, np.ndarray]:
        from .pattern import FrameInputs

        state = self.growth.advance(t)
        frame = pattern.render(FrameInputs(state.specular, state.azimuth_deg, state.roughness))
        # a read-only flat array goes out as-is (bytes would be copied and lose trailing zeros)
        flat = frame.ravel() if self.config.bit_depth == 8 else frame.view(np.int16).ravel()
        flat.flags.writeable = False
        return flat, frame

    async def _publish(self, data: Any, frame: np.ndarray, t: float) -> None:
        """Publish one frame on the image plugin and the driver, then hand it to file plugins."""
        self.counter += 1
        n = self.counter
        img, cam = self.image1, self.cam1
        await img.array_data.write(data, timestamp=t)
        await img.unique_id_rbv.write(n, timestamp=t)
        await img.array_counter_rbv.write(n, timestamp=t)
        await img.time_stamp_rbv.write(t, timestamp=t)
        await cam.unique_id_rbv.write(n, timestamp=t)
        await cam.array_counter_rbv.write(n, timestamp=t)
        for plugin in (self.hdf1, self.tiff1):
            await plugin.receive(Frame(frame, t, n))

    async def _acquire_once(self) -> None:
        """One Acquire cycle: frames at AcquirePeriod until Single/Multiple is done or stopped."""
        cam = self.cam1
        pattern = await self._ensure_pattern()
        mode = cam.image_mode.value
        wanted = 1 if mode == "Single" else int(cam.num_images.value)
        loop = asyncio.get_running_loop()
        await cam.detector_state_rbv.write("Acquire")
        await self.report("Acquiring")
        await cam.acquire_rbv.write("Acquire")
        done = 0
        next_t = time.time()
        rate_t0, rate_n0 = next_t, self.counter
        while not self._stop_requested:
            delay = next_t - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._stop_requested:
                break
            if self.pattern_dirty:
                pattern = await self._ensure_pattern()
            t = time.time()
            data, frame = await loop.run_in_executor(self._executor, self._render, pattern, t)
            await self._publish(data, frame, t)
            done += 1
            await cam.num_images_counter_rbv.write(done)
            period = float(cam.acquire_period.value)
            next_t = max(next_t + period, time.time() - period)  # never burst to catch up
            if t - rate_t0 >= 1.0:
                rate = (self.counter - rate_n0) / (t - rate_t0)
                await cam.array_rate_rbv.write(rate)
                await self.image1.array_rate_rbv.write(rate)
                rate_t0, rate_n0 = t, self.counter
            if mode != "Continuous" and done >= wanted:
                break
        await cam.detector_state_rbv.write("Idle")
        await self.report("Idle")
        await cam.acquire_rbv.write("Done")
        await cam.acquire.write("Done", verify_value=False)

    async def run_acquisition(self) -> None:
        """Forever: wait for Acquire=1, run one acquisition cycle."""
        event = self._start
        if self.config.continuous:
            event.set()
        while True:
            await event.wait()
            event.clear()
            if self._stop_requested:
                continue
            try:
                await self._acquire_once()
            except Exception as exc:  # keep serving; show the failure like a driver would
                await self.error(f"acquisition failed: {exc}")
                await self.cam1.acquire_rbv.write("Done")
                await self.cam1.acquire.write("Done", verify_value=False)

    async def initialise(self) -> None:
        """Publish the start-up configuration (sizes, data type, period, mode)."""
        cfg, cam, img = self.config, self.cam1, self.image1
        for pv, value in (
            (cam.max_size_x_rbv, cfg.width),
            (cam.max_size_y_rbv, cfg.height),
            (cam.size_x_rbv, cfg.width),
            (cam.size_y_rbv, cfg.height),
            (cam.data_type_rbv, cfg.data_type),
            (cam.pixel_format_rbv, cfg.pixel_format),
            (cam.pixel_size_rbv, cfg.pixel_size),
            (cam.bit_depth_rbv, cfg.bit_depth),
            (img.data_type_rbv, cfg.data_type),
            (cam.acquire_period_rbv, 1.0 / cfg.fps),
            (self.sim.seed, cfg.seed),
        ):
            await pv.write(value, verify_value=False)
        await cam.size_x.write(cfg.width, verify_value=False)
        await cam.size_y.write(cfg.height, verify_value=False)
        await cam.data_type.write(cfg.data_type, verify_value=False)
        await cam.pixel_format.write(cfg.pixel_format, verify_value=False)
        await cam.pixel_size.write(cfg.pixel_size, verify_value=False)
        await cam.acquire_period.write(1.0 / cfg.fps, verify_value=False)
        if cfg.continuous:
            await cam.image_mode.write("Continuous")
            await cam.acquire.write("Acquire", verify_value=False)
        await self.sim.sensors_prefix_rbv.write(cfg.sensors_prefix or "")
        await self.sim.follow_sensors.write("On" if cfg.sensors_prefix else "Off")
        await self._ensure_pattern()
        await self.ready.write(1)

    uptime = pvproperty(name="sim:Uptime_RBV", value=0.0, units="s", precision=1, read_only=True)
    ready = pvproperty(name="sim:Ready_RBV", value=0, read_only=True)

    @uptime.startup  # type: ignore[untyped-decorator,no-redef]
    async def uptime(self, instance: Any, async_lib: Any) -> None:
        """Start-up hook: initialise, follow the sensors IOC if asked, then run acquisition."""
        await self.initialise()
        if self.config.sensors_prefix:
            asyncio.get_running_loop().create_task(
                follow_sensors(self.sim, self.config.sensors_prefix)
            )
        await self.run_acquisition()


def build_camera_ioc(prefix: str, config: CameraConfig) -> RheedCameraIOC:
    """Instantiate the camera PVGroup for ``config`` under ``prefix`` (e.g. ``"RHEED:"``)."""
    cls = make_camera_ioc_class(config)
    ioc = cls(prefix=prefix, config=replace(config))
    # queue up to ~1 s (<= 150 MB) of frames per slow client instead of caproto's 48
    frame_bytes = config.width * config.height * (1 if config.bit_depth == 8 else 2)
    ioc.image1.array_data.max_subscription_backlog = int(min(1000, max(48, 150e6 // frame_bytes)))
    return ioc
