"""Every setting read from the environment, in one model: one prefix, one boolean rule, one order.

Each variable is declared once in :data:`VARIABLES` (its name, aliases, type, default, meaning and
who reads it); :class:`AtomscaleSettings` is the parsed result and :func:`load_settings` builds it
from a mapping (``os.environ`` by default). Every reader (the callback built directly,
``make_callback``, the client, the commands, the local server, the profile) goes through here, so
the order is the same everywhere: an explicit argument or command-line option, then the
environment, then (for the services) a ``.env`` file, then the default.

* One prefix, ``ATOMSCALE_``; the official SDK's ``AS_API_KEY`` and ``AS_API_ENDPOINT`` are read
  as aliases (the ``ATOMSCALE_`` name wins when both are set).
* One boolean rule: ``1``/``true``/``yes``/``on`` and ``0``/``false``/``no``/``off``, any case;
  empty means unset; anything else is a :class:`ConfigError` naming the variable.
* The API key is held as an :class:`~atomscale_bluesky.client.secret.ApiKey` from the moment it is
  read, so no repr, log line or error shows it.

Why not pydantic-settings: the core install (the callback and client a beamline's conda
environment gets) is numpy, httpx, zstandard, crc32c and event-model; pydantic-settings would add
pydantic and its compiled core to it for two dozen string variables whose parsing (a yes/no rule,
comma lists, ``key=value`` pairs) is a few lines here, and its boolean rule (``t``, ``y`` ...)
and error texts (which echo the offending value) differ from what we promise for secrets.
``.env`` files are read with python-dotenv (in the ``server`` and ``zmq`` extras, where the
services live), imported only when a file is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atomscale_bluesky.thread_priority import MAX_NICE

if TYPE_CHECKING:
    from atomscale_bluesky.client.secret import ApiKey

__all__ = [
    "ALIAS_PREFIXES",
    "PREFIX",
    "VARIABLES",
    "AtomscaleSettings",
    "ConfigError",
    "Variable",
    "load_settings",
    "parse_flag",
    "parse_pairs",
    "variables_table",
    "with_env_file",
]

log = logging.getLogger(__name__)

PREFIX = "ATOMSCALE_"
ALIAS_PREFIXES = ("AS_",)  # the official Atomscale SDK's variables
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
IOC_CLOCKS = ("own", "host")
PROGRESS_WORDS = ("bar", "lines", "log")


class ConfigError(ValueError):
    """A setting is missing or unusable; the message names the setting to change."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: the setting it fills, how its text is read, what it means."""

    name: str
    attribute: str
    kind: str  # a key of PARSERS: how the text is read (flag, list, path, nice ...)
    default: str  # as the docs show it
    meaning: str
    readers: str  # who reads it: callback, client, commands, server, profile
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


VARIABLES: tuple[Variable, ...] = (
    # the client: where to, with which key
    Variable("ATOMSCALE_API_KEY", "api_key", "secret", "unset", "the Atomscale API key", "client", ("AS_API_KEY",)),
    Variable("ATOMSCALE_API_KEY_FILE", "api_key_file", "path", "unset", "a file holding the API key (one trailing newline removed), read when no key variable is set: for systemd credentials and Kubernetes secrets", "client"),
    Variable("ATOMSCALE_ENDPOINT", "endpoint", "text", "`https://api.atomscale.ai`", "the Atomscale API URL (a local server's URL for tests)", "client", ("AS_API_ENDPOINT",)),
    Variable("ATOMSCALE_ALLOW_INSECURE_HTTP", "allow_insecure_http", "flag", "`false`", "allow a plain `http://` endpoint on another host (the key then travels in clear)", "client"),
    Variable("ATOMSCALE_SKIP_CLOCK_SYNC", "skip_clock_sync", "flag", "`false`", "do not measure this computer's clock against the endpoint's", "client"),
    Variable("ATOMSCALE_THREAD_NICE", "thread_nice", "nice", "`0`", "how many steps of nice (0 to 19) below the process the callback's worker and the client's compression and upload threads run (Linux): the RunEngine's thread then gets a core first, and frames coming faster than they can be compressed are shed instead of slowing the run", "callback, client"),
    Variable("ATOMSCALE_SPOOL_DIR", "spool_dir", "path", "`~/.cache/atomscale-bluesky/spool`", "where chunks wait for upload", "client", ("ATOMSCALE_BLUESKY_SPOOL_DIR",)),
    # the callback: what every run is linked to when it does not say, and what it streams
    Variable("ATOMSCALE_SAMPLE", "sample", "text", "unset", "physical sample (name or UUID) of runs whose metadata names none", "callback"),
    Variable("ATOMSCALE_PROJECT_ID", "project_id", "text", "unset", "Atomscale project of runs whose metadata names none", "callback"),
    Variable("ATOMSCALE_TAGS", "tags", "list", "unset", "comma-separated tags of runs whose metadata gives none", "callback"),
    Variable("ATOMSCALE_SAMPLE_KEYS", "sample_keys", "list", "`sample_name,sample,physical_sample`", "start-document keys giving the sample, first present wins (`a.b` looks inside a mapping)", "callback"),
    Variable("ATOMSCALE_PROJECT_KEYS", "project_keys", "list", "`project_id`", "start-document keys giving the Atomscale project, first present wins", "callback"),
    Variable("ATOMSCALE_TAG_KEYS", "tag_keys", "list", "`proposal,data_session,cycle`", "start-document keys whose values become `key:value` tags", "callback"),
    Variable("ATOMSCALE_INCLUDE", "include", "list", "unset (all)", "comma-separated data-key patterns to stream", "callback"),
    Variable("ATOMSCALE_EXCLUDE", "exclude", "list", "unset", "comma-separated data-key patterns never to stream", "callback"),
    Variable("ATOMSCALE_RENAME", "rename", "pairs", "unset", "`data_key=channel,...` channel names", "callback"),
    Variable("ATOMSCALE_ROTATION_KEY", "rotation_key", "text", "unset", "data key of the substrate rotation speed (rpm)", "callback"),
    Variable("ATOMSCALE_STRICT", "strict", "flag", "`false`", "abort a run (on its next document) when streaming fails", "callback"),
    Variable("ATOMSCALE_CAMERAS", "cameras", "list", "unset (every areaDetector-like image)", "comma-separated RHEED camera data keys, device names or globs; only their arrays stream", "callback"),
    Variable("ATOMSCALE_DATA_TYPE", "data_type", "text", "unset", "the cameras' pixel type (areaDetector `DataType` such as `UInt16`, or a numpy type)", "callback"),
    Variable("ATOMSCALE_ROOT_MAP", "root_map", "pairs", "unset", "`ioc_root=local_root,...`: where this machine reads the files the IOC wrote", "callback"),
    Variable("ATOMSCALE_IOC_CLOCK", "ioc_clock", "clock", "`own`", "whose clock readings' timestamps are on: `own` (stored as they are) or `host` (this computer's, corrected like it)", "callback"),
    Variable("ATOMSCALE_PROGRESS", "progress", "progress", "a bar in interactive terminals, else off", "the live progress line: yes/no, or `bar`, `lines` or `log`", "callback"),
    Variable("ATOMSCALE_PRINT_SUMMARY", "print_summary", "flag", "in interactive sessions", "print each run's summary when its streams are finalized", "callback"),
    # the processes we start
    Variable("ATOMSCALE_LOG_LEVEL", "log_level", "level", "`INFO`", "level of `config_atomscale_logging()` when none is given (the commands' `-v` wins)", "commands, profile"),
    Variable("ATOMSCALE_TUNE_MALLOC", "tune_malloc", "flag", "`true`", "tune glibc's malloc so frame buffers are reused from one heap (flat memory, no page faults per buffer)", "commands, profile"),
    Variable("ATOMSCALE_ENV_FILE", "env_file", "path", "`./.env` when present", "the `.env` file `serve` and `consume` read (`--env-file` wins)", "commands"),
    Variable("ATOMSCALE_LOCAL_API_KEYS", "local_api_keys", "secrets", "unset", "comma-separated keys the local server accepts (`--api-key` wins)", "server"),
    Variable("ATOMSCALE_LOCAL_DATA_DIR", "local_data_dir", "path", "`./atomscale-local-data`", "where the local server stores streams (`--data-dir` wins)", "server"),
    Variable("ATOMSCALE_DISABLE", "disable", "flag", "`false`", "run the IPython profile without streaming", "profile"),
    Variable("ATOMSCALE_CAMERA_PREFIX", "camera_prefix", "text", "`RHEED:`", "PV prefix of the profile's RHEED camera", "profile"),
    Variable("ATOMSCALE_SENSORS_PREFIX", "sensors_prefix", "text", "`GROWTH:`", "PV prefix of the profile's growth sensors", "profile"),
    Variable("ATOMSCALE_CATALOG_DIR", "catalog_dir", "path", "`~/.local/share/atomscale-bluesky/catalog`", "where the profile's local run catalog stores runs", "profile"),
    Variable("ATOMSCALE_MD_DIR", "md_dir", "path", "`~/.local/share/atomscale-bluesky/md`", "where the profile persists `RE.md`", "profile"),
)  # fmt: skip

DEFAULT_SAMPLE_KEYS = ("sample_name", "sample", "physical_sample")
DEFAULT_PROJECT_KEYS = ("project_id",)
DEFAULT_TAG_KEYS = ("proposal", "data_session", "cycle")


@dataclass(frozen=True)
class AtomscaleSettings:
    """The parsed settings; ``None`` means unset (the reader's own default applies).

    ``sources`` says which variable gave each attribute (for messages); the keys are never shown.
    """

    api_key: ApiKey | None = field(default=None, repr=False)
    api_key_file: Path | None = None
    endpoint: str | None = None
    allow_insecure_http: bool = False
    skip_clock_sync: bool = False
    spool_dir: Path | None = None
    thread_nice: int | None = None
    sample: str | None = None
    project_id: str | None = None
    tags: tuple[str, ...] | None = None
    sample_keys: tuple[str, ...] = DEFAULT_SAMPLE_KEYS
    project_keys: tuple[str, ...] = DEFAULT_PROJECT_KEYS
    tag_keys: tuple[str, ...] = DEFAULT_TAG_KEYS
    include: tuple[str, ...] | None = None
    exclude: tuple[str, ...] | None = None
    rename: Mapping[str, str] | None = None
    rotation_key: str | None = None
    strict: bool = False
    cameras: tuple[str, ...] | None = None
    data_type: str | None = None
    root_map: Mapping[str, str] | None = None
    ioc_clock: str | None = None
    progress: bool | str | None = None
    print_summary: bool | None = None
    log_level: str = "INFO"
    tune_malloc: bool = True
    env_file: Path | None = None
    local_api_keys: tuple[str, ...] = field(default=(), repr=False)
    local_data_dir: Path | None = None
    disable: bool = False
    camera_prefix: str = "RHEED:"
    sensors_prefix: str = "GROWTH:"
    catalog_dir: Path | None = None
    md_dir: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def replace(self, **values: Any) -> AtomscaleSettings:
        """These settings with explicit values (constructor arguments, options) over them;
        ``None`` values are ignored, so an unset argument never hides the environment."""
        given = {name: _typed(name, value) for name, value in values.items() if value is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **given)

    def source(self, attribute: str) -> str:
        """Where an attribute's value came from: the variable's name, else "the default"."""
        return self.sources.get(attribute, "the default")


def _typed(attribute: str, value: Any) -> Any:
    """An explicit value in the attribute's type: paths as ``Path``, lists as tuples."""
    kind = next((v.kind for v in VARIABLES if v.attribute == attribute), None)
    if kind == "path" and isinstance(value, (str, os.PathLike)):
        return Path(value).expanduser()
    if kind in ("list", "secrets") and not isinstance(value, str):
        return tuple(value)
    if kind == "secret" and isinstance(value, str):
        from atomscale_bluesky.client.secret import ApiKey

        return ApiKey(value)
    return value


def parse_flag(name: str, text: str) -> bool | None:
    """The one yes/no rule; ``None`` for an empty value (unset)."""
    word = text.strip().lower()
    if not word:
        return None
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{name}={text.strip()!r} is not a yes/no value: use 1, true, yes or on, or 0, false, "
        "no or off"
    )


def _split(text: str) -> tuple[str, ...] | None:
    items = tuple(part.strip() for part in text.split(",") if part.strip())
    return items or None


def parse_pairs(name: str, items: Iterable[str]) -> dict[str, str]:
    """``["key=value", ...]`` as a mapping; ``name`` (a variable or option) is in the error."""
    result: dict[str, str] = {}
    for pair in items:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"{name}: each item must look like key=value, got {pair!r}")
        result[key.strip()] = value.strip()
    return result


def _pairs(name: str, text: str) -> dict[str, str] | None:
    """``"key=value,key2=value2"`` as a mapping."""
    return parse_pairs(name, _split(text) or ()) or None


def _secret(name: str, text: str) -> ApiKey | None:
    from atomscale_bluesky.client.secret import ApiKey

    return ApiKey(text) if text.strip() else None


def _secrets(name: str, text: str) -> tuple[str, ...] | None:
    return _split(text)


def _text(name: str, text: str) -> str | None:
    return text.strip() or None


def _level(name: str, text: str) -> str | None:
    """A logging level name (DEBUG, INFO, WARNING, ERROR, CRITICAL), any case."""
    word = text.strip().upper()
    if word and word not in LEVELS:
        raise ConfigError(
            f"{name}={text.strip()!r} is not a logging level: use one of {', '.join(LEVELS)}"
        )
    return word or None


def _clock(name: str, text: str) -> str | None:
    """Whose clock the IOCs' timestamps are on: ``own`` or ``host``, any case."""
    word = text.strip().lower()
    if word and word not in IOC_CLOCKS:
        raise ConfigError(f"{name}={text.strip()!r} is not a clock: use own or host")
    return word or None


def _nice(name: str, text: str) -> int | None:
    """A thread nice increment: a whole number from 0 (off) to 19."""
    word = text.strip()
    if not word:
        return None
    if not (word.isascii() and word.isdigit()) or int(word) > MAX_NICE:
        raise ConfigError(
            f"{name}={word!r} is not a nice increment: use a whole number 0 to {MAX_NICE}"
        )
    return int(word)


def _progress(name: str, text: str) -> bool | str | None:
    """The progress line: a yes/no value (the one rule), or ``bar``, ``lines`` or ``log``."""
    word = text.strip().lower()
    if word in PROGRESS_WORDS:
        return word
    try:
        return parse_flag(name, text)
    except ConfigError:
        raise ConfigError(
            f"{name}={text.strip()!r} is not a progress mode: use a yes/no value, bar, lines or log"
        ) from None


def _path(name: str, text: str) -> Path | None:
    return Path(text.strip()).expanduser() if text.strip() else None


PARSERS: dict[str, Callable[[str, str], Any]] = {
    "text": _text,
    "flag": parse_flag,
    "list": lambda name, text: _split(text),
    "pairs": _pairs,
    "path": _path,
    "level": _level,
    "clock": _clock,
    "nice": _nice,
    "progress": _progress,
    "secret": _secret,
    "secrets": _secrets,
}


def load_settings(environ: Mapping[str, str] | None = None, **explicit: Any) -> AtomscaleSettings:
    """Settings from ``environ`` (default ``os.environ``) with ``explicit`` values over them.

    Raises :class:`ConfigError` naming the variable when a value cannot be read.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for variable in VARIABLES:
        for name in variable.names:
            text = env.get(name)
            if text is None or not text.strip():
                continue
            value = PARSERS[variable.kind](name, text)
            if value is not None:
                values[variable.attribute] = value
                sources[variable.attribute] = name
            break
    _warn_unknown(env)
    return AtomscaleSettings(**values, sources=sources).replace(**explicit)


#: ``ATOMSCALE_`` variables that are not settings: handed from our process to a child.
INTERNAL = frozenset({"ATOMSCALE_CATALOG_API_KEY"})


def _warn_unknown(env: Mapping[str, str]) -> None:
    """A warning (shown once per name by Python's warning filter) for an ``ATOMSCALE_`` variable
    no setting reads: a typo would otherwise be silently ignored."""
    known = {name for v in VARIABLES for name in v.names} | INTERNAL
    for name in env:
        if name.startswith(PREFIX) and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            warnings.warn(f"{name} is not an Atomscale setting{hint}", UserWarning, stacklevel=3)


def ours(name: str) -> bool:
    """A variable this package reads (by its prefix)."""
    return name.startswith(PREFIX) or name.startswith(ALIAS_PREFIXES)


def with_env_file(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment (default ``os.environ``) over a ``.env`` file's ``ATOMSCALE_``/``AS_``
    variables: what a service (``serve``, ``consume``) reads its settings from.

    ``path`` None means ``ATOMSCALE_ENV_FILE``, else ``./.env`` when it exists. A named file that
    does not exist is a :class:`ConfigError`. Nothing is written to ``os.environ``.
    """
    env = dict(os.environ if environ is None else environ)
    named = path if path is not None else load_settings(env).env_file
    if named is None:
        found = Path(".env")
        if not found.is_file():
            return env
    else:
        found = Path(named).expanduser()
        if not found.is_file():
            raise ConfigError(f"the settings file {str(found)!r} does not exist")
    try:
        from dotenv import dotenv_values
    except ImportError:
        raise ConfigError(
            f"reading {str(found)!r} needs python-dotenv: pip install 'atomscale-bluesky[server]'"
        ) from None
    set_in_env = {v.attribute for v in VARIABLES for name in v.names if env.get(name, "").strip()}
    from_file: dict[str, str] = {}
    for name, value in dotenv_values(found).items():
        variable = next((v for v in VARIABLES if name in v.names), None)
        if not ours(name):
            log.debug("%s: %s is not an Atomscale setting; ignored", found, name)
        elif value is not None and (variable is None or variable.attribute not in set_in_env):
            from_file[name] = value
    log.info("settings read from %s (the environment wins over it)", found)
    return {**from_file, **env}


def variables_table(readers: Iterable[str] | None = None) -> str:
    """The Markdown table of every variable (the docs include it; a test keeps them equal)."""
    wanted = None if readers is None else set(readers)
    rows = ["| variable | default | meaning | read by |", "|---|---|---|---|"]
    for v in VARIABLES:
        if wanted is not None and not wanted & {r.strip() for r in v.readers.split(",")}:
            continue
        name = f"`{v.name}`" + "".join(f" (or `{alias}`)" for alias in v.aliases)
        kind = " (yes/no)" if v.kind == "flag" else ""
        rows.append(f"| {name} | {v.default} | {v.meaning}{kind} | {v.readers} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # the table docs/configuration.md holds
    print(variables_table(), end="")
