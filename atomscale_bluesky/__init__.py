"""Stream Bluesky runs (RHEED video and growth sensor readings) to Atomscale.

The names a session needs are here; each is imported on first use, so ``import
atomscale_bluesky`` stays cheap and never pulls bluesky, ophyd or the server's stack::

    from atomscale_bluesky import AtomscaleCallback, config_atomscale_logging
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module defining it
_EXPORTS = {
    "AtomscaleCallback": "atomscale_bluesky.callback.atomscale_callback",
    "AtomscaleCallbackError": "atomscale_bluesky.callback.atomscale_callback",
    "CallbackOptions": "atomscale_bluesky.callback.options",
    "MetadataKeys": "atomscale_bluesky.callback.run_metadata",
    "RunSummary": "atomscale_bluesky.callback.summary",
    "AtomscaleClient": "atomscale_bluesky.client.client",
    "ApiKey": "atomscale_bluesky.client.secret",
    "AtomscaleSettings": "atomscale_bluesky.settings",
    "ConfigError": "atomscale_bluesky.settings",
    "load_settings": "atomscale_bluesky.settings",
    "config_atomscale_logging": "atomscale_bluesky.log",
    "make_callback": "atomscale_bluesky.apps.settings",
}

__all__ = [
    "ApiKey",
    "AtomscaleCallback",
    "AtomscaleCallbackError",
    "AtomscaleClient",
    "AtomscaleSettings",
    "CallbackOptions",
    "ConfigError",
    "MetadataKeys",
    "RunSummary",
    "__version__",
    "config_atomscale_logging",
    "load_settings",
    "make_callback",
]

if TYPE_CHECKING:
    from atomscale_bluesky.apps.settings import make_callback
    from atomscale_bluesky.callback.atomscale_callback import (
        AtomscaleCallback,
        AtomscaleCallbackError,
    )
    from atomscale_bluesky.callback.options import CallbackOptions
    from atomscale_bluesky.callback.run_metadata import MetadataKeys
    from atomscale_bluesky.callback.summary import RunSummary
    from atomscale_bluesky.client.client import AtomscaleClient
    from atomscale_bluesky.client.secret import ApiKey
    from atomscale_bluesky.log import config_atomscale_logging
    from atomscale_bluesky.settings import AtomscaleSettings, ConfigError, load_settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'atomscale_bluesky' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
