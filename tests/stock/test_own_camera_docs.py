"""docs/own-camera.md runs as written: every Python block, in order, against the simulated camera
IOC and a local server (only the server's address and key and the data directory are swapped in).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from atomscale_bluesky.callback import AtomscaleCallback

pytestmark = pytest.mark.timeout(600)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "own-camera.md"
RECIPES_END = "\n## Files, formats and checking a camera"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def _stop_engine(engine: Any) -> None:
    loop = engine.loop
    loop.call_soon_threadsafe(loop.stop)
    thread = getattr(engine, "_th", None)
    if thread is not None:
        thread.join(timeout=5)


def test_own_camera_recipes_stream_every_frame(stock_camera, local_server, tmp_path):
    recipes = PAGE.read_text().split(RECIPES_END)[0]  # the sections after it run elsewhere
    blocks = python_blocks(recipes)
    assert len(blocks) == 4  # set-up, image plugin, HDF5 files, ophyd-async
    data_dir = tmp_path / "rheed"
    data_dir.mkdir()
    namespace: dict[str, Any] = {"__name__": "own_camera_docs"}
    setup = blocks[0].replace("devkey", local_server.api_key)
    setup = setup.replace("http://127.0.0.1:8766", local_server.url)
    exec(compile(setup, "own-camera.md[setup]", "exec"), namespace)
    callback: AtomscaleCallback = namespace["atomscale"]
    try:
        for i, block in enumerate(blocks[1:], start=1):
            code = block.replace("/data/rheed", str(data_dir))
            exec(compile(code, f"own-camera.md[{i}]", "exec"), namespace)
        assert callback.flush(180)
    finally:
        callback.close()
        _stop_engine(namespace["RE"])
    expected = [5, 12, 5, 60]  # image plugin, HDF5 files, ophyd-async step and fly scans
    assert len(callback.summaries) == len(expected)
    stored_counts = []
    for summary in callback.summaries:  # finalized in any order
        (rheed,) = summary.rheed
        stored = local_server.reader.frames(rheed.data_id)
        assert stored.shape[1:] == (480, 640), summary.text()
        assert summary.lost == 0
        stored_counts.append(len(stored))
    assert sorted(stored_counts) == sorted(expected)
    files = sorted(p.name for p in data_dir.iterdir())
    assert len(files) == 3  # one ophyd FileStore file, one per ophyd-async run
