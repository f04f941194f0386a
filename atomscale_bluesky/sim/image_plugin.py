"""The ``image1:`` NDPluginStdArrays plugin: the frame as a flat ``ArrayData`` waveform.

Its ``ArraySize0_RBV``/``ArraySize1_RBV``/``NDimensions_RBV`` tell a stock ``ImagePlugin`` the
frame's width, height and rank; the camera writes every frame here with its capture time.
"""

from __future__ import annotations

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

from .ad_pvs import COLOR_MODES, DATA_TYPES, enum_pv, spec_group, str_pv
from .plugin_base import PLUGIN_BASE_SPECS, PluginGroup


def make_image_group(max_pixels: int, bit_depth: int) -> type[PVGroup]:
    """The ``image1:`` group, with ArrayData sized and typed for the camera."""
    if bit_depth == 8:
        data = pvproperty(
            name="ArrayData", value=b"\x00", dtype=bytes, max_length=max_pixels, read_only=True
        )
    else:
        data = pvproperty(
            name="ArrayData",
            value=[0],
            dtype=ChannelType.INT,
            max_length=max_pixels,
            read_only=True,
        )

    class ImageGroup(PluginGroup):
        """``image1:`` PVs ophyd's ``ImagePlugin`` stages and reads (always publishing)."""

        array_data = data
        array_size0_rbv = pvproperty(name="ArraySize0_RBV", value=640, read_only=True)
        array_size1_rbv = pvproperty(name="ArraySize1_RBV", value=480, read_only=True)
        array_size2_rbv = pvproperty(name="ArraySize2_RBV", value=0, read_only=True)
        array_size_rbv = pvproperty(name="ArraySize_RBV", value=640 * 480, read_only=True)
        n_dimensions_rbv = pvproperty(name="NDimensions_RBV", value=2, read_only=True)
        data_type_rbv = enum_pv("DataType_RBV", DATA_TYPES, "UInt8", read_only=True)
        color_mode_rbv = enum_pv("ColorMode_RBV", COLOR_MODES, "Mono", read_only=True)
        enable_callbacks = enum_pv("EnableCallbacks", ["Disable", "Enable"], "Enable")
        enable_callbacks_rbv = enum_pv(
            "EnableCallbacks_RBV", ["Disable", "Enable"], "Enable", read_only=True
        )
        nd_array_port = str_pv("NDArrayPort", "RHEED.CAM", read_only=False)
        nd_array_port_rbv = str_pv("NDArrayPort_RBV", "RHEED.CAM")
        port_name_rbv = str_pv("PortName_RBV", "RHEED.IMAGE1")
        plugin_type_rbv = str_pv("PluginType_RBV", "NDPluginStdArrays")

    return spec_group("ImagePluginGroup", ImageGroup, PLUGIN_BASE_SPECS, ImageGroup.__doc__ or "")
