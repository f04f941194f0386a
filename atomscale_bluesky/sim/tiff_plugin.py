"""The ``TIFF1:`` NDFileTIFF plugin: one TIFF file per frame, written with tifffile.

TIFF holds one array per file, so in Capture and Stream modes every frame gets its own file
name (FileTemplate with the next FileNumber). Each file carries the frame's time and id in
private tags: 65000 NDArrayTimeStamp (seconds since the EPICS epoch), 65001 NDArrayUniqueId,
65002/65003 the EPICS timestamp's seconds and nanoseconds.
"""

from __future__ import annotations

from .ad_pvs import long_str_pv, spec_group, str_pv
from .file_plugin import FILE_SPECS, FilePluginBehaviour
from .hdf5_writer import EPICS_EPOCH_OFFSET, epics_stamp
from .plugin_base import PLUGIN_BASE_SPECS, Frame

TAG_TIMESTAMP, TAG_UNIQUE_ID, TAG_EPICS_SEC, TAG_EPICS_NSEC = 65000, 65001, 65002, 65003


class TiffBehaviour(FilePluginBehaviour):
    """The TIFF plugin: every frame written to its own file as it arrives."""

    file_template = long_str_pv("FileTemplate", "%s%s_%6.6d.tiff")
    file_template_rbv = long_str_pv("FileTemplate_RBV", "%s%s_%6.6d.tiff", read_only=True)
    port_name_rbv = str_pv("PortName_RBV", "RHEED.TIFF1")
    plugin_type_rbv = str_pv("PluginType_RBV", "NDFileTIFF")

    async def handle(self, frame: Frame) -> None:
        mode = self.file_write_mode.value
        if mode == "Single" or not self._capturing:
            await super().handle(frame)
            return
        self._captured += 1
        name = self._pending_name if self._captured == 1 else await self._claim_file_name()
        self.write_in_background(frame, name, self._captured)
        wanted = int(self.pv("NumCapture").value)
        if wanted > 0 and self._captured >= wanted:
            await self._stop_capture()

    # ---- writer thread ------------------------------------------------------------------
    def append(self, frame: Frame, name: str) -> None:
        import tifffile

        seconds, nanos = epics_stamp(frame.time)
        tags = [
            (TAG_TIMESTAMP, "d", 1, frame.time - EPICS_EPOCH_OFFSET, True),
            (TAG_UNIQUE_ID, "I", 1, frame.unique_id, True),
            (TAG_EPICS_SEC, "I", 1, seconds, True),
            (TAG_EPICS_NSEC, "I", 1, nanos, True),
        ]
        tifffile.imwrite(name, frame.pixels, extratags=tags)

    def close_file(self) -> None:
        """Nothing stays open: each frame's file is complete when written."""


TiffPluginGroup = spec_group(
    "TiffPluginGroup",
    TiffBehaviour,
    (*FILE_SPECS, *PLUGIN_BASE_SPECS),
    "``TIFF1:`` NDFileTIFF plugin PVs (stock ophyd TIFFPlugin and ophyd-async NDPluginFileIO).",
)
