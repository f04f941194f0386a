"""Decide, from one event descriptor, which data keys are RHEED frames and which are channels.

Frames are 2-D/3-D arrays (or flat arrays whose H and W are known from the user's ``frame_shapes``,
the descriptor shape, the camera's ``ArraySize0_RBV``/``ArraySize1_RBV``-like configuration, or
later from those readings in any stream of the run: :func:`pick_size`); channels are numeric,
boolean and enum scalars. Everything else is skipped with a reason the callback reports once.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from atomscale_bluesky.callback.pixel_format import (
    PixelDeclaration,
    configured_pixels,
    data_key_pixels,
)

__all__ = [
    "ChannelKey",
    "CounterKey",
    "FrameKey",
    "Route",
    "RoutingOptions",
    "RunHints",
    "SizeKey",
    "pick_counter",
    "pick_size",
    "route_descriptor",
]

# smallest side of an array that we still treat as an image (a 3x3 matrix is not a RHEED frame)
MIN_FRAME_SIDE = 8
# a flat array shorter than this (64 x 64) without a known frame size is a waveform, not an image
MIN_FLAT_FRAME = 4096

_COUNTER_PATTERNS = ("arraycounter", "uniqueid", "imagecounter", "framecounter")
_WIDTH_PATTERNS = ("arraysize0", "arraysizewidth", "arraysizex", "sizex", "width")
_HEIGHT_PATTERNS = ("arraysize1", "arraysizeheight", "arraysizey", "sizey", "height")
_PERIOD_PATTERNS = ("acquireperiod",)
_BITDEPTH_PATTERNS = ("bitdepth", "bitsperpixel", "databits", "pixelbits")


@dataclass(frozen=True)
class RoutingOptions:
    """User choices that shape routing: glob include/exclude patterns and channel renames."""

    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    rename: Mapping[str, str] = field(default_factory=dict)
    rotation_key: str | None = None
    frame_shapes: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # key/glob -> (H, W)
    # the RHEED cameras (data keys, device names or globs); None: every areaDetector-like image
    cameras: tuple[str, ...] | None = None

    @classmethod
    def build(
        cls,
        include: Iterable[str] | str | None = None,
        exclude: Iterable[str] | str | None = None,
        rename: Mapping[str, str] | None = None,
        rotation_key: str | None = None,
        frame_shapes: Mapping[str, tuple[int, int]] | None = None,
        cameras: Iterable[str] | str | None = None,
    ) -> RoutingOptions:
        return cls(
            include=None if include is None else _as_tuple(include),
            exclude=() if exclude is None else _as_tuple(exclude),
            rename=dict(rename or {}),
            rotation_key=rotation_key,
            frame_shapes=_checked_shapes(frame_shapes or {}),
            cameras=None if cameras is None else _as_tuple(cameras),
        )

    def frame_shape_for(self, key: str) -> tuple[int, int] | None:
        """The user's (H, W) for a flat frame key: an exact entry, else the first matching glob."""
        if key in self.frame_shapes:
            return self.frame_shapes[key]
        for pattern, shape in self.frame_shapes.items():
            if fnmatch.fnmatchcase(key, pattern):
                return shape
        return None

    def wants(self, key: str) -> bool:
        """True when ``key`` passes the include and exclude patterns."""
        if self.include is not None and not any(fnmatch.fnmatchcase(key, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(key, p) for p in self.exclude)


def _as_tuple(value: Iterable[str] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _checked_shapes(shapes: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``frame_shapes`` as {key: (H, W)}; a clear ValueError for anything else."""
    checked: dict[str, tuple[int, int]] = {}
    for key, shape in shapes.items():
        dims = _int_dims(shape)
        if not isinstance(key, str) or dims is None or len(dims) != 2:
            raise ValueError(
                f"frame_shapes[{key!r}] must be (height, width) as two positive ints, not {shape!r}"
            )
        checked[key] = (dims[0], dims[1])
    return checked


@dataclass(frozen=True)
class FrameKey:
    """A data key carrying RHEED frames; one camera (one RHEED stream) per key."""

    key: str
    object_name: str | None
    frame_shape: tuple[int, int] | None  # (H, W) when known from the descriptor or configuration
    frames_per_event: int | None  # leading N of a declared (N, H, W) shape, else 1 / None
    dtype_numpy: str | None
    bit_depth: int | None
    external: str | None  # "FILESTORE", "STREAM" or None for inline data
    counter_key: str | None  # frame counter / UniqueId key in the same descriptor
    fps: float | None  # from the camera's AcquirePeriod configuration reading
    flat: bool  # declared as a flat (1-D) array that must be reshaped to frame_shape
    source: str | None = None  # e.g. "PV:RHEED:image1:ArrayData"
    # the same device's scalar readings in the descriptor (read with the frame, on its clock)
    device_keys: tuple[str, ...] = ()
    pixels: PixelDeclaration = PixelDeclaration()  # data type, bit depth, range of the data key


@dataclass(frozen=True)
class CounterKey:
    """A camera frame counter (ArrayCounter/UniqueId) read in a stream without the frames."""

    key: str
    object_name: str | None
    source: str | None


@dataclass(frozen=True)
class SizeKey:
    """A scalar reading of one side of a camera's frames (``ArraySize0_RBV`` = width ...)."""

    key: str
    object_name: str | None
    source: str | None
    axis: str  # "width" or "height"


@dataclass(frozen=True)
class ChannelKey:
    """A scalar data key that becomes one time-series channel."""

    key: str
    name: str
    units: str | None
    enum_strs: tuple[str, ...] | None


@dataclass
class Route:
    """What to do with each data key of one descriptor."""

    descriptor_uid: str
    stream_name: str
    frames: dict[str, FrameKey] = field(default_factory=dict)
    channels: dict[str, ChannelKey] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    size_readings: dict[str, tuple[str, str]] = field(default_factory=dict)  # object -> (w, h) keys
    period_readings: dict[str, str] = field(default_factory=dict)  # object -> AcquirePeriod key
    counters: dict[str, CounterKey] = field(default_factory=dict)  # frame counters, no frames
    sizes: dict[str, SizeKey] = field(default_factory=dict)  # width/height readings, any object
    config_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # object -> (H, W)
    config_fps: dict[str, float] = field(default_factory=dict)  # object -> fps (AcquirePeriod)
    not_cameras: set[str] = field(default_factory=set)  # arrays of other devices: skipped
    config_pixels: dict[str, PixelDeclaration] = field(default_factory=dict)  # DataType, format

    @property
    def continuous(self) -> bool:
        """A monitor stream: every update of a signal, as the hardware published it."""
        return self.stream_name.endswith("_monitor")


@dataclass
class RunHints:
    """Camera facts learnt so far in a run, per device object: frame size (H, W) and fps.

    A monitor stream's descriptor only configures the image signal itself, so its camera's size
    and AcquirePeriod come from another descriptor (primary, baseline) or from readings.
    """

    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    fps: dict[str, float] = field(default_factory=dict)
    pixels: dict[str, PixelDeclaration] = field(default_factory=dict)

    def pixels_for(self, object_name: str | None, key: str) -> PixelDeclaration | None:
        return _lookup(self.pixels, object_name, key)

    def size_for(self, object_name: str | None, key: str) -> tuple[int, int] | None:
        return _lookup(self.sizes, object_name, key)

    def fps_for(self, object_name: str | None, key: str) -> float | None:
        return _lookup(self.fps, object_name, key)

    def absorb(self, route: Route) -> None:
        """Learn what a descriptor's configuration says (each side keeps its own hints)."""
        self.sizes.update(route.config_sizes)
        self.fps.update(route.config_fps)
        self.pixels.update(route.config_pixels)

    def merged(self, route: Route) -> RunHints:
        """These hints plus ``route``'s configuration, as a new record."""
        merged = RunHints(sizes=dict(self.sizes), fps=dict(self.fps), pixels=dict(self.pixels))
        merged.absorb(route)
        return merged


def _lookup(table: Mapping[str, Any], object_name: str | None, key: str) -> Any:
    """Entry for the object, else for the device whose name prefixes the key (``cam_image``)."""
    if object_name and object_name in table:
        return table[object_name]
    best = None
    best_len = 0
    for obj, value in table.items():
        if len(obj) > best_len and (key.startswith(obj + "_") or key.startswith(obj + "-")):
            best, best_len = value, len(obj)
    return best


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower().replace("_rbv", ""))


def _matches(key: str, source: str | None, patterns: tuple[str, ...]) -> bool:
    names = [_norm(key)]
    if source:
        names.append(_norm(source.rsplit(":", 1)[-1]) if ":" in source else _norm(source))
    return any(n.endswith(p) for n in names for p in patterns)


def _config_value(
    configuration: Mapping[str, Any], object_name: str | None, patterns: tuple[str, ...]
) -> Any:
    """Value of the first configuration reading of ``object_name`` matching one of ``patterns``."""
    if not object_name or object_name not in configuration:
        return None
    conf = configuration[object_name] or {}
    data = conf.get("data", {}) or {}
    keys = conf.get("data_keys", {}) or {}
    # prefer readbacks (_RBV) over setpoints when both exist
    candidates = sorted(data, key=lambda k: (0 if "rbv" in k.lower() else 1, k))
    for k in candidates:
        source = (keys.get(k) or {}).get("source")
        if _matches(k, source, patterns):
            return data[k]
    return None


def _as_positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number > 0 else None


def _config_size(
    configuration: Mapping[str, Any], object_name: str | None
) -> tuple[int, int] | None:
    width = _as_positive_int(_config_value(configuration, object_name, _WIDTH_PATTERNS))
    height = _as_positive_int(_config_value(configuration, object_name, _HEIGHT_PATTERNS))
    if width and height:
        return (height, width)
    return None


def _config_fps(configuration: Mapping[str, Any], object_name: str | None) -> float | None:
    period = _config_value(configuration, object_name, _PERIOD_PATTERNS)
    try:
        seconds = float(period)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return 1.0 / seconds


def _bit_depth(
    data_key: Mapping[str, Any], configuration: Mapping[str, Any], obj: str | None
) -> int | None:
    for name in ("bit_depth", "bits_per_pixel", "data_bits"):
        depth = _as_positive_int(data_key.get(name))
        if depth:
            return depth
    return _as_positive_int(_config_value(configuration, obj, _BITDEPTH_PATTERNS))


def _int_dims(shape: Any) -> list[int] | None:
    """The declared shape as ints, or None when it holds unknown/non-integer entries."""
    if not isinstance(shape, (list, tuple)):
        return None
    dims: list[int] = []
    for dim in shape:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
            return None
        dims.append(dim)
    return dims


def _frame_layout(dims: list[int]) -> tuple[tuple[int, int] | None, int | None, str | None]:
    """(frame shape, frames per event, reason-if-not-a-frame) from an integer shape."""
    if len(dims) == 2:
        if min(dims) < MIN_FRAME_SIDE:
            return None, None, f"2-D array {dims} is too small to be a frame"
        return (dims[0], dims[1]), 1, None
    if len(dims) == 3:
        if dims[2] in (3, 4) and min(dims[:2]) >= MIN_FRAME_SIDE:
            return (dims[0], dims[1]), 1, None  # one RGB(A) frame
        if min(dims[1:]) >= MIN_FRAME_SIDE:
            return (dims[1], dims[2]), dims[0], None
        return None, None, f"3-D array {dims} is too small to be a frame stack"
    if len(dims) == 4 and dims[3] in (3, 4) and min(dims[1:3]) >= MIN_FRAME_SIDE:
        return (dims[1], dims[2]), dims[0], None
    return None, None, f"{len(dims)}-D array {dims} is not a frame layout"


def _counter_for(
    data_keys: Mapping[str, Any], object_name: str | None, n_frame_objects: int
) -> str | None:
    found = None
    for key, dk in data_keys.items():
        dk = dk or {}
        if dk.get("shape") not in ([], (), None) or dk.get("dtype") not in ("integer", "number"):
            continue
        if not _matches(key, dk.get("source"), _COUNTER_PATTERNS):
            continue
        same_camera = dk.get("object_name") == object_name or n_frame_objects == 1
        if same_camera and (found is None or "arraycounter" in _norm(key)):
            found = key
    return found


def _is_external(data_key: Mapping[str, Any]) -> str | None:
    external = data_key.get("external")
    if not external:
        return None
    return "STREAM" if str(external).startswith("STREAM") else "FILESTORE"


def route_descriptor(
    descriptor: Mapping[str, Any], options: RoutingOptions, hints: RunHints | None = None
) -> Route:
    """Classify every data key of ``descriptor``, with what ``hints`` and its configuration say.

    ``hints`` is only read; the configuration's frame sizes and fps are returned in the route
    (``config_sizes``, ``config_fps``) for the caller to :meth:`RunHints.absorb`.
    """
    configuration = descriptor.get("configuration", {}) or {}
    data_keys: Mapping[str, Any] = descriptor.get("data_keys", {}) or {}
    route = Route(descriptor_uid=descriptor["uid"], stream_name=descriptor.get("name", "primary"))
    for obj in configuration:
        size = _config_size(configuration, obj)
        if size:
            route.config_sizes[obj] = size
        fps = _config_fps(configuration, obj)
        if fps:
            route.config_fps[obj] = fps
        pixels = configured_pixels(configuration, obj)
        if not pixels.empty:
            route.config_pixels[obj] = pixels
    hints = (hints or RunHints()).merged(route)

    frame_candidates: dict[str, Mapping[str, Any]] = {}
    for key, raw in data_keys.items():
        dk = raw or {}
        if not options.wants(key):
            route.skipped[key] = "excluded by include/exclude"
            continue
        dtype = dk.get("dtype")
        shape = dk.get("shape", [])
        external = _is_external(dk)
        if shape in ([], ()) and dtype in ("number", "integer", "boolean") and not external:
            route.channels[key] = _channel(key, dk, options)
        elif shape in ([], ()) and dtype == "string":
            choices = dk.get("enum_strs") or dk.get("choices")
            if choices and not external:
                route.channels[key] = _channel(key, dk, options, tuple(str(c) for c in choices))
            else:
                route.skipped[key] = "string values are not a channel"
        elif dtype == "array" or (shape not in ([], ()) and shape is not None):
            frame_candidates[key] = dk
        else:
            route.skipped[key] = (
                f"dtype {dtype!r} with shape {shape!r} is neither frame nor channel"
            )

    frame_objects = {dk.get("object_name") for dk in frame_candidates.values()}
    for key, dk in frame_candidates.items():
        reason = not_a_camera(key, dk, configuration, data_keys, options)
        if reason:
            route.not_cameras.add(key)
        reason = reason or _add_frame(
            route, key, dk, configuration, hints, data_keys, len(frame_objects), options
        )
        if reason:
            route.skipped[key] = reason
    if not route.frames:
        for key in route.channels:
            dk = data_keys[key] or {}
            if dk.get("dtype") in ("integer", "number") and _matches(
                key, dk.get("source"), _COUNTER_PATTERNS
            ):
                route.counters[key] = CounterKey(key, dk.get("object_name"), dk.get("source"))
    cameras = {f.object_name for f in route.frames.values()}
    frame_counters = {  # ArrayCounter, UniqueId: bookkeeping of a camera, not growth data
        key
        for key, dk in data_keys.items()
        if key in route.channels
        and (dk or {}).get("object_name") in cameras
        and _matches(key, (dk or {}).get("source"), _COUNTER_PATTERNS)
    }
    for key in frame_counters | set(route.counters):
        if route.channels.pop(key, None) is not None:
            route.skipped[key] = "camera frame counter (finds missing frames; not a channel)"
    for key in route.channels:
        size_key = _size_key(key, data_keys[key] or {})
        if size_key is not None:
            route.sizes[key] = size_key
    for obj in {dk.get("object_name") for dk in data_keys.values() if dk}:
        keys = _size_reading_keys(data_keys, obj)
        if obj and keys:
            route.size_readings[obj] = keys
        period = _period_reading_key(data_keys, obj)
        if obj and period:
            route.period_readings[obj] = period
    return route


def _size_key(key: str, dk: Mapping[str, Any]) -> SizeKey | None:
    """``key`` as a camera's width or height reading, when its name or PV says so."""
    if dk.get("dtype") not in ("integer", "number"):
        return None
    for axis, patterns in (("width", _WIDTH_PATTERNS), ("height", _HEIGHT_PATTERNS)):
        if _matches(key, dk.get("source"), patterns):
            return SizeKey(key, dk.get("object_name"), dk.get("source"), axis)
    return None


def _size_reading_keys(data_keys: Mapping[str, Any], obj: str | None) -> tuple[str, str] | None:
    width = height = None
    for key, dk in data_keys.items():
        dk = dk or {}
        if dk.get("object_name") != obj or dk.get("shape") not in ([], ()):
            continue
        if width is None and _matches(key, dk.get("source"), _WIDTH_PATTERNS):
            width = key
        elif height is None and _matches(key, dk.get("source"), _HEIGHT_PATTERNS):
            height = key
    return (width, height) if width and height else None


def _period_reading_key(data_keys: Mapping[str, Any], obj: str | None) -> str | None:
    for key, dk in data_keys.items():
        dk = dk or {}
        mine = dk.get("object_name") == obj and dk.get("shape") in ([], ())
        if mine and _matches(key, dk.get("source"), _PERIOD_PATTERNS):
            return key
    return None


def _channel(
    key: str,
    dk: Mapping[str, Any],
    options: RoutingOptions,
    enum_strs: tuple[str, ...] | None = None,
) -> ChannelKey:
    units = dk.get("units")
    units = str(units) if isinstance(units, str) and units.strip() else None
    if enum_strs is None and dk.get("enum_strs"):
        enum_strs = tuple(str(c) for c in dk["enum_strs"])
    return ChannelKey(key=key, name=options.rename.get(key, key), units=units, enum_strs=enum_strs)


_CAMERA_WORDS = ("image", "img", "cam", "rheed", "frame", "ccd")
_AD_CONFIG_PATTERNS = _PERIOD_PATTERNS + _WIDTH_PATTERNS + _HEIGHT_PATTERNS + _BITDEPTH_PATTERNS


def is_named_camera(key: str, object_name: str | None, cameras: Iterable[str]) -> bool:
    """True when ``key`` is one of ``cameras``: its data key, its device, or a glob of either
    (``rheed`` names the device and its ``rheed_image``)."""
    for name in cameras:
        if fnmatch.fnmatchcase(key, name) or (
            object_name and fnmatch.fnmatchcase(object_name, name)
        ):
            return True
        if key.startswith(name + "_") or key.startswith(name + "-"):
            return True
    return False


def not_a_camera(
    key: str,
    dk: Mapping[str, Any],
    configuration: Mapping[str, Any],
    data_keys: Mapping[str, Any],
    options: RoutingOptions,
) -> str | None:
    """Why the array ``key`` is not a RHEED camera's image, or None when it is one.

    With ``cameras`` named only those stream; without, areaDetector-like images do: frames
    written to files, an ``ArrayData`` PV, a camera-like name, a device configured like a camera
    (AcquirePeriod, ArraySize, bit depth) or with a frame counter beside the array.
    """
    obj = dk.get("object_name")
    if options.cameras is not None:
        if is_named_camera(key, obj, options.cameras):
            return None
        return f"not one of the cameras named (cameras={list(options.cameras)})"
    if _is_external(dk):
        return None
    pv = _pv_parts(dk.get("source"))
    if pv and _norm(pv[-1]) == "arraydata":
        return None
    words = re.split(r"[^a-z0-9]+", f"{key} {obj or ''}".lower())
    if any(w.startswith(_CAMERA_WORDS) or w.endswith(_CAMERA_WORDS) for w in words if w):
        return None
    if _config_value(configuration, obj, _AD_CONFIG_PATTERNS) is not None:
        return None
    if _counter_for(data_keys, obj, 0) is not None:
        return None
    dims = _int_dims(dk.get("shape"))
    what = f"{len(dims)}-D array" if dims else "array"
    return (
        f"{what} of {obj or key!r} is not an areaDetector-like camera image "
        "(name the RHEED camera with cameras= to stream it)"
    )


def _add_frame(
    route: Route,
    key: str,
    dk: Mapping[str, Any],
    configuration: Mapping[str, Any],
    hints: RunHints,
    data_keys: Mapping[str, Any],
    n_frame_objects: int,
    options: RoutingOptions,
) -> str | None:
    """Register ``key`` as a frame key of ``route``; return a skip reason when it is not one."""
    obj = dk.get("object_name")
    external = _is_external(dk)
    dims = _int_dims(dk.get("shape"))
    frame_shape: tuple[int, int] | None = None
    per_event: int | None = None
    flat = False
    if dims is not None and len(dims) >= 2:
        frame_shape, per_event, reason = _frame_layout(dims)
        if reason:
            return reason
    elif dims is not None and len(dims) == 1:
        flat = True
        size = (
            options.frame_shape_for(key)
            or _config_size(configuration, obj)
            or hints.size_for(obj, key)
        )
        if size is not None and size[0] * size[1] == dims[0]:
            frame_shape, per_event = size, 1
        elif size is not None and dims[0] % (size[0] * size[1]) == 0:
            frame_shape, per_event = size, dims[0] // (size[0] * size[1])
        elif size is not None:
            return f"flat array of {dims[0]} values does not match the camera size {size}"
        elif dims[0] < MIN_FLAT_FRAME:
            return f"1-D array of {dims[0]} values is a waveform, not a frame"
        # else: the frame size may be learnt later in the run (sizes readings, other descriptors)
    # dims None: unknown/inconsistent shape; the frame shape is taken from the data itself
    route.frames[key] = FrameKey(
        key=key,
        object_name=obj,
        frame_shape=frame_shape,
        frames_per_event=per_event,
        dtype_numpy=dk.get("dtype_numpy") or None,
        bit_depth=_bit_depth(dk, configuration, obj),
        external=external,
        counter_key=_counter_for(data_keys, obj, n_frame_objects),
        fps=_config_fps(configuration, obj) or hints.fps_for(obj, key),
        flat=flat,
        source=dk.get("source") or None,
        device_keys=_device_keys(data_keys, key, obj),
        pixels=data_key_pixels(dk),
    )
    return None


def _device_keys(data_keys: Mapping[str, Any], key: str, obj: str | None) -> tuple[str, ...]:
    """Scalar, inline readings of the device ``obj`` other than ``key``."""
    if obj is None:
        return ()
    return tuple(
        k
        for k, dk in data_keys.items()
        if k != key
        and (dk or {}).get("object_name") == obj
        and (dk or {}).get("shape") in ([], ())
        and not _is_external(dk or {})
    )


_SCHEME = re.compile(r"^(?:pv:|[a-z][a-z0-9+.-]*://)", re.IGNORECASE)


def _pv_parts(source: str | None) -> list[str] | None:
    """``"PV:13SIM1:image1:ArrayData"`` or ``"ca://13SIM1:image1:ArrayData"`` ->
    ``["13SIM1", "image1", "ArrayData"]``; None when the source is not a PV name."""
    if not source:
        return None
    name = _SCHEME.sub("", source.strip())
    if ":" not in name:
        return None
    return name.split(":")


def _camera_score(
    fkey: FrameKey, key: str, object_name: str | None, source: str | None
) -> float | None:
    """How surely the reading ``key`` belongs to ``fkey``'s camera; None: another camera."""
    frame_pv, other_pv = _pv_parts(fkey.source), _pv_parts(source)
    if frame_pv and other_pv and len(frame_pv) > 1 and len(other_pv) > 1:
        if frame_pv[:-1] == other_pv[:-1]:
            return 4.0  # the same plugin (image1:ArrayData, image1:ArrayCounter_RBV)
        if frame_pv[0] == other_pv[0]:
            return 3.0  # the same IOC prefix (another plugin or the driver)
        return None
    if object_name is not None and object_name == fkey.object_name:
        return 3.0
    # ophyd names: the frame "rheed_image" and the counter "rheed_array_counter" of device "rheed"
    pieces = re.split(r"([_\-])", fkey.key)
    for end in range(len(pieces) - 2, 0, -2):
        device = "".join(pieces[:end])
        if key.startswith(device + pieces[end]):
            return 1.0 + len(device) / 1000
    return None


def _counter_score(fkey: FrameKey, counter: CounterKey) -> float | None:
    """How surely ``counter`` counts ``fkey``'s frames (higher is surer); None: another camera."""
    score = _camera_score(fkey, counter.key, counter.object_name, counter.source)
    if score is None:
        return None
    return score + (0.5 if "arraycounter" in _norm(counter.key) else 0.0)


def pick_counter(fkey: FrameKey, counters: Iterable[CounterKey]) -> CounterKey | None:
    """The counter stream of the same camera as ``fkey`` (same PV prefix or ophyd device)."""
    best: CounterKey | None = None
    best_score = 0.0
    for counter in counters:
        score = _counter_score(fkey, counter)
        if score is not None and score > best_score:
            best, best_score = counter, score
    return best


def pick_size(fkey: FrameKey, sizes: Iterable[SizeKey]) -> tuple[SizeKey, SizeKey] | None:
    """The (width, height) readings of ``fkey``'s camera (same PV prefix or ophyd device)."""
    best: dict[str, tuple[float, SizeKey]] = {}
    for size in sizes:
        score = _camera_score(fkey, size.key, size.object_name, size.source)
        if score is None:
            continue
        # a plugin's own ArraySize beats the driver's (binning/ROI change the plugin's size)
        score += 0.5 if "arraysize" in _norm(size.key + (size.source or "")) else 0.0
        if size.axis not in best or score > best[size.axis][0]:
            best[size.axis] = (score, size)
    if "width" in best and "height" in best:
        return best["width"][1], best["height"][1]
    return None
