"""Fixtures for the simulated IOCs, ophyd devices and the RunEngine.

With Channel Access pinned to 127.0.0.1, two IOC processes on the session's server port would hide
each other (unicast searches reach one socket), so the session's camera and sensors are served by one
``growth_chamber`` process. ``ioc_factory`` starts extra IOCs on their own free port; talk to them
inside ``ca_env(handle)`` (caproto clients read the environment on every call).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from atomscale_bluesky.sim import epics_env
from atomscale_bluesky.sim.launch import IocHandle, running_ioc

CAMERA_PREFIX = "RHEED:"
SENSORS_PREFIX = "GROWTH:"
DEFAULT_FPS = 30.0


CA_ATTEMPTS = 3  # a busy IOC on a loaded 2-core machine can miss a 5 s search window


def _with_retries(call: Callable[[], Any]) -> Any:
    """Run a caproto sync call, again after a time-out (a search or reply that came too late)."""
    from caproto import CaprotoTimeoutError

    for attempt in range(CA_ATTEMPTS):
        try:
            return call()
        except CaprotoTimeoutError:
            if attempt == CA_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def ca_read(pv: str, *, timeout: float = 5.0, data_type: Any = None) -> Any:
    """Read one PV with caproto's sync client (no repeater registration); returns the response.

    The timeout covers the UDP search too, and a timed-out read is tried again: on a loaded
    2-core CI machine both 2 s and a single 5 s window were seen to expire."""
    from caproto.sync.client import read

    kwargs = {"data_type": data_type} if data_type is not None else {}
    return _with_retries(lambda: read(pv, timeout=timeout, repeater=False, **kwargs))


def ca_value(pv: str, **kwargs: Any) -> Any:
    """The scalar value of ``pv``; enums come back as their strings, CHAR waveforms as str."""
    from caproto import ChannelType

    response = ca_read(pv, **kwargs)
    if response.data_type == ChannelType.CHAR:
        return bytes(response.data).rstrip(b"\x00").decode()
    value = response.data[0]
    return value.decode() if isinstance(value, bytes) else value


def ca_write(pv: str, value: Any, *, timeout: float = 5.0) -> None:
    """Write with put-completion, so a refused write raises ``ErrorResponseReceived``."""
    from caproto.sync.client import write

    _with_retries(lambda: write(pv, value, notify=True, timeout=timeout, repeater=False))


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@contextlib.contextmanager
def ca_env(handle: IocHandle) -> Iterator[None]:
    """Point this process's caproto clients at ``handle``'s server port for the block."""
    keys = ("EPICS_CA_SERVER_PORT", "EPICS_CA_ADDR_LIST")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["EPICS_CA_SERVER_PORT"] = handle.env["EPICS_CAS_SERVER_PORT"]
    os.environ["EPICS_CA_ADDR_LIST"] = "127.0.0.1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


DEFAULT_SIZE = (480, 640)  # (H, W) of the session camera


def acquire_one(pv: Callable[[str], str], timeout: float = 5.0) -> int:
    """Take one frame in Single mode and wait for it (not just for Acquire_RBV, which may still
    read the previous "Done" right after the put); returns the new ArrayCounter_RBV."""
    counter = ca_value(pv("image1:ArrayCounter_RBV"))
    ca_write(pv("cam1:ImageMode"), 0)
    ca_write(pv("cam1:Acquire"), 1)
    assert wait_for(lambda: ca_value(pv("image1:ArrayCounter_RBV")) > counter, timeout=timeout)
    assert wait_for(lambda: ca_value(pv("cam1:Acquire_RBV")) == "Done", timeout=timeout)
    return int(ca_value(pv("image1:ArrayCounter_RBV")))


def reset_camera(prefix: str = CAMERA_PREFIX, fps: float = DEFAULT_FPS) -> None:
    """Stop acquisition and put the camera and its growth simulation back to defaults."""
    ca_write(prefix + "cam1:Acquire", 0)
    wait_for(lambda: ca_value(prefix + "cam1:Acquire_RBV") == "Done", timeout=5.0)
    for suffix, value in (
        ("cam1:ImageMode", 2),
        ("cam1:AcquirePeriod", 1.0 / fps),
        ("cam1:NumImages", 1),
        ("sim:FollowSensors", 0),
        ("sim:ShutterOpen", 0),
        ("sim:RotationRPM", 0.0),
        ("sim:Azimuth", 0.0),
        ("sim:MonolayerPeriod", 1.0),
        ("sim:Damping", 20.0),
        ("cam1:SizeX", DEFAULT_SIZE[1]),
        ("cam1:SizeY", DEFAULT_SIZE[0]),
    ):
        ca_write(prefix + suffix, value)
    # the image plugin reports a new size only with the next frame: publish one at the default size
    if (
        ca_value(prefix + "image1:ArraySize1_RBV"),
        ca_value(prefix + "image1:ArraySize0_RBV"),
    ) != DEFAULT_SIZE:
        counter = ca_value(prefix + "image1:ArrayCounter_RBV")
        ca_write(prefix + "cam1:ImageMode", 0)
        ca_write(prefix + "cam1:Acquire", 1)
        wait_for(lambda: ca_value(prefix + "image1:ArrayCounter_RBV") > counter, timeout=5.0)
        wait_for(lambda: ca_value(prefix + "cam1:Acquire_RBV") == "Done", timeout=5.0)
        ca_write(prefix + "cam1:ImageMode", 2)


@pytest.fixture(scope="session")
def growth_chamber() -> Iterator[IocHandle]:
    """One IOC process serving the camera (RHEED:) and sensors (GROWTH:) on the session port."""
    with running_ioc(
        "growth_chamber",
        CAMERA_PREFIX,
        args=("--sensors-prefix", SENSORS_PREFIX, "--fps", str(DEFAULT_FPS), "--update-rate", "10"),
    ) as handle:
        yield handle


@pytest.fixture(scope="session")
def camera_ioc(growth_chamber: IocHandle) -> IocHandle:
    """Handle on the session's RHEED camera IOC (prefix RHEED:, 640x480 8-bit, idle at start)."""
    return growth_chamber.view("rheed_camera", CAMERA_PREFIX)


@pytest.fixture(scope="session")
def sensors_ioc(growth_chamber: IocHandle) -> IocHandle:
    """Handle on the session's growth sensors IOC (prefix GROWTH:, 10 Hz readbacks)."""
    return growth_chamber.view("growth_sensors", SENSORS_PREFIX)


@pytest.fixture
def ioc_factory() -> Iterator[Callable[..., IocHandle]]:
    """Start extra IOCs, each on its own free CA port: ``ioc_factory("rheed_camera", fps=60, ...)``.

    Options become command-line flags (``bit_depth=12`` -> ``--bit-depth 12``). Use ``ca_env(h)``
    to reach them with caproto clients. Every IOC started is stopped at teardown.
    """
    stack = contextlib.ExitStack()

    def start(kind: str = "rheed_camera", prefix: str | None = None, **options: Any) -> IocHandle:
        port, _ = epics_env.free_port_pair()
        env = {"EPICS_CAS_SERVER_PORT": str(port), "EPICS_CA_SERVER_PORT": str(port)}
        args: list[str] = []
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif value not in (None, False):
                args += [flag, str(value)]
        os_env = dict(os.environ, **env)
        with ca_env_for_port(port):
            return stack.enter_context(running_ioc(kind, prefix, env=os_env, args=args))

    with stack:
        yield start


@contextlib.contextmanager
def ca_env_for_port(port: int) -> Iterator[None]:
    saved = os.environ.get("EPICS_CA_SERVER_PORT")
    os.environ["EPICS_CA_SERVER_PORT"] = str(port)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("EPICS_CA_SERVER_PORT", None)
        else:
            os.environ["EPICS_CA_SERVER_PORT"] = saved


@pytest.fixture
def RE() -> Iterator[Any]:
    """A fresh RunEngine per test; its event loop thread is stopped afterwards."""
    from bluesky import RunEngine

    engine = RunEngine({}, call_returns_result=False)
    try:
        yield engine
    finally:
        if engine.state != "idle":
            with contextlib.suppress(Exception):
                engine.halt()
        loop = engine.loop
        loop.call_soon_threadsafe(loop.stop)
        thread = getattr(engine, "_th", None)
        if thread is not None:
            thread.join(timeout=5)
        # the loop is left unclosed: aioca (ophyd-async) may still hold callbacks bound to it


@pytest.fixture
def run_until(RE: Any) -> Callable[..., bool]:
    """Run a plan until a condition holds, then stop it: tests driven by counts, not durations.

    ``run_until(plan, until, *subscriptions, timeout=120)`` runs ``plan`` (give it a duration far
    longer than the condition needs) and, once ``until()`` is true, calls ``RE.stop()`` from a
    watcher thread, as a user would: the plan's cleanup runs (monitors still on) and the run
    closes with exit status "success". Returns whether the condition was met (False when the plan
    ended first or ``timeout`` s passed: a generous deadline for a hung run, not a rate).
    """
    from bluesky.utils import RunEngineInterrupted

    def run(plan: Any, until: Callable[[], bool], *subscriptions: Any, timeout: float = 120.0):
        done = threading.Event()

        def watch() -> None:
            wait_for(lambda: done.is_set() or until(), timeout=timeout, interval=0.02)
            if not done.is_set():
                with contextlib.suppress(Exception):  # the plan may have ended meanwhile
                    RE.stop()

        watcher = threading.Thread(target=watch, name="run-until", daemon=True)
        watcher.start()
        try:
            RE(plan, *subscriptions)
        except RunEngineInterrupted:
            pass  # stopped by the watcher once the condition held
        finally:
            done.set()
            watcher.join(timeout + 5)
        assert RE.state == "idle"
        return until()

    return run


@pytest.fixture
def camera(camera_ioc: IocHandle) -> Iterator[Any]:
    """A connected :class:`RheedCamera` (pyepics layer) on a reset, idle camera IOC at 30 fps."""
    from atomscale_bluesky.devices import RheedCamera, connect_all

    reset_camera(camera_ioc.prefix)
    device = RheedCamera(camera_ioc.prefix, name="rheed")
    connect_all(device)
    yield device
    reset_camera(camera_ioc.prefix)


@pytest.fixture
def sensors(sensors_ioc: IocHandle) -> Any:
    """A connected :class:`GrowthSensors` (pyepics layer)."""
    from atomscale_bluesky.devices import GrowthSensors, connect_all

    device = GrowthSensors(sensors_ioc.prefix, name="growth")
    connect_all(device)
    return device
