"""Logging like bluesky's and ophyd's: module-named loggers, no handler on import, one helper
that makes INFO visible, and no API key in any line at any level."""

from __future__ import annotations

import ast
import io
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import atomscale_bluesky
from atomscale_bluesky import config_atomscale_logging
from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client import AtomscaleClient, Backoff
from atomscale_bluesky.log import LOGGER_NAME, get_handler
from atomscale_bluesky.settings import ConfigError

LOG_LINE = re.compile(r"^\[I [0-9:.]+ atomscale_bluesky\.[a-z_.]+\] .*$", re.MULTILINE)
PACKAGE = Path(atomscale_bluesky.__file__).parent
ROOT = PACKAGE.parent


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The package logger, restored (handlers, level, propagation) after the test."""
    logger = logging.getLogger(LOGGER_NAME)
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield logger
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("ATOMSCALE_", "AS_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**environ, **env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_module_logs_under_its_own_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "getLogger"):
                continue
            argument = node.args[0] if node.args else None
            named = isinstance(argument, ast.Name) and argument.id in ("__name__", "LOGGER_NAME")
            if not named:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"getLogger without __name__: {offenders}"


def test_importing_adds_no_handler_and_prints_nothing_until_configured():
    code = (
        "import logging, atomscale_bluesky.callback, atomscale_bluesky.client, "
        "atomscale_bluesky.apps.settings, atomscale_bluesky.devices, atomscale_bluesky.plans\n"
        "from atomscale_bluesky import config_atomscale_logging\n"
        "assert logging.getLogger('atomscale_bluesky').handlers == []\n"
        "assert logging.getLogger().handlers == []\n"
        "log = logging.getLogger('atomscale_bluesky.callback.finalizer')\n"
        "log.info('before: quiet')\n"
        "config_atomscale_logging()\n"
        "log.info('after: shown')\n"
        "log.debug('debug: hidden at INFO')\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert "before" not in result.stdout + result.stderr
    assert (
        "after: shown" in result.stdout and "atomscale_bluesky.callback.finalizer" in result.stdout
    )
    assert "debug" not in result.stdout


def test_the_level_comes_from_the_argument_else_the_environment():
    code = (
        "import logging\nfrom atomscale_bluesky import config_atomscale_logging\n"
        "config_atomscale_logging()\n"
        "logging.getLogger('atomscale_bluesky.client').info('info line')\n"
        "logging.getLogger('atomscale_bluesky.client').warning('warning line')\n"
    )
    result = _run(code, ATOMSCALE_LOG_LEVEL="warning")
    assert "warning line" in result.stdout and "info line" not in result.stdout
    result = _run(code.replace("config_atomscale_logging()", "config_atomscale_logging('DEBUG')"),
                  ATOMSCALE_LOG_LEVEL="warning")  # fmt: skip
    assert "info line" in result.stdout


def test_a_second_call_replaces_the_handler_and_a_file_gets_the_lines(package_logger, tmp_path):
    first = config_atomscale_logging("INFO")
    path = tmp_path / "atomscale.log"
    second = config_atomscale_logging("DEBUG", file=path)
    assert first not in package_logger.handlers and second in package_logger.handlers
    assert get_handler() is second
    logging.getLogger("atomscale_bluesky.client.uploader").debug("to the file")
    second.flush()
    assert "to the file" in path.read_text()
    with pytest.raises(ValueError, match="unknown logging level"):
        config_atomscale_logging("LOUD")


def test_a_bad_level_variable_is_a_config_error(package_logger, monkeypatch):
    monkeypatch.setenv("ATOMSCALE_LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="ATOMSCALE_LOG_LEVEL='chatty'"):
        config_atomscale_logging()


def _count_into(callback: AtomscaleCallback) -> Any:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    engine = RunEngine({})
    engine.subscribe(callback)
    (uid,) = engine(count([det], num=3))
    assert callback.flush(60)
    return next(s for s in callback.summaries if s.run_uid == uid)


def test_a_run_summary_is_visible_at_info_after_configuring(
    package_logger, local_server, tmp_path, capsys
):
    with AtomscaleClient(local_server.api_key, local_server.url, spool_dir=tmp_path / "s",
                         clock_sync=False) as client:  # fmt: skip
        with AtomscaleCallback(client) as quiet:
            _count_into(quiet)
        assert not LOG_LINE.search(capsys.readouterr().out)  # no handler of ours yet
        config_atomscale_logging("INFO")  # sys.stdout now: what capsys captures
        with AtomscaleCallback(client) as shown:
            summary = _count_into(shown)
    lines = [m.group(0) for m in LOG_LINE.finditer(capsys.readouterr().out)]
    assert any(summary.name in line for line in lines), lines


def test_the_api_key_is_in_no_log_line_at_any_level(package_logger, local_server, tmp_path, caplog):
    wrong = "planted-wrong-key-7f3a9c"
    stream = io.StringIO()
    config_atomscale_logging("DEBUG", file=stream)
    caplog.set_level(logging.DEBUG)  # every library's lines too (httpx, httpcore, bluesky)
    with AtomscaleClient(local_server.api_key, local_server.url, spool_dir=tmp_path / "s",
                         clock_sync=False) as client, AtomscaleCallback(client) as callback:  # fmt: skip
        _count_into(callback)
    with AtomscaleClient(wrong, local_server.url, spool_dir=tmp_path / "w", clock_sync=False,
                         backoff=Backoff(first=0.05, max=0.2)) as refused:  # fmt: skip
        refused.open_timeseries_stream(stream_name="refused").push("t", [1.7e9], [1.0])
        deadline = time.monotonic() + 60  # bounded wait for the refusal to be logged
        while not refused.status()["auth_paused"]:
            assert time.monotonic() < deadline, "the refused key was never reported"
            time.sleep(0.05)
    texts = [stream.getvalue(), caplog.text]
    texts += [str(record.args) for record in caplog.records]
    assert any(
        r.name.startswith("atomscale_bluesky.client") and r.levelno == logging.ERROR
        for r in caplog.records
    )  # the refusal was logged, and without the key
    assert "refused" in stream.getvalue()
    for text in texts:
        assert local_server.api_key not in text
        assert wrong not in text
