"""What every areaDetector file plugin (NDPluginFile) does: paths, names, modes and capture.

Write modes as in areaDetector: ``Single`` (one file per frame, when AutoSave is on), ``Capture``
(frames buffered, written when NumCapture is reached or Capture is cleared) and ``Stream`` (each
frame written as it arrives). File names follow FileTemplate (C-style ``%s%s_%6.6d.h5``: path,
name, number); FileNumber advances per file when AutoIncrement is on. Files are written on the
plugin's own writer thread, never on the IOC's event loop; a failed write shows in
WriteStatus/WriteMessage.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .ad_pvs import (
    DISABLE_ENABLE,
    NO_YES,
    PvSpec,
    bool_value,
    enum_pv,
    long_str_pv,
    str_pv,
)
from .plugin_base import Frame, PluginGroup

WRITE_MODES = ["Single", "Capture", "Stream"]
CAPTURE_STATES = ["Done", "Capture"]

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

FILE_SPECS: tuple[PvSpec, ...] = (
    PvSpec("FileNumber", 0),
    PvSpec("NumCapture", 0),
    PvSpec("NumCaptured", 0, read_only=True),
    *FILE_PLUGIN_SPECS,
)


def full_file_name(template: str, path: str, name: str, number: int) -> str:
    """areaDetector's ``FileTemplate % (FilePath, FileName, FileNumber)`` (the number optional)."""
    try:
        return template % (path, name, number)
    except TypeError:
        return template % (path, name)


class FilePluginBehaviour(PluginGroup):
    """A file plugin's acting PVs (paths, names, modes, capture, counts) and the capture logic;
    subclasses write the files (``append``/``close``, called on the writer thread only)."""

    file_path = long_str_pv("FilePath")
    file_path_rbv = long_str_pv("FilePath_RBV", read_only=True)
    file_path_exists_rbv = enum_pv("FilePathExists_RBV", NO_YES, "No", read_only=True)
    file_name = long_str_pv("FileName")
    file_name_rbv = long_str_pv("FileName_RBV", read_only=True)
    file_template = long_str_pv("FileTemplate", "%s%s_%6.6d.dat")
    file_template_rbv = long_str_pv("FileTemplate_RBV", "%s%s_%6.6d.dat", read_only=True)
    full_file_name_rbv = long_str_pv("FullFileName_RBV", read_only=True)
    auto_increment = enum_pv("AutoIncrement", NO_YES, "Yes")
    auto_increment_rbv = enum_pv("AutoIncrement_RBV", NO_YES, "Yes", read_only=True)
    file_write_mode = enum_pv("FileWriteMode", WRITE_MODES, "Stream")
    file_write_mode_rbv = enum_pv("FileWriteMode_RBV", WRITE_MODES, "Stream", read_only=True)
    capture = enum_pv("Capture", CAPTURE_STATES, "Done")
    capture_rbv = enum_pv("Capture_RBV", CAPTURE_STATES, "Done", read_only=True)
    enable_callbacks = enum_pv("EnableCallbacks", DISABLE_ENABLE, "Disable")
    enable_callbacks_rbv = enum_pv("EnableCallbacks_RBV", DISABLE_ENABLE, "Disable", read_only=True)
    nd_array_port = str_pv("NDArrayPort", "RHEED.CAM", read_only=False)
    nd_array_port_rbv = str_pv("NDArrayPort_RBV", "RHEED.CAM")
    write_status = enum_pv("WriteStatus", ["Write OK", "Write error"], "Write OK")
    write_message = long_str_pv("WriteMessage")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="file-writer")
        self._capturing = False
        self._buffered: list[Frame] = []
        self._captured = 0
        self._pending_name = ""
        self._writes: set[asyncio.Task[None]] = set()

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
            self.write_in_background(frame, self._pending_name, self._captured)
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
                await self._run(self.append, frame, name)
            self._buffered = []
        await self._run(self.close_file)
        await self.capture_rbv.write("Done")
        await self.capture.write("Done", verify_value=False)

    async def _write_single(self, frame: Frame) -> None:
        name = await self._claim_file_name()
        self.write_in_background(frame, name, 1, close=True)

    def write_in_background(
        self, frame: Frame, name: str, captured: int, *, close: bool = False
    ) -> None:
        """Queue a frame's write without holding up the camera (areaDetector's plugins run on
        their own threads); writes keep their order, and NumCaptured_RBV counts a frame once
        it is in the file."""

        loop = asyncio.get_running_loop()
        # submitted now, so a later close (NumCapture reached) runs after this frame's write
        steps = [loop.run_in_executor(self._writer, self.append, frame, name)]
        if close:
            steps.append(loop.run_in_executor(self._writer, self.close_file))

        async def finish() -> None:
            for step in steps:
                try:
                    await step
                except Exception as exc:  # reported like a driver's write error
                    await self._write_failed(exc)
            await self.pv("NumCaptured_RBV").write(captured, timestamp=frame.time)

        task = loop.create_task(finish())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

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
            await self._write_failed(exc)

    async def _write_failed(self, exc: Exception) -> None:
        await self.write_status.write("Write error")
        await self.write_message.write(str(exc)[:255])

    # ---- writer thread ------------------------------------------------------------------
    def append(self, frame: Frame, name: str) -> None:
        """Write ``frame`` to the file ``name`` (opened on first use)."""
        raise NotImplementedError

    def close_file(self) -> None:
        """Close the open file, if any."""
        raise NotImplementedError
