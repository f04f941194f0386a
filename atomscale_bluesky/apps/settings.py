"""The callback of the commands and the profile: command-line options over the environment.

Settings come from :mod:`atomscale_bluesky.settings` (one model for the callback, the client and
the commands); this module adds the command-line options that override them and
:func:`make_callback`. The API key has no option: it is read from the environment (or a ``.env``
file of a service) by the settings model, held as an ``ApiKey``, and never passes through here as
text that could be printed.
"""

from __future__ import annotations

import argparse
from typing import Any

from atomscale_bluesky.settings import AtomscaleSettings, load_settings, parse_pairs

__all__ = [
    "add_callback_arguments",
    "add_env_file_argument",
    "callback_from_args",
    "make_callback",
    "settings_from_args",
]

#: Command-line option -> the setting it overrides (and the constructor argument it becomes).
OPTION_SETTINGS = (
    "endpoint",
    "spool_dir",
    "sample",
    "project_id",
    "tags",
    "include",
    "exclude",
    "rename",
    "rotation_key",
    "strict",
    "cameras",
    "root_map",
    "ioc_clock",
)


def make_callback(settings: AtomscaleSettings | None = None, **overrides: Any) -> Any:
    """An ``AtomscaleCallback`` from ``settings`` (default: the environment) with ``overrides``
    (constructor arguments) over them; ``spool_dir`` chooses the client's spool."""
    from atomscale_bluesky.callback import AtomscaleCallback

    base = load_settings() if settings is None else settings
    spool_dir = overrides.pop("spool_dir", None)
    if spool_dir is not None:
        base = base.replace(spool_dir=spool_dir)
    return AtomscaleCallback(settings=base, **overrides)


def add_env_file_argument(parser: argparse.ArgumentParser) -> None:
    """``--env-file``: the ``.env`` file of a service (``serve``, ``consume``)."""
    parser.add_argument(
        "--env-file",
        help="a .env file of ATOMSCALE_ settings, under the environment "
        "(default $ATOMSCALE_ENV_FILE, else ./.env when present)",
    )


def add_callback_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options shared by ``consume`` and ``replay`` (each overrides its variable)."""
    group = parser.add_argument_group("Atomscale streaming (each option overrides its variable)")
    group.add_argument("--endpoint", help="Atomscale API URL (ATOMSCALE_ENDPOINT)")
    group.add_argument("--spool-dir", help="spool directory (ATOMSCALE_SPOOL_DIR)")
    group.add_argument(
        "--sample", help="physical sample name or UUID of every run (over the run's own)"
    )
    group.add_argument("--project-id", help="project id of every run (over the run's own)")
    group.add_argument("--tag", action="append", dest="tags", help="a tag of every run; repeatable")
    group.add_argument(
        "--include",
        action="append",
        help="a data key (glob) to stream; repeatable (ATOMSCALE_INCLUDE)",
    )
    group.add_argument(
        "--exclude",
        action="append",
        help="a data key (glob) never to stream; repeatable (ATOMSCALE_EXCLUDE)",
    )
    group.add_argument(
        "--rename",
        action="append",
        metavar="KEY=CHANNEL",
        help="channel name for a data key; repeatable (ATOMSCALE_RENAME)",
    )
    group.add_argument(
        "--rotation-key", help="data key of the rotation speed in rpm (ATOMSCALE_ROTATION_KEY)"
    )
    group.add_argument(
        "--strict",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="abort runs on failure (ATOMSCALE_STRICT)",
    )
    group.add_argument(
        "--camera",
        action="append",
        dest="cameras",
        help="a RHEED camera: data key, device name or glob; repeatable (ATOMSCALE_CAMERAS)",
    )
    group.add_argument(
        "--root-map",
        action="append",
        metavar="IOC_ROOT=LOCAL_ROOT",
        help="where this machine reads the IOC's files; repeatable (ATOMSCALE_ROOT_MAP)",
    )
    group.add_argument(
        "--ioc-clock",
        choices=("own", "host"),
        help="whose clock the IOCs' timestamps are on (ATOMSCALE_IOC_CLOCK)",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The options given on the command line, as constructor arguments (unset ones left out)."""
    values = {name: getattr(args, name, None) for name in OPTION_SETTINGS}
    if values["rename"] is not None:
        values["rename"] = parse_pairs("--rename", values["rename"])
    if values["root_map"] is not None:
        values["root_map"] = parse_pairs("--root-map", values["root_map"])
    return {name: value for name, value in values.items() if value is not None}


def settings_from_args(
    args: argparse.Namespace, settings: AtomscaleSettings | None = None
) -> AtomscaleSettings:
    """The environment's settings (or ``settings``) with the command line's options over them.

    ``sample``, ``project_id`` and ``tags`` stay constructor arguments (they override what a run
    says), so they are not settings: use :func:`overrides_from_args` for them.
    """
    base = load_settings() if settings is None else settings
    given = overrides_from_args(args)
    for name in ("sample", "project_id", "tags"):
        given.pop(name, None)
    return base.replace(**given)


def callback_from_args(
    args: argparse.Namespace, settings: AtomscaleSettings | None = None, **extra: Any
) -> Any:
    """The callback a command streams through: options over ``settings`` (default: the
    environment) over defaults; ``extra`` are further constructor arguments."""
    overrides = overrides_from_args(args)
    settings = settings_from_args(args, settings)
    kept = {name: overrides[name] for name in ("sample", "project_id", "tags") if name in overrides}
    return make_callback(settings, **kept, **extra)
