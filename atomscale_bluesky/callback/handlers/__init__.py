"""Readers of externally stored frames, by the ecosystem's handler convention.

A handler class is looked up by a resource's ``spec``, built as ``cls(path, **resource_kwargs)``
(the resource's root applied, through ``root_map``) and called with a datum's kwargs,
``handler(**datum_kwargs)``, returning the array: the convention of event_model's ``Filler``,
databroker and area-detector-handlers, whose classes can be registered here unchanged.
"""

from atomscale_bluesky.callback.handlers.ad_hdf5 import (
    EPICS_EPOCH_OFFSET,
    AreaDetectorHDF5Handler,
    HDF5DatasetHandler,
)
from atomscale_bluesky.callback.handlers.ad_tiff import AreaDetectorTiffHandler, TiffSeriesHandler
from atomscale_bluesky.callback.handlers.errors import ExternalDataError, ExternalNotReady
from atomscale_bluesky.callback.handlers.npy_seq import NumpySeqHandler
from atomscale_bluesky.callback.handlers.registry import (
    BUILTIN_HANDLERS,
    ENTRY_POINT_GROUP,
    STREAM_HANDLERS,
    HandlerRegistry,
)

__all__ = [
    "BUILTIN_HANDLERS",
    "ENTRY_POINT_GROUP",
    "EPICS_EPOCH_OFFSET",
    "STREAM_HANDLERS",
    "AreaDetectorHDF5Handler",
    "AreaDetectorTiffHandler",
    "ExternalDataError",
    "ExternalNotReady",
    "HDF5DatasetHandler",
    "HandlerRegistry",
    "NumpySeqHandler",
    "TiffSeriesHandler",
]
