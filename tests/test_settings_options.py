"""The callback options added with the handler, pixel and clock work read their variables:
cameras, data type, root map and IOC clock come from the settings when the constructor leaves
them None, and a constructor argument wins."""

from __future__ import annotations

import numpy as np
import pytest

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.settings import ConfigError, load_settings

ENV = {
    "ATOMSCALE_CAMERAS": "rheed, side_cam*",
    "ATOMSCALE_DATA_TYPE": "Int16",
    "ATOMSCALE_ROOT_MAP": "/epics/data=/mnt/ioc/data",
    "ATOMSCALE_IOC_CLOCK": "HOST",
}


def test_the_settings_fill_the_options_left_none() -> None:
    with AtomscaleCallback(endpoint="http://127.0.0.1:9", settings=load_settings(ENV)) as cb:
        options = cb.options
        assert options.routing.cameras == ("rheed", "side_cam*")
        assert options.pixels.for_key("rheed_image").data_type == np.dtype("int16")
        assert dict(options.root_map) == {"/epics/data": "/mnt/ioc/data"}
        assert options.ioc_clock == "host"


def test_constructor_arguments_win_over_the_settings() -> None:
    with AtomscaleCallback(
        endpoint="http://127.0.0.1:9",
        settings=load_settings(ENV),
        cameras="top",
        data_type="UInt8",
        root_map={},
        ioc_clock="own",
    ) as cb:
        options = cb.options
        assert options.routing.cameras == ("top",)
        assert options.pixels.for_key("rheed_image").data_type == np.dtype("uint8")
        assert dict(options.root_map) == {}
        assert options.ioc_clock == "own"


def test_unset_means_the_defaults() -> None:
    with AtomscaleCallback(endpoint="http://127.0.0.1:9", settings=load_settings({})) as cb:
        assert cb.options.routing.cameras is None and cb.options.ioc_clock == "own"
        assert cb.options.pixels.for_key("x").data_type is None and not cb.options.root_map


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ATOMSCALE_IOC_CLOCK", "ioc", "ATOMSCALE_IOC_CLOCK='ioc' is not a clock"),
        ("ATOMSCALE_ROOT_MAP", "/epics/data", "ATOMSCALE_ROOT_MAP: each item must look like"),
    ],
)
def test_unusable_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({name: value})


def test_command_line_options_win_over_the_variables() -> None:
    from atomscale_bluesky.apps.cli import build_parser
    from atomscale_bluesky.apps.settings import callback_from_args

    argv = ["consume", "--endpoint", "http://127.0.0.1:9", "--camera", "top", "--camera", "side",
            "--root-map", "/ioc=/here", "--ioc-clock", "own"]  # fmt: skip
    args = build_parser(argv).parse_args(argv)
    with callback_from_args(args, load_settings(ENV)) as cb:
        assert cb.options.routing.cameras == ("top", "side")
        assert dict(cb.options.root_map) == {"/ioc": "/here"}
        assert cb.options.ioc_clock == "own"
    argv = ["consume", "--endpoint", "http://127.0.0.1:9"]
    with callback_from_args(build_parser(argv).parse_args(argv), load_settings(ENV)) as cb:
        assert (
            cb.options.routing.cameras == ("rheed", "side_cam*") and cb.options.ioc_clock == "host"
        )


def test_a_given_clients_endpoint_is_where_the_summary_points(RE, local_server, make_client):
    """ATOMSCALE_ENDPOINT is for the client the callback makes, not for one it is given."""
    from bluesky import plans as bp
    from ophyd.sim import det

    settings = load_settings({"ATOMSCALE_ENDPOINT": "http://127.0.0.1:8"})
    with AtomscaleCallback(make_client(local_server), settings=settings) as cb:
        token = RE.subscribe(cb)
        RE(bp.count([det], num=3))
        RE.unsubscribe(token)
        assert cb.flush(60)
        summary = cb.summaries[-1]
    assert summary.timeseries is not None and summary.timeseries.data_id
    assert summary.endpoint == local_server.url
