"""Loopback-only Channel Access settings on free, non-default ports, so parallel sessions never collide."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_CA_PORTS = (5064, 5065)


def _port_is_free(port: int) -> bool:
    """True when ``port`` can be bound on 127.0.0.1 for both TCP and UDP."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_pair() -> tuple[int, int]:
    """Two consecutive ports free for TCP and UDP on loopback, never the CA defaults."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port in DEFAULT_CA_PORTS or port + 1 in DEFAULT_CA_PORTS or port + 1 > 65535:
            continue
        if _port_is_free(port) and _port_is_free(port + 1):
            return port, port + 1
    raise RuntimeError("could not find two free consecutive loopback ports for Channel Access")


@dataclass(frozen=True)
class EpicsEnv:
    """The CA server and repeater ports of one session; ``variables`` is the environment block."""

    server_port: int
    repeater_port: int

    @property
    def variables(self) -> dict[str, str]:
        server, repeater = str(self.server_port), str(self.repeater_port)
        return {
            "EPICS_CA_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CAS_INTF_ADDR_LIST": "127.0.0.1",
            "EPICS_CA_SERVER_PORT": server,
            "EPICS_CAS_SERVER_PORT": server,
            "EPICS_CA_REPEATER_PORT": repeater,
            "EPICS_CAS_BEACON_PORT": repeater,
            # without these two, caproto sends beacons to 255.255.255.255
            "EPICS_CAS_BEACON_ADDR_LIST": "127.0.0.1",
            "EPICS_CAS_AUTO_BEACON_ADDR_LIST": "NO",
            "EPICS_CA_MAX_ARRAY_BYTES": "100000000",
        }


def loopback_env(server_port: int | None = None, repeater_port: int | None = None) -> EpicsEnv:
    """An :class:`EpicsEnv` on the given ports, or on a free non-default pair."""
    if server_port is None or repeater_port is None:
        server_port, repeater_port = free_port_pair()
    return EpicsEnv(server_port=server_port, repeater_port=repeater_port)


def apply(env: EpicsEnv, environ: Mapping[str, str] | None = None) -> None:
    """Write ``env`` into ``os.environ`` (before pyepics or caproto create a CA context)."""
    target = os.environ if environ is None else environ
    target.update(env.variables)  # type: ignore[attr-defined]


def current() -> EpicsEnv | None:
    """The loopback env already in ``os.environ``, if one was applied."""
    try:
        return EpicsEnv(
            int(os.environ["EPICS_CA_SERVER_PORT"]), int(os.environ["EPICS_CA_REPEATER_PORT"])
        )
    except (KeyError, ValueError):
        return None
