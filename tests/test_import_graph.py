"""The package's modules import one another as a tree: no import circles, however hidden.

Every ``import`` and ``from ... import`` counts, including those under ``TYPE_CHECKING`` and inside
functions, because a circle there still ties the modules' designs together.
"""

from __future__ import annotations

import ast
from pathlib import Path

import atomscale_bluesky

PACKAGE = "atomscale_bluesky"
ROOT = Path(atomscale_bluesky.__file__).parent

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    """``atomscale_bluesky/client/spool/__init__.py`` -> ``atomscale_bluesky.client.spool``."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _resolve_from(node: ast.ImportFrom, name: str, is_package: bool) -> str:
    """The absolute module a ``from`` import names (relative imports resolved against ``name``)."""
    if node.level == 0:
        return node.module or ""
    base = name.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(target: str, known: set[str]) -> str | None:
    """The longest known module that is ``target`` or contains it."""
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its source."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, name, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.append(submodule if submodule in known else base)
        for target in targets:
            module = _known(target, known)
            if module is not None and module != name:
                found.add(module)
    return found


def import_graph() -> Graph:
    """Module -> the package modules it imports."""
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def cycles(graph: Graph) -> list[list[str]]:
    """One closed path per strongly connected group of modules (Tarjan), first module repeated."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_closed_path(graph, group) for group in groups]


def _closed_path(graph: Graph, group: set[str]) -> list[str]:
    """The shortest path inside ``group`` from its first module back to itself."""
    start = min(group)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if nxt not in parent:
                    parent[nxt] = node
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no closed path in {sorted(group)}")


def test_the_checker_sees_a_circle_through_type_checking_and_function_imports() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_are_read_everywhere_in_a_module(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from atomscale_bluesky.pkg import c\n"
        "import atomscale_bluesky.d.e\n"
    )
    path = tmp_path / "a.py"
    path.write_text(source)
    known = {"atomscale_bluesky.pkg.a", "atomscale_bluesky.pkg.b", "atomscale_bluesky.pkg.c"}
    known |= {"atomscale_bluesky.pkg", "atomscale_bluesky.d"}
    assert imports_of("atomscale_bluesky.pkg.a", path, known) == {
        "atomscale_bluesky.pkg.b",
        "atomscale_bluesky.pkg.c",
        "atomscale_bluesky.d",
    }


def test_the_package_has_no_import_circles() -> None:
    found = cycles(import_graph())
    described = "\n".join(" -> ".join(cycle) for cycle in found)
    assert not found, f"import circles:\n{described}"


HEAVY = (
    "bluesky", "ophyd", "ophyd_async", "caproto", "epics", "fastapi", "uvicorn", "starlette",
    "zarr", "tiled", "matplotlib", "pandas", "h5py", "IPython", "zmq", "pydantic", "dotenv",
)  # fmt: skip


def test_the_public_names_import_without_the_optional_stacks() -> None:
    """``from atomscale_bluesky import AtomscaleCallback`` (and every public name) works in a
    fresh interpreter and imports none of the optional extras' packages."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, atomscale_bluesky\n"
        "assert 'atomscale_bluesky.callback' not in sys.modules, 'import atomscale_bluesky is lazy'\n"
        "from atomscale_bluesky import *\n"
        "from atomscale_bluesky import AtomscaleCallback, config_atomscale_logging, make_callback\n"
        "assert AtomscaleCallback.__module__ == 'atomscale_bluesky.callback.atomscale_callback'\n"
        "for name in atomscale_bluesky.__all__: getattr(atomscale_bluesky, name)\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(ROOT.parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"optional stacks imported: {result.stdout}"


def test_an_unknown_public_name_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        atomscale_bluesky.Nope  # noqa: B018
