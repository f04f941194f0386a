"""The ``HDF1:`` NDFileHDF5 plugin: writes the camera's frames to HDF5 files in areaDetector's layout.

Write modes as in areaDetector: ``Single`` (one file per frame, when AutoSave is on), ``Capture``
(frames buffered, written when NumCapture is reached or Capture is cleared) and ``Stream`` (each
frame appended and flushed as it arrives, readable live; SWMR when SWMRMode is on). File names
follow FileTemplate (C-style ``%s%s_%6.6d.h5``: path, name, number); FileNumber advances per file
when AutoIncrement is on. h5py runs on the plugin's own writer thread, never on the IOC's loop.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .ad_pvs import (
    DISABLE_ENABLE,
    NO_YES,
    PvSpec,
    bool_value,
    enum_pv,
    long_str_pv,
    spec_group,
    str_pv,
)
from .hdf5_writer import Hdf5FrameFile
from .plugin_base import PLUGIN_BASE_SPECS, Frame, PluginGroup

WRITE_MODES = ["Single", "Capture", "Stream"]
CAPTURE_STATES = ["Done", "Capture"]
COMPRESSIONS = ("None", "N-bit", "szip", "zlib", "Blosc", "BSLZ4", "LZ4", "JPEG")

# PVs stock classes connect to or stage that this simulation serves without acting on them
FILE_PLUGIN_SPECS: tuple[PvSpec, ...] = (
    PvSpec("AutoSave", "Yes", enum=tuple(NO_YES)),
    PvSpec("DeleteDriverFile", "No", enum=tuple(NO_YES)),
    PvSpec("FileFormat", 0),
    PvSpec("FileNumber_Sync", 0, rbv=False),
    PvSpec("FileNumber_write", 0, rbv=False),
    PvSpec("ReadFile", "Done", enum=("Done", "Read")),
    PvSpec("WriteFile", "Done", enum=("Done", "Write")),
    PvSpec("CreateDirectory", 0),
    PvSpec("TempSuffix", "", long_string=True),
    PvSpec("ArraySize0", 0, rbv=False),
    PvSpec("ArraySize1", 0, rbv=False),
    PvSpec("ArraySize2", 0, rbv=False),
)
HDF5_SPECS: tuple[PvSpec, ...] = (
    PvSpec("BoundaryAlign", 0),
    PvSpec("BoundaryThreshold", 65536),
    PvSpec("Compression", "None", enum=COMPRESSIONS),
    PvSpec("DataBitsOffset", 0),
    PvSpec("ExtraDimNameX", "X", read_only=True, short_string=True),
    PvSpec("ExtraDimNameY", "Y", read_only=True, short_string=True),
    PvSpec("ExtraDimNameN", "n", read_only=True, short_string=True),
    PvSpec("ExtraDimSizeX", 1),
    PvSpec("ExtraDimSizeY", 1),
    PvSpec("ExtraDimSizeN", 1),
    PvSpec("IOSpeed", 0.0, rbv=False),
    PvSpec("NumColChunks", 0),
    PvSpec("NumDataBits", 0),
    PvSpec("NumExtraDims", 0),
    PvSpec("NumFramesChunks", 1),
    PvSpec("NumFramesFlush", 1),
    PvSpec("NumRowChunks", 0),
    PvSpec("RunTime", 0.0, rbv=False),
    PvSpec("SZipNumPixels", 16),
    PvSpec("StoreAttr", "Yes", enum=tuple(NO_YES)),
    PvSpec("StorePerform", "No", enum=tuple(NO_YES)),
    PvSpec("ZLevel", 6),
    PvSpec("PositionMode", "Off", enum=("Off", "On")),
    PvSpec("XMLFileName", "", long_string=True),
    PvSpec("ChunkSizeAuto", "No", enum=tuple(NO_YES)),
    PvSpec("FlushNow", "Done", rbv=False, enum=("Done", "Flush")),
    PvSpec("SWMRActive", "Off", read_only=True, enum=("Off", "On")),
)


def full_file_name(template: str, path: str, name: str, number: int) -> str:
    """areaDetector's ``FileTemplate % (FilePath, FileName, FileNumber)`` (the number optional)."""
    try:
        return template % (path, name, number)
    except TypeError:
        return template % (path, name)


class Hdf5Behaviour(PluginGroup):
    """The HDF5 plugin's acting PVs: paths, names, modes, capture and counts."""

    file_path = long_str_pv("FilePath")
    file_path_rbv = long_str_pv("FilePath_RBV", read_only=True)
    file_path_exists_rbv = enum_pv("FilePathExists_RBV", NO_YES, "No", read_only=True)
    file_name = long_str_pv("FileName")
    file_name_rbv = long_str_pv("FileName_RBV", read_only=True)
    file_template = long_str_pv("FileTemplate", "%s%s_%6.6d.h5")
    file_template_rbv = long_str_pv("FileTemplate_RBV", "%s%s_%6.6d.h5", read_only=True)
    full_file_name_rbv = long_str_pv("FullFileName_RBV", read_only=True)
    auto_increment = enum_pv("AutoIncrement", NO_YES, "Yes")
    auto_increment_rbv = enum_pv("AutoIncrement_RBV", NO_YES, "Yes", read_only=True)
    file_write_mode = enum_pv("FileWriteMode", WRITE_MODES, "Stream")
    file_write_mode_rbv = enum_pv("FileWriteMode_RBV", WRITE_MODES, "Stream", read_only=True)
    capture = enum_pv("Capture", CAPTURE_STATES, "Done")
    capture_rbv = enum_pv("Capture_RBV", CAPTURE_STATES, "Done", read_only=True)
    swmr_mode = enum_pv("SWMRMode", ["Off", "On"], "Off")
    swmr_mode_rbv = enum_pv("SWMRMode_RBV", ["Off", "On"], "Off", read_only=True)
    lazy_open = enum_pv("LazyOpen", NO_YES, "No")
    lazy_open_rbv = enum_pv("LazyOpen_RBV", NO_YES, "No", read_only=True)
    enable_callbacks = enum_pv("EnableCallbacks", DISABLE_ENABLE, "Disable")
    enable_callbacks_rbv = enum_pv("EnableCallbacks_RBV", DISABLE_ENABLE, "Disable", read_only=True)
    nd_array_port = str_pv("NDArrayPort", "RHEED.CAM", read_only=False)
    nd_array_port_rbv = str_pv("NDArrayPort_RBV", "RHEED.CAM")
    port_name_rbv = str_pv("PortName_RBV", "RHEED.HDF1")
    plugin_type_rbv = str_pv("PluginType_RBV", "NDFileHDF5")
    write_status = enum_pv("WriteStatus", ["Write OK", "Write error"], "Write OK")
    write_message = long_str_pv("WriteMessage")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hdf5-writer")
        self._file: Hdf5FrameFile | None = None  # touched only on the writer thread
        self._capturing = False
        self._buffered: list[Frame] = []
        self._captured = 0
        self._pending_name = ""

    # ---- puts ---------------------------------------------------------------------------
    @file_path.putter  # type: ignore[untyped-decorator,no-redef]
    async def file_path(self, instance: Any, value: Any) -> Any:
        path = str(value)
        if path and not path.endswith(("/", "\\")):
            path += "/"
        if path and int(self.pv("CreateDirectory").value) != 0:
            await asyncio.get_running_loop().run_in_executor(
                self._writer, lambda: os.makedirs(path, exist_ok=True)
            )
        await self.file_path_rbv.write(path)
        await self.file_path_exists_rbv.write("Yes" if path and os.path.isdir(path) else "No")
        return path

    @capture.putter  # type: ignore[untyped-decorator,no-redef]
    async def capture(self, instance: Any, value: Any) -> Any:
        if bool_value(value):
            await self._start_capture()
        else:
            await self._stop_capture()
        return value

    # ---- frames -------------------------------------------------------------------------
    async def handle(self, frame: Frame) -> None:
        mode = self.file_write_mode.value
        if mode == "Single":
            if self.pv("AutoSave").value == "Yes":
                await self._write_single(frame)
            return
        if not self._capturing:
            return
        self._captured += 1
        if mode == "Stream":
            await self._run(self._append, frame, self._pending_name)
        else:
            self._buffered.append(frame)
        await self.pv("NumCaptured_RBV").write(self._captured, timestamp=frame.time)
        wanted = int(self.pv("NumCapture").value)
        if wanted > 0 and self._captured >= wanted:
            await self._stop_capture()

    async def _start_capture(self) -> None:
        await self._stop_capture()
        self._capturing = True
        self._captured = 0
        self._buffered = []
        self._pending_name = await self._claim_file_name()
        await self.write_status.write("Write OK")
        await self.write_message.write("")
        await self.pv("NumCaptured_RBV").write(0)
        await self.capture_rbv.write("Capture")

    async def _stop_capture(self) -> None:
        if not self._capturing:
            return
        self._capturing = False
        if self._buffered:
            name = self._pending_name
            for frame in self._buffered:
                await self._run(self._append, frame, name)
            self._buffered = []
        await self._run(self._close)
        await self.capture_rbv.write("Done")
        await self.capture.write("Done", verify_value=False)

    async def _write_single(self, frame: Frame) -> None:
        name = await self._claim_file_name()
        await self._run(self._append, frame, name)
        await self._run(self._close)
        await self.pv("NumCaptured_RBV").write(1, timestamp=frame.time)

    async def _claim_file_name(self) -> str:
        """The next file's full name (published), advancing FileNumber when AutoIncrement is on."""
        number = int(self.pv("FileNumber").value)
        name = full_file_name(
            str(self.file_template.value),
            str(self.file_path_rbv.value),
            str(self.file_name.value),
            number,
        )
        await self.full_file_name_rbv.write(name)
        if self.auto_increment.value == "Yes":
            await self.pv("FileNumber").write(number + 1, verify_value=False)
            await self.pv("FileNumber_RBV").write(number + 1)
        return name

    async def _run(self, call: Any, *args: Any) -> None:
        """Run ``call`` on the writer thread; a failure shows in WriteStatus/WriteMessage."""
        try:
            await asyncio.get_running_loop().run_in_executor(self._writer, call, *args)
        except Exception as exc:  # a full disk or a missing directory must not stop the IOC
            await self.write_status.write("Write error")
            await self.write_message.write(str(exc)[:255])

    # ---- writer thread ------------------------------------------------------------------
    def _append(self, frame: Frame, name: str) -> None:
        if self._file is None:
            self._file = Hdf5FrameFile(
                Path(name),
                (frame.pixels.shape[0], frame.pixels.shape[1]),
                frame.pixels.dtype,
                swmr=self.swmr_mode.value == "On",
            )
        self._file.append(frame.pixels, frame.unique_id, frame.time)

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


Hdf5PluginGroup = spec_group(
    "Hdf5PluginGroup",
    Hdf5Behaviour,
    (
        PvSpec("FileNumber", 0),
        PvSpec("NumCapture", 0),
        PvSpec("NumCaptured", 0, read_only=True),
        *FILE_PLUGIN_SPECS,
        *HDF5_SPECS,
        *PLUGIN_BASE_SPECS,
    ),
    "``HDF1:`` NDFileHDF5 plugin PVs (stock ophyd HDF5Plugin and ophyd-async NDFileHDF5IO).",
)
