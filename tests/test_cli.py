"""The ``atomscale-bluesky`` command line, run as a real process."""

import subprocess
import sys

import pytest

from atomscale_bluesky.apps import cli


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0
    for sub in cli.SUBCOMMANDS:
        assert sub.name in result.stdout


@pytest.mark.parametrize("sub", [s.name for s in cli.SUBCOMMANDS])
def test_each_subcommand_has_its_own_help(sub):
    result = run_cli(sub, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: atomscale-bluesky" in result.stdout


def test_unknown_subcommand_fails_clearly():
    result = run_cli("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_zmq_addresses_default_to_loopback():
    from atomscale_bluesky.apps.consume import tcp_address

    assert tcp_address("5578") == "tcp://127.0.0.1:5578"
    assert tcp_address("127.0.0.1:5578") == "tcp://127.0.0.1:5578"
    assert tcp_address("tcp://127.0.0.1:1") == "tcp://127.0.0.1:1"
