"""Beamline start-document keys -> the Atomscale sample, project, tags and stream names.

The table runs each common key through ``RunMetadata``; the end-to-end cases run a real
RunEngine into the callback and read what the local server stored.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.callback.run_metadata import (
    MetadataKeys,
    RunDefaults,
    RunMetadata,
    RunOverrides,
)

UID = "0123456789abcdef"
NO_OVERRIDES = RunOverrides()


def meta(start: dict[str, Any], **kwargs: Any) -> RunMetadata:
    return RunMetadata.from_start(
        {"uid": UID, **start}, kwargs.pop("overrides", NO_OVERRIDES), **kwargs
    )


SAMPLE_CASES = [
    ({"sample_name": "GaAs-42"}, "GaAs-42"),
    ({"sample": "InP-7"}, "InP-7"),
    ({"sample": {"name": "GaAs-42", "composition": "GaAs"}}, "GaAs-42"),
    ({"sample": {"uuid": "6f1c2a8e-1b7d-4c55-9a51-0d2b3e4f5a6b", "name": "GaAs-42"}},
     "6f1c2a8e-1b7d-4c55-9a51-0d2b3e4f5a6b"),
    ({"sample": {"id": 1234, "composition": "GaAs"}}, "1234"),
    ({"sample": {"sample_id": "S-9"}}, "S-9"),
    ({"physical_sample": "wafer 3"}, "wafer 3"),
    ({"sample_name": "from sample_name", "sample": {"name": "from sample"}}, "from sample_name"),
    ({"sample_name": "  ", "sample": "blank name skipped"}, "blank name skipped"),
    ({}, None),
]  # fmt: skip


@pytest.mark.parametrize(("start", "sample"), SAMPLE_CASES)
def test_the_sample_keys(start, sample):
    assert meta(start).sample == sample


TAG_CASES = [
    ({"proposal": {"proposal_id": "312345", "title": "GaAs growth"}}, ["proposal:312345"]),
    ({"proposal": 312345}, ["proposal:312345"]),
    ({"data_session": "pass-312345"}, ["data_session:pass-312345"]),
    ({"cycle": "2026-3"}, ["cycle:2026-3"]),
    ({"tags": ["MBE", "homoepitaxy"], "cycle": "2026-3"}, ["MBE", "homoepitaxy", "cycle:2026-3"]),
    ({"tags": "MBE, GaAs"}, ["MBE", "GaAs"]),
    ({"tags": ["x"], "proposal": {"title": "no id"}}, ["x"]),
    ({}, None),
]  # fmt: skip


@pytest.mark.parametrize(("start", "tags"), TAG_CASES)
def test_the_tag_keys(start, tags):
    assert meta(start).tags == tags


def test_project_plan_name_and_scan_id():
    found = meta({"project_id": " p-1 ", "plan_name": "count", "scan_id": 12})
    assert found.project_id == "p-1"
    assert found.name == "count scan 12"  # plan_name and scan_id name the streams
    assert (found.plan_name, found.scan_id) == ("count", 12)
    # a facility's proposal is not an Atomscale project: it is a tag, never the project
    assert meta({"proposal": {"proposal_id": "312345"}}).project_id is None


def test_the_run_wins_over_the_environment_defaults_and_the_constructor_over_both():
    defaults = RunDefaults(sample="env-sample", project_id="env-project", tags=("env",))
    said = {"sample": {"name": "run-sample"}, "project_id": "run-project", "tags": ["run"]}
    found = meta(said, defaults=defaults)
    assert (found.sample, found.project_id, found.tags) == ("run-sample", "run-project", ["run"])
    silent = meta({"cycle": "2026-3"}, defaults=defaults)
    assert (silent.sample, silent.project_id) == ("env-sample", "env-project")
    assert silent.tags == ["env", "cycle:2026-3"]
    overrides = RunOverrides.build(sample="arg", project_id="arg-p", tags=["arg"])
    forced = meta({**said, "cycle": "2026-3"}, overrides=overrides, defaults=defaults)
    assert (forced.sample, forced.project_id) == ("arg", "arg-p")
    assert forced.tags == ["arg", "cycle:2026-3"]


def test_a_configured_mapping():
    keys = MetadataKeys.build(
        sample_keys=["sample.barcode", "sample_name"],
        project_keys="atomscale_project",
        tag_keys=["beamline", "operator"],
    )
    start = {
        "sample": {"name": "ignored", "barcode": "BC-0042"},
        "sample_name": "second choice",
        "atomscale_project": "proj-9",
        "project_id": "not read any more",
        "beamline": "MBE-1",
        "operator": "ada",
        "proposal": {"proposal_id": "312345"},  # not configured: no tag
    }
    found = meta(start, keys=keys)
    assert found.sample == "BC-0042"
    assert found.project_id == "proj-9"
    assert found.tags == ["beamline:MBE-1", "operator:ada"]
    assert meta({"sample_name": "S"}, keys=keys).sample == "S"
    assert meta({"proposal": 1}, keys=MetadataKeys.build(tag_keys=[])).tags is None


# ---- end to end: a real RunEngine into the callback into the local server ----------------------


def _stored_run(callback: AtomscaleCallback, server: Any, **md: Any) -> dict[str, Any]:
    from bluesky import RunEngine
    from bluesky.plans import count
    from ophyd.sim import det

    engine = RunEngine({})
    engine.subscribe(callback)
    (uid,) = engine(count([det], num=3, md=md))
    assert callback.flush(60)
    (summary,) = [s for s in callback.summaries if s.run_uid == uid]
    assert summary.errors == 0 and summary.timeseries and summary.timeseries.data_id
    stream = server.reader.timeseries(summary.timeseries.data_id)
    tags = sorted(t["name"] if isinstance(t, dict) else t for t in stream["tags"] or [])
    return {"sample": str(stream["sample"]), "project_id": stream["project_id"], "tags": tags,
            "name": stream["name"]}  # fmt: skip


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith(("ATOMSCALE_", "AS_")):
            monkeypatch.delenv(name)
    return monkeypatch


def test_beamline_keys_reach_the_server_and_the_run_wins_over_the_environment(
    env, local_server, tmp_path
):
    env.setenv("ATOMSCALE_SAMPLE", "env-sample")
    env.setenv("ATOMSCALE_PROJECT_ID", "env-project")
    env.setenv("ATOMSCALE_TAGS", "env-tag")
    env.setenv("ATOMSCALE_SPOOL_DIR", str(tmp_path / "spool"))
    env.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "1")
    with AtomscaleCallback(api_key=local_server.api_key, endpoint=local_server.url) as callback:
        said = _stored_run(
            callback,
            local_server,
            sample={"name": "GaAs-42", "composition": "GaAs"},
            project_id="run-project",
            proposal={"proposal_id": "312345", "title": "GaAs growth"},
            data_session="pass-312345",
            cycle="2026-3",
        )
        silent = _stored_run(callback, local_server, sample_name="")
    assert "GaAs-42" in said["sample"] and "env-sample" not in said["sample"]
    assert said["project_id"] == "run-project"
    assert said["tags"] == sorted(
        ["env-tag", "proposal:312345", "data_session:pass-312345", "cycle:2026-3"]
    )
    assert said["name"].startswith("count scan ")
    assert "env-sample" in silent["sample"] and silent["project_id"] == "env-project"
    assert silent["tags"] == ["env-tag"]


def test_a_mapping_configured_in_the_environment(env, local_server, tmp_path):
    env.setenv("ATOMSCALE_SAMPLE_KEYS", "sample.barcode")
    env.setenv("ATOMSCALE_PROJECT_KEYS", "atomscale_project")
    env.setenv("ATOMSCALE_TAG_KEYS", "beamline")
    env.setenv("ATOMSCALE_SPOOL_DIR", str(tmp_path / "spool"))
    env.setenv("ATOMSCALE_SKIP_CLOCK_SYNC", "on")
    with AtomscaleCallback(api_key=local_server.api_key, endpoint=local_server.url) as callback:
        stored = _stored_run(
            callback,
            local_server,
            sample={"barcode": "BC-7", "name": "not this"},
            atomscale_project="proj-7",
            beamline="MBE-1",
            cycle="2026-3",
        )
    assert "BC-7" in stored["sample"] and stored["project_id"] == "proj-7"
    assert stored["tags"] == ["beamline:MBE-1"]
