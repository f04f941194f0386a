"""The soak's garbage-collector probes: when full collections run and what they free.

CPython frees objects in reference cycles only when the collector runs, and its full (generation
2) collection runs rarely once a process holds many long-lived objects, so memory held by cycles
would climb between them. These probes say when full collections run, what cycles the run makes
and which code makes them, and who holds the large buffers.
"""

from __future__ import annotations

import collections
import gc
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FullCollections:
    """Every generation-2 collection of the run: when (s from ``t0``), how long, objects freed.

    Installed as a ``gc.callbacks`` hook; the collector calls it on whichever thread triggered it.
    """

    t0: float
    times: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    freed: list[int] = field(default_factory=list)
    _started: float = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        now = time.monotonic()
        if phase == "start":
            self._started = now
            return
        self.times.append(now - self.t0)
        self.seconds.append(now - self._started)
        self.freed.append(int(info.get("collected", 0)))

    def install(self) -> None:
        gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)


def _kind(obj: object) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _where(obj: object) -> str | None:
    """The code a frame, traceback, coroutine or generator in the garbage belongs to."""
    frame = None
    if isinstance(obj, types.FrameType):
        frame = obj
    elif isinstance(obj, types.TracebackType):
        frame = obj.tb_frame
    elif isinstance(obj, types.CoroutineType | types.GeneratorType):
        code = obj.cr_code if isinstance(obj, types.CoroutineType) else obj.gi_code
        return f"{code.co_filename}:{code.co_firstlineno} {code.co_qualname}"
    if frame is None:
        return None
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} {code.co_qualname}"


def garbage_report(garbage: list[Any], frames: int, seconds: float, top: int = 40) -> str:
    """Cyclic garbage by type, by the code its frames and tracebacks ran, and the array bytes it
    held, per RHEED frame delivered in the window."""
    by_type = collections.Counter(_kind(o) for o in garbage)
    by_code = collections.Counter(w for o in garbage if (w := _where(o)) is not None)
    ids = {id(o) for o in garbage}
    arrays: dict[int, int] = {}
    for obj in garbage:
        for ref in gc.get_referents(obj):
            if isinstance(ref, np.ndarray) and id(ref) not in ids:
                base = ref.base if isinstance(ref.base, np.ndarray) else ref
                arrays[id(base)] = base.nbytes
    size = sum(sys.getsizeof(o) for o in garbage)
    per = max(frames, 1)
    lines = [
        f"window {seconds:.1f} s, {frames} RHEED frames delivered, {len(garbage)} objects in "
        f"cycles ({len(garbage) / per:.1f} per frame), {size / 1e6:.1f} MB of their own "
        f"({size / per / 1e3:.2f} kB per frame), {len(arrays)} arrays held, "
        f"{sum(arrays.values()) / 1e6:.1f} MB",
        "--- by type (count, per frame)",
        *(f"{n:9d} {n / per:8.2f}  {k}" for k, n in by_type.most_common(top)),
        "--- frames, tracebacks, coroutines, generators by code (count, per frame)",
        *(f"{n:9d} {n / per:8.2f}  {k}" for k, n in by_code.most_common(top)),
    ]
    return "\n".join(lines) + "\n"


class GarbageProbe:
    """Keeps the cyclic garbage of ``seconds`` after warm-up (``gc.DEBUG_SAVEALL``) and writes
    :func:`garbage_report` of it to ``path``; called from the sampling thread."""

    def __init__(self, path: Path, seconds: float) -> None:
        self.path, self.seconds = path, seconds
        self.started: float | None = None
        self.frames0 = 0
        self.done = False

    def maybe(self, t: float, warmup: float, frames: int) -> None:
        if self.done or t < warmup:
            return
        if self.started is None:
            gc.collect()
            gc.garbage.clear()
            gc.set_debug(gc.DEBUG_SAVEALL)
            self.started, self.frames0 = t, frames
            return
        if t - self.started < self.seconds:
            return
        gc.collect()
        gc.set_debug(0)
        garbage = list(gc.garbage)
        gc.garbage.clear()
        self.done = True
        report = garbage_report(garbage, frames - self.frames0, t - self.started)
        self.path.write_text(report)
        del garbage


def _big_buffer(obj: object, floor: int) -> int | None:
    """The bytes of a buffer of at least ``floor`` bytes (an array's: its owner's), else None."""
    size: int | None = None
    if isinstance(obj, np.ndarray):
        base = obj
        while isinstance(base.base, np.ndarray):
            base = base.base
        owner = base.base
        size = len(owner) if isinstance(owner, bytes | bytearray) else base.nbytes
    elif isinstance(obj, bytes | bytearray):
        size = len(obj)
    elif isinstance(obj, memoryview):
        size = obj.nbytes
    return size if size is not None and size >= floor else None


def _instance_dict(obj: object) -> dict[str, Any] | None:
    if isinstance(obj, type):
        return None
    try:
        own = object.__getattribute__(obj, "__dict__")
    except Exception:  # noqa: BLE001 - any object, any descriptor
        return None
    return own if isinstance(own, dict) else None


def _describe(obj: object, dict_owner: dict[int, object]) -> str:
    where = _where(obj)
    if where is not None:
        return where
    if isinstance(obj, dict) and id(obj) in dict_owner:
        return f"{_kind(dict_owner[id(obj)])}.__dict__"
    if isinstance(obj, dict):
        return f"dict{sorted(map(str, obj))[:6]}"
    if isinstance(obj, list | tuple | set | collections.deque):
        return f"{_kind(obj)}[{len(obj)}]"
    return _kind(obj)


def holder_tally(floor: int = 100_000, levels: int = 3, top: int = 25) -> str:
    """Large buffers by the chain of their holders ``levels`` deep (the first holder at each
    level, found in one pass per level over every tracked object): which code keeps them. An
    array and a memoryview of it are listed apart (the same memory, twice)."""
    objects = gc.get_objects()
    dict_owner: dict[int, object] = {}
    for obj in objects:
        if (own := _instance_dict(obj)) is not None:
            dict_owner[id(own)] = obj
    size: dict[int, int] = {}
    frontier: dict[int, object] = {}
    for obj in objects:
        for ref in gc.get_referents(obj):
            found = _big_buffer(ref, floor)
            if found is not None and id(ref) not in frontier:
                frontier[id(ref)] = ref
                size[id(ref)] = found
    chains = {key: [_kind(buf)] for key, buf in frontier.items()}
    wanted = {key: [key] for key in frontier}  # object id -> buffers whose chain ends there
    for level in range(levels):
        up: dict[int, list[int]] = {}
        for obj in objects:
            if isinstance(obj, types.FrameType) and obj.f_code.co_filename == __file__:
                continue
            for ref in gc.get_referents(obj):
                keys = wanted.get(id(ref))
                if keys is None:
                    continue
                for key in keys:
                    if len(chains[key]) == level + 1:  # the first holder found wins
                        chains[key].append(_describe(obj, dict_owner))
                        up.setdefault(id(obj), []).append(key)
        wanted = up
    tally: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for key, chain in chains.items():
        tally[" <- ".join(chain)] += size[key]
        count[" <- ".join(chain)] += 1
    del objects
    lines = [f"{len(size)} buffers >= {floor} B, {sum(size.values()) / 1e6:.1f} MB"]
    lines += [f"{b / 1e6:8.1f} MB {count[k]:5d}  {k}" for k, b in tally.most_common(top)]
    return "\n".join(lines) + "\n"
