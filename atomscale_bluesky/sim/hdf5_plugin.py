"""The ``HDF1:`` NDFileHDF5 plugin: the camera's frames in HDF5 files in areaDetector's layout.

In Stream mode each frame is appended and flushed as it arrives, so the file is readable live
(with SWMR when SWMRMode is on); see :mod:`.file_plugin` for modes and names and
:mod:`.hdf5_writer` for the layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .ad_pvs import NO_YES, PvSpec, enum_pv, long_str_pv, spec_group, str_pv
from .file_plugin import FILE_SPECS, FilePluginBehaviour
from .hdf5_writer import Hdf5FrameFile
from .plugin_base import PLUGIN_BASE_SPECS, Frame

COMPRESSIONS = ("None", "N-bit", "szip", "zlib", "Blosc", "BSLZ4", "LZ4", "JPEG")

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


class Hdf5Behaviour(FilePluginBehaviour):
    """The HDF5 plugin: SWMR and lazy-open switches, and h5py writing."""

    file_template = long_str_pv("FileTemplate", "%s%s_%6.6d.h5")
    file_template_rbv = long_str_pv("FileTemplate_RBV", "%s%s_%6.6d.h5", read_only=True)
    swmr_mode = enum_pv("SWMRMode", ["Off", "On"], "Off")
    swmr_mode_rbv = enum_pv("SWMRMode_RBV", ["Off", "On"], "Off", read_only=True)
    lazy_open = enum_pv("LazyOpen", NO_YES, "No")
    lazy_open_rbv = enum_pv("LazyOpen_RBV", NO_YES, "No", read_only=True)
    port_name_rbv = str_pv("PortName_RBV", "RHEED.HDF1")
    plugin_type_rbv = str_pv("PluginType_RBV", "NDFileHDF5")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._file: Hdf5FrameFile | None = None  # touched only on the writer thread

    # ---- writer thread ------------------------------------------------------------------
    def append(self, frame: Frame, name: str) -> None:
        if self._file is None:
            self._file = Hdf5FrameFile(
                Path(name),
                (frame.pixels.shape[0], frame.pixels.shape[1]),
                frame.pixels.dtype,
                swmr=self.swmr_mode.value == "On",
            )
        self._file.append(frame.pixels, frame.unique_id, frame.time)

    def close_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


Hdf5PluginGroup = spec_group(
    "Hdf5PluginGroup",
    Hdf5Behaviour,
    (
        *FILE_SPECS,
        *HDF5_SPECS,
        *PLUGIN_BASE_SPECS,
    ),
    "``HDF1:`` NDFileHDF5 plugin PVs (stock ophyd HDF5Plugin and ophyd-async NDFileHDF5IO).",
)
