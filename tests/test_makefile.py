"""The Makefile's install targets, as make expands them (``make -n``: printed, not run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def planned(target: str, venv: Path) -> list[str]:
    """The shell lines ``make`` would run to build ``target`` in a venv that does not exist."""
    done = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", f"VENV={venv}", f"{venv}/{target}"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.splitlines()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize(
    ("target", "spec"),
    [(".installed-demo", "'.[sim,server,demo]'"), (".installed-dev", "'.[dev]'")],
)
def test_install_targets_name_every_extra(tmp_path: Path, target: str, spec: str) -> None:
    """Each install line is a complete shell command that installs the whole extras spec."""
    lines = [line for line in planned(target, tmp_path / "v") if "install -q" in line]
    installs = [line for line in lines if "-e " in line]
    assert installs, lines
    for line in installs:
        assert line.count(f"-e {spec}") == 2, line  # with uv, and with pip as the fallback
        assert line.count("{") == line.count("}"), line
