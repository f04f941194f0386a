"""Callback configuration from the environment and the command line (profile, consume, replay, demo).

Every setting has one environment variable; a command-line option of the same meaning wins over it.
The API key is read from the environment (``ATOMSCALE_API_KEY``, ``AS_API_KEY`` or the file
``ATOMSCALE_API_KEY_FILE`` names) by the client itself and never passes through here as text that
could be printed.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [part.strip() for part in text.split(",")]
    return [item for item in items if item] or None


def _flag(text: str | None) -> bool:
    return (text or "").strip().lower() in {"1", "true", "yes", "on"}


def _renames(text: str | None) -> dict[str, str] | None:
    """``"key=name,key2=name2"`` as a mapping."""
    pairs = _split(text)
    if not pairs:
        return None
    result = {}
    for pair in pairs:
        key, sep, name = pair.partition("=")
        if not sep or not key.strip() or not name.strip():
            raise ValueError(f"a rename must look like data_key=channel_name, got {pair!r}")
        result[key.strip()] = name.strip()
    return result


ENVIRONMENT = {
    "endpoint": "AS_API_ENDPOINT (or ATOMSCALE_ENDPOINT): Atomscale API URL; the local server's URL for tests (plain http:// only to this machine unless ATOMSCALE_ALLOW_INSECURE_HTTP=1)",
    "spool_dir": "ATOMSCALE_BLUESKY_SPOOL_DIR: where chunks wait for upload (read by the client)",
    "sample": "ATOMSCALE_SAMPLE: physical sample name or UUID for every run (overrides the run's sample)",
    "project_id": "ATOMSCALE_PROJECT_ID: project for every run (overrides the run's project_id)",
    "tags": "ATOMSCALE_TAGS: comma-separated tags for every stream (override the run's tags)",
    "include": "ATOMSCALE_INCLUDE: comma-separated data keys to stream (default: all)",
    "exclude": "ATOMSCALE_EXCLUDE: comma-separated data keys never to stream",
    "rename": "ATOMSCALE_RENAME: data_key=channel,... channel names",
    "rotation_key": "ATOMSCALE_ROTATION_KEY: data key of the substrate rotation speed (rpm)",
    "strict": "ATOMSCALE_STRICT: 1 to abort a run when streaming fails",
}


@dataclass
class CallbackSettings:
    """Options of :class:`~atomscale_bluesky.callback.AtomscaleCallback` that a deployment sets."""

    endpoint: str | None = None
    spool_dir: str | None = None
    sample: str | None = None
    project_id: str | None = None
    tags: list[str] | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    rename: dict[str, str] | None = None
    rotation_key: str | None = None
    strict: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CallbackSettings:
        env = os.environ if environ is None else environ
        return cls(
            endpoint=env.get("AS_API_ENDPOINT") or env.get("ATOMSCALE_ENDPOINT") or None,
            sample=env.get("ATOMSCALE_SAMPLE") or None,
            project_id=env.get("ATOMSCALE_PROJECT_ID") or None,
            tags=_split(env.get("ATOMSCALE_TAGS")),
            include=_split(env.get("ATOMSCALE_INCLUDE")),
            exclude=_split(env.get("ATOMSCALE_EXCLUDE")),
            rename=_renames(env.get("ATOMSCALE_RENAME")),
            rotation_key=env.get("ATOMSCALE_ROTATION_KEY") or None,
            strict=_flag(env.get("ATOMSCALE_STRICT")),
        )

    def callback_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AtomscaleCallback``; unset options are left to its defaults."""
        kwargs: dict[str, Any] = {
            "endpoint": self.endpoint,
            "sample": self.sample,
            "project_id": self.project_id,
            "tags": self.tags,
            "include": self.include,
            "exclude": self.exclude,
            "rename": self.rename,
            "rotation_key": self.rotation_key,
            "strict": self.strict,
        }
        if self.spool_dir:
            kwargs["spool_dir"] = self.spool_dir
        kwargs.update(self.extra)
        return {key: value for key, value in kwargs.items() if value is not None}


def make_callback(settings: CallbackSettings | None = None, **overrides: Any) -> Any:
    """An ``AtomscaleCallback`` from settings (default: the environment) and explicit overrides."""
    from atomscale_bluesky.callback import AtomscaleCallback
    from atomscale_bluesky.client.config import resolve_endpoint

    kwargs = (settings or CallbackSettings.from_env()).callback_kwargs()
    kwargs.update(overrides)
    spool_dir = kwargs.pop("spool_dir", None)
    if spool_dir is not None and "client" not in kwargs:
        endpoint = kwargs.get("endpoint")
        resolve_endpoint(endpoint)  # a plain-http endpoint to another machine fails here

        def client_factory() -> Any:
            from atomscale_bluesky.client import AtomscaleClient

            return AtomscaleClient(endpoint=endpoint, spool_dir=spool_dir)

        kwargs.setdefault("client_factory", client_factory)
    return AtomscaleCallback(**kwargs)


def add_callback_arguments(parser: argparse.ArgumentParser) -> None:
    """Command-line options shared by ``consume`` and ``replay`` (each overrides its variable)."""
    group = parser.add_argument_group("Atomscale streaming (each option overrides its variable)")
    group.add_argument("--endpoint", help="Atomscale API URL (AS_API_ENDPOINT)")
    group.add_argument("--spool-dir", help="spool directory (ATOMSCALE_BLUESKY_SPOOL_DIR)")
    group.add_argument("--sample", help="physical sample name or UUID (ATOMSCALE_SAMPLE)")
    group.add_argument("--project-id", help="project id (ATOMSCALE_PROJECT_ID)")
    group.add_argument(
        "--tag", action="append", dest="tags", help="a tag; repeatable (ATOMSCALE_TAGS)"
    )
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
        action="store_true",
        default=None,
        help="abort runs on failure (ATOMSCALE_STRICT)",
    )


def settings_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> CallbackSettings:
    """Environment settings with every option given on the command line applied over them."""
    settings = CallbackSettings.from_env(environ)
    for name in (
        "endpoint",
        "spool_dir",
        "sample",
        "project_id",
        "tags",
        "include",
        "exclude",
        "rotation_key",
        "strict",
    ):
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    renames = getattr(args, "rename", None)
    if renames:
        settings.rename = _renames(",".join(renames))
    return settings


def callback_from_args(args: argparse.Namespace) -> Any:
    """The callback a CLI subcommand streams through."""
    return make_callback(settings_from_args(args))
