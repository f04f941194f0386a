"""Callback settings from the environment and the command line."""

import argparse

import pytest

from atomscale_bluesky.apps.settings import (
    CallbackSettings,
    add_callback_arguments,
    settings_from_args,
)


def test_environment_settings_parse_lists_flags_and_renames():
    env = {
        "AS_API_ENDPOINT": "http://127.0.0.1:9",
        "ATOMSCALE_SAMPLE": " GaAs-42 ",
        "ATOMSCALE_TAGS": "mbe, ,gaas,",
        "ATOMSCALE_EXCLUDE": "rheed_cam_acquire",
        "ATOMSCALE_RENAME": "growth_substrate_temperature=Tsub, growth_pressure=P",
        "ATOMSCALE_STRICT": "yes",
    }
    settings = CallbackSettings.from_env(env)
    assert settings.endpoint == "http://127.0.0.1:9"
    assert settings.tags == ["mbe", "gaas"]
    assert settings.exclude == ["rheed_cam_acquire"]
    assert settings.rename == {"growth_substrate_temperature": "Tsub", "growth_pressure": "P"}
    assert settings.strict is True
    kwargs = settings.callback_kwargs()
    assert kwargs["sample"] == " GaAs-42 "  # trimming is the client's rule, applied once there
    assert "include" not in kwargs and "project_id" not in kwargs


def test_bad_rename_is_a_clear_error():
    with pytest.raises(ValueError, match="data_key=channel_name"):
        CallbackSettings.from_env({"ATOMSCALE_RENAME": "no-equals-sign"})


def test_command_line_overrides_environment():
    parser = argparse.ArgumentParser()
    add_callback_arguments(parser)
    args = parser.parse_args(["--sample", "InAs-1", "--tag", "a", "--tag", "b"])
    settings = settings_from_args(args, {"ATOMSCALE_SAMPLE": "other", "ATOMSCALE_PROJECT_ID": "p1"})
    assert settings.sample == "InAs-1"
    assert settings.tags == ["a", "b"]
    assert settings.project_id == "p1"
    assert settings.strict is False


def test_rename_option_and_spool_dir_option():
    parser = argparse.ArgumentParser()
    add_callback_arguments(parser)
    args = parser.parse_args(["--rename", "a=A", "--rename", "b=B", "--spool-dir", "/tmp/x"])
    settings = settings_from_args(args, {})
    assert settings.rename == {"a": "A", "b": "B"}
    assert settings.callback_kwargs()["spool_dir"] == "/tmp/x"
