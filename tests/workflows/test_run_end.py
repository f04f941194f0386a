"""The end of a run is visible: ``wait()`` returns its summary, and the summary is printed.

A real RunEngine runs the growth plans against the simulated camera and sensor IOCs, streaming
to the real local server; the printed summary names URLs that serve the stored streams.
"""

from __future__ import annotations

import re

import httpx
import pytest

from atomscale_bluesky.callback import AtomscaleCallback
from atomscale_bluesky.plans import count_growth


def test_wait_returns_the_runs_summary_and_it_is_printed_with_where_to_see_it(
    RE, camera, sensors, local_server, make_client, capsys
):
    callback = AtomscaleCallback(make_client(local_server), print_summary=True, progress=False)
    RE.subscribe(callback)
    (uid,) = RE(count_growth(camera, sensors, 3, md={"sample": "wafer 7"}))
    summary = callback.wait(timeout=120)
    assert summary.run_uid == uid and summary is callback.summaries[-1]
    assert callback.wait(uid, timeout=0) is summary  # already there: no waiting
    assert summary.frames == 3 and summary.status == "complete"
    callback.close()

    printed = capsys.readouterr().out
    assert f"Atomscale run {uid[:8]} " in printed and "COMPLETE" in printed
    urls = re.findall(r"http://127\.0\.0\.1:\d+/local/(?:rheed|timeseries)/[\w-]+", printed)
    assert {u.rsplit("/", 1)[1] for u in urls} == set(summary.data_ids)
    headers = {"X-API-Key": local_server.api_key}
    rheed = [u for u in urls if "/rheed/" in u]
    assert rheed and httpx.get(rheed[0], headers=headers).json()["n_frames"] == 3


def test_a_script_prints_nothing_by_default_and_wait_times_out_clearly(
    RE, camera, sensors, local_server, make_client, capsys
):
    """pytest is no interactive session: no printed summary, no progress line by default."""
    local_server.faults.set(outage=True, outage_mode="503")  # nothing can be acknowledged
    client = make_client(local_server)
    callback = AtomscaleCallback(client, finalize_timeout_s=30)
    assert callback.options.print_summary is False and callback.options.progress is None
    RE.subscribe(callback)
    (uid,) = RE(count_growth(camera, sensors, 2))
    with pytest.raises(TimeoutError, match=f"run {uid[:8]} was not finalized within 0.5 s"):
        callback.wait(timeout=0.5)
    local_server.faults.clear()
    assert callback.wait(uid, timeout=120).frames == 2
    callback.close()
    assert capsys.readouterr().out == ""


def test_wait_before_any_run_says_so():
    callback = AtomscaleCallback(api_key="k", endpoint="http://127.0.0.1:9", progress=False)
    with pytest.raises(LookupError, match="no run has started"):
        callback.wait(timeout=0)
    callback.close()
