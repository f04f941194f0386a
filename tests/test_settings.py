"""One settings model: every variable, the yes/no rule, aliases, and constructor > environment >
default for the callback built directly, ``make_callback``, the client and each command."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from atomscale_bluesky.allocator import USER_SETTINGS
from atomscale_bluesky.apps.cli import build_parser
from atomscale_bluesky.apps.settings import callback_from_args, make_callback, settings_from_args
from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.client.config import (
    DEFAULT_ENDPOINT,
    clock_sync_enabled,
    insecure_http_allowed,
    resolve_api_key,
    resolve_endpoint,
)
from atomscale_bluesky.client.secret import ApiKey
from atomscale_bluesky.settings import (
    VARIABLES,
    AtomscaleSettings,
    ConfigError,
    load_settings,
    variables_table,
    with_env_file,
)

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [v for v in VARIABLES if v.kind == "flag"]
TRUE_SPELLINGS = ["1", "true", "TRUE", "True", "yes", "YES", "on", "On", " on "]
FALSE_SPELLINGS = ["0", "false", "FALSE", "no", "No", "off", "OFF", " 0 "]
SPELLINGS = [(text, True) for text in TRUE_SPELLINGS] + [(text, False) for text in FALSE_SPELLINGS]
INVALID_SPELLINGS = ["maybe", "2", "enable", "y", "-1"]

# one example per variable that is not a yes/no value: text -> the parsed setting
EXAMPLES: dict[str, tuple[str, Any]] = {
    "ATOMSCALE_API_KEY": (" k-123 ", ApiKey(" k-123 ")),
    "ATOMSCALE_API_KEY_FILE": ("/run/secrets/key", Path("/run/secrets/key")),
    "ATOMSCALE_ENDPOINT": (" https://a.example/api ", "https://a.example/api"),
    "ATOMSCALE_SPOOL_DIR": ("/var/spool/as", Path("/var/spool/as")),
    "ATOMSCALE_SAMPLE": (" GaAs-42 ", "GaAs-42"),
    "ATOMSCALE_PROJECT_ID": ("p-1", "p-1"),
    "ATOMSCALE_TAGS": ("mbe, ,gaas,", ("mbe", "gaas")),
    "ATOMSCALE_SAMPLE_KEYS": ("sample.barcode,sample_name", ("sample.barcode", "sample_name")),
    "ATOMSCALE_PROJECT_KEYS": ("atomscale_project", ("atomscale_project",)),
    "ATOMSCALE_TAG_KEYS": ("beamline,cycle", ("beamline", "cycle")),
    "ATOMSCALE_INCLUDE": ("rheed_*,growth_*", ("rheed_*", "growth_*")),
    "ATOMSCALE_EXCLUDE": ("rheed_cam_acquire", ("rheed_cam_acquire",)),
    "ATOMSCALE_RENAME": ("a=A, b = B", {"a": "A", "b": "B"}),
    "ATOMSCALE_ROTATION_KEY": ("growth_rotation_rpm", "growth_rotation_rpm"),
    "ATOMSCALE_CAMERAS": ("rheed, side_cam*", ("rheed", "side_cam*")),
    "ATOMSCALE_DATA_TYPE": (" UInt16 ", "UInt16"),
    "ATOMSCALE_ROOT_MAP": ("/epics/data=/mnt/ioc", {"/epics/data": "/mnt/ioc"}),
    "ATOMSCALE_IOC_CLOCK": (" Host ", "host"),
    "ATOMSCALE_THREAD_NICE": (" 5 ", 5),
    "ATOMSCALE_PROGRESS": (" Lines ", "lines"),
    "ATOMSCALE_LOG_LEVEL": ("debug", "DEBUG"),
    "ATOMSCALE_ENV_FILE": ("/etc/atomscale.env", Path("/etc/atomscale.env")),
    "ATOMSCALE_LOCAL_API_KEYS": ("k1, k2", ("k1", "k2")),
    "ATOMSCALE_LOCAL_DATA_DIR": ("/data/local", Path("/data/local")),
    "ATOMSCALE_CAMERA_PREFIX": ("XF:RHEED{Cam}", "XF:RHEED{Cam}"),
    "ATOMSCALE_SENSORS_PREFIX": ("XF:MBE{", "XF:MBE{"),
    "ATOMSCALE_CATALOG_DIR": ("/data/catalog", Path("/data/catalog")),
    "ATOMSCALE_MD_DIR": ("/data/md", Path("/data/md")),
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Atomscale variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(("ATOMSCALE_", "AS_")):
            monkeypatch.delenv(name)
    return monkeypatch


# ---- every variable ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", FLAGS, ids=lambda v: v.name)
@pytest.mark.parametrize(("text", "expected"), SPELLINGS)
def test_every_yes_no_variable_reads_every_spelling(variable, text, expected):
    settings = load_settings({variable.name: text})
    assert getattr(settings, variable.attribute) is expected
    assert settings.source(variable.attribute) == variable.name


@pytest.mark.parametrize("variable", FLAGS, ids=lambda v: v.name)
@pytest.mark.parametrize("text", INVALID_SPELLINGS)
def test_an_invalid_yes_no_value_is_an_error_naming_the_variable(variable, text):
    with pytest.raises(ConfigError, match=rf"^{variable.name}='{re.escape(text)}' is not a yes/no"):
        load_settings({variable.name: text})


@pytest.mark.parametrize("variable", FLAGS, ids=lambda v: v.name)
def test_an_empty_yes_no_value_means_unset(variable):
    default = getattr(AtomscaleSettings(), variable.attribute)
    assert getattr(load_settings({variable.name: "  "}), variable.attribute) is default


def test_every_other_variable_has_an_example_here():
    assert set(EXAMPLES) == {v.name for v in VARIABLES if v.kind != "flag"}


@pytest.mark.parametrize(
    "variable", [v for v in VARIABLES if v.kind != "flag"], ids=lambda v: v.name
)
def test_every_other_variable_is_read(variable):
    text, expected = EXAMPLES[variable.name]
    settings = load_settings({variable.name: text})
    value = getattr(settings, variable.attribute)
    assert value == expected
    assert settings.source(variable.attribute) == variable.name
    assert getattr(load_settings({}), variable.attribute) == getattr(
        AtomscaleSettings(), variable.attribute
    )


@pytest.mark.parametrize(
    ("alias", "primary", "attribute", "text", "expected"),
    [
        ("AS_API_KEY", "ATOMSCALE_API_KEY", "api_key", "k-as", ApiKey("k-as")),
        ("AS_API_ENDPOINT", "ATOMSCALE_ENDPOINT", "endpoint", "https://as.example", "https://as.example"),
        ("ATOMSCALE_BLUESKY_SPOOL_DIR", "ATOMSCALE_SPOOL_DIR", "spool_dir", "/s", Path("/s")),
    ],
)  # fmt: skip
def test_aliases_are_read_and_the_atomscale_name_wins(alias, primary, attribute, text, expected):
    alone = load_settings({alias: text})
    assert getattr(alone, attribute) == expected and alone.source(attribute) == alias
    both = load_settings({alias: text, primary: "/other" if attribute == "spool_dir" else "x:"})
    assert getattr(both, attribute) != expected and both.source(attribute) == primary


def test_bad_values_are_errors_naming_the_variable():
    with pytest.raises(ConfigError, match="ATOMSCALE_RENAME: each item must look like"):
        load_settings({"ATOMSCALE_RENAME": "no-equals-sign"})
    with pytest.raises(ConfigError, match="ATOMSCALE_LOG_LEVEL='loud' is not a logging level"):
        load_settings({"ATOMSCALE_LOG_LEVEL": "loud"})
    for text in ("20", "-1", "1.5", "low", "\u00b2"):
        with pytest.raises(ConfigError, match="ATOMSCALE_THREAD_NICE=.* is not a nice increment"):
            load_settings({"ATOMSCALE_THREAD_NICE": text})


def test_the_key_is_never_shown_by_the_settings():
    settings = load_settings({"ATOMSCALE_API_KEY": "k-secret-1", "ATOMSCALE_LOCAL_API_KEYS": "k-2"})
    for text in (repr(settings), str(settings), f"{settings}", repr(settings.sources)):
        assert "k-secret-1" not in text and "k-2" not in text
    assert settings.api_key is not None and settings.api_key.reveal() == "k-secret-1"


# ---- each reader follows the one rule (the three bugs of issue 15 included) ------------------


def _strict_of_a_callback_built_directly() -> bool:
    callback = AtomscaleCallback(endpoint="http://127.0.0.1:9")
    try:
        return callback.options.strict
    finally:
        callback.close()


def _print_summary_of_a_callback_built_directly() -> bool:
    callback = AtomscaleCallback(endpoint="http://127.0.0.1:9")
    try:
        return callback.options.print_summary
    finally:
        callback.close()


def test_progress_reads_yes_no_and_the_modes(clean_env):
    for text, expected in (("on", "bar"), ("off", None), ("log", "log"), ("LINES", "lines")):
        clean_env.setenv("ATOMSCALE_PROGRESS", text)
        callback = AtomscaleCallback(endpoint="http://127.0.0.1:9")
        try:
            assert callback.options.progress == expected, text
        finally:
            callback.close()
    clean_env.setenv("ATOMSCALE_PROGRESS", "sometimes")
    with pytest.raises(ConfigError, match="ATOMSCALE_PROGRESS='sometimes' is not a progress mode"):
        load_settings()


def _tune_malloc() -> bool:
    """tune_allocator's answer in a child process: it would tune this test process for good."""
    code = "from atomscale_bluesky.allocator import tune_allocator; print(tune_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"True": True, "False": False}[out.stdout.strip()]


READERS = {
    "ATOMSCALE_ALLOW_INSECURE_HTTP": lambda: insecure_http_allowed(None),
    "ATOMSCALE_SKIP_CLOCK_SYNC": lambda: not clock_sync_enabled(None),
    "ATOMSCALE_STRICT": _strict_of_a_callback_built_directly,
    "ATOMSCALE_DISABLE": lambda: load_settings().disable,  # what the profile reads
    "ATOMSCALE_PRINT_SUMMARY": lambda: _print_summary_of_a_callback_built_directly(),
    "ATOMSCALE_TUNE_MALLOC": _tune_malloc,
}


def test_every_yes_no_variable_has_a_reader_here():
    assert set(READERS) == {v.name for v in FLAGS}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator knob")
@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize(("text", "expected"), SPELLINGS)
def test_each_reader_follows_the_one_rule(clean_env, name, text, expected):
    for variable in (*USER_SETTINGS, "GLIBC_TUNABLES"):  # the user's allocator settings win
        clean_env.delenv(variable, raising=False)
    clean_env.setenv(name, text)
    assert READERS[name]() is expected


# ---- constructor > environment > default ------------------------------------------------------


def test_the_callback_built_directly_reads_the_environment_and_its_arguments_win(clean_env):
    clean_env.setenv("ATOMSCALE_INCLUDE", "env_*")
    clean_env.setenv("ATOMSCALE_EXCLUDE", "env_x")
    clean_env.setenv("ATOMSCALE_RENAME", "env_a=A")
    clean_env.setenv("ATOMSCALE_ROTATION_KEY", "env_rpm")
    clean_env.setenv("ATOMSCALE_STRICT", "on")
    clean_env.setenv("ATOMSCALE_SAMPLE", "env-sample")
    clean_env.setenv("ATOMSCALE_TAG_KEYS", "beamline")
    with AtomscaleCallback(endpoint="http://127.0.0.1:9") as from_env:
        routing = from_env.options.routing
        assert routing.include == ("env_*",) and routing.exclude == ("env_x",)
        assert routing.rename == {"env_a": "A"} and routing.rotation_key == "env_rpm"
        assert from_env.options.strict is True
        assert from_env.options.run_defaults.sample == "env-sample"
        assert from_env.options.overrides.sample is None  # the run's own sample wins over it
        assert from_env.options.metadata_keys.tag_keys == ("beamline",)
    with AtomscaleCallback(
        endpoint="http://127.0.0.1:9",
        include="arg_*",
        exclude=[],
        rename={"b": "B"},
        rotation_key="arg_rpm",
        strict=False,
        sample="arg-sample",
    ) as from_args:
        routing = from_args.options.routing
        assert routing.include == ("arg_*",) and routing.exclude == ()
        assert routing.rename == {"b": "B"} and routing.rotation_key == "arg_rpm"
        assert from_args.options.strict is False
        assert from_args.options.overrides.sample == "arg-sample"
    for name in list(os.environ):
        if name.startswith("ATOMSCALE_"):
            clean_env.delenv(name)
    with AtomscaleCallback(endpoint="http://127.0.0.1:9") as defaults:
        assert defaults.options.routing.include is None and defaults.options.strict is False
        assert defaults.options.run_defaults.sample is None
        assert defaults.options.metadata_keys.tag_keys == ("proposal", "data_session", "cycle")


def _count_run(callback: Any, **md: Any) -> Any:
    """A real RunEngine counting a stock ophyd.sim detector three times into ``callback``."""
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    engine = RunEngine({})
    engine.subscribe(callback)
    (uid,) = engine(count([det], num=3, md=md))
    assert callback.flush(60)
    (summary,) = [s for s in callback.summaries if s.run_uid == uid]
    assert summary.errors == 0, summary.error_messages
    return summary


def _stored(server: Any, summary: Any) -> dict[str, Any]:
    data_id = summary.timeseries.data_id
    assert data_id, summary.text()
    return server.reader.timeseries(data_id)


def test_the_callback_built_directly_streams_where_the_environment_says(
    clean_env, local_server, tmp_path
):
    clean_env.setenv("ATOMSCALE_ENDPOINT", local_server.url)
    clean_env.setenv("AS_API_KEY", local_server.api_key)  # the official SDK's name
    clean_env.setenv("ATOMSCALE_SPOOL_DIR", str(tmp_path / "spool"))
    clean_env.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "yes")
    clean_env.setenv("ATOMSCALE_PROJECT_ID", "env-project")
    with AtomscaleCallback() as callback:
        summary = _count_run(callback)
        assert callback.client.endpoint == local_server.url
        assert callback.client.status()["dir"] == str(tmp_path / "spool")
    assert _stored(local_server, summary)["project_id"] == "env-project"


def test_the_constructor_endpoint_wins_over_the_environment(clean_env, local_server, tmp_path):
    clean_env.setenv("ATOMSCALE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    clean_env.setenv("ATOMSCALE_SPOOL_DIR", str(tmp_path / "spool"))
    clean_env.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    with AtomscaleCallback(api_key=local_server.api_key, endpoint=local_server.url) as callback:
        summary = _count_run(callback)
    assert _stored(local_server, summary)["name"] == summary.timeseries.name


def test_make_callback_precedence(clean_env, local_server, tmp_path):
    clean_env.setenv("ATOMSCALE_ENDPOINT", local_server.url)
    clean_env.setenv("ATOMSCALE_API_KEY", local_server.api_key)
    clean_env.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "true")
    clean_env.setenv("ATOMSCALE_STRICT", "yes")
    clean_env.setenv("ATOMSCALE_SAMPLE", "env-sample")
    with make_callback(spool_dir=tmp_path / "a") as from_env:
        assert from_env.options.strict is True
        summary = _count_run(from_env)
        assert from_env.client.status()["dir"] == str(tmp_path / "a")
    assert "env-sample" in str(_stored(local_server, summary)["sample"])
    # an argument wins over its variable; given settings replace the environment
    with make_callback(strict=False, sample="arg-sample", spool_dir=tmp_path / "b") as from_args:
        assert from_args.options.strict is False
        summary = _count_run(from_args, sample_name="run-sample")
    assert "arg-sample" in str(_stored(local_server, summary)["sample"])
    given = load_settings(
        {"ATOMSCALE_ENDPOINT": local_server.url, "ATOMSCALE_API_KEY": local_server.api_key,
         "ATOMSCALE_SKIP_CLOCK_SYNC": "on", "ATOMSCALE_SPOOL_DIR": str(tmp_path / "c")}
    )  # fmt: skip
    clean_env.setenv("ATOMSCALE_ENDPOINT", "http://127.0.0.1:9")
    with make_callback(given) as from_settings:
        assert from_settings.options.strict is False  # the given settings, not the environment
        summary = _count_run(from_settings)
    assert _stored(local_server, summary)["name"] == summary.timeseries.name


def test_the_client_precedence(clean_env, tmp_path):
    clean_env.setenv("ATOMSCALE_ENDPOINT", "http://127.0.0.1:7/")
    assert resolve_endpoint(None) == "http://127.0.0.1:7"
    assert resolve_endpoint("https://arg.example") == "https://arg.example"
    clean_env.delenv("ATOMSCALE_ENDPOINT")
    assert resolve_endpoint(None) == DEFAULT_ENDPOINT
    key_file = tmp_path / "key"
    key_file.write_text("k-file\n")
    clean_env.setenv("ATOMSCALE_API_KEY_FILE", str(key_file))
    assert resolve_api_key(None).reveal() == "k-file"
    clean_env.setenv("AS_API_KEY", "k-as")
    assert resolve_api_key(None).reveal() == "k-as"
    assert resolve_api_key("k-arg").reveal() == "k-arg"
    with pytest.raises(ConfigError, match="no Atomscale API key"):
        resolve_api_key(None, load_settings({}))


# ---- the commands -----------------------------------------------------------------------------


def _args(*argv: str) -> Any:
    return build_parser(list(argv)).parse_args(list(argv))


@pytest.mark.parametrize(
    "command",
    [["consume"], ["replay", "--catalog", "http://127.0.0.1:9", "-1"]],
    ids=lambda c: c[0],
)
def test_consume_and_replay_options_win_over_the_environment(clean_env, command):
    clean_env.setenv("ATOMSCALE_ENDPOINT", "http://127.0.0.1:8")
    clean_env.setenv("ATOMSCALE_STRICT", "on")
    clean_env.setenv("ATOMSCALE_EXCLUDE", "env_x")
    clean_env.setenv("ATOMSCALE_SAMPLE", "env-sample")
    from_env = settings_from_args(_args(*command))
    assert from_env.endpoint == "http://127.0.0.1:8" and from_env.strict is True
    args = _args(*command, "--endpoint", "http://127.0.0.1:9", "--no-strict", "--exclude", "a",
                 "--sample", "opt-sample", "--rename", "k=K")  # fmt: skip
    settings = settings_from_args(args)
    assert settings.endpoint == "http://127.0.0.1:9" and settings.strict is False
    with callback_from_args(args) as callback:
        assert callback.options.strict is False
        assert callback.options.routing.exclude == ("a",)
        assert callback.options.routing.rename == {"k": "K"}
        assert callback.options.overrides.sample == "opt-sample"
        assert callback.options.run_defaults.sample == "env-sample"
    with callback_from_args(_args(*command)) as callback:
        assert callback.options.strict is True and callback.options.routing.exclude == ("env_x",)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "atomscale_bluesky.apps.cli", *args],
        env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATOMSCALE_", "AS_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def test_drain_option_wins_over_the_environment(tmp_path):
    env = {**_base_env(), "ATOMSCALE_ENDPOINT": "http://127.0.0.1:8", "ATOMSCALE_API_KEY": "k",
           "ATOMSCALE_SKIP_CLOCK_SYNC": "yes", "ATOMSCALE_SPOOL_DIR": str(tmp_path / "env")}  # fmt: skip
    for extra, endpoint, spool in (
        ([], "http://127.0.0.1:8", tmp_path / "env"),
        (["--endpoint", "http://127.0.0.1:9", "--spool-dir", str(tmp_path / "opt")],
         "http://127.0.0.1:9", tmp_path / "opt"),
    ):  # fmt: skip
        proc = _cli("drain", "--timeout", "5", *extra, env=env, cwd=tmp_path)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert f"drain: spool {spool} -> {endpoint}" in out


def test_a_bad_yes_no_value_stops_a_command_with_the_variable_named(tmp_path):
    env = {**_base_env(), "ATOMSCALE_SKIP_CLOCK_SYNC": "sometimes", "ATOMSCALE_API_KEY": "k"}
    proc = _cli("drain", "--endpoint", "http://127.0.0.1:9", env=env, cwd=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "ATOMSCALE_SKIP_CLOCK_SYNC='sometimes' is not a yes/no value" in err
    assert "Traceback" not in err


def _serve_lines(args: list[str], env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """The first two lines ``serve`` prints (its URL, its data directory and key count)."""
    proc = _cli("serve", "--port", "0", *args, env=env, cwd=cwd)
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline(), proc.stdout.readline()
        assert first.startswith("Atomscale local server on "), (
            proc.stderr.read() if proc.stderr else ""
        )
        return first.split(" on ", 1)[1].strip(), second
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


def test_serve_reads_a_env_file_under_the_environment_and_its_options(tmp_path):
    from atomscale_bluesky.server.read_client import LocalServerClient, LocalServerError

    env_file = tmp_path / "service.env"
    env_file.write_text(
        "# the local server's settings\n"
        "ATOMSCALE_LOCAL_API_KEYS=k-from-file\n"
        f"ATOMSCALE_LOCAL_DATA_DIR={tmp_path / 'file-data'}\n"
        "UNRELATED=ignored\n"
    )
    env = _base_env()
    proc = _cli("serve", "--port", "0", "--env-file", str(env_file), env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ", 1)[1].strip()
        second = proc.stdout.readline()
        assert f"data in {tmp_path / 'file-data'}; API key(s): 1 configured" in second
        with LocalServerClient(url, "k-from-file") as reader:
            deadline = time.monotonic() + 60  # bounded wait for uvicorn to serve its socket
            while True:
                try:
                    reader.health()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and proc.poll() is None
                    time.sleep(0.05)
            assert reader.streams() == []  # the key from the file is accepted
            with LocalServerClient(url, "k-other") as other, pytest.raises(LocalServerError):
                other.streams()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    # the environment wins over the file, the option over both; ./.env is read by default
    (tmp_path / ".env").write_text(env_file.read_text())
    env["ATOMSCALE_LOCAL_DATA_DIR"] = str(tmp_path / "env-data")
    _, second = _serve_lines([], env, tmp_path)
    assert f"data in {tmp_path / 'env-data'};" in second
    _, second = _serve_lines(["--data-dir", str(tmp_path / "opt-data")], env, tmp_path)
    assert f"data in {tmp_path / 'opt-data'};" in second


def test_with_env_file_keeps_the_environment_on_top(tmp_path):
    env_file = tmp_path / "x.env"
    env_file.write_text(
        'export ATOMSCALE_SAMPLE="file sample"\nATOMSCALE_API_KEY=k-file\nATOMSCALE_STRICT=on\n'
        "PATH=/nowhere\n"
    )
    merged = with_env_file(env_file, {"ATOMSCALE_STRICT": "off", "AS_API_KEY": "k-env"})
    settings = load_settings(merged)
    assert settings.sample == "file sample"
    assert settings.strict is False  # the environment wins
    assert settings.api_key == ApiKey("k-env")  # even through the alias
    assert "PATH" not in merged
    with pytest.raises(ConfigError, match="does not exist"):
        with_env_file(tmp_path / "missing.env", {})
    assert with_env_file(None, {"ATOMSCALE_ENV_FILE": str(env_file)})["ATOMSCALE_SAMPLE"] == (
        "file sample"
    )


# ---- the docs ---------------------------------------------------------------------------------


def test_the_docs_table_is_the_settings_model():
    text = (ROOT / "docs" / "configuration.md").read_text()
    start, end = "<!-- variables: start -->\n", "<!-- variables: end -->"
    assert start in text and end in text, "docs/configuration.md lost its table markers"
    table = text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    assert table == variables_table(), (
        "docs/configuration.md is out of date: paste `python -m atomscale_bluesky.settings`"
    )


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_line(path: Path, text: str, timeout: float) -> bool:
    """Bounded wait for a line a child process logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def stop(process: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> int:
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)


def test_consume_reads_its_settings_and_key_from_a_env_file(tmp_path, local_server):
    """The consume service with nothing in its environment but ``--env-file``: the key, the
    endpoint, the spool and the default tags all come from the file; a run streams through."""
    pytest.importorskip("zmq")
    workflows = ROOT / "tests" / "workflows"
    env_file = tmp_path / "consume.env"
    env_file.write_text(
        f"ATOMSCALE_API_KEY={local_server.api_key}\n"
        f"ATOMSCALE_ENDPOINT={local_server.url}\n"
        f"ATOMSCALE_SPOOL_DIR={tmp_path / 'spool'}\n"
        "ATOMSCALE_SKIP_CLOCK_SYNC=yes\n"
        "ATOMSCALE_TAGS=from-env-file\n"
    )
    env = _base_env()
    in_port, out_port = free_tcp_port(), free_tcp_port()
    proxy = _cli("zmq-proxy", "--in-address", f"127.0.0.1:{in_port}",
                 "--out-address", f"127.0.0.1:{out_port}", env=env, cwd=tmp_path)  # fmt: skip
    consumer_log = tmp_path / "consumer.log"
    with open(consumer_log, "wb") as log:
        consumer = subprocess.Popen(
            [sys.executable, "-m", "atomscale_bluesky.apps.cli", "consume",
             "--zmq", f"127.0.0.1:{out_port}", "--env-file", str(env_file)],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        assert wait_for_line(consumer_log, "consuming documents from", 60), consumer_log.read_text()
        time.sleep(1.0)  # 0MQ subscriptions settle (slow joiner) before the publisher starts
        publisher = subprocess.run(
            [sys.executable, str(workflows / "publisher_process.py"),
             f"tcp://127.0.0.1:{in_port}", str(tmp_path / "truth.npz"), "30"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert publisher.returncode == 0, publisher.stderr
        assert wait_for_line(consumer_log, "Atomscale run", 60), consumer_log.read_text()
    finally:
        consumer_rc = stop(consumer)
        stop(proxy, signal.SIGKILL)
    log_text = consumer_log.read_text()
    assert consumer_rc == 0, log_text
    assert f"settings read from {env_file}" in log_text
    assert local_server.api_key not in log_text
    assert [t["name"] for t in local_server.reader.tags()] == ["from-env-file"]
    assert (tmp_path / "spool").is_dir()


def test_explicit_values_win_and_take_the_settings_types():
    settings = load_settings(
        {"ATOMSCALE_SPOOL_DIR": "/env", "ATOMSCALE_TAGS": "env"},
        spool_dir="/explicit",
        tags=["a", "b"],
        api_key="k-explicit",
        sample=None,  # None never hides the environment
    )
    assert settings.spool_dir == Path("/explicit") and settings.tags == ("a", "b")
    assert settings.api_key == ApiKey("k-explicit") and "k-explicit" not in repr(settings)
    assert load_settings({"ATOMSCALE_SAMPLE": "env"}, sample=None).sample == "env"
    with pytest.raises(TypeError, match="unknown settings: colour"):
        load_settings({}, colour="red")


def test_an_unknown_atomscale_variable_is_a_warning_with_a_suggestion():
    with pytest.warns(
        UserWarning,
        match="ATOMSCALE_PROJECT is not an Atomscale setting; did you mean ATOMSCALE_PROJECT_ID",
    ):
        settings = load_settings({"ATOMSCALE_PROJECT": "p-1"})
    assert settings.project_id is None
