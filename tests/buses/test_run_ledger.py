"""The run ledger in a file: run states and streams, read afresh by a second consumer."""

from __future__ import annotations

import json

from atomscale_bluesky.apps.buses.run_ledger import FileStore, RunLedger


def test_a_second_consumer_reads_the_runs_and_streams_the_first_recorded(tmp_path):
    path = tmp_path / "runs.json"
    first, standby = RunLedger(FileStore(path)), RunLedger(FileStore(path))
    assert standby.state("run-a") is None
    first.started("run-a")
    first.opened("run-a", "rheed:growth (cam)#0", "data-1")
    first.opened("run-a", "timeseries:growth (sensors)#0", "data-2")
    first.started("run-b")
    first.spooled("run-b")
    assert standby.state("run-a") == "started"
    assert standby.data_id_for("run-a", "rheed:growth (cam)#0") == "data-1"
    assert standby.streams("run-a") == {
        "rheed:growth (cam)#0": "data-1",
        "timeseries:growth (sensors)#0": "data-2",
    }
    assert standby.data_id_for("run-a", "rheed:growth (cam)#1") is None
    assert standby.state("run-b") == "spooled"
    assert not (tmp_path / "runs.json.tmp").exists()


def test_the_earlier_file_format_and_a_damaged_file_are_read(tmp_path):
    path = tmp_path / "runs.json"
    path.write_text(json.dumps({"run-a": "spooled", "run-b": "started"}))
    ledger = RunLedger(FileStore(path))
    assert (ledger.state("run-a"), ledger.state("run-b")) == ("spooled", "started")
    assert ledger.streams("run-b") == {}
    path.write_text("{not json")
    assert ledger.state("run-a") is None
    ledger.started("run-c")  # a damaged file is replaced by a readable one
    assert json.loads(path.read_text()) == {"run-c": {"state": "started", "streams": {}}}


def test_a_stream_recorded_after_its_run_was_spooled_leaves_the_run_spooled(tmp_path):
    """A stream the server created late, after the run was spooled, must not bring the run back
    as started: a redelivery would then handle it again instead of skipping it."""
    path = tmp_path / "runs.json"
    ledger = RunLedger(FileStore(path))
    ledger.started("run-a")
    ledger.spooled("run-a")
    ledger.opened("run-a", "rheed:growth (cam)#0", "data-late")
    standby = RunLedger(FileStore(path))
    assert standby.state("run-a") == "spooled"
    assert standby.streams("run-a") == {}
