"""The test session runs Channel Access on loopback only, on free non-default ports."""

import os

from atomscale_bluesky.sim import epics_env


def test_session_uses_loopback_on_non_default_ports():
    env = epics_env.current()
    assert env is not None
    assert env.server_port not in epics_env.DEFAULT_CA_PORTS
    assert env.repeater_port not in epics_env.DEFAULT_CA_PORTS
    assert os.environ["EPICS_CA_ADDR_LIST"] == "127.0.0.1"
    assert os.environ["EPICS_CA_AUTO_ADDR_LIST"] == "NO"
    assert os.environ["EPICS_CAS_INTF_ADDR_LIST"] == "127.0.0.1"
    assert os.environ["EPICS_CAS_BEACON_ADDR_LIST"] == "127.0.0.1"


def test_free_port_pairs_differ_and_are_bindable():
    a = epics_env.free_port_pair()
    assert a[1] == a[0] + 1
    assert epics_env._port_is_free(a[0]) and epics_env._port_is_free(a[1])
