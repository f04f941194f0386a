"""Building blocks for areaDetector-named caproto PV groups: enums, strings, setpoint/readback pairs.

areaDetector records come in pairs (``X`` setpoint, ``X_RBV`` readback). :class:`PvSpec` tables
describe the many PVs stock ophyd/ophyd-async classes connect to but this simulation does not act
on; :func:`spec_group` turns a table into PV properties on a group class.
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from caproto import ChannelType
from caproto.server import PVGroup, pvproperty

DATA_TYPES = [
    "Int8",
    "UInt8",
    "Int16",
    "UInt16",
    "Int32",
    "UInt32",
    "Int64",
    "UInt64",
    "Float32",
    "Float64",
]
COLOR_MODES = ["Mono", "Bayer", "RGB1", "RGB2", "RGB3", "YUV444", "YUV422", "YUV421"]
NO_YES = ["No", "Yes"]
DISABLE_ENABLE = ["Disable", "Enable"]
LONG_STRING = 256  # areaDetector's file path/name/template waveforms hold 256 characters


def enum_pv(
    name: str,
    names: list[str],
    value: str,
    *,
    read_only: bool = False,
    doc: str = "",
    record: str | None = None,
) -> pvproperty:
    """An ENUM PV with ``names`` as its choices (``record``: also serve that record's fields)."""
    extra = {"record": record} if record else {}
    return pvproperty(
        name=name,
        value=value,
        dtype=ChannelType.ENUM,
        enum_strings=names,
        read_only=read_only,
        doc=doc,
        **extra,
    )


def str_pv(name: str, value: str, *, read_only: bool = True) -> pvproperty:
    """A short (DBR_STRING, 40 characters) string PV."""
    return pvproperty(name=name, value=value, dtype=ChannelType.STRING, read_only=read_only)


def long_str_pv(name: str, value: str = "", *, read_only: bool = False) -> pvproperty:
    """A CHAR-waveform string PV, as areaDetector serves file paths and names."""
    return pvproperty(
        name=name,
        value=value,
        dtype=ChannelType.CHAR,
        max_length=LONG_STRING,
        string_encoding="latin-1",
        read_only=read_only,
    )


class MirrorGroup(PVGroup):
    """A group where a plain put to ``X`` is mirrored to ``X_RBV`` when that PV exists."""

    async def group_write(self, instance: Any, value: Any) -> Any:
        rbv = self.pvdb.get(instance.pvname + "_RBV")
        if rbv is not None:
            await rbv.write(value)
        return value


@dataclass(frozen=True)
class PvSpec:
    """One areaDetector PV (``rbv``: also ``<name>_RBV``; ``read_only``: only the readback)."""

    name: str
    value: Any = 0
    rbv: bool = True
    read_only: bool = False
    enum: tuple[str, ...] | None = None
    long_string: bool = False
    short_string: bool = False

    def properties(self) -> dict[str, pvproperty]:
        """The PV properties of this spec keyed by attribute name."""
        names = [self.name + "_RBV"] if self.read_only else [self.name]
        if self.rbv and not self.read_only:
            names.append(self.name + "_RBV")
        return {
            attribute_name(pv): self._property(pv, read_only=pv.endswith("_RBV")) for pv in names
        }

    def _property(self, pv: str, *, read_only: bool) -> pvproperty:
        if self.enum is not None:
            return enum_pv(pv, list(self.enum), self.value, read_only=read_only)
        if self.long_string:
            return long_str_pv(pv, self.value, read_only=read_only)
        if self.short_string:
            return str_pv(pv, self.value, read_only=read_only)
        return pvproperty(name=pv, value=self.value, read_only=read_only)


def attribute_name(pv: str) -> str:
    """``"NumCaptured_RBV"`` -> ``"num_captured_rbv"`` (a PVGroup attribute name)."""
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", pv).lower()
    return re.sub(r"[^a-z0-9_]", "_", snake)


def spec_group(
    name: str,
    base: type[PVGroup],
    specs: Iterable[PvSpec],
    doc: str,
) -> type[PVGroup]:
    """A subclass of ``base`` adding the PVs of ``specs`` that ``base`` does not define."""
    defined = {
        prop.pvspec.name
        for prop in (getattr(base, attr, None) for attr in dir(base))
        if isinstance(prop, pvproperty)
    }

    def body(namespace: dict[str, Any]) -> None:
        namespace["__doc__"] = doc
        namespace["__module__"] = base.__module__
        for spec in specs:
            for attr, prop in spec.properties().items():
                if prop.pvspec.name not in defined and not hasattr(base, attr):
                    namespace[attr] = prop

    return types.new_class(name, (base,), exec_body=body)


def bool_value(value: Any) -> bool:
    """A put value as a bool: 1, "Yes", "Enable", "Capture", "On" ... are true."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "yes", "enable", "capture", "on", "acquire", "true")
    return bool(value)
