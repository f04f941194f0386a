"""Every Python and shell block of README.md and docs/*.md runs, so a documented snippet cannot rot.

Each page runs on its own: its shell blocks one by one (``bash -e``), then its Python blocks in
order in one process and one namespace (``run_page.py``; ``RE`` exists, as in the session the
docs address). They run against the simulated IOCs (camera ``RHEED:``, sensors ``GROWTH:``) and a
local server that holds one streamed run, with ``ATOMSCALE_API_KEY``/``AS_API_ENDPOINT`` set to it.
The docs' example local server (``http://127.0.0.1:8766``, key ``devkey``, data in
``atomscale-local-data``) is that server. A block that cannot run here carries
``<!-- not run: reason -->`` just before it; an unmarked block that fails fails its page.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .markdown_blocks import ROOT, Block, blocks, pages

RUN_PAGE = Path(__file__).with_name("run_page.py")
PAGES = [p for p in pages() if blocks(p)]


def substitutions(server: Any, tmp_path: Path) -> dict[str, str]:
    """The docs' example values, as this test's equivalents."""
    ioc_data = tmp_path / "ioc-data"  # where the docs' file-writing cameras write
    ioc_data.mkdir(exist_ok=True)
    return {
        "http://127.0.0.1:8766": server.url,
        "devkey": server.api_key,
        "atomscale-local-data": str(server.data_dir),
        "/var/lib/atomscale/spool": str(tmp_path / "drained-spool"),
        "/data/rheed": str(ioc_data),
    }


def prepared(block: Block, subs: dict[str, str]) -> str:
    code = block.code
    for example, actual in subs.items():
        code = code.replace(example, actual)
    return code


def page_env(server: Any, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ATOMSCALE_API_KEY=server.api_key,
        AS_API_ENDPOINT=server.url,
        ATOMSCALE_BLUESKY_SPOOL_DIR=str(tmp_path / "spool"),
        OPHYD_CONTROL_LAYER="pyepics",
        MPLBACKEND="Agg",
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.pop("AS_API_KEY", None)
    return env


def run_shell(block: Block, code: str, env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run(
        ["bash", "-e", "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{block.where} failed:\n{code}\n{result.stdout}{result.stderr}"


def run_python(blocks_: list[tuple[Block, str]], env: dict[str, str], cwd: Path) -> str:
    spec = cwd / "blocks.json"
    spec.write_text(json.dumps([{"where": b.where, "code": code} for b, code in blocks_]))
    result = subprocess.run(
        [sys.executable, str(RUN_PAGE), str(spec)],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ALL BLOCKS RAN" in result.stdout, output[-6000:]
    return output


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_code_blocks_run(page: Path, docs_server: Any, tmp_path: Path) -> None:
    subs = substitutions(docs_server, tmp_path)
    env = page_env(docs_server, tmp_path)
    found = [b for b in blocks(page) if b.not_run is None]
    try:
        for block in (b for b in found if b.language == "shell"):
            run_shell(block, prepared(block, subs), env, tmp_path)
        python = [(b, prepared(b, subs)) for b in found if b.language == "python"]
        if python:
            output = run_python(python, env, tmp_path)
            for problem in ("Traceback", "INCOMPLETE"):  # also what a callback only logs
                assert problem not in output, output[-6000:]
    finally:
        docs_server.reader.clear_faults()  # a page may switch faults on (local-server.md)


def test_every_page_is_found_and_each_skipped_block_says_why() -> None:
    names = {str(p.relative_to(ROOT)) for p in pages()}
    assert {"README.md", "docs/quickstart.md", "docs/integration.md"} <= names
    every = [b for p in pages() for b in blocks(p)]
    assert sum(b.not_run is None for b in every) >= 10  # most blocks run
    for block in every:
        assert block.not_run is None or len(block.not_run) >= 10, block.where
